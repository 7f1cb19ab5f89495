"""Arms of a training comparison, each trained with several seeds, checked on the same held-out prompts against
the same base answers (jobs/curriculum.py). Pure: per-prompt values in, statistics out.

A seed's held-out Δ is its mean over prompts of (aligned − base). Seeds are pooled prompt by prompt: each
prompt's aligned value is averaged over the arm's seeds, and the paired interval is bootstrapped over prompts,
so it holds both the prompts' and the seeds' noise without counting a prompt once per seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from udasa_ray.evaluate.metrics import paired_difference


def seed_average(seeds: list[dict[str, float]]) -> dict[str, float]:
    """Each prompt's value averaged over the seeds that have a finite one (NaN where none has)."""
    out = {}
    for pid in sorted(set().union(*seeds)):
        v = [s[pid] for s in seeds if pid in s and math.isfinite(s[pid])]
        out[pid] = float(np.mean(v)) if v else float("nan")
    return out


def compare_arms(base: dict[str, float], arms: dict[str, list[dict[str, float]]], reference: str | None,
                 n_boot: int = 2000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per arm: each seed's Δ vs base, their mean, the pooled paired Δ vs base, and (if `reference` is one of the
    arms) the pooled paired difference arm − reference."""
    pooled = {arm: seed_average(runs) for arm, runs in arms.items()}
    out = {}
    for arm, runs in arms.items():
        per_seed = [paired_difference(base, r, n_boot, seed)["mean"] for r in runs]
        out[arm] = {"seeds": per_seed, "seed_mean": float(np.mean(per_seed)),
                    "vs_base": paired_difference(base, pooled[arm], n_boot, seed)}
        if reference in pooled and arm != reference:
            out[arm]["vs_reference"] = paired_difference(pooled[reference], pooled[arm], n_boot, seed)
    return out


def arms_markdown(result: dict[str, dict[str, Any]], metric: str, reference: str | None) -> str:
    """The comparison as a Markdown table: one row per arm."""
    def ci(d: dict[str, float]) -> str:
        return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"

    head = f"| arm | Δ{metric} vs base, per seed | mean over seeds | pooled Δ vs base [95% CI] | p |"
    rows = [head, "|---|---|---|---|---|"]
    if reference:
        rows[0] += f" vs {reference} [95% CI] | p |"
        rows[1] += "---|---|"
    for arm, r in result.items():
        row = (f"| {arm} | {', '.join(f'{x:+.4f}' for x in r['seeds'])} | {r['seed_mean']:+.4f} | "
               f"{ci(r['vs_base'])} | {r['vs_base']['p']:.2g} |")
        if reference:
            v = r.get("vs_reference")
            row += f" {ci(v)} | {v['p']:.2g} |" if v else " — | — |"
        rows.append(row)
    return "\n".join(rows)
