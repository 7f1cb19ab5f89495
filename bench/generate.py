"""Generation throughput: the generate step on the hf backend and on the vllm backend (both Ray Data pipelines),
and a plain single-process `generate` loop, against this machine's compute limit.

Same prompts, model, dtype, sampling settings and requests per batch for all; each timing includes
loading the model (from the unpacked cache). For the two pipelines the first batch, which holds the
actors' start (vLLM's engine start among them), is reported apart from the steady rate of the rest.
The limit is what a decode-shaped matmul (batch x hidden by hidden x intermediate, in the generation
dtype) reaches here, divided by the 2 x parameters FLOPs a token costs.

    python bench/generate.py [--prompts 16] [--n 5] [--max-new-tokens 64] [--batch-size 40] [--dtype auto]
                             [--backends hf vllm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from udasa_ray.config import load_config  # noqa: E402
from udasa_ray.generate.requests import chat_messages  # noqa: E402
from udasa_ray.models import load_policy, pick_dtype, resolve  # noqa: E402
from udasa_ray.pipeline import run_pipeline  # noqa: E402
from udasa_ray.runs import RunDir  # noqa: E402


def plain_loop(cfg, prompts: list[str]) -> tuple[int, float]:
    """What one would write by hand: batches of prompts, num_return_sequences=N, stock sampling."""
    gen = cfg.generation
    t0 = time.perf_counter()
    torch.set_num_threads(int(gen.cpus_per_actor))
    model, tok = load_policy(cfg.models.policy, cfg.models.cache_dir, gen.dtype)
    per_batch = max(1, gen.batch_size // gen.n)
    tokens = 0
    for i in range(0, len(prompts), per_batch):
        texts = [tok.apply_chat_template(chat_messages(p, None), tokenize=False, add_generation_prompt=True)
                 for p in prompts[i : i + per_batch]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(gen.seed + i)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=gen.temperature, top_p=gen.top_p,
                                 max_new_tokens=gen.max_new_tokens, num_return_sequences=gen.n,
                                 pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return tokens, time.perf_counter() - t0


def compute_limit(cfg, batch: int) -> tuple[float, float]:
    """(FLOP/s of a decode-shaped matmul here, tokens/s that rate allows the policy)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(int(cfg.generation.cpus_per_actor))
    arch = AutoConfig.from_pretrained(resolve(cfg.models.policy, cfg.models.cache_dir))
    dtype = getattr(torch, pick_dtype(cfg.generation.dtype))
    a, b = torch.randn(batch, arch.hidden_size, dtype=dtype), torch.randn(arch.hidden_size, arch.intermediate_size,
                                                                          dtype=dtype)
    for _ in range(10):
        a @ b
    reps, t0 = 200, time.perf_counter()
    for _ in range(reps):
        a @ b
    flops = 2 * batch * arch.hidden_size * arch.intermediate_size * reps / (time.perf_counter() - t0)
    with torch.device("meta"):  # the parameter count, without loading the weights a third time
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(arch).parameters())
    return flops, flops / (2 * params)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="configs/tiny-cpu.yaml")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--backends", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    a = p.parse_args()
    overrides = [f"data.limit={a.prompts}", f"generation.n={a.n}", f"generation.dtype={a.dtype}",
                 f"generation.vllm.dtype={a.dtype}", f"generation.max_new_tokens={a.max_new_tokens}",
                 f"generation.batch_size={a.batch_size}", f"generation.vllm.batch_size={a.batch_size}"]
    cfg = load_config(a.config, overrides)
    resolve(cfg.models.policy, cfg.models.cache_dir)
    from udasa_ray.ray_utils import init_ray

    init_ray(cfg.ray)  # Ray start-up is a once-per-job cost: not counted
    stats = {}
    with tempfile.TemporaryDirectory() as d:
        for backend in a.backends:
            run = RunDir(f"{d}/{backend}")
            bcfg = load_config(a.config, [*overrides, f"generation.backend={backend}"])
            run_pipeline(bcfg, run, "ingest")
            prompts = pq.read_table(run / "prompts.parquet")["prompt"].to_pylist()[: a.prompts]
            stats[backend] = run_pipeline(bcfg, run, "generate", since="generate")["generate"]
    tokens, secs = plain_loop(cfg, prompts)
    plain_tps = tokens / secs
    print(f"\nsettings: {a.prompts} prompts x {a.n} samples, max_new_tokens={a.max_new_tokens}, "
          f"batch={a.batch_size} requests, dtype={pick_dtype(a.dtype)}, threads={int(cfg.generation.cpus_per_actor)}")
    flops, limit = compute_limit(cfg, a.batch_size)
    print(f"compute limit     : {flops / 1e9:.0f} GFLOP/s on a decode-shaped matmul = {limit:6.1f} tokens/s")
    for backend, st in stats.items():
        tps = st["tokens_this_run"] / st["seconds"]
        steady_s, steady_tokens = sum(st["batch_seconds"][1:]), sum(st["batch_tokens"][1:])
        # ray.data.llm may hand back every row at once at the end: then there is no steady rate to show.
        steady = f"{steady_tokens / steady_s:6.1f} tokens/s after it" if steady_s >= 1 else "the rest at once"
        print(f"{backend + ' pipeline':18}: {st['tokens_this_run']:6d} tokens in {st['seconds']:6.1f}s = {tps:6.1f} "
              f"tokens/s ({tps / limit:.0%} of the limit); first batch (with start-up) "
              f"{st['batch_seconds'][0]:.1f}s, {steady}")
    print(f"plain generate    : {tokens:6d} tokens in {secs:6.1f}s = {plain_tps:6.1f} tokens/s "
          f"({plain_tps / limit:.0%} of the limit)")
    for backend, st in stats.items():
        print(f"ratio {backend} pipeline/plain: {st['tokens_this_run'] / st['seconds'] / plain_tps:.2f}")


if __name__ == "__main__":
    main()
