"""Prompt ingestion: Alpaca-style records in, prompt rows or rejects out, nothing lost.

Every input record ends as exactly one of: a row of prompts.parquet, or a line of
rejects.jsonl naming its position and the reason. A bad record never stops the run; a file
that cannot be read at all, or holds no valid record, raises IngestError with a clear message.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from udasa_ray.errors import UserError

PROMPT_COLUMNS = ["prompt_id", "prompt", "instruction", "input", "reference", "position"]


class IngestError(UserError):
    """The input cannot be used at all (unreadable, unknown format, or no valid record)."""


@dataclass
class Raw:
    """One input record before validation: where it was, and what was parsed (or why not)."""

    position: str
    record: Any = None
    error: str | None = None
    text: str = ""


def prompt_id(prompt: str) -> str:
    """A stable id from the prompt's content: the same prompt has the same id in every run."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _bad_utf8(s: str) -> bool:
    # Text is decoded with surrogateescape, so undecodable bytes survive as lone surrogates;
    # a JSON escape such as "\ud800" gives one too, and neither can be written out as UTF-8.
    return any("\ud800" <= ch <= "\udfff" for ch in s)


def to_prompt(record: Any, max_chars: int) -> dict[str, str] | str:
    """Validate one Alpaca record; return the prompt row or the reason it is rejected."""
    if not isinstance(record, dict):
        return f"record is a {type(record).__name__}, not an object with an 'instruction'"
    if record.get("instruction") is None:
        return "missing 'instruction'"
    fields = {}
    for key in ("instruction", "input", "output"):
        value = record.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            return f"'{key}' must be a string, got {type(value).__name__}"
        if _bad_utf8(value):
            return f"'{key}' has bytes that are not valid UTF-8"
        fields[key] = value
    instruction, inp = fields["instruction"].strip(), fields["input"].strip()
    if not instruction:
        return "empty 'instruction'"
    prompt = f"{instruction}\n\n{inp}" if inp else instruction
    if len(prompt) > max_chars:
        return f"prompt is {len(prompt)} characters, over data.max_prompt_chars={max_chars}"
    return {
        "prompt_id": prompt_id(prompt),
        "prompt": prompt,
        "instruction": instruction,
        "input": inp,
        "reference": fields["output"],
    }


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape")
    except OSError as e:
        raise IngestError(f"{path}: cannot read ({e.strerror or e})") from None


def _jsonl(text: str) -> Iterator[Raw]:
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        pos = f"line {n}"
        if _bad_utf8(line):
            yield Raw(pos, error="bytes that are not valid UTF-8", text=line)
            continue
        try:
            yield Raw(pos, json.loads(line), text=line)
        except json.JSONDecodeError as e:
            yield Raw(pos, error=f"malformed JSON ({e.msg} at column {e.colno})", text=line)


def _json_array(path: Path, text: str) -> Iterator[Raw]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise IngestError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                          "use .jsonl for one record a line") from None
    if isinstance(data, dict):  # some dumps wrap the list: {"data": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list):
        raise IngestError(f"{path}: expected a JSON array of records, got a {type(data).__name__}")
    for i, rec in enumerate(data):
        yield Raw(f"record {i}", rec, text=json.dumps(rec, ensure_ascii=False)[:500])


def _csv(path: Path, text: str) -> Iterator[Raw]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise IngestError(f"{path}: empty CSV, no header row")
    for i, row in enumerate(reader, start=1):
        if None in row:  # more cells than header columns
            yield Raw(f"row {i} (line {reader.line_num})", error="more cells than header columns",
                      text=json.dumps(row, default=str)[:500])
            continue
        yield Raw(f"row {i} (line {reader.line_num})", row, text=json.dumps(row, ensure_ascii=False)[:500])


def _parquet(path: Path) -> Iterator[Raw]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise IngestError(f"{path}: not a readable Parquet file ({e})") from None
    for i, rec in enumerate(rows):
        yield Raw(f"record {i}", rec, text=json.dumps(rec, default=str, ensure_ascii=False)[:500])


def _hf(name: str, split: str) -> Iterator[Raw]:
    """`name` is DATASET, DATASET:CONFIG or DATASET#DATA_DIR (e.g. Anthropic/hh-rlhf#harmless-base)."""
    name, _, data_dir = name.partition("#")
    name, _, config = name.partition(":")
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, data_dir=data_dir or None, split=split)
    except Exception as e:  # offline, unknown name, ...: one clear message
        raise IngestError(f"hf:{name}: cannot load the dataset ({type(e).__name__}: {e})") from None
    for i, rec in enumerate(ds):
        yield Raw(f"record {i}", rec, text=json.dumps(rec, default=str)[:500])


BUNDLED_PROMPTS = "bundled:prompts"


def read_records(source: str, hf_split: str = "train") -> Iterator[Raw]:
    """Yield every record of a source, parsed or with the reason it could not be parsed."""
    if source.startswith("bundled:"):  # a JSONL file shipped in udasa_ray/data/
        f = resources.files("udasa_ray.data").joinpath(source.removeprefix("bundled:") + ".jsonl")
        if not f.is_file():
            raise IngestError(f"{source}: no such bundled data set")
        yield from _jsonl(f.read_text("utf-8"))
        return
    if source.startswith("hf:"):
        yield from _hf(source.removeprefix("hf:"), hf_split)
        return
    path = Path(source).expanduser()
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(_read_text(path))
    elif suffix == ".json":
        yield from _json_array(path, _read_text(path))
    elif suffix == ".csv":
        yield from _csv(path, _read_text(path))
    elif suffix in (".parquet", ".pq"):
        yield from _parquet(path)
    else:
        raise IngestError(f"{path}: unknown format '{suffix}' (use .json, .jsonl, .csv or .parquet)")


def ingest(source: str, max_chars: int, hf_split: str = "train") -> tuple[list[dict], list[dict]]:
    """Split a source's records into prompt rows and rejects; their counts add up to the input."""
    prompts: list[dict] = []
    rejects: list[dict] = []
    seen: dict[str, str] = {}
    for raw in read_records(source, hf_split):
        reason = raw.error
        if reason is None:
            row = to_prompt(raw.record, max_chars)
            if isinstance(row, str):
                reason = row
            elif row["prompt_id"] in seen:
                reason = f"duplicate of the prompt at {seen[row['prompt_id']]}"
            else:
                seen[row["prompt_id"]] = raw.position
                prompts.append({**row, "position": raw.position})
                continue
        # Show undecodable bytes as \xNN escapes: the original bytes, written as valid UTF-8.
        try:
            text = raw.text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that did not come from a byte
            text = raw.text.encode("utf-8", "backslashreplace").decode("utf-8")
        rejects.append({"source": source, "position": raw.position, "reason": reason, "raw": text[:500]})
    return prompts, rejects


def split_heldout(prompts: list[dict], k: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Set `k` prompts aside for the held-out check: a seeded draw by hash, stable whatever the
    input order, keeping the input order within each part."""
    if k >= len(prompts) > 0:
        raise IngestError(f"data.heldout_prompts={k} leaves no prompt to train on ({len(prompts)} valid)")
    rank = sorted(prompts, key=lambda p: hashlib.sha256(f"{seed}:{p['prompt_id']}".encode()).hexdigest())
    held = {p["prompt_id"] for p in rank[:k]}
    return [p for p in prompts if p["prompt_id"] not in held], [p for p in prompts if p["prompt_id"] in held]
