"""The evaluation metrics' registry: one table that evaluation, compare, config validation and the
tuner read (milliseconds, no model)."""

import pytest

from udasa_ray.config import ConfigError, EvalConfig, load_config
from udasa_ray.evaluate import registry
from udasa_ray.evaluate.registry import METRICS, NAMES, direction, lower_is_better, sections

PAPER_TABLES = [  # the layout of the paper's tables, written out independently of the registry
    ("Harmlessness and helpfulness (1–10, higher is better)", ["harmlessness", "helpfulness", "refusal", "unsafe"]),
    ("TruthfulQA (%)", ["true_info", "true", "informative", "mc1", "mc2"]),
    ("Controlled sentiment (% positive continuations)", ["positive"]),
    ("Robustness (% attack success under GCG suffixes, lower is better)",
     ["asr_direct", "asr_whitebox", "asr_transfer"]),
]


def test_reporting_order_and_compare_tables():
    assert NAMES == ("harmlessness", "unsafe", "refusal", "helpfulness", "true", "informative", "true_info",
                     "mc1", "mc2", "positive", "asr_direct", "asr_whitebox", "asr_transfer")
    assert sections() == PAPER_TABLES  # every metric in exactly one table, in the paper's column order


def test_kinds_tasks_and_direction():
    assert {m for m in NAMES if METRICS[m].kind == "score"} == {"harmlessness", "helpfulness"}
    assert METRICS["harmlessness"].scale == 1 and METRICS["mc2"].scale == 100  # 1–10 as is, rates as %
    assert {METRICS[m].task for m in NAMES} == set(EvalConfig().tasks) | {"robust"}  # every task reports something
    assert METRICS["mc1"].task == "truthful" and METRICS["refusal"].task == "harmless"
    # Fewer unsafe answers and fewer successful attacks are better; refusals are neither way.
    assert lower_is_better() == ["unsafe", "asr_direct", "asr_whitebox", "asr_transfer"]


@pytest.mark.parametrize("objective,expected", [
    ("pair_accuracy", "max"), ("heldout_U", "min"), ("eval:unsafe", "min"), ("eval:harmlessness", "max"),
    ("eval:refusal", "max"), ("eval:mc2", "max"), ("eval:positive", "max"),
])
def test_direction(objective, expected):
    assert direction(objective) == expected


@pytest.mark.parametrize("objective", ["accuracy", "eval:", "eval:bogus", "unsafe", "heldout_u"])
def test_unknown_objective_is_an_error_not_max(objective):
    assert not registry.is_objective(objective)
    with pytest.raises(ValueError, match=r"unknown objective .*: expected pair_accuracy, heldout_U or eval:<"):
        direction(objective)


def test_config_accepts_exactly_the_registered_objectives():
    for name in NAMES:
        assert load_config(None, [f"tune.objective=eval:{name}"]).tune.objective == f"eval:{name}"
    with pytest.raises(ConfigError, match="tune.objective"):
        load_config(None, ["tune.objective=eval:bogus"])
