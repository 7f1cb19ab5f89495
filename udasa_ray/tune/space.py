"""The sweep's search space (pure): τ1 < τ2 by construction, and K stages spread from them.

The stage counts from one (τ1, τ2): 1 stage has no threshold, 2 cut at τ2 (the paper's Table 1
cuts 0.3/0.6 -> 0.6), 3 use τ1 and τ2, 4 add the midpoint between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def spread_thresholds(k: int, tau1: float, tau2: float) -> list[float]:
    """The K − 1 thresholds of a K-stage curriculum from τ1 < τ2. Two stages cut at τ2: the first stage is the
    three-stage curriculum's first (the pairs above τ2), the second holds the rest; four add the midpoint."""
    if not tau1 < tau2:
        raise ValueError(f"τ1 < τ2 required, got τ1={tau1}, τ2={tau2}")
    mid = round((tau1 + tau2) / 2, 4)
    return {1: [], 2: [tau2], 3: [tau1, tau2], 4: [tau1, mid, tau2]}[k]


def grid_points(tau1s: Sequence[float], tau2s: Sequence[float], stages: Sequence[int]) -> list[dict[str, Any]]:
    """Every valid (stages, τ1, τ2) of the grid, one per distinct curriculum: pairs with τ1 >= τ2
    are never generated, and settings that give the same thresholds (any τ for one stage) run once."""
    points, seen = [], set()
    for k in sorted(set(stages)):
        for t1 in sorted(set(tau1s)):
            for t2 in sorted(set(tau2s)):
                if t1 < t2 and (key := (k, *spread_thresholds(k, t1, t2))) not in seen:
                    seen.add(key)
                    points.append({"stages": k, "tau1": t1, "tau2": t2, "thresholds": spread_thresholds(k, t1, t2)})
    return points


@dataclass(frozen=True)
class OptunaSpace:
    """Optuna define-by-run: τ2 is drawn above τ1 + min_gap, so no trial is invalid. A module-level
    class, not a closure, because Tune pickles the searcher (and with it the space) at checkpoints."""

    tau1: tuple[float, float]
    tau2: tuple[float, float]
    stages: tuple[int, ...]
    min_gap: float

    def __call__(self, trial: Any) -> None:
        trial.suggest_categorical("stages", list(self.stages))
        t1 = trial.suggest_float("tau1", self.tau1[0], min(self.tau1[1], self.tau2[1] - self.min_gap))
        trial.suggest_float("tau2", max(self.tau2[0], t1 + self.min_gap), self.tau2[1])


def optuna_space(tau1: Sequence[float], tau2: Sequence[float], stages: Sequence[int],
                 min_gap: float) -> OptunaSpace:
    """The define-by-run space over τ1, τ2 ([low, high] ranges) and the stage counts."""
    return OptunaSpace((tau1[0], tau1[1]), (tau2[0], tau2[1]), tuple(sorted(set(stages))), min_gap)


def trial_name(k: int, thresholds: Sequence[float]) -> str:
    """A trial's directory name: the curriculum itself, so a rerun or a duplicate reuses it."""
    return f"k{k}" + "".join(f"_{t:.4f}".rstrip("0").rstrip(".") for t in thresholds)
