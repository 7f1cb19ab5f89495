"""The generate step: prompts.parquet -> responses/ (Parquet parts), streamed through Ray Data.

The driver writes each finished batch as its own part file (atomically), so a killed run
keeps what it generated and a rerun generates only the missing (prompt, sample) rows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from udasa_ray.config import Config
from udasa_ray.generate.requests import build_requests, split_listwise
from udasa_ray.models import resolve
from udasa_ray.parts import read_parts, write_part
from udasa_ray.ray_utils import actor_seconds, data_context, finished_batches, init_ray, warm_up
from udasa_ray.runs import RunDir, Step

RESPONSE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("sample_idx", pa.int64()), ("response", pa.string()),
    ("n_tokens", pa.int64()), ("finish_reason", pa.string()), ("model", pa.string()), ("seed", pa.int64()),
    ("error", pa.string()),
])
BACKEND_COLUMNS = [n for n in RESPONSE_SCHEMA.names if n != "error"]  # error is set after parsing
GENERATE = Step("generate", reads=("models", "data", "generation"), after=("ingest",), outputs=("responses",))
# A sub-run's generation (held-out answers, RLCD's contrastive sides, evaluation): its prompts are its input.
SUBRUN_GENERATE = Step("generate", reads=("models", "generation"), outputs=("responses",))


def read_responses(out_dir: Path) -> pa.Table:
    return read_parts(out_dir, RESPONSE_SCHEMA)


def _request_dataset(rows: list[dict], block_rows: int):
    import ray

    # One block per forward batch: results stream back batch by batch, not at the end.
    blocks = [pa.Table.from_pylist(rows[i : i + block_rows]) for i in range(0, len(rows), block_rows)]
    return ray.data.from_arrow(blocks)


def hf_generator_kwargs(cfg: Config) -> dict:
    """What the hf backend's actor class (HFGenerator) is built with."""
    gen = cfg.generation
    return {"model": cfg.models.policy, "cache_dir": cfg.models.cache_dir,
            "gen": {**{k: getattr(gen, k) for k in ("temperature", "top_p", "max_new_tokens", "system_prompt",
                                                   "prompt_template", "dtype", "decoding")},
                    "rain": dataclasses.asdict(gen.rain)},
            "num_threads": max(1, int(gen.cpus_per_actor))}


def _apply_backend(ds, cfg: Config):
    import ray

    gen = cfg.generation
    if gen.backend == "vllm":
        from udasa_ray.generate import vllm

        source = resolve(cfg.models.policy, cfg.models.cache_dir)
        return vllm.build(gen, source, cfg.models.policy)(ds)
    from udasa_ray.generate.hf import HFGenerator

    return ds.map_batches(
        HFGenerator,
        fn_constructor_kwargs=hf_generator_kwargs(cfg),
        batch_size=gen.batch_size,
        num_cpus=gen.cpus_per_actor,
        resources=gen.actor_resources or None,
        compute=ray.data.ActorPoolStrategy(size=gen.num_actors),
    )


def with_generator(cfg: Config) -> Config:
    """`cfg` with the generator in the policy's place: what the generate step samples from."""
    if cfg.models.generator is None:
        return cfg
    return dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, policy=cfg.models.generator))


def generated(cfg: Config, requests: list[dict]):
    """Run request rows through the backend's Ray Data pipeline: yields each finished batch as its
    response rows (a listwise reply already split into N), the tokens it generated and the seconds
    the actor spent on it (None where the backend does not say: vLLM)."""
    resolve(cfg.models.policy, cfg.models.cache_dir)  # unpack a bundled model once, before actors start
    init_ray(cfg.ray)
    data_context()
    gen = cfg.generation
    block_rows = gen.batch_size if gen.backend == "hf" else gen.vllm.batch_size
    ds = _apply_backend(_request_dataset(requests, block_rows), cfg)
    for batch in finished_batches(ds):
        rows = batch.select(BACKEND_COLUMNS).to_pylist()
        tokens = sum(r["n_tokens"] for r in rows)
        actor_s = actor_seconds(batch, "batch_s")
        if gen.mode == "listwise":
            rows = [r for row in rows for r in split_listwise(row, gen.n)]
        yield rows, tokens, actor_s


