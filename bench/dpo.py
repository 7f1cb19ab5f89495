"""DPO throughput: this project's stage trainer (on Ray Train) against a plain TRL DPOTrainer.

Both train one epoch over the same pairs with the same DPOConfig (dpo_args), batch, length and
precision; the plain trainer keeps TRL's defaults (reference forward at every step, its own LR
schedule) and runs in this process. Ours runs twice: in this process (the trainer alone) and as
a Ray Train worker (what the pipeline runs). Timings cover trainer construction and training
(with full weights, ours computes a batch's reference log-probs when the batch comes: in one
epoch every pair meets the reference once either way); the Ray run also reports its wall time.

    python bench/dpo.py --run-dir runs/tiny-cpu --pairs 32
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from udasa_ray.config import load_config  # noqa: E402
from udasa_ray.models import resolve  # noqa: E402
from udasa_ray.train.data import dpo_rows  # noqa: E402
from udasa_ray.train.job import StageJob  # noqa: E402


def count_tokens(tok, rows: list[dict], max_length: int) -> int:
    """Tokens the trainer reads: prompt + chosen and prompt + rejected, each cut at max_length."""
    total = 0
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        for side in ("chosen", "rejected"):
            total += min(max_length, len(tok(prompt + r[side][0]["content"])["input_ids"]))
    return total


def plain_trl(job: StageJob, model_dir: str, tmp: str) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from udasa_ray.train.dpo import dpo_args

    torch.set_num_threads(job.threads)
    args = dpo_args(job, tmp, precompute=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = Dataset.from_parquet(job.train_file, cache_dir=str(Path(tmp) / "hf-cache"))
    t0 = time.perf_counter()
    DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok).train()
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny-cpu.yaml")
    p.add_argument("--run-dir", default="runs/tiny-cpu", help="a run with pairs/ (make run writes one)")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    cfg = load_config(a.config, a.overrides)
    pairs_file = Path(a.run_dir) / "pairs" / "pairs.parquet"
    if not pairs_file.exists():
        print(f"bench: {pairs_file} not found: run the pipeline first (make run)", file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    from udasa_ray.ray_utils import init_ray
    from udasa_ray.train.step import fit_stages

    pairs = pq.read_table(pairs_file).to_pylist()[: a.pairs]
    base = resolve(cfg.models.policy, cfg.models.cache_dir)
    rows = dpo_rows(pairs, cfg.generation.prompt_template, cfg.generation.system_prompt)
    train_cfg = cfg.train
    tokens = count_tokens(AutoTokenizer.from_pretrained(base), rows, train_cfg.max_length)
    steps = -(-len(rows) // train_cfg.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.parquet"
        pq.write_table(pa.Table.from_pylist(rows), train_file)
        job = StageJob(stage=1, name="bench", start=base, ref=base, train_file=str(train_file), eval_file=None,
                       work_dir=tmp, steps=steps, warmup=0, decay=0, peak_lr=train_cfg.lr, beta=train_cfg.beta,
                       batch_size=train_cfg.batch_size, grad_accum=1, max_length=train_cfg.max_length, precompute=True,
                       eval_steps=train_cfg.eval_steps, patience=train_cfg.patience,
                       reward_saturation=train_cfg.reward_saturation,
                       dtype=train_cfg.dtype, seed=0, threads=max(1, int(train_cfg.cpus_per_worker)))
        plain_s = plain_trl(job, base, tmp)
        from udasa_ray.train.dpo import train_stage

        local = train_stage(job, str(Path(tmp) / "local"))  # same trainer, no Ray
        init_ray(cfg.ray)
        t0 = time.perf_counter()
        job.out = str(Path(tmp) / "ours")
        fit_stages(cfg, [job], Path(tmp) / "ray")
        ray_s = time.perf_counter() - t0
        ours = json.loads((Path(job.out) / "stage.json").read_text())
    result = {"pairs": len(rows), "steps": steps, "tokens": tokens, "batch_size": train_cfg.batch_size,
              "max_length": train_cfg.max_length, "bf16": ours["bf16"],
              "plain_trl": {"seconds": round(plain_s, 1), "tokens_per_s": round(tokens / plain_s, 1)},
              "udasa_in_process": {"seconds": local["seconds"], "tokens_per_s": round(tokens / local["seconds"], 1)},
              "udasa_ray_train": {"seconds": ours["seconds"], "tokens_per_s": round(tokens / ours["seconds"], 1),
                                  "wall_s_with_worker_start_and_checkpoint": round(ray_s, 1)},
              "ratio_in_process": round(plain_s / local["seconds"], 2),
              "ratio_ray_train": round(plain_s / ours["seconds"], 2)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
