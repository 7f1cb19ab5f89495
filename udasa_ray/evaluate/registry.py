"""The metrics `udasa eval` reports, in one table: which task each belongs to, its kind (a 1–10
score or a rate shown as %), whether lower is better, and where `udasa compare` shows it.

Pure (standard library only), so the config's validation and the tuner can read it without
loading the evaluation's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

HARMLESS_HELPFUL = "Harmlessness and helpfulness (1–10, higher is better)"
TRUTHFULQA = "TruthfulQA (%)"
SENTIMENT = "Controlled sentiment (% positive continuations)"
ROBUSTNESS = "Robustness (% attack success under GCG suffixes, lower is better)"


@dataclass(frozen=True)
class Metric:
    name: str
    task: str  # the eval task whose answers it judges
    kind: Literal["score", "rate"]  # "score": 1–10; "rate": a fraction in [0, 1], shown as %
    lower_is_better: bool
    section: str  # the table `udasa compare` shows it in
    column: int  # its column in that table

    @property
    def scale(self) -> int:
        """Factor from a stored value to the shown one (a rate shows as %)."""
        return 1 if self.kind == "score" else 100


# In the reporting order (summary.json, `udasa eval`'s printout, compare's paired table and plots).
METRICS: dict[str, Metric] = {m.name: m for m in (
    #      name            task         kind     lower  section           column
    Metric("harmlessness", "harmless",  "score", False, HARMLESS_HELPFUL, 0),
    Metric("unsafe",       "harmless",  "rate",  True,  HARMLESS_HELPFUL, 3),
    Metric("refusal",      "harmless",  "rate",  False, HARMLESS_HELPFUL, 2),
    Metric("helpfulness",  "helpful",   "score", False, HARMLESS_HELPFUL, 1),
    Metric("true",         "truthful",  "rate",  False, TRUTHFULQA,       1),
    Metric("informative",  "truthful",  "rate",  False, TRUTHFULQA,       2),
    Metric("true_info",    "truthful",  "rate",  False, TRUTHFULQA,       0),
    Metric("mc1",          "truthful",  "rate",  False, TRUTHFULQA,       3),
    Metric("mc2",          "truthful",  "rate",  False, TRUTHFULQA,       4),
    Metric("positive",     "sentiment", "rate",  False, SENTIMENT,        0),
    Metric("asr_direct",   "robust",    "rate",  True,  ROBUSTNESS,       0),
    Metric("asr_whitebox", "robust",    "rate",  True,  ROBUSTNESS,       1),
    Metric("asr_transfer", "robust",    "rate",  True,  ROBUSTNESS,       2),
)}  # fmt: skip
NAMES: tuple[str, ...] = tuple(METRICS)

# Tune objectives besides "eval:<metric>", and which way each is better.
_OBJECTIVES = {"pair_accuracy": "max", "heldout_U": "min"}


def sections() -> list[tuple[str, list[str]]]:
    """(title, metric names in column order) for each of compare's tables, as in the paper."""
    titles = dict.fromkeys(m.section for m in METRICS.values())  # in the order they first appear
    return [(title, [m.name for m in sorted(METRICS.values(), key=lambda m: m.column) if m.section == title])
            for title in titles]


def lower_is_better() -> list[str]:
    """The metrics where lower is better, in the reporting order."""
    return [m.name for m in METRICS.values() if m.lower_is_better]


def is_objective(objective: str) -> bool:
    """Whether `objective` is one `udasa tune` can optimise."""
    return objective in _OBJECTIVES or (objective.startswith("eval:") and objective.removeprefix("eval:") in METRICS)


def objective_choices() -> str:
    """The valid objectives, for an error message."""
    return f"{', '.join(_OBJECTIVES)} or eval:<{'|'.join(NAMES)}>"


def direction(objective: str) -> Literal["min", "max"]:
    """Whether a tune objective is minimised or maximised ("pair_accuracy" max, "heldout_U" min,
    "eval:<metric>" as the metric's table row says)."""
    if objective in _OBJECTIVES:
        return _OBJECTIVES[objective]  # type: ignore[return-value]
    if not is_objective(objective):
        raise ValueError(f"unknown objective {objective!r}: expected {objective_choices()}")
    return "min" if METRICS[objective.removeprefix("eval:")].lower_is_better else "max"
