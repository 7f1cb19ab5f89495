"""Parquet part files: a step writes each finished batch atomically, so a kill loses no batch."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_part(table: pa.Table, out_dir: Path) -> None:
    name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
    pq.write_table(table, out_dir / f".{name}")
    (out_dir / f".{name}").rename(out_dir / name)


def read_parts(out_dir: Path, schema: pa.Schema) -> pa.Table:
    parts = sorted(out_dir.glob("part-*.parquet")) if out_dir.is_dir() else []
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=schema) for p in parts])
