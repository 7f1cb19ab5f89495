"""Parquet part files: a step writes each finished batch atomically, so a kill loses no batch.

A part that cannot be read (truncated by a full disk, or by a crash before its data reached the
disk) is never read as data: `read_parts` names it, and `RunDir.run` sets it aside so the
step's rerun makes its rows again."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.errors import StepFailed


class CorruptPart(StepFailed):
    """A part file that Parquet cannot read."""


def write_part(table: pa.Table, out_dir: Path) -> None:
    name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
    tmp = out_dir / f".{name}"
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:  # on disk before it is visible under its name
        os.fsync(f.fileno())
    tmp.rename(out_dir / name)


def unreadable_parts(out_dir: Path) -> list[tuple[Path, str]]:
    """The parts whose Parquet footer cannot be read, with the reason."""
    bad = []
    for p in sorted(out_dir.glob("part-*.parquet")) if out_dir.is_dir() else []:
        try:
            pq.read_metadata(p)
        except (pa.ArrowException, OSError) as e:
            bad.append((p, str(e)[:200]))
    return bad


def read_parts(out_dir: Path, schema: pa.Schema) -> pa.Table:
    parts = sorted(out_dir.glob("part-*.parquet")) if out_dir.is_dir() else []
    if not parts:
        return schema.empty_table()
    tables = []
    for p in parts:
        try:
            tables.append(pq.read_table(p, schema=schema))
        except (pa.ArrowException, OSError) as e:
            raise CorruptPart(f"{p} cannot be read ({str(e)[:200]}); rerun the step that wrote it: it sets the "
                              "file aside and makes its rows again") from None
    return pa.concat_tables(tables)
