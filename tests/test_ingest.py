import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udasa_ray.cli import main
from udasa_ray.ingest.read import IngestError, ingest, prompt_id, read_records, split_heldout, to_prompt

GOOD = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well."},
    {"instruction": "Translate to French.", "input": "Good morning", "output": ""},
    {"instruction": "Name a prime number.", "output": "7"},
]


def _mixed_jsonl(path):
    """Valid records interleaved with one of each broken kind; returns the expected rejects by line."""
    lines = [json.dumps(GOOD[0]).encode()]                                     # 1 ok
    lines.append(b'{"instruction": "unterminated')                             # 2 malformed JSON
    lines.append('{"instruction": "caf\u00e9 \xff"}'.encode("latin-1"))        # 3 not UTF-8
    lines.append(json.dumps(GOOD[1]).encode())                                 # 4 ok
    lines.append(json.dumps({"input": "x", "output": "y"}).encode())           # 5 missing instruction
    lines.append(json.dumps({"instruction": "   ", "input": ""}).encode())     # 6 empty instruction
    lines.append(json.dumps({"instruction": 42}).encode())                     # 7 wrong type
    lines.append(json.dumps({"instruction": "ok", "input": ["a"]}).encode())   # 8 wrong type (input)
    lines.append(json.dumps({"instruction": "x" * 300}).encode())              # 9 too long
    lines.append(json.dumps(GOOD[2]).encode())                                 # 10 ok
    lines.append(json.dumps(GOOD[0]).encode())                                 # 11 duplicate of line 1
    lines.append(b"[1, 2, 3]")                                                 # 12 not an object
    lines.append(b'{"instruction": "lone \\ud800 surrogate"}')                 # 13 not valid UTF-8
    path.write_bytes(b"\n".join(lines) + b"\n")
    return {
        "line 2": "malformed JSON", "line 3": "not valid UTF-8", "line 5": "missing 'instruction'",
        "line 6": "empty 'instruction'", "line 7": "'instruction' must be a string, got int",
        "line 8": "'input' must be a string, got list", "line 9": "over data.max_prompt_chars=200",
        "line 11": "duplicate of the prompt at line 1", "line 12": "not an object",
        "line 13": "not valid UTF-8",
    }


def test_mixed_file_every_record_accounted_for(tmp_path):
    path = tmp_path / "mixed.jsonl"
    expected = _mixed_jsonl(path)
    prompts, rejects = ingest(str(path), max_chars=200)
    assert [p["position"] for p in prompts] == ["line 1", "line 4", "line 10"]
    assert {r["position"]: r["reason"] for r in rejects}.keys() == expected.keys()
    for r in rejects:
        assert expected[r["position"]] in r["reason"], r
    assert len(prompts) + len(rejects) == 13


def test_prompt_is_instruction_plus_input():
    row = to_prompt(GOOD[1], 1000)
    assert row["prompt"] == "Translate to French.\n\nGood morning"
    assert to_prompt(GOOD[0], 1000)["prompt"] == GOOD[0]["instruction"]
    assert row["prompt_id"] == prompt_id(row["prompt"]) == to_prompt(dict(GOOD[1]), 1000)["prompt_id"]
    assert to_prompt({"instruction": "a", "input": None}, 10)["prompt"] == "a"


def test_json_array_csv_parquet_agree(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(GOOD))
    (tmp_path / "a.csv").write_text(
        "instruction,input,output\n"
        + "\n".join(f'"{g["instruction"]}","{g.get("input", "")}","{g["output"]}"' for g in GOOD)
    )
    pq.write_table(pa.Table.from_pylist([{**g, "input": g.get("input", "")} for g in GOOD]), tmp_path / "a.parquet")
    ids = [sorted(p["prompt_id"] for p in ingest(str(tmp_path / f"a.{ext}"), 1000)[0])
           for ext in ("json", "csv", "parquet")]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 3


def test_json_array_bad_utf8_and_types_rejected_per_record(tmp_path):
    data = b'[{"instruction": "fine"}, {"instruction": "bad \xfe byte"}, {"instruction": null}, "text"]'
    (tmp_path / "a.json").write_bytes(data)
    prompts, rejects = ingest(str(tmp_path / "a.json"), 1000)
    assert [p["prompt"] for p in prompts] == ["fine"]
    assert [(r["position"], r["reason"]) for r in rejects] == [
        ("record 1", "'instruction' has bytes that are not valid UTF-8"),
        ("record 2", "missing 'instruction'"),
        ("record 3", "record is a str, not an object with an 'instruction'"),
    ]


