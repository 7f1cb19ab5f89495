"""The job against its own compute: `jobs/align.py` on a config, then the same work in this one process
with no Ray, back to back; per step, both walls and their ratio.

In this process, from the job's own run: generation with the generate step's actor class (HFGenerator) on
the same request batches; scoring with the score step's actor class (ScorerChain) on the same prompt groups
and batches; phased DPO with the train step's stage jobs and trainer, stage after stage; the held-out check's
two sides (the base and the job's aligned policy answer the held-out prompts, the scorers score them) and its
comparison (relevance embeddings, bootstrap intervals) on the job's own answers; and the steps that use no Ray
(ingest, pairs, the report with its plots) on a copy of the job's run. Model loads count on both sides.
What the job adds is Ray's start, actor processes, Ray Train's worker group, checkpoint publication, part files
and the manifest. The job's wall is its whole run; its row for the steps without Ray is what its wall holds
beyond the four others (its interpreter's start and Ray's shutdown with them).

    python bench/job.py [--config configs/tiny-cpu.yaml] [--out docs/results/job.json] [overrides ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from udasa_ray.check.step import compare_answers  # noqa: E402
from udasa_ray.config import Config, load_config  # noqa: E402
from udasa_ray.generate.step import read_responses  # noqa: E402
from udasa_ray.models import cpu_kind  # noqa: E402
from udasa_ray.runs import RunDir  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RAY_STEPS = ("generate", "score", "train", "check")
OTHER = "ingest, pairs, report"


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def generate(cfg: Config, prompts: list[dict]) -> pa.Table:
    """The generate step's work without Ray: its actor class on its request batches."""
    from udasa_ray.generate.hf import HFGenerator
    from udasa_ray.generate.requests import build_requests
    from udasa_ray.generate.step import hf_generator_kwargs

    gen = cfg.generation
    model = HFGenerator(**hf_generator_kwargs(cfg))
    requests = build_requests(prompts, gen.n, gen.seed)
    out = []
    for i in range(0, len(requests), gen.batch_size):
        chunk = requests[i : i + gen.batch_size]
        out.append(model({k: np.array([r[k] for r in chunk], dtype=object if k in ("prompt_id", "prompt", "query")
                                      else np.int64) for k in chunk[0]}))
    table = pa.table({k: np.concatenate([o[k] for o in out]) for k in ("prompt_id", "prompt", "sample_idx",
                                                                       "response")})
    return table.append_column("error", pa.nulls(table.num_rows, pa.string()))


def score(cfg: Config, responses: pa.Table) -> None:
    """The score step's work without Ray: its scorer actor's class, in this process, on its prompt groups."""
    from udasa_ray.score.step import ScorerChain, group_responses

    groups = group_responses(responses)
    chain = ScorerChain(cfg)
    for i in range(0, len(groups), cfg.scoring.batch_size):
        chain(pa.Table.from_pylist(groups[i : i + cfg.scoring.batch_size]))


def train(cfg: Config, job_run: RunDir, tmp: Path, seconds: list[float]) -> None:
    """The train step's stage jobs, trained in this process in order; appends each stage's own seconds."""
    from udasa_ray.train.dpo import train_stage
    from udasa_ray.train.step import stage_job, stage_plan

    run = RunDir(tmp / "train-run")
    for d in ("pairs", "stages"):
        shutil.copytree(job_run / d, run / d)
    stages, base, eval_ids, budgets = stage_plan(cfg, run)
    start, shared = base, {}
    for index, stage in enumerate(stages, start=1):
        job = stage_job(cfg, run, stage, index, index == len(stages), start, base, eval_ids,
                        budget=budgets[index - 1])
        start = str(run / "train" / f"stage_{stage['stage']}")
        seconds.append(train_stage(dataclasses.replace(job, tracking=None, report_to="none"), start, shared)["seconds"])


