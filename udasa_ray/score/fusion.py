"""Fusion of the three uncertainties (the paper's Eq. 5-6; docs/method.md): U = Σ softmax(u/T)_i · u_i.

Pure numpy, so it tests in milliseconds. Fixed weights replace the softmax when given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIMENSIONS = ("sem", "fact", "val")


def fusion_weights(u: np.ndarray, temperature: float = 1.0, weights: Sequence[float] | None = None) -> np.ndarray:
    """Weights over the last axis (sem, fact, val): softmax(u / T), or fixed weights normalised."""
    u = np.asarray(u, dtype=np.float64)
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        return np.broadcast_to(w / w.sum(), u.shape)
    z = u / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))  # shift-invariant: same softmax, no overflow
    return z / z.sum(axis=-1, keepdims=True)


def fuse(u: np.ndarray | Sequence[float], temperature: float = 1.0,
         weights: Sequence[float] | None = None) -> np.ndarray | float:
    """Fused uncertainty U of one (3,) vector or an (n, 3) array of (u_sem, u_fact, u_val)."""
    u = np.asarray(u, dtype=np.float64)
    U = (fusion_weights(u, temperature, weights) * u).sum(axis=-1)
    return float(U) if U.ndim == 0 else U
