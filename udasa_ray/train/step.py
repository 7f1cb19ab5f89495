"""The train step: phased DPO (docs/method.md) from the driver, the curriculum's stages trained in order on Ray Train.

Each curriculum stage is a sub-step of the train step in the run manifest (`train_stage_<k>`), chained to
the one before, so a killed run retrains only the stage it was in. A stage starts from the previous
stage's checkpoint; its reference is the initial policy (default) or that previous policy.

One `TorchTrainer` run (one worker group) trains all the stages still to do: its workers start,
import the stack and load the reference once per run instead of once per stage (under DeepSpeed,
once per stage: its engine takes the reference in). A Tune trial trains one stage per run instead:
`on_stage` reports between stages, so ASHA can stop the trial there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.config.schema import TrainConfig
from udasa_ray.errors import StepFailed
from udasa_ray.models import resolve
from udasa_ray.runs import RunDir, Step
from udasa_ray.tracking import stage_spec
from udasa_ray.train.data import budget_subset, dpo_rows, eval_split
from udasa_ray.train.job import StageJob, published
from udasa_ray.train.schedule import phases, shared_budget, stage_peak, stage_steps

# Its record's stats are the training summary (the aligned policy and its hash); its work always runs, and
# each stage, a sub-step, skips itself when done.
TRAIN = Step("train", reads=("train", "models"), after=("pairs",), outputs=("train/summary.json",), substeps=True)


def stage_step(stage: int, first: bool) -> Step:
    """Curriculum stage `stage` as a sub-step: the first reads the pairs, each later one the stage before."""
    return Step(f"train_stage_{stage}", reads=("train", "models"), after=("pairs",) if first else (),
                outputs=(f"train/stage_{stage}",), published=published)


def planned_stages(run: RunDir) -> list[dict]:
    """The curriculum's non-empty stages, in training order (empty ones were warned about)."""
    summary = json.loads((run / "stages" / "summary.json").read_text())
    return [s for s in summary["stages"] if s["file"]]


def work_dir(train_cfg: TrainConfig, run: RunDir) -> Path:
    """The run's own folder for the stage data and caches the workers share: `<run>/train/work` by default; under a
    configured `train.work_dir` (one shared folder for every run, as the cluster configs set it) a subfolder named
    after the run directory and a hash of its absolute path, so two runs never write over each other's files
    (`stage_<k>_train.parquet`, `eval.parquet`, the dataset and reference log-prob caches)."""
    if not train_cfg.work_dir:
        return run / "train" / "work"
    digest = hashlib.sha256(str(run.path).encode()).hexdigest()[:12]
    return Path(train_cfg.work_dir).expanduser().resolve() / f"{run.path.name}-{digest}"


