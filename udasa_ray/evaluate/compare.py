"""`udasa compare`: evaluated runs side by side, laid out like the paper's tables, with 95%
bootstrap intervals, paired differences against the first run, bar plots and a CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from udasa_ray.evaluate.metrics import bootstrap_ci
from udasa_ray.evaluate.registry import METRICS, NAMES, lower_is_better, sections


def eval_dir(path: str | Path) -> Path:
    """An evaluation directory, given itself or the run directory that holds it in eval/."""
    p = Path(path)
    for d in (p, p / "eval"):
        if (d / "summary.json").exists() and (d / "metrics.parquet").exists():
            return d
    raise FileNotFoundError(f"{p}: no evaluation found (run `udasa eval --model {p}` first)")


def _fmt(metric: str, mean: float, lo: float, hi: float, signed: bool = False) -> str:
    s = METRICS[metric].scale
    d = 2 if s == 1 else 1
    if not np.isfinite(mean):
        return "—"
    return f"{mean * s:{'+' if signed else ''}.{d}f} [{lo * s:.{d}f}, {hi * s:.{d}f}]"


def _per_item(d: Path) -> dict[str, dict[str, float]]:
    """metric -> item -> mean over that item's samples (finite judgements only)."""
    t = pq.read_table(d / "metrics.parquet").to_pylist()
    acc: dict[str, dict[str, list[float]]] = {}
    for r in t:
        if r["value"] is not None and np.isfinite(r["value"]):
            acc.setdefault(r["metric"], {}).setdefault(r["item_id"], []).append(r["value"])
    return {m: {i: float(np.mean(v)) for i, v in items.items()} for m, items in acc.items()}


def compare(paths: list[str], out: str | Path, n_boot: int = 2000, seed: int = 0) -> Path:
    """Write compare.md, compare.csv and compare.png in `out`; return the Markdown file's path."""
    from udasa_ray.report.plots import pyplot, save

    plt = pyplot()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [eval_dir(p) for p in paths]
    summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
    labels = [s["label"] for s in summaries]
    items = [_per_item(d) for d in dirs]
    present = [m for m in NAMES if any(m in s["metrics"] for s in summaries)]
    lines = ["# Method comparison", "",
             f"Mean over prompts with a 95% bootstrap interval over prompts ({n_boot} resamples); judges: "
             + "; ".join(f"{s['label']}: {s['judge']}" for s in summaries) + ".", ""]
    for title, metrics in sections():
        metrics = [m for m in metrics if m in present]
        if not metrics:
            continue
        lines += [f"## {title}", "", "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for s in summaries:
            cells = [_fmt(m, **{k: s["metrics"][m][k] for k in ("mean", "lo", "hi")}) if m in s["metrics"] else "—"
                     for m in metrics]
            lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
        lines.append("")
    csv = ["label,metric,mean,lo,hi,prompts,failed"]
    csv += [f"{s['label']},{m},{v['mean']},{v['lo']},{v['hi']},{v['prompts']},{v['failed']}"
            for s in summaries for m, v in s["metrics"].items()]
    if len(dirs) > 1:
        lines += [f"## Paired difference against {labels[0]}", "",
                  "Per prompt, (method − first) over the prompts both answered, with a 95% bootstrap interval; an "
                  "interval that excludes 0 is a difference these prompts can show. " +
                  ", ".join(f"Lower is better for {m}" for m in lower_is_better() if m in present) + ".", "",
                  "| method | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
        for label, it in zip(labels[1:], items[1:], strict=True):
            cells = []
            for m in present:
                common = sorted(set(it.get(m, {})) & set(items[0].get(m, {})))
                diff = [it[m][i] - items[0][m][i] for i in common]
                mean, lo, hi, _ = bootstrap_ci(diff, common, n_boot, seed)
                cells.append(_fmt(m, mean, lo, hi, signed=True))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    fig, axes = plt.subplots(1, len(present), figsize=(2.2 * len(present) + 1, 3.2), squeeze=False)
    for ax, m in zip(axes[0], present, strict=True):
        s = METRICS[m].scale
        means = np.array([x["metrics"].get(m, {}).get("mean", np.nan) for x in summaries]) * s
        ci = [x["metrics"].get(m, {"mean": np.nan, "lo": np.nan, "hi": np.nan}) for x in summaries]
        err = np.array([[c["mean"] - c["lo"], c["hi"] - c["mean"]] for c in ci]).T * s
        ax.bar(range(len(labels)), means, yerr=err, capsize=3, color=[f"C{i}" for i in range(len(labels))])
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(m + (" (1–10)" if s == 1 else " (%)"), fontsize=9)
    save(fig, out / "compare.png")
    lines += ["![comparison](compare.png)", ""]
    (out / "compare.csv").write_text("\n".join(csv) + "\n")
    (out / "compare.md").write_text("\n".join(lines))
    return out / "compare.md"
