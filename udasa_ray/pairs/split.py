"""Curriculum split (docs/method.md): K stages from K - 1 thresholds on a scale of Δu.

Stage 1 is the clearest (largest Δu, "conservative"), the last the most ambiguous
("exploratory"). With τ1 < τ2: conservative s > τ2, moderate τ1 <= s <= τ2, exploratory s < τ1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scale_delta(delta: Sequence[float], scale: str) -> np.ndarray:
    """Put Δu on the thresholds' scale: raw, min-max over the data set, or quantile rank."""
    d = np.asarray(delta, dtype=np.float64)
    if scale == "raw" or len(d) == 0:
        return d
    if scale == "minmax":
        span = d.max() - d.min()
        return (d - d.min()) / span if span > 0 else np.zeros_like(d)
    if scale == "quantile":  # mean rank of ties, in [0, 1]
        order = d.argsort(kind="stable")
        ranks = np.empty(len(d))
        ranks[order] = np.arange(len(d))
        _, tie = np.unique(d, return_inverse=True)  # each pair's group of equal Δu
        ranks = (np.bincount(tie, weights=ranks) / np.bincount(tie))[tie]
        return ranks / max(1, len(d) - 1)
    raise ValueError(f"unknown Δu scale {scale!r} (raw, minmax, quantile)")


def stage_names(k: int) -> list[str]:
    if k == 1:
        return ["all"]
    if k == 2:
        return ["conservative", "exploratory"]
    middle = ["moderate"] if k == 3 else [f"moderate{i}" for i in range(1, k - 1)]
    return ["conservative", *middle, "exploratory"]


def assign_stages(scaled: Sequence[float], thresholds: Sequence[float]) -> np.ndarray:
    """1-based stage of each pair: stage 1 above the top threshold, stage K below the lowest.

    Middle stages hold [τ_i, τ_{i+1}); the highest middle stage also takes s == τ_top.
    """
    s = np.asarray(scaled, dtype=np.float64)
    th = list(thresholds)
    k = len(th) + 1
    if k == 1:
        return np.ones(len(s), dtype=np.int64)
    # Bin index from the bottom: 0 below τ1, i for τ_i <= s < τ_{i+1}, K-1 above τ_top.
    b = np.searchsorted(np.asarray(th), s, side="right")
    b = np.where(s == th[-1], k - 2, b)
    return (k - b).astype(np.int64)


def stage_members(stages: np.ndarray, k: int, cumulative: bool) -> list[np.ndarray]:
    """Row indices trained in each stage: disjoint (Algorithm 1), or all stages so far."""
    return [np.flatnonzero(stages <= s if cumulative else stages == s) for s in range(1, k + 1)]
