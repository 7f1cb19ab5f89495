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
import math
import shutil
from pathlib import Path
from typing import Any

import yaml

from udasa_ray.config import Config, ConfigError, from_dict
from udasa_ray.runs import RunDir
from udasa_ray.tune.space import grid_points, optuna_space, spread_thresholds, trial_name

# What a trial copies from the run: its scored pairs' inputs, finished steps marked in the manifest.
SHARED = ["prompts.parquet", "heldout.parquet", "responses", "scores", "manifest.json"]
LOWER_IS_BETTER = {"heldout_U", "eval:unsafe"}


def mode(objective: str) -> str:
    return "min" if objective in LOWER_IS_BETTER else "max"


def objective_value(cfg: Config, trial: RunDir, trained: dict[str, Any]) -> float:
    """The sweep's objective for a trained trial (see TuneConfig.objective)."""
    objective = cfg.tune.objective
    if objective == "pair_accuracy":
        acc = trained["stages"][-1].get("best_eval_reward_accuracy")
        return float("nan") if acc is None else float(acc)
    if objective == "heldout_U":
        from udasa_ray.evaluate.heldout import heldout_check

        return heldout_check(cfg, trial, trained["aligned"], trained["aligned_hash"])["aligned"]["U"]
    from udasa_ray.evaluate.run import evaluate_model

    metric = objective.removeprefix("eval:")
    summary = evaluate_model(cfg, trained["aligned"], trial / "eval", trial.path.name, trained["aligned_hash"])
    return summary["metrics"][metric]["mean"]


