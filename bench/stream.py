"""Streamed generate -> score against the two steps one after the other, on a local two-node Ray
cluster (`ray.cluster_utils.Cluster`): one node of 1 CPU labelled for generation, one for scoring.

Three fresh run directories from the same prompts: the generate step alone, the score step alone
(on the first's responses), and `scoring.stream: true` (both at once). Each wall includes its
actors' start and model loads. Prints the streamed wall against max(alone) and sum(alone).

    python bench/stream.py [--prompts 32] [--batch-size 10] [--score-batch 2] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from udasa_ray.config import load_config  # noqa: E402
from udasa_ray.models import resolve  # noqa: E402
from udasa_ray.parts import read_parts  # noqa: E402
from udasa_ray.pipeline import run_pipeline  # noqa: E402
from udasa_ray.runs import RunDir  # noqa: E402
from udasa_ray.score.step import SCORE_SCHEMA  # noqa: E402


def timed(fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default=str(ROOT / "configs/tiny-cpu.yaml"))
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=10, help="generation requests per batch")
    p.add_argument("--score-batch", type=int, default=2, help="prompt groups per scorer call")
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()
    overrides = [
        f"data.limit={args.prompts}", "data.heldout_prompts=0", f"generation.max_new_tokens={args.max_new_tokens}",
        f"generation.batch_size={args.batch_size}", "generation.num_actors=1", "generation.cpus_per_actor=1",
        "generation.actor_resources={gen: 1}", f"scoring.batch_size={args.score_batch}", "scoring.num_actors=1",
        "scoring.cpus_per_actor=0.33", "scoring.actor_resources={score: 0.33}", "scoring.factual.threads=1"]
    cfg = load_config([args.config], overrides)
    stream_cfg = load_config([args.config], [*overrides, "scoring.stream=true"])
    resolve(cfg.models.policy, cfg.models.cache_dir)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1, resources={"gen": 1})
    cluster.add_node(num_cpus=1, resources={"score": 1})
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            apart, streamed = RunDir(Path(tmp) / "apart"), RunDir(Path(tmp) / "streamed")
            run_pipeline(cfg, apart, "ingest")
            run_pipeline(cfg, streamed, "ingest")
            gen_s = timed(lambda: run_pipeline(cfg, apart, "generate", since="generate"))
            score_s = timed(lambda: run_pipeline(cfg, apart, "score", since="score"))
            stream_s = timed(lambda: run_pipeline(stream_cfg, streamed, "score", since="generate"))
            n = read_parts(streamed / "scores", SCORE_SCHEMA).num_rows
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(f"\n{args.prompts} prompts x {cfg.generation.n}, {args.max_new_tokens} new tokens, generation batch "
          f"{args.batch_size}, scorer batch {args.score_batch} groups; two nodes of 1 CPU; {n} responses scored")
    print(f"generation alone {gen_s:.1f} s, scoring alone {score_s:.1f} s, sum {gen_s + score_s:.1f} s")
    print(f"streamed {stream_s:.1f} s = {stream_s / max(gen_s, score_s):.2f}x max(alone), "
          f"{stream_s / (gen_s + score_s):.2f}x sum")


if __name__ == "__main__":
    main()
