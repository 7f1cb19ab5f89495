"""Semantic uncertainty (the paper's Eq. 1-2; docs/method.md) from Sentence-BERT embeddings of a prompt's responses."""

from __future__ import annotations

import numpy as np


def semantic_uncertainty(embeddings: np.ndarray) -> tuple[np.ndarray, float]:
    """Per response: 1 - mean cosine similarity to the group's other responses, clipped to [0, 1].

    The group score is 1 - mean pairwise similarity S̄, which equals the mean of the unclipped
    per-response scores. Needs at least two responses.
    """
    e = np.asarray(embeddings, dtype=np.float64)
    n = len(e)
    if n < 2:
        raise ValueError(f"semantic uncertainty needs >= 2 responses, got {n}")
    e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
    sim = e @ e.T
    mean_other = (sim.sum(axis=1) - np.diag(sim)) / (n - 1)
    group = 1.0 - float((sim.sum() - np.trace(sim)) / (n * (n - 1)))
    return np.clip(1.0 - mean_other, 0.0, 1.0), group