def run_trial(config: dict[str, Any], base: dict[str, Any], run_dir: str, points: list[dict]) -> None:
    """One Tune trial (runs in a Tune worker): split, train stage by stage, report."""
    from filelock import FileLock
    from ray import tune

    from udasa_ray import steps
    from udasa_ray.train.phased import train

    cfg = from_dict(base)
    p = points[config["point"]] if "point" in config else \
        {k: config[k] for k in ("stages", "tau1", "tau2")}
    th = spread_thresholds(p["stages"], p["tau1"], p["tau2"])
    run = RunDir(run_dir)
    trial = RunDir(run / "tune" / "trials" / trial_name(p["stages"], th))
    t = cfg.train
    cfg = dataclasses.replace(cfg, curriculum=dataclasses.replace(cfg.curriculum, thresholds=th),
                              train=dataclasses.replace(t, cpus_per_worker=cfg.tune.worker_cpus or t.cpus_per_worker,
                                                        work_dir=""))
    info = {"stages": p["stages"], "tau1": p["tau1"], "tau2": p["tau2"], "thresholds": json.dumps(th),
            "trial_dir": str(trial.path)}
    with FileLock(str(trial / ".lock")):  # two trials with one curriculum: the second reuses the first
        for name in SHARED:
            src, dst = run / name, trial / name
            if src.exists() and not dst.exists():
                (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
        steps.pairs_step(cfg, trial)
        last: dict[str, Any] = {}

        def on_stage(index: int, total: int, stats: dict[str, Any]) -> None:
            acc = stats.get("best_eval_reward_accuracy")
            m = {**info, "stage": index, "stages_trained": total,
                 "stage_accuracy": float("nan") if acc is None else float(acc),
                 "stage_eval_loss": stats.get("best_eval_loss") or float("nan"), "stage_steps": stats["steps"]}
            last.update(m)
            if index < total:  # the last stage reports together with the objective
                tune.report(m)

        trained = train(cfg, trial, on_stage=on_stage)
        tune.report({**last, "objective": objective_value(cfg, trial, trained)})


def check_preconditions(cfg: Config, run: RunDir) -> None:
    """What a sweep needs of the other config sections and of the run (checked when one starts,
    not for every run)."""
    tn = cfg.tune
    if tn.objective == "heldout_U" and cfg.data.heldout_prompts == 0:
        raise ConfigError("tune.objective heldout_U needs held-out prompts: data.heldout_prompts > 0")
    if (tn.objective == "pair_accuracy" or tn.asha) and cfg.train.eval_fraction == 0:
        raise ConfigError(f"tune: {'ASHA' if tn.asha else 'the pair_accuracy objective'} needs held-out pairs: "
                          "train.eval_fraction > 0")
    if cfg.pairs.method != "udasa":
        raise ConfigError(f"pairs.method: tune sweeps UDASA's thresholds, got {cfg.pairs.method!r}")
    run.require("score", "score")


def sweep(cfg: Config, run: RunDir, fresh: bool = False) -> dict[str, Any]:
    """Run (or resume) the sweep; write trials.csv/.md, heatmap.png, stages.png and best.yaml in run/tune/."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from udasa_ray.ray_utils import init_ray

    check_preconditions(cfg, run)
    tn = cfg.tune
    out = run / "tune"
    storage = out / "ray"
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(exist_ok=True)
    points = grid_points(tn.tau1, tn.tau2, tn.stages) if tn.search == "grid" else []
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=cfg.to_dict(), run_dir=str(run.path), points=points),
        {"cpu": tn.trial_cpus})
    space = {"point": tune.grid_search(list(range(len(points))))} if points else {}
    init_ray(cfg.ray)
    if tune.Tuner.can_restore(str(storage / "sweep")):
        print(f"[tune] resuming the sweep in {storage / 'sweep'}")
        tuner = tune.Tuner.restore(str(storage / "sweep"), trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=space)
    else:
        search = None
        if tn.search == "optuna":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            search = OptunaSearch(space=optuna_space(tn.tau1, tn.tau2, tn.stages, tn.min_gap), metric="objective",
                                  mode=mode(tn.objective), sampler=optuna.samplers.TPESampler(seed=tn.seed))
        scheduler = ASHAScheduler(time_attr="training_iteration", metric="stage_accuracy", mode="max",
                                  max_t=max(tn.stages), grace_period=tn.grace_period) if tn.asha else None
        n = len(points) if points else tn.num_samples
        print(f"[tune] {n} trials ({tn.search}), objective {tn.objective} ({mode(tn.objective)}), "
              f"{tn.max_concurrent_trials} at a time" + (", ASHA on each stage's pair accuracy" if tn.asha else ""))
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(num_samples=1 if points else tn.num_samples, search_alg=search,
                                        scheduler=scheduler, max_concurrent_trials=tn.max_concurrent_trials),
            run_config=tune.RunConfig(name="sweep", storage_path=str(storage.resolve()), verbose=1))
    results = tuner.fit()
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append({"trial": Path(m["trial_dir"]).name if m.get("trial_dir") else "?",
                     **{k: m.get(k) for k in ("stages", "tau1", "tau2", "thresholds")},
                     "stages_done": m.get("stage"), "stage_accuracy": m.get("stage_accuracy"),
                     "objective": m.get("objective"),
                     "status": "error" if r.error else "done" if m.get("objective") is not None else "stopped (ASHA)",
                     "trial_dir": m.get("trial_dir")})
    return write_outputs(cfg, run, rows)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def write_outputs(cfg: Config, run: RunDir, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """trials.csv and trials.md, the τ1 × τ2 heatmap, the by-stages plot, and best.yaml."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    out = run / "tune"
    obj, md = cfg.tune.objective, mode(cfg.tune.objective)
    df = pd.DataFrame(rows).sort_values(["stages", "tau1", "tau2"], na_position="last")
    df.to_csv(out / "trials.csv", index=False)
    done = df[df["objective"].apply(_finite)]
    best = None
    if len(done):
        best = done.loc[done["objective"].idxmax() if md == "max" else done["objective"].idxmin()].to_dict()
    lines = [f"# Threshold sweep: {obj} ({'higher' if md == 'max' else 'lower'} is better)", "",
             f"{len(df)} trials, {len(done)} finished; run {run.path}.", "",
             "| stages | τ1 | τ2 | thresholds | stages trained | last stage pair acc. | objective | status |",
             "|---|---|---|---|---|---|---|---|"]
    def f(x: Any) -> str:
        return f"{x:.3f}" if _finite(x) else "—"

    for r in df.to_dict("records"):
        lines.append(f"| {r['stages']} | {f(r['tau1'])} | {f(r['tau2'])} | {r['thresholds']} | {r['stages_done']} | "
                     f"{f(r['stage_accuracy'])} | {f(r['objective'])} | {r['status']} |")
    if best:
        lines += ["", f"**Best:** {best['stages']} stage(s), τ1 = {best['tau1']:.3f}, τ2 = {best['tau2']:.3f} "
                  f"(thresholds {best['thresholds']}), {obj} = {best['objective']:.4f}. Config: `{out / 'best.yaml'}`."]
    fig, ax = plt.subplots(figsize=(5, 4))
    two = done[done["stages"] >= 3]
    if len(two):
        if cfg.tune.search == "grid":  # every tried cell; one without a finished trial says why
            tried = df[df["stages"] >= 3].assign(objective=lambda d: d["objective"].astype(float))
            grid = tried.groupby(["tau1", "tau2"])["objective"].agg("max" if md == "max" else "min").unstack()
            im = ax.imshow(grid.values, origin="lower", cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(grid.columns)), [f"{x:.2f}" for x in grid.columns])
            ax.set_yticks(range(len(grid.index)), [f"{x:.2f}" for x in grid.index])
            for (i, j), v in np.ndenumerate(grid.values):
                ax.text(j, i, f"{v:.3f}" if np.isfinite(v) else "stopped", ha="center", va="center",
                        color="w" if np.isfinite(v) else "k", fontsize=9)
        else:
            im = ax.scatter(two["tau2"], two["tau1"], c=two["objective"], cmap="viridis", s=60)
        fig.colorbar(im, ax=ax, label=obj)
    ax.set_xlabel("τ2")
    ax.set_ylabel("τ1")
    ax.set_title(f"{obj}, 3- and 4-stage trials ({'best' if len(two) else 'none finished'} per cell)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "heatmap.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(done["stages"], done["objective"], color="C0", label="trials")
    per_k = done.groupby("stages")["objective"].agg("max" if md == "max" else "min")
    ax.plot(per_k.index, per_k.values, "o-", color="C1", label="best per K")
    ax.set_xticks([1, 2, 3, 4])
    ax.set_xlabel("number of stages")
    ax.set_ylabel(obj)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=110)
    plt.close(fig)
    lines += ["", "![heatmap](heatmap.png) ![stages](stages.png)", ""]
    (out / "trials.md").write_text("\n".join(lines))
    if best:
        d = cfg.to_dict()
        d["curriculum"]["thresholds"] = json.loads(best["thresholds"])
        (out / "best.yaml").write_text(f"# Best of the sweep in {out}: {obj} = {best['objective']:.4f}\n"
                                       + yaml.safe_dump(d, sort_keys=False))
    print("\n".join(lines[:-2]))
    return {"trials": len(df), "finished": len(done), "best": best}