def stage_job(cfg: Config, run: RunDir, stage: dict, index: int, last: bool, start: str, base: str,
              eval_ids: set[str], step_hash: str = "", budget: int | None = None) -> StageJob:
    """Everything a worker needs for one stage, with its data written to the run's shared work dir. `budget`: the
    stage's share of train.total_steps, in place of its own step count."""
    train_cfg, gen = cfg.train, cfg.generation
    work = work_dir(train_cfg, run)
    work.mkdir(parents=True, exist_ok=True)
    pairs = pq.read_table(run / "stages" / stage["file"]).to_pylist()
    train = [p for p in pairs if p["prompt_id"] not in eval_ids]
    if not train:
        raise StepFailed(f"stage {stage['stage']} ({stage['name']}): all {len(pairs)} pairs are in the eval split; "
                         "lower train.eval_fraction")
    batch = train_cfg.batch_size * train_cfg.grad_accum * train_cfg.num_workers
    steps = budget or stage_steps(len(train), batch, train_cfg.max_steps_per_stage, train_cfg.epochs_per_stage)
    stage_pairs, train = len(train), budget_subset(train, steps * batch, train_cfg.seed + stage["stage"])
    train_file = work / f"stage_{stage['stage']}_train.parquet"
    pq.write_table(pa.Table.from_pylist(dpo_rows(train, gen.prompt_template, gen.system_prompt)), train_file)
    eval_file = None
    if eval_ids:
        eval_pairs = [p for p in pq.read_table(run / "pairs" / "pairs.parquet").to_pylist()
                      if p["prompt_id"] in eval_ids]
        eval_file = work / "eval.parquet"
        pq.write_table(pa.Table.from_pylist(dpo_rows(eval_pairs, gen.prompt_template, gen.system_prompt)), eval_file)
    warmup, decay = phases(steps, train_cfg.warmup_steps, train_cfg.decay_steps)
    lora = train_cfg.lora
    lr1, lr = (lora.lr_stage1, lora.lr) if lora.enabled else (train_cfg.lr_stage1, train_cfg.lr)
    return StageJob(
        stage=stage["stage"], name=stage["name"], start=start, stage_pairs=stage_pairs,
        ref=base if train_cfg.reference == "initial" else start,
        train_file=str(train_file), eval_file=str(eval_file) if eval_file else None, work_dir=str(work),
        steps=steps, warmup=warmup, decay=decay, peak_lr=stage_peak(index, lr1, lr),
        beta=train_cfg.beta_last_stage if last and index > 1 else train_cfg.beta,
        batch_size=train_cfg.batch_size, grad_accum=train_cfg.grad_accum, max_length=train_cfg.max_length,
        precompute=train_cfg.precompute_ref, eval_steps=train_cfg.eval_steps, patience=train_cfg.patience,
        reward_saturation=train_cfg.reward_saturation, dtype=train_cfg.dtype, seed=train_cfg.seed + stage["stage"],
        gradient_checkpointing=train_cfg.gradient_checkpointing,
        threads=max(1, round(train_cfg.cpus_per_worker)), report_to="tensorboard",
        tracking=stage_spec(cfg, run.path, f"stage_{stage['stage']} {stage['name']}"),
        deepspeed=_deepspeed(cfg), ld_alpha=train_cfg.ld_alpha,
        loss_type=tuple(train_cfg.stage_loss_types[stage["stage"] - 1] if train_cfg.stage_loss_types
                        else train_cfg.loss_type),
        loss_weights=tuple(train_cfg.loss_weights) if train_cfg.loss_weights else None,
        label_smoothing=train_cfg.label_smoothing,
        lora=dataclasses.asdict(train_cfg.lora) if train_cfg.lora.enabled else None,
        out=str(run / "train" / f"stage_{stage['stage']}"), step_hash=step_hash,
    )


def _deepspeed(cfg: Config) -> dict | None:
    if cfg.train.deepspeed.zero_stage == 0:
        return None
    from udasa_ray.train.dpo import deepspeed_config  # pulls torch and TRL: only when asked for

    return deepspeed_config(cfg.train.deepspeed.zero_stage, cfg.train.deepspeed.offload)


def scaling_config(train_cfg: TrainConfig):  # noqa: ANN201 (ray.train.ScalingConfig, imported here)
    """A stage's Ray Train workers: `num_workers` of `cpus_per_worker` CPUs, plus 1 GPU each with use_gpu."""
    from ray.train import ScalingConfig

    resources = {"CPU": train_cfg.cpus_per_worker, **({"GPU": 1} if train_cfg.use_gpu else {})}
    return ScalingConfig(num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu, resources_per_worker=resources)


def worker_error(text: str) -> str:
    """The line that names the exception in a Ray Train error (the last "SomeError: ..." line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return (named or lines or ["no message"])[-1][:300]


def fit_stages(cfg: Config, jobs: list[StageJob], storage: Path) -> None:
    """Train `jobs` in order in one Ray Train run; each finished stage is published to its `out`."""
    from ray.train import FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from udasa_ray.train.dpo import train_loop

    # Ray Train passes these from the driver to its controller and workers, on a local Ray or a cluster.
    # Its controller moves from one state to the next (workers placed, started, finished) only when it
    # checks on them, every 2 s by default: every 0.2 s, a one-stage run starts and ends seconds sooner.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    # Its print patch logs what libraries print into a captured stdout too: `datasets` hashing TRL's map
    # functions (dill disassembles them) put pages of bytecode in every stage's log. Workers print as usual.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"stages": [dataclasses.asdict(job) for job in jobs]},
        scaling_config=scaling_config(cfg.train),
        torch_config=TorchConfig(backend="nccl" if cfg.train.use_gpu else "gloo"),
        run_config=RunConfig(name=f"stage_{jobs[0].stage}", storage_path=str(storage.resolve()),
                             failure_config=FailureConfig(max_failures=cfg.train.max_failures)),
    )
    try:
        trainer.fit()
    except Exception as e:  # a worker raised or died: Ray Train's error holds each rank's traceback
        job = next((j for j in jobs if not j.finished()), jobs[-1])
        raise StepFailed(f"stage {job.stage} ({job.name}) failed on Ray Train: {worker_error(str(e))} (the workers' "
                         "tracebacks are in the log above); rerun to train it again, finished stages are kept") from e
    finally:
        shutil.rmtree(storage / f"stage_{jobs[0].stage}", ignore_errors=True)  # Ray Train's own run state
    missing = [j.stage for j in jobs if not j.finished()]
    if missing:
        raise StepFailed(f"Ray Train finished without publishing stage(s) {missing}")


def train(cfg: Config, run: RunDir, force: bool = False,
          on_stage: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The train step: every non-empty stage in order (finished ones skipped); returns the training summary
    (the aligned policy). `on_stage(index, stages, stats)` runs after each stage (a Tune trial reports from it)."""
    return run.run(TRAIN, cfg, lambda resume: _train_stages(cfg, run, force, on_stage), force)


