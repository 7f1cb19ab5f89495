"""The bundled prompt set `bundled:prompts-1k`: it ingests cleanly, keeps the 80 prompts of
`bundled:prompts` first, spreads over its categories, holds no duplicates, and is exactly what
its generator (tools/make_prompts_1k.py) builds."""

import json
import re
from collections import Counter
from importlib import resources

import pytest

from tools import make_prompts_1k as gen
from udasa_ray.ingest.read import ingest

# Each category's minimum share of the set; harmful requests are also capped.
MIN_SHARE = {
    "factual": 0.10, "rewrite": 0.10, "explanation": 0.09, "advice": 0.09, "harmful": 0.08, "howto": 0.08,
    "classification": 0.07, "creative": 0.07, "brainstorm": 0.07, "comparison": 0.05, "summarisation": 0.05,
}
MAX_HARMFUL = 0.10
INPUT_SHARE = (0.30, 0.40)


def _read(name: str) -> list[dict]:
    text = resources.files("udasa_ray.data").joinpath(name).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return _read("prompts-1k.jsonl")


def test_ingests_without_rejects():
    prompts, rejects = ingest("bundled:prompts-1k", 2000)
    assert rejects == []
    assert len(prompts) >= 1200


def test_records_are_short_and_well_formed(records):
    for r in records:
        assert set(r) == {"instruction", "input", "output", "category"}, r
        assert r["output"] == "" and r["category"] in MIN_SHARE, r
        assert 0 < len(r["instruction"]) <= 200 and len(r["input"]) <= 300, r


def test_keeps_the_original_prompts_first(records):
    originals = _read("prompts.jsonl")
    pairs = [(o["instruction"], o.get("input") or "") for o in originals]
    assert set(pairs) <= {(r["instruction"], r["input"]) for r in records}
    assert [(r["instruction"], r["input"]) for r in records[: len(originals)]] == pairs
    assert records[: len(originals)] == gen.originals()  # with the categories the generator gives them
    assert Counter(r["category"] for r in records[: len(originals)])["harmful"] == 14


def test_every_category_has_its_share(records):
    n = len(records)
    counts = Counter(r["category"] for r in records)
    short = {c: f"{counts[c]}/{n}" for c, share in MIN_SHARE.items() if counts[c] < share * n}
    assert not short, f"under their minimum share: {short}"
    assert counts["harmful"] <= MAX_HARMFUL * n
    with_input = sum(1 for r in records if r["input"]) / n
    assert INPUT_SHARE[0] <= with_input <= INPUT_SHARE[1]


def test_no_two_prompts_equal_after_normalisation(records):
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        key = _normalise(f"{r['instruction']} {r['input']}")
        assert key not in seen, f"record {i} repeats record {seen[key]}: {r['instruction']!r}"
        seen[key] = i


def test_generator_rebuilds_the_file(model_cache):
    records, stats = gen.build(model_cache)
    assert gen.to_jsonl(records) == gen.OUT.read_text("utf-8")
    assert stats["near_dropped"] == len(stats["dropped"])
