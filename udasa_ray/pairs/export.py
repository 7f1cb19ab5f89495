"""`udasa export`: a run's preference pairs for other trainers (TRL, OpenRLHF, LLaMA-Factory).

One split per curriculum stage (`stage_1_conservative`, ...), each row in the preference layout they
read (`prompt`, `chosen`, `rejected`) with what UDASA knows of the pair: Δu, the stage and (UDASA
pairs) every uncertainty of both answers. Formats: `hf` (the Hugging Face Hub's dataset layout, data/<split>.parquet,
ready to push), `parquet` or `jsonl` (<split>.<ext>). Each comes with a dataset card (README.md) whose
YAML front matter lists the splits, so `datasets.load_dataset(<out>)` loads any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from udasa_ray.runs import RunDir

FORMATS = ("hf", "parquet", "jsonl")
COLUMNS = ["prompt", "chosen", "rejected", "delta_u", "stage", "stage_name", "U_chosen", "U_rejected",
           "u_sem_chosen", "u_sem_rejected", "u_fact_chosen", "u_fact_rejected", "u_val_chosen", "u_val_rejected",
           "prompt_id"]


def _card(run: RunDir, cfg: dict, stages: list[dict], files: dict[str, str], summary: dict) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        pretty_name=f"UDASA preference pairs from {run.path.name}", task_categories=["text-generation"],
        tags=["dpo", "preference", "udasa", "self-alignment", "curriculum"],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": p} for s, p in files.items()]}])
    sc, m = cfg["scoring"], cfg["models"]
    named = lambda s: f"`{s['backend']}`" + (f" `{s['model']}`" if s.get("model") else "")  # noqa: E731
    rows = "\n".join(f"| `{s['split']}` | {s['pairs']} | {s['delta_u'][0]:.3f} – {s['delta_u'][1]:.3f} |"
                     for s in stages)
    body = f"""# UDASA preference pairs ({run.path.name})

Preference pairs made without human labels by UDASA (Uncertainty-Driven Adaptive Self-Alignment) with
udasa-ray: the policy sampled {cfg['generation']['n']} answers per prompt; each answer
was scored on semantic, factual and value uncertainty, fused into U; the answer with the lowest U is
`chosen` against a random other (`rejected`), and Δu = U(rejected) − U(chosen) splits the pairs into
curriculum stages ({summary['method']} pairs, thresholds {summary['thresholds']} on the {summary['scale']}
Δu scale). Train the splits in order (conservative first) for the curriculum, or on their union.

| split | pairs | Δu range (raw) |
|---|---|---|
{rows}

- Source prompts: `{cfg['data']['source']}`; policy (and generator): `{m['generator'] or m['policy']}`.
- Scorers: semantic `{sc['semantic']['model']}`; factual {named(sc['factual'])} ({sc['factual']['mode']});
  value {named(sc['value'])}; uncertainties fused over {summary.get('dimensions', ['sem', 'fact', 'val'])}
  (UDASA pairs; RLAIF and RLCD pairs carry no per-answer uncertainties, and their Δu is the label's).
- Columns: `prompt`, `chosen`, `rejected` (plain text, the prompt without chat template), `delta_u`,
  `stage`, `stage_name`, `U_*` and `u_{{sem,fact,val}}_*` of both answers, `prompt_id`.

```python
from datasets import load_dataset
pairs = load_dataset("path/to/this/export")  # or its Hub name once pushed
# TRL: DPOTrainer(..., train_dataset=pairs["{stages[0]['split']}"]) reads prompt / chosen / rejected.
```

The run's configuration (pairs, curriculum, scoring, generation, models):

```json
{json.dumps({k: cfg[k] for k in ('pairs', 'curriculum', 'scoring', 'generation', 'models')}, indent=1)}
```
"""
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def export(run: RunDir, out: Path, fmt: str) -> Path:
    """Write the run's pairs, one split per curriculum stage, and a dataset card to `out`; returns `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    run.require("pairs", "pairs")
    summary = json.loads((run / "stages" / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    stages, files = [], {}
    for s in summary["stages"]:
        if not s["pairs"]:
            continue
        split = f"stage_{s['stage']}_{s['name']}"
        table = pq.read_table(run / "stages" / s["file"])
        table = table.select([c for c in COLUMNS if c in table.column_names])  # RLAIF/RLCD: no u columns
        path = f"data/{split}.parquet" if fmt == "hf" else f"{split}.{fmt}"
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            (out / path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.to_pylist()))
        else:
            pq.write_table(table, out / path)
        files[split] = path
        stages.append({**s, "split": split})
    (out / "README.md").write_text(_card(run, run.step("pairs")["config"], stages, files, summary))
    return out

