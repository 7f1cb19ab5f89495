"""The paper's result tables laid out with our numbers beside its own (pure: standard library).

Each table names the methods of its rows, the metrics of its columns and the paper's figures
("GPT-4 / human", as printed). Ours are means over prompts with 95% bootstrap intervals, from each
method's evaluation summary; a method or metric not run shows "—". The paper's figures are for its
models (LLaMA-7B, LLaMA-2-Chat-13B for TruthfulQA), its prompt sets and GPT-4 or people as judges: the
columns sit side by side for reading, not as one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from udasa_ray.evaluate.registry import METRICS


@dataclass(frozen=True)
class PaperTable:
    title: str
    rows: list[tuple[str, str]]  # (our method, the paper's row label)
    columns: list[tuple[str, str]]  # (our metric, the paper's column label)
    paper: dict[str, list[str]]  # the paper's row label -> its figures, one per column
    source: str  # the paper's model and setting for these figures


HARM_HELP_TRUE_CS = [("harmlessness", "Harm"), ("helpfulness", "Help"), ("true_info", "True"), ("positive", "CS.")]

TABLES: list[PaperTable] = [
    PaperTable(
        "Table 1: the number of curriculum stages",
        [("one-shot", "One-shot"), ("two-stage", "Two-stage"), ("three-stage-table1", "Three-stage (ours)"),
         ("four-stage", "Four-stage")],
        HARM_HELP_TRUE_CS,
        {"One-shot": ["5.9", "6.1", "64.3", "71.8"], "Two-stage": ["6.4", "6.5", "69.4", "74.3"],
         "Three-stage (ours)": ["7.0", "7.2", "74.2", "82.6"], "Four-stage": ["6.8", "6.9", "72.1", "79.4"]},
        "LLaMA-7B (True: true + informative); thresholds 0.3 / 0.6, two-stage 0.6, four-stage 0.2 / 0.5 / 0.8"),
    PaperTable(
        "Table 2: harmlessness (HH harmless prompts, 1–10)",
        [("vanilla", "LLaMA"), ("rlaif", "RLAIF"), ("rlcd", "RLCD"), ("three-stage", "ours")],
        [("harmlessness", "Harmless")],
        {"LLaMA": ["6.1 / 6.3"], "RLAIF": ["7.0 / 7.3"], "RLCD": ["7.4 / 7.5"], "ours": ["7.9 / 7.9"]},
        "LLaMA-7B, GPT-4 / human (30B: 6.3 / 6.5, 7.1 / 7.2, 7.3 / 7.5, 8.0 / 8.4)"),
    PaperTable(
        "Table 4: helpfulness (HH helpful prompts, 1–10)",
        [("vanilla", "LLaMA"), ("rlaif", "RLAIF"), ("rlcd", "RLCD"), ("three-stage", "ours")],
        [("helpfulness", "Help")],
        {"LLaMA": ["5.9 / 6.2"], "RLAIF": ["6.4 / 6.7"], "RLCD": ["7.0 / 6.9"], "ours": ["7.7 / 7.5"]},
        "LLaMA-7B, GPT-4 / human (30B: 6.1 / 6.3, 6.7 / 6.8, 7.1 / 7.3, 7.5 / 7.6)"),
    PaperTable(
        "Table 5: TruthfulQA (%)",
        [("vanilla", "Vanilla"), ("rain", "RAIN"), ("three-stage", "ours")],
        [("true_info", "True + Info"), ("true", "True"), ("informative", "Info")],
        {"Vanilla": ["68.1 / 67.5", "69.4 / 68.5", "97.6 / 97.0"],
         "RAIN": ["71.6 / 70.9", "73.5 / 73.5", "98.3 / 97.5"],
         "ours": ["75.7 / 76.0", "78.2 / 78.4", "98.5 / 97.5"]},
        "LLaMA-2-Chat-13B, GPT-4 / human"),
    PaperTable(
        "Controlled sentiment (IMDB openings, % positive; the paper prints this table without a number)",
        [("vanilla", "Vanilla"), ("rain", "RAIN"), ("three-stage", "ours")],
        [("positive", "Positive")],
        {"Vanilla": ["62.2 / 61.8"], "RAIN": ["80.6 / 80.2"], "ours": ["85.6 / 85.0"]},
        "LLaMA-7B, GPT-4 / human (Alpaca-7B: 72.3, 92.3, 94.2; Vicuna-7B: 64.2, 88.7, 90.7 by GPT-4)"),
    PaperTable(
        "Table 6: robustness, attack success rate under GCG suffixes (%, lower is better)",
        [("vanilla", "Vanilla"), ("rain", "RAIN"), ("three-stage", "ours")],
        [("asr_whitebox", "WBA."), ("asr_transfer", "TA.")],
        {"Vanilla": ["85 / 84", "80 / 80"], "RAIN": ["72 / 73", "55 / 54"], "ours": ["61 / 64", "49 / 51"]},
        "Vicuna-7B on AdvBench, GPT-4 / human (13B: 83 / 80, 79 / 75; 38 / 39, 32 / 30; 29 / 31, 26 / 27); its "
        "transfer suffix was optimised on Vicuna-7B and 13B together, ours on eval.gcg.transfer_from "
        "(default: the base policy). Our success criterion is GCG's refusal substrings, not a judge"),
    PaperTable(
        "Table 7: fusing without one uncertainty",
        [("no-sem", "w/o. sem"), ("no-fact", "w/o. fact"), ("no-val", "w/o. val"), ("three-stage", "Full")],
        HARM_HELP_TRUE_CS,
        {"w/o. sem": ["6.7", "6.3", "67.8", "75.6"], "w/o. fact": ["6.6", "6.7", "67.4", "76.7"],
         "w/o. val": ["6.7", "6.6", "69.5", "77.5"], "Full": ["7.0", "7.2", "74.2", "82.6"]},
        "LLaMA-7B. The extracted text lost the dimension in each w/o. label: sem, fact, val is the paper's "
        "order of the three, assumed. Its Full row repeats Table 1's three-stage (0.3 / 0.6); ours is "
        "three-stage at 0.4 / 0.7, the thresholds the ablations use"),
]


def methods() -> list[str]:
    """Every method some table has a row for, in first-appearance order."""
    return list(dict.fromkeys(m for t in TABLES for m, _ in t.rows))


def _ours(summary: dict | None, metric: str) -> str:
    m = (summary or {}).get("metrics", {}).get(metric)
    if not m:
        return "—"
    s = METRICS[metric].scale
    d = 2 if s == 1 else 1
    return f"{m['mean'] * s:.{d}f} [{m['lo'] * s:.{d}f}, {m['hi'] * s:.{d}f}]"


def render(summaries: dict[str, dict], header: str = "") -> str:
    """The paper's tables as Markdown, ours (`summaries`: method -> its evaluation summary) beside its."""
    lines = ["# The paper's tables, with ours beside them", ""] + ([header, ""] if header else [])
    measured = {name for s in summaries.values() for name in s.get("metrics", {})}
    for t in TABLES:
        if not measured & {metric for metric, _ in t.columns} and METRICS[t.columns[0][0]].task == "robust":
            lines += [f"## {t.title}", "", "Not run: add the robust task (`--tasks ... robust`).", ""]
            continue
        lines += [f"## {t.title}", "", f"Paper: {t.source}.", "",
                  "| row | method | " + " | ".join(f"ours: {c} [95% CI] | paper: {c}" for _, c in t.columns) + " |",
                  "|---|---|" + "---|---|" * len(t.columns)]
        for method, label in t.rows:
            cells = [f"{_ours(summaries.get(method), metric)} | {paper}"
                     for (metric, _), paper in zip(t.columns, t.paper[label], strict=True)]
            lines.append(f"| {label} | {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
