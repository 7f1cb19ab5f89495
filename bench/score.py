"""Scorer throughput on the embedded default's responses, against the generation rate.

Each scorer runs in one process on the same prompt groups (rows = responses); then the whole
Ray Data scoring stage runs on a copy of the run. Scoring keeps up when its rate is at least
the generation stage's.

    make run                      # once, to have runs/tiny-cpu/responses
    python bench/score.py [--run-dir runs/tiny-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pyarrow as pa  # noqa: E402

from udasa_ray.config import load_config  # noqa: E402
from udasa_ray.generate.step import read_responses  # noqa: E402
from udasa_ray.pipeline import run_pipeline  # noqa: E402
from udasa_ray.runs import RunDir  # noqa: E402
from udasa_ray.score.scorers import FactualScorer, SemanticScorer, ValueScorer  # noqa: E402
from udasa_ray.score.step import group_responses  # noqa: E402


def rate(scorer, groups: list[dict], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(groups), batch):
        scorer(pa.Table.from_pylist(groups[i : i + batch]))
    return sum(len(g["response"]) for g in groups) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/tiny-cpu.yaml")
    p.add_argument("--run-dir", default="runs/tiny-cpu")
    a = p.parse_args()
    src = RunDir(a.run_dir)
    gen = src.step("generate").get("stats")
    if not gen:
        raise SystemExit(f"{a.run_dir} has no finished generation: run `make run` first")
    gen_rate = gen["generated_this_run"] / gen["seconds"]
    cfg = load_config(a.config)
    groups = group_responses(read_responses(src / "responses"))
    b = cfg.scoring.batch_size
    rows = {"semantic (MiniLM)": rate(SemanticScorer(cfg.scoring, cfg.models), groups, b)}
    for mode in ("paper", "cross_response"):
        c = load_config(a.config, [f"scoring.factual.mode={mode}"])
        rows[f"factual (aegis ONNX, {mode}, {c.scoring.factual.threads} threads)"] = rate(
            FactualScorer(c.scoring, c.models), groups, b)
    rows["value (profanity)"] = rate(ValueScorer(cfg.scoring, cfg.models), groups, b)
    with tempfile.TemporaryDirectory() as d:
        run = RunDir(d)
        shutil.copytree(src / "responses", run / "responses")
        run.manifest_path.write_text(json.dumps({"steps": {k: src.step(k) for k in ("ingest", "generate")}}))
        from udasa_ray.ray_utils import init_ray

        init_ray(cfg.ray)
        st = run_pipeline(cfg, run, "score", since="score")["score"]
    rows[f"Ray Data scoring stage, all three ({cfg.scoring.factual.mode}), incl. actor start"] = (
        st["responses"] / st["seconds"])
    n = sum(len(g["response"]) for g in groups)
    print(f"\n{n} responses of {len(groups)} prompts; generation ran at {gen_rate:.2f} responses/s")
    print("| scorer | responses/s | keeps up with generation |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r:.1f} | {'yes' if r >= gen_rate else 'NO'} ({r / gen_rate:.1f}x) |")


if __name__ == "__main__":
    main()
