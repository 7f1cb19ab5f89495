"""The ingest step: a source of prompts -> prompts.parquet, heldout.parquet and rejects.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.ingest.read import PROMPT_COLUMNS, IngestError, ingest, split_heldout
from udasa_ray.runs import RunDir, Step

# Its hash covers the source (a file by path, size and time), not the data section as a whole: data.limit is
# read by generation.
INGEST = Step("ingest", outputs=("prompts.parquet", "heldout.parquet", "rejects.jsonl"))


def _source_fingerprint(source: str) -> str:
    p = Path(source).expanduser()
    if not p.is_file():
        return source
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def ingest_step(cfg: Config, run: RunDir, source: str | None = None, force: bool = False) -> dict:
    source = source or cfg.data.source
    data = cfg.data
    key = json.dumps([_source_fingerprint(source), data.max_prompt_chars, data.hf_split, data.heldout_prompts,
                      data.seed])

    def work(resume: bool) -> dict:
        prompts, rejects = ingest(source, data.max_prompt_chars, data.hf_split)
        with open(run / "rejects.jsonl", "w", encoding="utf-8") as f:
            for r in rejects:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        total = len(prompts) + len(rejects)
        print(f"[ingest] {source}: {total} records -> {len(prompts)} prompts, {len(rejects)} rejected"
              + (f" (reasons in {run / 'rejects.jsonl'})" if rejects else ""))
        if not prompts:
            raise IngestError(f"{source}: no valid record among {total}; see {run / 'rejects.jsonl'}")
        prompts, heldout = split_heldout(prompts, data.heldout_prompts, data.seed)
        pq.write_table(pa.Table.from_pylist(prompts).select(PROMPT_COLUMNS), run / "prompts.parquet")
        pq.write_table(pa.Table.from_pylist(heldout, schema=pa.schema([(c, pa.string()) for c in PROMPT_COLUMNS])),
                       run / "heldout.parquet")
        if heldout:
            print(f"[ingest] {len(heldout)} prompts held out for the base-vs-aligned check ({run / 'heldout.parquet'})")
        return {"source": source, "records": total, "prompts": len(prompts), "heldout": len(heldout),
                "rejected": len(rejects)}

    return run.run(INGEST, cfg, work, force, key=[key])
