"""Property-based tests (Hypothesis): ingestion accounts for every record of any input, and any
ill-typed override of any config key is refused with exit 2, naming the key; any scored responses pair
the lowest U against another valid response."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import string
import types
import typing

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udasa_ray.cli import main
from udasa_ray.config import Config, ConfigError, load_config
from udasa_ray.ingest.read import IngestError, ingest

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _lines(data: bytes) -> int:
    return sum(1 for line in data.decode("utf-8", "surrogateescape").splitlines() if line.strip())


@SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_as_jsonl_are_prompts_or_rejects(tmp_path, data):
    f = tmp_path / "in.jsonl"
    f.write_bytes(data)
    try:
        prompts, rejects = ingest(str(f), 200)
    except IngestError as e:  # a clear error naming the file, never another exception
        assert str(f) in str(e)
        return
    assert len(prompts) + len(rejects) == _lines(data)
    assert all(r["reason"] and r["position"].startswith("line ") for r in rejects)
    json.dumps(rejects).encode("utf-8")  # every reject can be written out as it is
    assert all(0 < len(p["prompt"]) <= 200 for p in prompts) and len({p["prompt_id"] for p in prompts}) == len(prompts)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=8)
ALPACA = st.fixed_dictionaries({}, optional={"instruction": JSON | st.text(max_size=60), "input": JSON | st.text(),
                                             "output": JSON | st.text()})


@SETTINGS
@given(st.lists(ALPACA | JSON, max_size=12))
def test_any_json_records_are_prompts_or_rejects(tmp_path, records):
    f = tmp_path / "in.json"
    f.write_text(json.dumps(records))
    prompts, rejects = ingest(str(f), 50)
    assert len(prompts) + len(rejects) == len(records)
    assert {p["position"] for p in prompts}.isdisjoint(r["position"] for r in rejects)
    assert all(0 < len(p["prompt"]) <= 50 for p in prompts)


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _leaves(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp))
    return out


LEAVES = _leaves(Config)
WORD = st.text(string.ascii_letters, min_size=1, max_size=8)


def _wrong(tp: typing.Any) -> st.SearchStrategy:
    """Values of the wrong type for `tp` (None aside: optional fields accept it)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp
    origin = typing.get_origin(base)
    if origin is typing.Literal:
        return WORD.filter(lambda w: w not in typing.get_args(base)) | st.integers()
    if origin is list:
        return WORD | st.integers()
    if origin is dict:
        return st.lists(st.integers(), min_size=1, max_size=2) | WORD
    if base is bool:
        return WORD | st.integers() | st.lists(st.booleans(), max_size=2)
    if base is int:
        return WORD | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()) | \
            st.booleans()
    if base is float:
        return WORD.filter(lambda w: w.lower() not in ("nan", "inf", "infinity")) | st.booleans() | \
            st.sampled_from(["nan", "inf", "-inf"]) | st.lists(st.integers(), min_size=1, max_size=2)
    if base is str:
        return st.integers() | st.booleans() | st.lists(WORD, min_size=1, max_size=2)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # str | float and the like: a list is wrong for all
        return st.lists(st.integers(), min_size=1, max_size=2).map(lambda v: [v])
    raise AssertionError(f"no wrong values for {tp}")


@SETTINGS
@given(st.sampled_from(LEAVES).flatmap(lambda leaf: st.tuples(st.just(leaf[0]), _wrong(leaf[1]))))
def test_any_ill_typed_override_exits_2_naming_the_key(tmp_path, case):
    key, value = case
    override = f"{key}={json.dumps(value)}"
    try:
        load_config(None, [override])
    except ConfigError as e:
        assert str(e).startswith(key), (override, str(e))
    else:
        raise AssertionError(f"{override} was accepted")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["ingest", "--run-dir", str(tmp_path / "never"), override]) == 2
    assert f"config error: {key}" in err.getvalue() and not (tmp_path / "never").exists()


SCORED = st.lists(st.fixed_dictionaries({
    "prompt_id": st.sampled_from(["a", "b", "é", "a b", "B"]), "response": st.sampled_from(["", " ", "yes", "no"]),
    "error": st.sampled_from([None, "", "timeout"]), "U": st.none() | st.floats(0, 1) | st.just(float("nan"))}),
    max_size=30)


@SETTINGS
@given(SCORED, st.integers(0, 3))
def test_any_scored_responses_pair_lowest_U_against_another_valid_one(rows, seed):
    from udasa_ray.pairs.build import build_pairs
    from udasa_ray.score.step import SCORE_SCHEMA

    seen: dict[str, int] = {}
    for r in rows:  # samples numbered per prompt, in the order they come
        seen[r["prompt_id"]] = seen.get(r["prompt_id"], -1) + 1
        r.update(sample_idx=seen[r["prompt_id"]], prompt=f"q {r['prompt_id']}", u_sem=0.5, u_fact=None, u_val=0.1)
    pairs, stats = build_pairs(pa.Table.from_pylist(rows, schema=SCORE_SCHEMA), seed)
    valid: dict[str, dict[int, dict]] = {}
    for r in rows:
        if not r["error"] and r["response"].strip() and r["U"] is not None and math.isfinite(r["U"]):
            valid.setdefault(r["prompt_id"], {})[r["sample_idx"]] = r
    paired = sorted(pid for pid, v in valid.items() if len(v) >= 2)
    assert stats == {"groups": len(seen), "pairs": len(paired), "groups_without_pair": len(seen) - len(paired)}
    assert pairs["prompt_id"].to_pylist() == paired
    for p in pairs.to_pylist():
        v = valid[p["prompt_id"]]
        chosen, rejected = v[p["chosen_idx"]], v[p["rejected_idx"]]  # both valid
        assert p["chosen_idx"] != p["rejected_idx"] and p["n_valid"] == len(v)
        assert p["U_chosen"] == chosen["U"] == min(r["U"] for r in v.values())
        assert p["delta_u"] == rejected["U"] - chosen["U"] and (p["chosen"], p["rejected"]) == (
            chosen["response"], rejected["response"])
    # The same pairs whatever order the score step's parts hold the rows in.
    assert build_pairs(pa.Table.from_pylist(rows[::-1], schema=SCORE_SCHEMA), seed)[0].equals(pairs)