def without_ray(cfg: Config, run: RunDir) -> None:
    """The job's steps that use no Ray, redone on `run` (a copy of the job's run): ingest, pairs, the report."""
    from udasa_ray.ingest.step import ingest_step
    from udasa_ray.pairs.step import pairs_step
    from udasa_ray.report.step import write_report

    ingest_step(cfg, run, force=True)
    pairs_step(cfg, run, force=True)
    write_report(run)


def step_walls(run: RunDir, whole: float) -> dict[str, float]:
    steps = run.manifest()["steps"]
    wall = {k: v["finished"] - v["started"] for k, v in steps.items() if v.get("finished") and v.get("started")}
    walls = {k: wall[k] for k in RAY_STEPS}
    return {"whole job": whole, **walls, OTHER: whole - sum(walls.values())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "tiny-cpu.yaml"))
    p.add_argument("--out", help="write the table's figures here as JSON")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    cfg = load_config(a.config, a.overrides)
    if cfg.generation.backend != "hf" or cfg.generation.mode != "independent":
        p.error("the in-process side mirrors the hf backend with independent samples (generation.backend: hf, "
                "generation.mode: independent)")
    with tempfile.TemporaryDirectory(prefix="udasa-bench-job-") as d:
        tmp = Path(d)
        job_run = RunDir(tmp / "job")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "jobs" / "align.py"), "--config", a.config, "--run-dir",
                        str(job_run.path), *a.overrides], check=True)
        job = step_walls(job_run, time.perf_counter() - t0)
        stats = job_run.manifest()["steps"]
        prompts = pq.read_table(job_run / "prompts.parquet").to_pylist()[: cfg.data.limit]
        heldout = pq.read_table(job_run / "heldout.parquet").to_pylist()
        aligned = json.loads((job_run / "train" / "summary.json").read_text())["aligned"]

        own: dict[str, float] = {}
        responses: list[pa.Table] = []
        own["generate"] = timed(lambda: responses.append(generate(cfg, prompts)))
        own["score"] = timed(lambda: score(cfg, responses[0]))
        stage_s: list[float] = []
        own["train"] = timed(lambda: train(cfg, job_run, tmp, stage_s))

        def check() -> None:
            for policy in (cfg.models.policy, aligned):
                side = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, policy=policy))
                score(cfg, generate(side, heldout))
            # The comparison (relevance embeddings, bootstrap intervals), on the job's own answers and scores.
            compare_answers(cfg, {side: (RunDir(job_run / "heldout" / side),
                                         read_responses(job_run / "heldout" / side / "responses"))
                                  for side in ("base", "aligned")})

        own["check"] = timed(check)
        shutil.copytree(job_run.path, tmp / "steps-run")
        own[OTHER] = timed(lambda: without_ray(cfg, RunDir(tmp / "steps-run")))
    own["whole job"] = sum(own.values())
    print(f"\n{cpu_kind()}; {a.config} {' '.join(a.overrides)}")
    print("| step | jobs/align.py s | in one process, no Ray s | ratio |\n|---|---:|---:|---:|")
    for k in (*RAY_STEPS, OTHER, "whole job"):
        print(f"| {k} | {job[k]:.1f} | {own[k]:.1f} | {job[k] / own[k]:.2f}x |")
    ratio = job["whole job"] / own["whole job"]
    print(f"whole job / in-process sum: {ratio:.3f} (goal at most 1.25: {'met' if ratio <= 1.25 else 'not met'})")
    warm = {k: stats[k]["stats"].get("first_batch_ratio") for k in ("generate", "score")}
    job_stage_s = [stats[f"train_stage_{i}"]["stats"]["seconds"] for i in range(1, len(stage_s) + 1)]
    print(f"training stages, their own seconds (construction included): the job's worker {job_stage_s}, "
          f"in one process {[round(x, 1) for x in stage_s]}")
    print(f"first-batch ratio in the job's actors (per row, over the later batches' median): {warm}")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": cpu_kind(), "config": a.config,
                                           "overrides": a.overrides, "job_s": job, "in_process_s": own,
                                           "first_batch_ratio": warm,
                                           "stage_s": {"job": job_stage_s, "in_process": stage_s}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
