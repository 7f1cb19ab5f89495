"""The GPU check: what a single-GPU machine without Ray, vLLM or network can prove.

Runs on a randomly initialised small LLaMA (no weights to download; only a tokenizer is read):
1. placement: `models.load_policy` puts the model where `models.device()` says, and
   `pick_dtype("auto")` agrees with it;
2. hf generation (`generate/hf.py:HFGenerator`, the seeded sampler) on that device twice, and the same
   requests with the model moved to the CPU: how many responses match token for token;
3. multiple-choice log-likelihoods (`evaluate/loglik.py`) on the device against the CPU;
4. one DPO stage (`train/dpo.py:train_stage`, the function each Ray Train worker runs) under
   DeepSpeed ZeRO-3, bf16 where the device computes it, 2 steps on 8 synthetic pairs, if TRL and
   DeepSpeed import (they are pure Python: carry them onto the machine, see below).

It also runs on a CPU (then it checks the CPU path). Prints one JSON object.

    python bench/gpu_check.py [--tokenizer DIR] [--out gpu_check.json]

On the lent GPU machine (`run` in ../.library/device; Python 3.12 there, transformers 5.17): carry
wheels of transformers 5.23, TRL, datasets, dill, multiprocess, pydantic (with `pydantic-core` for
cp312), annotated-types, typing-inspection and hjson, DeepSpeed's folder with its dist-info, and a
tokenizer folder (the bundled SmolLM2's, without the weights); `pip install --target` the wheels and
`PYTHONPATH=<target>:<deepspeed's parent> python bench/gpu_check.py --tokenizer <folder>`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from udasa_ray.models import device, load_policy, pick_dtype  # noqa: E402


def tiny_llama(tokenizer_dir: str, out: Path) -> str:
    """A 2-layer LLaMA with random weights and the given tokenizer, saved as an HF checkpoint."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def check_placement(model_dir: str) -> dict:
    model, _ = load_policy(model_dir, "", "auto")
    return {"device": device(), "model_device": str(model.device), "auto_dtype": pick_dtype("auto"),
            "model_dtype": str(model.dtype).removeprefix("torch."), "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def check_generation(model_dir: str) -> dict:
    from udasa_ray.generate.hf import HFGenerator

    gen = {"dtype": "float32", "prompt_template": "chat", "system_prompt": None, "temperature": 0.8,
           "top_p": 0.9, "max_new_tokens": 16, "decoding": "sample"}
    g = HFGenerator(model_dir, "", gen, num_threads=os.cpu_count() or 1)
    prompts = ["Name a colour.", "What is 2 + 2?", "Write a greeting.", "Describe the sea."]
    batch = {"prompt_id": np.array([f"p{i // 2}" for i in range(8)], dtype=object),
             "prompt": np.array([prompts[i % 4] for i in range(8)], dtype=object),
             "query": np.array([prompts[i % 4] for i in range(8)], dtype=object),
             "sample_idx": np.arange(8), "seed": np.arange(100, 108)}
    t0 = time.perf_counter()
    here = g(batch)
    seconds = time.perf_counter() - t0
    again = g(batch)
    g.model.to("cpu")
    on_cpu = g(batch)

    def same(a, b):
        return int(sum(x == y for x, y in zip(a["response"], b["response"], strict=True)))

    return {"device": device(), "responses": 8, "same_on_rerun": same(here, again),
            "same_as_cpu": same(here, on_cpu), "seconds": round(seconds, 2), "tokens": int(here["n_tokens"].sum())}


def check_multiple_choice(model_dir: str) -> dict:
    from udasa_ray.config import load_config
    from udasa_ray.evaluate.loglik import choice_logliks

    model, tok = load_policy(model_dir, "", "float32")
    model_device = str(model.device)
    context, choices = "Q: What is the capital of France?\nA:", ["Paris.", "Lyon.", "Berlin, in Germany."]
    here = choice_logliks(model, tok, context, choices)
    on_cpu = choice_logliks(model.to("cpu"), tok, context, choices)
    load_config()  # the config package imports without Ray
    return {"device": device(), "model_device": model_device, "logliks": [round(x, 4) for x in here],
            "max_abs_diff_vs_cpu": float(np.max(np.abs(np.array(here) - np.array(on_cpu))))}


def check_dpo_zero3(model_dir: str, work: Path) -> dict:
    try:
        import deepspeed  # noqa: F401
        import trl  # noqa: F401
    except ImportError as e:
        return {"skipped": f"{e}: carry TRL and DeepSpeed (pure Python) onto the machine"}
    import pyarrow as pa
    import pyarrow.parquet as pq

    from udasa_ray.train.data import dpo_rows
    from udasa_ray.train.dpo import deepspeed_config, train_stage
    from udasa_ray.train.job import StageJob

    # One process is a world of one: what the Ray Train worker would have set up.
    os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": os.environ.get("MASTER_PORT", "29533")})
    pairs = [{"prompt": f"Say something kind about the number {i}.", "chosen": f"{i} is a fine number.",
              "rejected": f"{i} is awful."} for i in range(8)]
    train_file = work / "train.parquet"
    pq.write_table(pa.Table.from_pylist(dpo_rows(pairs, "chat", None)), train_file)
    job = StageJob(stage=1, name="gpu-check", start=model_dir, ref=model_dir, train_file=str(train_file),
                   eval_file=None, work_dir=str(work), steps=2, warmup=0, decay=0, peak_lr=1e-4, beta=0.1,
                   batch_size=4, grad_accum=1, max_length=64, precompute=True, eval_steps=50, patience=3,
                   reward_saturation=1.0, dtype="auto", seed=0, threads=os.cpu_count() or 1,
                   deepspeed=deepspeed_config(3, offload=False))
    summary = train_stage(job, str(work / "out"))
    saved = sorted(p.name for p in (work / "out").iterdir() if p.suffix in (".safetensors", ".json"))
    return {k: summary[k] for k in ("steps", "zero_stage", "bf16", "world_size", "seconds", "trainable_params")} | {
        "checkpoint_files": saved}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", help="a tokenizer folder (default: the bundled SmolLM2's)")
    p.add_argument("--out", help="also write the JSON here")
    a = p.parse_args()
    tokenizer = a.tokenizer
    if tokenizer is None:
        from udasa_ray.models import resolve

        tokenizer = resolve("bundled:smollm2-135m-instruct", os.environ.get("UDASA_TEST_CACHE", "~/.cache/udasa-ray"))
    result: dict = {"torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="udasa-gpu-check-") as tmp:
        model_dir = tiny_llama(tokenizer, Path(tmp) / "tiny-llama")
        checks = {"placement": check_placement, "generation": check_generation,
                  "multiple_choice": check_multiple_choice,
                  "dpo_zero3": lambda m: check_dpo_zero3(m, Path(tmp))}
        for name, check in checks.items():
            try:
                result[name] = check(model_dir)
            except Exception as e:  # noqa: BLE001 - a failed check is a result; the others still run
                result[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0 if not any("error" in v for v in result.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
