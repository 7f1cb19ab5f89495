"""`udasa tune`: Ray Tune over τ1, τ2 and the number of stages, on the scored pairs of a run.

Each trial is a Tune function that re-splits the run's scores with its thresholds (no new
generation) and runs the phased DPO of `udasa train` (a Ray Train `TorchTrainer` per stage)
in tune/trials/<curriculum>/, reporting each stage's held-out pair reward accuracy (what ASHA
compares) and, at the end, the configured objective. The experiment lives in tune/ray/ and
resumes with `Tuner.restore`; a trial's stages resume from its own manifest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from typing import Any

from udasa_ray.config import Config, ConfigError, from_dict
from udasa_ray.evaluate.registry import direction
from udasa_ray.runs import RunDir
from udasa_ray.tracking import Tracker, tune_callbacks
from udasa_ray.tune.space import grid_points, optuna_space, spread_thresholds, trial_name


def trial_point(config: dict[str, Any], points: list[dict]) -> dict[str, Any]:
    """A trial's curriculum from its Tune config: an index into the grid's `points`, or Optuna's
    draw of stages, τ1 and τ2."""
    p = points[config["point"]] if "point" in config else {k: config[k] for k in ("stages", "tau1", "tau2")}
    return {"stages": p["stages"], "tau1": p["tau1"], "tau2": p["tau2"],
            "thresholds": spread_thresholds(p["stages"], p["tau1"], p["tau2"])}


def objective_value(cfg: Config, run: RunDir, trial: RunDir, trained: dict[str, Any]) -> float:
    """The sweep's objective for a trained trial of `run`'s sweep (see TuneConfig.objective)."""
    objective = cfg.tune.objective
    if objective == "pair_accuracy":
        acc = trained["stages"][-1].get("best_eval_reward_accuracy")
        return float("nan") if acc is None else float(acc)
    if objective == "heldout_U":  # the base side was answered once for the sweep, in the run's own check
        from udasa_ray.check.step import check_step, share_base_side

        share_base_side(run, trial)
        return check_step(cfg, trial)["aligned"]["U"]
    from udasa_ray.evaluate.step import evaluate_model

    metric = objective.removeprefix("eval:")
    summary = evaluate_model(cfg, trained["aligned"], trial / "eval", trial.path.name, trained["aligned_hash"])
    return summary["metrics"][metric]["mean"]


def trial_config(cfg: Config, thresholds: list[float]) -> Config:
    """A trial's config: its thresholds, and workers that fit beside the trial function itself: Train workers
    of `tune.worker_cpus`, and the held-out check's generation actor no larger (else, on a machine the trial
    fills, it would wait for CPUs the trial holds)."""
    workers = cfg.tune.worker_cpus or cfg.train.cpus_per_worker
    return dataclasses.replace(
        cfg, curriculum=dataclasses.replace(cfg.curriculum, thresholds=thresholds),
        train=dataclasses.replace(cfg.train, cpus_per_worker=workers, work_dir=""),
        generation=dataclasses.replace(cfg.generation, cpus_per_actor=min(cfg.generation.cpus_per_actor, workers)))


def run_trial(config: dict[str, Any], base: dict[str, Any], run_dir: str, points: list[dict]) -> None:
    """One Tune trial (runs in a Tune worker): split, train stage by stage, report."""
    from filelock import FileLock
    from ray import tune

    from udasa_ray.pipeline import SHARED_STEPS, run_pipeline

    p = trial_point(config, points)
    th = p["thresholds"]
    run = RunDir(run_dir)
    trial = RunDir(run / "tune" / "trials" / trial_name(p["stages"], th))
    cfg = trial_config(from_dict(base), th)
    info = {"stages": p["stages"], "tau1": p["tau1"], "tau2": p["tau2"], "thresholds": json.dumps(th),
            "trial_dir": str(trial.path)}
    with FileLock(str(trial / ".lock")):  # two trials with one curriculum: the second reuses the first
        trial.adopt(run, SHARED_STEPS)
        last: dict[str, Any] = {}

        def on_stage(index: int, total: int, stats: dict[str, Any]) -> None:
            acc = stats.get("best_eval_reward_accuracy")
            m = {**info, "stage": index, "stages_trained": total,
                 "stage_accuracy": float("nan") if acc is None else float(acc),
                 "stage_eval_loss": stats.get("best_eval_loss") or float("nan"), "stage_steps": stats["steps"]}
            last.update(m)
            if index < total:  # the last stage reports together with the objective; until then it is
                tune.report({**m, "objective": float("nan")})  # NaN, as Tune requires the searcher's metric

        trained = run_pipeline(cfg, trial, "train", since="pairs", on_stage=on_stage)["train"]
        tune.report({**last, "objective": objective_value(cfg, run, trial, trained)})


def check_preconditions(cfg: Config, run: RunDir) -> None:
    """What a sweep needs of the other config sections and of the run (checked when one starts,
    not for every run)."""
    tune_cfg = cfg.tune
    if tune_cfg.objective == "heldout_U" and cfg.data.heldout_prompts == 0:
        raise ConfigError("tune.objective heldout_U needs held-out prompts: data.heldout_prompts > 0")
    if (tune_cfg.objective == "pair_accuracy" or tune_cfg.asha) and cfg.train.eval_fraction == 0:
        raise ConfigError(f"tune: {'ASHA' if tune_cfg.asha else 'the pair_accuracy objective'} needs held-out pairs: "
                          "train.eval_fraction > 0")
    if cfg.pairs.method != "udasa":
        raise ConfigError(f"pairs.method: tune sweeps UDASA's thresholds, got {cfg.pairs.method!r}")
    run.require("score", "score")


def sweep(cfg: Config, run: RunDir, fresh: bool = False, tracker: Tracker | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep; write trials.csv/.md, heatmap.png, stages.png and best.yaml in run/tune/.
    With tracking (`tracker`), each trial is a tracking run under the sweep job's, logged by Ray Tune."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from udasa_ray.ray_utils import init_ray
    from udasa_ray.report.sweep import write_sweep_report

    check_preconditions(cfg, run)
    tune_cfg = cfg.tune
    out = run / "tune"
    storage = out / "ray"
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(exist_ok=True)
    points = grid_points(tune_cfg.tau1, tune_cfg.tau2, tune_cfg.stages) if tune_cfg.search == "grid" else []
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=cfg.to_dict(), run_dir=str(run.path), points=points),
        {"cpu": tune_cfg.trial_cpus})
    space = {"point": tune.grid_search(list(range(len(points))))} if points else {}
    init_ray(cfg.ray)
    if tune_cfg.objective == "heldout_U":  # every trial's answers are compared with the base policy's, made once
        from udasa_ray.check.step import answer_sides

        answer_sides(trial_config(cfg, []), run, [("base", cfg.models.policy, "")])  # with the trials' own resources
    # Built (and the loggers' environment set) on a restore too: Tune restores its callbacks from the experiment,
    # and W&B's would look for an API key without WANDB_MODE.
    callbacks = tune_callbacks(cfg, tracker)
    if tune.Tuner.can_restore(str(storage / "sweep")):
        print(f"[tune] resuming the sweep in {storage / 'sweep'}")
        tuner = tune.Tuner.restore(str(storage / "sweep"), trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=space)
    else:
        search = None
        if tune_cfg.search == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            search_space = optuna_space(tune_cfg.tau1, tune_cfg.tau2, tune_cfg.stages, tune_cfg.min_gap)
            search = OptunaSearch(space=search_space, metric="objective", mode=direction(tune_cfg.objective),
                                  sampler=optuna.samplers.TPESampler(seed=tune_cfg.seed))
        scheduler = None
        if tune_cfg.asha:
            scheduler = ASHAScheduler(time_attr="training_iteration", metric="stage_accuracy", mode="max",
                                      max_t=max(tune_cfg.stages), grace_period=tune_cfg.grace_period)
        n = len(points) if points else tune_cfg.num_samples
        print(f"[tune] {n} trials ({tune_cfg.search}), objective {tune_cfg.objective} "
              f"({direction(tune_cfg.objective)}), {tune_cfg.max_concurrent_trials} at a time"
              + (", ASHA on each stage's pair accuracy" if tune_cfg.asha else ""))
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(num_samples=1 if points else tune_cfg.num_samples, search_alg=search,
                                        scheduler=scheduler, max_concurrent_trials=tune_cfg.max_concurrent_trials),
            run_config=tune.RunConfig(name="sweep", storage_path=str(storage.resolve()), verbose=1,
                                      callbacks=callbacks))
    return write_sweep_report(cfg, run, trial_rows(tuner.fit(), points, run))


def trial_rows(results: Any, points: list[dict], run: RunDir) -> list[dict[str, Any]]:
    """trials.csv's rows from Tune's results: the curriculum from each trial's config (so an errored
    trial still shows what it tried), progress and objective from its last report."""
    rows = []
    for r in results:
        m, p = r.metrics or {}, trial_point(r.config, points)
        name = trial_name(p["stages"], p["thresholds"])
        final = m.get("stage") is not None and m.get("stage") == m.get("stages_trained")  # reported the objective
        rows.append({"trial": name, "stages": p["stages"], "tau1": p["tau1"], "tau2": p["tau2"],
                     "thresholds": json.dumps(p["thresholds"]), "stages_done": m.get("stage"),
                     "stage_accuracy": m.get("stage_accuracy"), "objective": m.get("objective") if final else None,
                     "status": "error" if r.error else "done" if final else "stopped (ASHA)",
                     "trial_dir": str(run / "tune" / "trials" / name)})
    return rows