def generate(cfg: Config, run: RunDir, resume: bool = False) -> dict:
    """Write N responses for each prompt (the first `data.limit` ones) to run/responses/."""

    prompts = pq.read_table(run / "prompts.parquet").to_pylist()[: cfg.data.limit]
    out_dir = run / "responses"
    out_dir.mkdir(exist_ok=True)
    existing = read_responses(out_dir) if resume else RESPONSE_SCHEMA.empty_table()
    done = set(zip(existing["prompt_id"].to_pylist(), existing["sample_idx"].to_pylist(), strict=True))
    listwise = cfg.generation.mode == "listwise"
    requests = build_requests(prompts, cfg.generation.n, cfg.generation.seed, done, listwise)
    if done:
        print(f"[generate] resuming: {len(done)} responses on disk, {len(requests)} to go")
    total = len(requests) * (cfg.generation.n if listwise else 1)  # responses to make
    t0, new_tokens, batches = time.perf_counter(), 0, []
    if requests:
        with tqdm(total=total, desc="generate", unit="resp", dynamic_ncols=True) as bar:
            last = t0
            for rows, tokens, actor_s in generated(cfg, requests):
                now = time.perf_counter()
                batches.append((round(now - last, 2), tokens, actor_s, len(rows)))  # the first holds the actors' start
                last, new_tokens = now, new_tokens + tokens
                bar.set_postfix(tok_s=f"{new_tokens / (now - t0):.0f}", refresh=False)
                bar.update(len(rows))
                write_part(pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA), out_dir)
    seconds = time.perf_counter() - t0
    table = read_responses(out_dir)
    return {
        "prompts": len(prompts),
        "responses": table.num_rows,
        "generated_this_run": total,
        "tokens_this_run": new_tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(new_tokens / seconds, 1) if requests else None,
        # Seconds and tokens of each batch as it arrived: the first holds the start-up, the rest the steady rate.
        "batch_seconds": [b[0] for b in batches], "batch_tokens": [b[1] for b in batches],
        **warm_up([b[2] for b in batches], [b[3] for b in batches], cfg.generation.num_actors),
        "finish_reasons": dict(Counter(table["finish_reason"].to_pylist())),
        "with_error": sum(e is not None for e in table["error"].to_pylist()),
    }


def generate_subrun(path: Path, cfg: Config, prompts: list[dict], salt: str = "", force: bool = False,
                    make: Callable[[Config, RunDir, bool], dict] | None = None) -> tuple[pa.Table, str]:
    """Generate for `prompts` (prompt_id, prompt) in a small run directory of their own, resumable like
    the main one: the held-out check, RLCD's contrastive answers and evaluation use it. `make(cfg, sub,
    resume)` writes the answers (default: `generate`, the backend's Ray Data pipeline).

    Returns the responses and the hash they were made with (`salt`: what else they depend on,
    e.g. the training that produced the policy).
    """
    sub = RunDir(path)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, limit=None))
    pq.write_table(pa.Table.from_pylist([{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in prompts],
                                        schema=pa.schema([("prompt_id", pa.string()), ("prompt", pa.string())])),
                   sub / "prompts.parquet")
    key = json.dumps([[p["prompt_id"], p["prompt"]] for p in prompts])
    sub.run(SUBRUN_GENERATE, cfg, lambda resume: (make or generate)(cfg, sub, resume), force, key=[key],
            salt=[salt])
    return read_responses(sub / "responses"), sub.made_with("generate")


def generate_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    """The generate step on the run's prompts, with the generator (models.generator, else the policy)."""
    stats = run.run(GENERATE, cfg, lambda resume: generate(with_generator(cfg), run, resume), force)
    print(f"[generate] {stats['responses']} responses for {stats['prompts']} prompts in {run / 'responses'}"
          + (f"; {stats['tokens_per_s']} tokens/s" if stats.get("tokens_per_s") else ""))
    return stats
