"""Is an uncertainty measuring response length? Pure numpy/scipy, on a run's own responses.

Cross-response NLI and Sentence-BERT agreement both reward saying less: a short answer has less to
contradict. A policy trained to lower U can then learn brevity instead of certainty. These
functions measure that link: each u's rank correlation with the token count (over all responses,
and within prompts, where the topic is held fixed), how often the chosen response of a pair is the
shorter one, and the within-prompt slope used to put a held-out difference at matched length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _centred(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    _, inv = np.unique(groups, return_inverse=True)
    means = np.bincount(inv, weights=values) / np.bincount(inv)
    return values - means[inv]


def _finite(u: Sequence[float], length: Sequence[float], groups: Sequence[str]):  # noqa: ANN202
    u, length, groups = np.asarray(u, float), np.asarray(length, float), np.asarray(groups)
    keep = np.isfinite(u) & np.isfinite(length)
    return u[keep], length[keep], groups[keep]


def length_correlation(u: Sequence[float], length: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Spearman ρ of u with length over all responses, and of both centred on their prompt's mean
    (within prompts: how u moves with length among answers to the same request)."""
    from scipy.stats import spearmanr

    u, length, groups = _finite(u, length, groups)
    def rho(a: np.ndarray, b: np.ndarray) -> float:  # undefined (NaN) when either side is constant
        return float(spearmanr(a, b).statistic) if len(a) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")

    return {"all": rho(u, length), "within": rho(_centred(u, groups), _centred(length, groups)),
            "responses": int(len(u))}


def within_prompt_slope(u: Sequence[float], length: Sequence[float], groups: Sequence[str]) -> float:
    """Least-squares slope of u on length (per token) after removing each prompt's mean of both."""
    u, length, groups = _finite(u, length, groups)
    x, y = _centred(length, groups), _centred(u, groups)
    return float((x * y).sum() / (x * x).sum()) if (x * x).sum() > 0 else 0.0


def chosen_shorter(pairs: Sequence[dict], lengths: dict[tuple[str, int], float]) -> dict[str, float]:
    """Share of pairs whose chosen response has fewer tokens than the rejected one (ties count
    half), over all pairs and per curriculum stage; 0.5 means length does not pick the winner."""
    def share(ps: list[dict]) -> float:
        wins = [np.sign(lengths[(p["prompt_id"], p["rejected_idx"])] - lengths[(p["prompt_id"], p["chosen_idx"])])
                for p in ps]
        return float(np.mean([(w + 1) / 2 for w in wins])) if wins else float("nan")

    out = {"all": share(list(pairs))}
    for stage in sorted({p["stage"] for p in pairs if "stage" in p}):
        out[f"stage {stage}"] = share([p for p in pairs if p.get("stage") == stage])
    return out
