"""The job's quick check: base vs aligned policy on prompts never trained on.

Each policy answers the held-out prompts with the run's generation settings and seeds (so both
draw the same sampling noise), and the run's scorers (with the base policy as any judge) rate
the answers. Each side is a small run directory of its own, so it resumes like the main one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from udasa_ray.config import Config
from udasa_ray.parts import read_parts
from udasa_ray.runs import RunDir

KEYS = ("U", "u_sem", "u_fact", "u_val")


def summarize(scores: dict[str, np.ndarray], unsafe_threshold: float) -> dict[str, float]:
    """Means of each uncertainty over valid responses, and the unsafe rate (u_val above threshold)."""
    out = {k: float(np.nanmean(scores[k])) for k in KEYS}
    val = scores["u_val"][np.isfinite(scores["u_val"])]
    out["unsafe_rate"] = float((val > unsafe_threshold).mean()) if len(val) else float("nan")
    out["responses"] = int(np.isfinite(scores["U"]).sum())
    return out


def heldout_check(cfg: Config, run: RunDir, aligned: str, aligned_hash: str, force: bool = False
                  ) -> dict[str, Any] | None:
    """Generate and score held-out answers of the base and the aligned policy (`aligned_hash`:
    what it was trained with); None if no prompt was held out (data.heldout_prompts: 0)."""
    import pyarrow.parquet as pq

    from udasa_ray.generate.pipeline import generate_subrun
    from udasa_ray.uncertainty.pipeline import SCORE_SCHEMA, score

    if not (run / "heldout.parquet").exists() or pq.read_metadata(run / "heldout.parquet").num_rows == 0:
        return None
    result: dict[str, Any] = {"prompts": pq.read_metadata(run / "heldout.parquet").num_rows}
    heldout = pq.read_table(run / "heldout.parquet").to_pylist()
    for side, policy in (("base", cfg.models.policy), ("aligned", aligned)):
        sub = RunDir(run / "heldout" / side)
        gcfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, policy=policy))
        _, ghash = generate_subrun(sub.path, gcfg, heldout, aligned_hash if side == "aligned" else "", force)
        # Scored with the run's own config: a policy_judge scorer stays the base policy on both sides.
        sub.run_stage("score", cfg, ghash + cfg.section_hash("scoring"),
                      lambda resume, s=sub: score(cfg, s, resume), ["scores"], force)
        t = read_parts(sub / "scores", SCORE_SCHEMA)
        scores = {k: t[k].to_numpy(zero_copy_only=False).astype(float) for k in KEYS}
        result[side] = summarize(scores, cfg.scoring.unsafe_threshold)
    result["delta"] = {k: result["aligned"][k] - result["base"][k] for k in (*KEYS, "unsafe_rate")}
    (run / "heldout" / "summary.json").write_text(json.dumps(result, indent=2))
    return result


def format_check(result: dict[str, Any]) -> str:
    """The comparison as a small table (lower is better for every column)."""
    head = f"{'':8}" + "".join(f"{k:>12}" for k in (*KEYS, "unsafe_rate"))
    rows = [head] + [f"{side:8}" + "".join(f"{result[side][k]:>12.4f}" for k in (*KEYS, "unsafe_rate"))
                     for side in ("base", "aligned")]
    rows.append(f"{'delta':8}" + "".join(f"{result['delta'][k]:>+12.4f}" for k in (*KEYS, "unsafe_rate")))
    return "\n".join(rows)
