"""The plan of a phased-DPO stage (docs/method.md) as pure functions: steps, learning rate, when to stop.

Each stage: linear warm-up to its peak, constant, then linear decay to 0 over its last steps.
Stage 1 peaks at lr_stage1 (3e-6 in the paper), later stages at lr (5e-6); the paper warms up
500 steps at every stage start. On short (tiny CPU) stages warm-up and decay shrink in
proportion so the shape stays.
"""

from __future__ import annotations

import math


def stage_steps(n_pairs: int, batch_per_step: int, max_steps: int, epochs: float = 1.0) -> int:
    """Optimizer steps of a stage: `epochs` over its pairs, at most `max_steps`, at least 1."""
    return max(1, min(max_steps, math.ceil(epochs * n_pairs / batch_per_step)))


def shared_budget(total: int, sizes: list[int]) -> list[int]:
    """`total` optimizer steps shared among stages in proportion to their pairs (largest remainders), at least 1
    each: every pair is met about equally often, however the pairs are grouped into stages."""
    if total < len(sizes):
        raise ValueError(f"a budget of {total} steps cannot give each of {len(sizes)} stages a step")
    n = sum(sizes) or 1
    quota = [total * k / n for k in sizes]
    steps = [max(1, math.floor(q)) for q in quota]
    by_remainder = sorted(range(len(sizes)), key=lambda i: quota[i] - math.floor(quota[i]), reverse=True)
    for i in by_remainder[: max(0, total - sum(steps))]:  # flooring loses under 1 step a stage
        steps[i] += 1
    while sum(steps) > total:  # the at-least-1 floor overshot: take back from the largest
        steps[steps.index(max(steps))] -= 1
    return steps


def phases(total: int, warmup: int, decay: int) -> tuple[int, int]:
    """Warm-up and decay lengths that fit in `total` steps (scaled down together if not)."""
    if warmup + decay <= total:
        return warmup, decay
    scale = total / (warmup + decay)
    w = math.floor(warmup * scale)
    return w, max(0, min(total - w, math.ceil(decay * scale)))


def lr_at(step: int, total: int, peak: float, warmup: int, decay: int) -> float:
    """LR before optimizer step `step` (0-based) of a stage of `total` steps."""
    warmup, decay = phases(total, warmup, decay)
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= total - decay:
        return peak * (total - step) / (decay + 1)
    return peak


def stage_peak(stage: int, lr_stage1: float, lr: float) -> float:
    """Peak LR of a 1-based stage: the conservative stage is trained more gently."""
    return lr_stage1 if stage == 1 else lr


class EarlyStop:
    """The stage stop rule, fed one evaluation at a time: stop when the eval loss has not
    improved for `patience` evaluations, or once eval reward accuracy reaches `saturation`.
    `stale == 0` after an update means that evaluation is the best so far."""

    def __init__(self, patience: int, saturation: float) -> None:
        self.patience, self.saturation = patience, saturation
        self.best, self.stale = math.inf, 0

    def update(self, loss: float, accuracy: float | None) -> str | None:
        """The reason to stop now, or None."""
        if loss < self.best:
            self.best, self.stale = loss, 0
        else:
            self.stale += 1
        if accuracy is not None and accuracy >= self.saturation:
            return f"eval reward accuracy {accuracy:.3f} >= {self.saturation}"
        if self.stale >= self.patience:
            return f"eval loss has not improved on {self.best:.4f} for {self.patience} evaluations"
        return None
