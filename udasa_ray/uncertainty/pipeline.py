"""The score step: responses/ -> scores/, three scorer actor pools on Ray Data, then fusion.

Rows travel as prompt groups (a prompt and its N responses), since semantic and cross-response
scores need the whole group. Finished groups are written as Parquet parts; a rerun of a killed
step scores only the prompts not yet on disk.
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from udasa_ray.config import Config
from udasa_ray.errors import StepFailed
from udasa_ray.generate.pipeline import read_responses
from udasa_ray.parts import read_parts, write_part
from udasa_ray.ray_utils import data_context, init_ray
from udasa_ray.runs import RunDir
from udasa_ray.uncertainty.fusion import fuse, fusion_weights
from udasa_ray.uncertainty.scorers import SCORERS, backend_failed


class ScoringFailed(StepFailed):
    """More responses failed in a scorer backend than `scoring.max_error_rate` allows."""

SCORE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("sample_idx", pa.int64()), ("response", pa.string()),
    ("u_sem", pa.float64()), ("u_fact", pa.float64()), ("u_val", pa.float64()), ("U", pa.float64()),
    ("w_sem", pa.float64()), ("w_fact", pa.float64()), ("w_val", pa.float64()), ("u_sem_group", pa.float64()),
    ("error", pa.string()),
])


def group_responses(table: pa.Table, skip: set[str] = frozenset()) -> list[dict]:
    """One row per prompt: its responses ordered by sample_idx."""
    groups: dict[str, dict] = {}
    for r in sorted(table.to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"])):
        if r["prompt_id"] in skip:
            continue
        g = groups.setdefault(r["prompt_id"], {"prompt_id": r["prompt_id"], "prompt": r["prompt"],
                                               "sample_idx": [], "response": [], "gen_error": []})
        g["sample_idx"].append(r["sample_idx"])
        g["response"].append(r["response"])
        g["gen_error"].append(r["error"])  # e.g. a listwise reply with too few items
    return list(groups.values())


def explode(groups: list[dict], temperature: float, weights: list[float] | None) -> pa.Table:
    """Group rows with score lists -> one row per response, with weights and fused U."""
    rows = []
    for g in groups:
        for k, idx in enumerate(g["sample_idx"]):
            u = [g["u_sem"][k], g["u_fact"][k], g["u_val"][k]]
            errors = [e for e in (g["gen_error"][k], g["err_sem"][k], g["err_fact"][k], g["err_val"][k]) if e]
            ok = all(math.isfinite(x) for x in u)
            w = fusion_weights(np.array(u), temperature, weights) if ok else [math.nan] * 3
            rows.append({"prompt_id": g["prompt_id"], "prompt": g["prompt"], "sample_idx": idx,
                         "response": g["response"][k], "u_sem": u[0], "u_fact": u[1], "u_val": u[2],
                         "U": fuse(u, temperature, weights) if ok else math.nan,
                         "w_sem": float(w[0]), "w_fact": float(w[1]), "w_val": float(w[2]),
                         "u_sem_group": g["u_sem_group"], "error": "; ".join(errors) or None})
    return pa.Table.from_pylist(rows, schema=SCORE_SCHEMA)


def scorer_pools(cfg: Config) -> list[tuple[type, dict[str, Any]]]:
    """The score step's actor pools in order: each scorer class with its `Dataset.map_batches`
    arguments (what it asks of the cluster included)."""
    import ray

    scoring = cfg.scoring
    return [(scorer, {"fn_constructor_kwargs": {"scoring": scoring, "models": cfg.models,
                                                "prompt_template": cfg.generation.prompt_template},
                      "batch_size": scoring.batch_size, "batch_format": "pyarrow", "num_cpus": scoring.cpus_per_actor,
                      "compute": ray.data.ActorPoolStrategy(size=scoring.num_actors)}) for scorer in SCORERS]


def score(cfg: Config, run: RunDir, resume: bool = False) -> dict:
    import ray

    scoring = cfg.scoring
    out_dir = run / "scores"
    out_dir.mkdir(exist_ok=True)
    done = set(read_parts(out_dir, SCORE_SCHEMA)["prompt_id"].to_pylist()) if resume else set()
    groups = group_responses(read_responses(run / "responses"), done)
    if done:
        print(f"[score] resuming: {len(done)} prompts on disk, {len(groups)} to go")
    t0 = time.perf_counter()
    if groups:
        init_ray(cfg.ray)
        data_context()
        size = scoring.batch_size
        blocks = [pa.Table.from_pylist(groups[i : i + size]) for i in range(0, len(groups), size)]
        ds = ray.data.from_arrow(blocks)
        for scorer, kwargs in scorer_pools(cfg):
            ds = ds.map_batches(scorer, **kwargs)
        n_resp = sum(len(g["response"]) for g in groups)
        with tqdm(total=n_resp, desc="score", unit="resp", dynamic_ncols=True) as bar:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                table = explode(batch.to_pylist(), scoring.fusion_temperature, scoring.fusion_weights)
                write_part(table, out_dir)
                bar.update(table.num_rows)
    table = read_parts(out_dir, SCORE_SCHEMA)
    errors = [e for e in table["error"].to_pylist() if e]
    failed = [e for e in errors if backend_failed(e)]
    if table.num_rows and len(failed) / table.num_rows > scoring.max_error_rate:
        shutil.rmtree(out_dir)  # nothing half-scored is kept: the rerun scores every response again
        raise ScoringFailed(f"{len(failed)} of {table.num_rows} responses failed in a scorer backend, above "
                            f"scoring.max_error_rate={scoring.max_error_rate}; the first: {failed[0]}")
    seconds = time.perf_counter() - t0
    return {"responses": table.num_rows, "scored_this_run": sum(len(g["response"]) for g in groups),
            "with_error": len(errors), "seconds": round(seconds, 1),
            "mean": {k: float(np.nanmean(table[k].to_numpy(zero_copy_only=False))) if table.num_rows else None
                     for k in ("u_sem", "u_fact", "u_val", "U")}}
