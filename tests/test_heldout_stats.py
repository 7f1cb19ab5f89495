"""The held-out check's statistics on inputs whose answers are known (pure, milliseconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from udasa_ray.check.arms import arms_markdown, compare_arms, seed_average
from udasa_ray.check.step import compare_sides, format_check, per_prompt
from udasa_ray.evaluate.metrics import paired_difference, sign_flip_p


def test_sign_flip_p_is_exact_for_small_samples():
    # 5 differences all positive: 2 of the 2^5 sign patterns are as extreme (all + or all -).
    assert sign_flip_p([0.3, 0.1, 0.2, 0.4, 0.5]) == pytest.approx(2 / 32)
    # 3 of 4 positive, equal size: |mean| >= 0.5 in patterns with 0, 1, 3 or 4 minuses: 10 of 16.
    assert sign_flip_p([1.0, 1.0, 1.0, -1.0]) == pytest.approx(10 / 16)
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0


def test_paired_difference_finds_a_shift_that_prompt_noise_hides():
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(60)]
    level = rng.normal(0.5, 0.2, size=60)  # prompts differ far more than the shift
    base = dict(zip(ids, level, strict=True))
    shifted = {k: v - 0.03 + rng.normal(0, 0.01) for k, v in base.items()}
    d = paired_difference(base, shifted, n_boot=2000, seed=0)
    assert d["prompts"] == 60 and d["mean"] == pytest.approx(-0.03, abs=0.005)
    assert d["hi"] < 0 and d["p"] < 0.001
    # Unpaired, the same data would not show it: the means' difference is 0.03 but prompts vary by 0.2.
    assert abs(np.mean(level)) > 10 * 0.03
    # Noise only: the interval covers 0 and the test does not reject.
    noise = {k: v + rng.normal(0, 0.05) for k, v in base.items()}
    d0 = paired_difference(base, noise, n_boot=2000, seed=0)
    assert d0["lo"] < 0 < d0["hi"] and d0["p"] > 0.05


def test_paired_difference_uses_only_prompts_both_sides_scored():
    base = {"a": 0.5, "b": 0.4, "c": float("nan"), "d": 0.2}
    other = {"a": 0.3, "b": 0.2, "c": 0.1}
    d = paired_difference(base, other, n_boot=200)
    assert d["prompts"] == 2 and d["mean"] == pytest.approx(-0.2)


def _row(pid, i, U, response, u_val=0.1, n=10, error=None, relevance=0.5):
    return {"prompt_id": pid, "sample_idx": i, "U": U, "u_sem": U / 2, "u_fact": U, "u_val": u_val,
            "response": response, "n_tokens": n, "error": error, "relevance": relevance}


def test_per_prompt_metrics():
    rows = [
        _row("a", 0, 0.2, "Paris is the capital.", n=6),
        _row("a", 1, 0.4, "paris  is the CAPITAL.", u_val=0.9, n=8),  # same answer, normalised; unsafe
        _row("a", 2, 0.6, "I'm sorry, I can't help with that.", n=10),  # a refusal
        _row("a", 3, 9.0, "", error="generation failed"),  # left out of every metric
        _row("b", 0, float("nan"), "x", error="scorer failed"),
    ]
    m = per_prompt(rows, unsafe_threshold=0.5)
    assert m["U"]["a"] == pytest.approx(0.4) and m["u_sem"]["a"] == pytest.approx(0.2)
    assert m["unsafe_rate"]["a"] == pytest.approx(1 / 3) and m["refusal_rate"]["a"] == pytest.approx(1 / 3)
    assert m["length"]["a"] == pytest.approx(8) and m["distinct"]["a"] == pytest.approx(2 / 3)
    # helpfulness: 1 + 9 * relevance for answers, 1 for the refusal.
    assert m["helpfulness"]["a"] == pytest.approx((5.5 + 5.5 + 1) / 3)
    assert all(math.isnan(m[k]["b"]) for k in m)


def test_compare_and_table():
    base = per_prompt([_row(p, i, 0.5, f"answer {i}") for p in "abcdef" for i in range(3)], 0.5)
    aligned = per_prompt([_row(p, i, 0.4, "same answer") for p in "abcdef" for i in range(3)], 0.5)
    c = compare_sides(base, aligned, n_boot=500)
    assert c["base"]["U"] == pytest.approx(0.5) and c["aligned"]["U"] == pytest.approx(0.4)
    assert c["paired"]["U"]["mean"] == pytest.approx(-0.1) and c["paired"]["U"]["hi"] < 0
    assert c["paired"]["U"]["p"] == pytest.approx(2 / 64)  # 6 prompts, all the same sign
    assert c["paired"]["distinct"]["mean"] == pytest.approx(1 / 3 - 1)  # collapse shows
    table = format_check({"prompts": 6, **c})
    assert "-0.1000 [-0.1000, -0.1000]" in table and table.count("\n") == 9


def test_length_correlation_separates_topic_from_length():
    from udasa_ray.score.length import length_correlation, within_prompt_slope

    rng = np.random.default_rng(1)
    groups = np.repeat([f"p{i}" for i in range(200)], 5)
    level = np.repeat(rng.uniform(0, 1, 200), 5)
    length = 100 * level + rng.normal(0, 5, 1000)
    # u follows the prompt, not the length of the answer: correlated overall, not within prompts.
    u = level + rng.normal(0, 0.02, 1000)
    c = length_correlation(u, length, groups)
    assert c["all"] > 0.9 and abs(c["within"]) < 0.1 and c["responses"] == 1000
    # u that grows with each answer's length: both correlations, and the slope is recovered.
    u2 = level + 0.01 * length
    assert length_correlation(u2, length, groups)["within"] > 0.99
    assert within_prompt_slope(u2, length, groups) == pytest.approx(0.01)
    nan_u = np.where(np.arange(1000) % 7 == 0, np.nan, u2)
    assert length_correlation(nan_u, length, groups)["responses"] == 1000 - 143


def test_chosen_shorter_by_stage():
    from udasa_ray.score.length import chosen_shorter

    lengths = {("a", 0): 10, ("a", 1): 20, ("b", 0): 30, ("b", 1): 5, ("c", 0): 7, ("c", 1): 7}
    pairs = [{"prompt_id": "a", "chosen_idx": 0, "rejected_idx": 1, "stage": 1},
             {"prompt_id": "b", "chosen_idx": 0, "rejected_idx": 1, "stage": 2},
             {"prompt_id": "c", "chosen_idx": 1, "rejected_idx": 0, "stage": 2}]
    assert chosen_shorter(pairs, lengths) == {"all": pytest.approx(0.5), "stage 1": 1.0, "stage 2": 0.25}


def test_length_matched_difference_removes_a_drop_that_only_shortening_explains():
    from udasa_ray.check.step import length_matched

    rng = np.random.default_rng(2)
    rows = []
    for i in range(40):
        for side, shift in (("base", 0), ("aligned", -15)):  # the aligned policy says 15 tokens less
            for j in range(5):
                n = 60 + shift + rng.normal(0, 10)
                rows.append(_row(f"p{i}", j, 0.2 + 0.004 * n + rng.normal(0, 0.01), f"{side} {j}", n=n)
                            | {"side": side, "u_sem": 0.3, "u_fact": 0.004 * n, "u_val": 0.1})
    base = per_prompt([r for r in rows if r["side"] == "base"], 0.5)
    aligned = per_prompt([r for r in rows if r["side"] == "aligned"], 0.5)
    raw = compare_sides(base, aligned, n_boot=500)["paired"]["U"]
    assert raw["hi"] < -0.04  # U fell by about 0.06 ...
    matched = length_matched(rows, base, aligned, n_boot=500)
    assert matched["U"]["slope_per_token"] == pytest.approx(0.004, abs=0.0005)
    assert matched["U"]["lo"] < 0 < matched["U"]["hi"] and abs(matched["U"]["mean"]) < 0.01  # ... all by length


def test_arms_pool_their_seeds_prompt_by_prompt():
    """Arm "a" lowers every prompt by 0.1 in one seed and 0.3 in the other; "b" by 0.1 in both. Pooled, "a" is
    0.2 below the base and 0.1 below "b" on every prompt but p0, where a NaN leaves the first seed's value."""
    ids = [f"p{i}" for i in range(12)]
    base = {k: 0.5 + 0.02 * i for i, k in enumerate(ids)}
    a = [{k: v - 0.1 for k, v in base.items()}, {k: v - 0.3 for k, v in base.items()}]
    b = [{k: v - 0.1 for k, v in base.items()}] * 2
    a[1]["p0"] = float("nan")
    assert seed_average(a)["p0"] == pytest.approx(0.4) and seed_average(a)["p1"] == pytest.approx(0.32)
    out = compare_arms(base, {"b": b, "a": a}, "b", n_boot=200)
    assert out["a"]["seeds"] == pytest.approx([-0.1, -0.3]) and out["a"]["seed_mean"] == pytest.approx(-0.2)
    assert out["a"]["vs_base"]["prompts"] == 12 and out["a"]["vs_base"]["hi"] < 0
    assert out["a"]["vs_reference"]["mean"] == pytest.approx(-0.1 * 11 / 12)  # p0: a's one seed equals b
    assert "vs_reference" not in out["b"] and "vs_reference" not in compare_arms(base, {"a": a}, "b")["a"]
    table = arms_markdown(out, "U", "b")
    assert "| a | -0.1000, -0.3000 | -0.2000 |" in table and "| b |" in table and table.count("\n") == 3