def test_csv_extra_cells_and_parquet_wrong_types(tmp_path):
    (tmp_path / "a.csv").write_text('instruction,input\nok,\n"two",x,extra\n')
    prompts, rejects = ingest(str(tmp_path / "a.csv"), 1000)
    assert len(prompts) == 1 and rejects[0]["reason"] == "more cells than header columns"
    pq.write_table(pa.table({"instruction": ["a", "b"], "input": [1, 2]}), tmp_path / "b.parquet")
    prompts, rejects = ingest(str(tmp_path / "b.parquet"), 1000)
    assert not prompts and all("'input' must be a string, got int" == r["reason"] for r in rejects)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.jsonl", None, "no such file"),
        ("broken.json", b"[{]", "not valid JSON"),
        ("notalist.json", b'"hello"', "expected a JSON array"),
        ("data.xlsx", b"xx", "unknown format"),
        ("bad.parquet", b"not parquet", "not a readable Parquet file"),
        ("empty.csv", b"", "empty CSV"),
    ],
)
def test_unreadable_files_raise(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IngestError, match=message):
        ingest(str(path), 1000)


def test_bundled_prompt_set():
    prompts, rejects = ingest("bundled:prompts", 2000)
    assert len(prompts) >= 64 and not rejects
    text = " ".join(p["prompt"].lower() for p in prompts)
    for needle in ("bomb", "capital of", "rewrite", "explain", "how can i"):
        assert needle in text


def test_cli_ingest_writes_prompts_and_rejects(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    expected = _mixed_jsonl(path)
    run = tmp_path / "run"
    assert main(["ingest", str(path), "--run-dir", str(run), "data.max_prompt_chars=200"]) == 0
    out = capsys.readouterr().out
    assert "13 records -> 3 prompts, 10 rejected" in out
    assert pq.read_table(run / "prompts.parquet").num_rows == 3
    rejects = [json.loads(line) for line in (run / "rejects.jsonl").read_text().splitlines()]
    assert {r["position"] for r in rejects} == expected.keys()
    assert "\\xff" in next(r["raw"] for r in rejects if r["position"] == "line 3")
    # Same input, same config: skipped; --force redoes it.
    assert main(["ingest", str(path), "--run-dir", str(run), "data.max_prompt_chars=200"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["ingest", str(path), "--run-dir", str(run), "--force", "data.max_prompt_chars=200"]) == 0
    assert "13 records" in capsys.readouterr().out


def test_cli_no_valid_record_fails_clearly(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": ""}\nnot json\n')
    assert main(["ingest", str(path), "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "no valid record among 2" in err
    assert len((tmp_path / "run" / "rejects.jsonl").read_text().splitlines()) == 2


def test_read_records_positions(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"instruction": "a"}\n\n{"instruction": "b"}\n')
    assert [r.position for r in read_records(str(path))] == ["line 1", "line 3"]


def test_hf_dataset_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IngestError, match="hf:no-such-org/no-such-set: cannot load the dataset"):
        ingest("hf:no-such-org/no-such-set", 1000)


def test_reingesting_other_prompts_invalidates_generation(tmp_path):
    from udasa_ray.config import load_config
    from udasa_ray.generate.step import GENERATE
    from udasa_ray.pipeline import run_pipeline
    from udasa_ray.runs import RunDir

    cfg, run = load_config(), RunDir(tmp_path / "run")
    (tmp_path / "a.jsonl").write_text('{"instruction": "a"}\n')
    (tmp_path / "b.jsonl").write_text('{"instruction": "b"}\n')
    run_pipeline(cfg, run, "ingest", source=str(tmp_path / "a.jsonl"))
    first = run.config_hash(GENERATE, cfg)
    run_pipeline(cfg, run, "ingest", source=str(tmp_path / "a.jsonl"), force=True)
    assert run.config_hash(GENERATE, cfg) == first
    run_pipeline(cfg, run, "ingest", source=str(tmp_path / "b.jsonl"))
    assert run.config_hash(GENERATE, cfg) != first


def test_heldout_split_is_disjoint_seeded_and_order_free(tmp_path):
    prompts, _ = ingest("bundled:prompts", 2000)
    train, held = split_heldout(prompts, 16, seed=0)
    assert len(held) == 16 and len(train) == len(prompts) - 16
    assert not {p["prompt_id"] for p in train} & {p["prompt_id"] for p in held}
    assert split_heldout(list(reversed(prompts)), 16, seed=0)[1] == list(reversed(held))
    assert {p["prompt_id"] for p in split_heldout(prompts, 16, seed=1)[1]} != {p["prompt_id"] for p in held}
    assert split_heldout(prompts, 0, 0) == (prompts, [])
    with pytest.raises(IngestError, match="leaves no prompt to train on"):
        split_heldout(prompts[:3], 3, 0)
    run = tmp_path / "run"
    assert main(["ingest", "--run-dir", str(run), "data.heldout_prompts=5"]) == 0
    assert pq.read_table(run / "heldout.parquet").num_rows == 5
    assert pq.read_table(run / "prompts.parquet").num_rows == len(prompts) - 5