def stage_plan(cfg: Config, run: RunDir) -> tuple[list[dict], str, set[str], list[int | None]]:
    """The non-empty stages in training order, the base policy, the early-stopping pairs' prompt ids and each
    stage's step budget (None: its own step count)."""
    stages = planned_stages(run)
    base = resolve(cfg.models.policy, cfg.models.cache_dir)
    pairs = pq.read_table(run / "pairs" / "pairs.parquet", columns=["prompt_id"])["prompt_id"].to_pylist()
    eval_seed = cfg.train.seed if cfg.train.eval_seed is None else cfg.train.eval_seed
    eval_ids = eval_split(pairs, cfg.train.eval_fraction, eval_seed)
    budgets: list[int | None] = [None] * len(stages)
    if cfg.train.total_steps:
        if cfg.train.total_steps < len(stages):
            raise StepFailed(f"train.total_steps {cfg.train.total_steps} is fewer than the {len(stages)} stages")
        budgets = shared_budget(cfg.train.total_steps, [s["pairs"] for s in stages])
    return stages, base, eval_ids, budgets


def _train_stages(cfg: Config, run: RunDir, force: bool,
                  on_stage: Callable[[int, int, dict[str, Any]], None] | None) -> dict[str, Any]:
    stages, base, eval_ids, budgets = stage_plan(cfg, run)
    chain = run.chain([stage_step(s["stage"], i == 0) for i, s in enumerate(stages)], cfg, force)
    start, todo = base, []
    for index, (stage, (step, step_hash, to_do)) in enumerate(zip(stages, chain, strict=True), start=1):
        if not to_do:
            if on_stage:
                on_stage(index, len(stages), run.step(step.name)["stats"])
        else:
            todo.append((index, step, step_hash, stage_job(cfg, run, stage, index, index == len(stages), start, base,
                                                           eval_ids, step_hash, budgets[index - 1])))
        start = str(run / step.outputs[0])
    for group in ([todo] if on_stage is None and todo else [[t] for t in todo]):
        _fit_group(cfg, run, group, len(stages), on_stage)
    summary = {"aligned": start, "aligned_hash": chain[-1][1], "base": base, "eval_pairs": len(eval_ids),
               "stages": [run.step(step.name)["stats"] for step, _, _ in chain]}
    (run / "train").mkdir(exist_ok=True)
    (run / "train" / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _fit_group(cfg: Config, run: RunDir, group: list[tuple[int, Step, str, StageJob]], stages: int,
               on_stage: Callable[[int, int, dict[str, Any]], None] | None) -> None:
    """One Ray Train run for the group's stages; each is recorded in the manifest as running, then done."""
    from udasa_ray.ray_utils import init_ray

    for _, step, step_hash, job in group:
        run.start(step, cfg, step_hash, resume=False)
        print(f"[train] stage {job.stage} ({job.name}): {job.steps} steps at peak lr {job.peak_lr:g}, beta "
              f"{job.beta}, {cfg.train.num_workers} worker(s)"
              + (f", LoRA r={cfg.train.lora.r}" if job.lora else ", full fine-tuning"))
    init_ray(cfg.ray)
    try:
        fit_stages(cfg, [job for *_, job in group], run / "train" / "ray")
    finally:  # what was published is recorded, also when a later stage failed
        for index, step, step_hash, job in group:
            stats = published(job.out, step_hash)
            if stats is None:
                break
            run.finish(step, stats)
            stop = f", stopped early: {stats['stopped_early']}" if stats.get("stopped_early") else ""
            kept = (f"; kept step {stats['best_step']} (best eval loss {stats['best_eval_loss']:.4f})"
                    if stats.get("best_step") is not None else "")
            memory = f", rank 0 peak {stats['peak_rss_gb']} GB" if stats.get("peak_rss_gb") else ""
            print(f"[train] stage {job.stage} ({job.name}): {stats['steps']}/{stats['planned_steps']} steps "
                  f"in {stats['seconds']}s{memory}{stop}{kept} -> {job.out}")
            if on_stage:
                on_stage(index, stages, stats)
