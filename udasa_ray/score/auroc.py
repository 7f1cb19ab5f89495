"""`udasa validate-scorers`: how well each scorer separates bad responses from good ones.

The labelled set (data/scorer_validation.jsonl, written for this project) holds items of four
kinds: semantic (disagrees with the other samples), factual (a false fact), value (unsafe) and
topic (off-topic), each with four good "other" samples of the same prompt and a label (1 = bad).
Every scorer is run on every item; the table gives AUROC (0.5 = chance) per kind of badness.
The scorers are the score step's own classes (udasa_ray.score.scorers), each item scored as
a prompt group of its response and the four others, so the table measures what `udasa score` computes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from udasa_ray.config import Config, ScoringConfig
from udasa_ray.errors import StepFailed
from udasa_ray.score.fusion import fuse
from udasa_ray.score.scorers import FactualScorer, GroupScorer, SemanticScorer, ValueScorer

KINDS = ("semantic", "factual", "value", "topic")


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """P(score of a random bad item > score of a random good one), ties counted half."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def load_items(path: str | None = None) -> list[dict]:
    text = (Path(path).read_text("utf-8") if path else
            resources.files("udasa_ray.data").joinpath("scorer_validation.jsonl").read_text("utf-8"))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _group(item: dict) -> dict:
    """An item as the prompt group the score step sees: its response first, then the four others."""
    return {"prompt_id": item["id"], "prompt": item["prompt"], "response": [item["response"], *item["others"]]}


def _first_response(scorer: GroupScorer, batch_size: int) -> Callable[[list[dict]], np.ndarray]:
    """u of each item's response, from `scorer` on the items' groups in batches of `batch_size` groups,
    as the score step runs it; only the response is asked for (the others are its context)."""

    def run(items: list[dict]) -> np.ndarray:
        u: list[float] = []
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            scores, errors = scorer.score_groups([_group(it) for it in chunk], targets=(0,))
            for it, s, e in zip(chunk, scores, errors, strict=True):
                if e[0]:
                    raise StepFailed(f"validation item {it['id']}: {e[0]}")
                u.append(s[0])
        return np.asarray(u, dtype=np.float64)

    return run


def _name(dim: str, backend: str, model: str | None = None, mode: str | None = None) -> str:
    named = backend in ("hf_nli", "hf_classifier")
    return " / ".join(x for x in (dim, f"{backend} {model}" if named else backend, mode) if x)


def scorers(cfg: Config) -> dict[str, Callable[[list[dict]], np.ndarray]]:
    """Every scorer that runs here: the offline backends, plus those the config names. Each is the
    score step's own scorer class, on the configured scoring section with one backend swapped in;
    models are loaded once and shared between the rows."""
    configured, models, shared = cfg.scoring, cfg.models, {}

    def row(cls: type[GroupScorer], scoring: ScoringConfig) -> Callable[[list[dict]], np.ndarray]:
        return _first_response(cls(scoring, models, shared, cfg.generation.prompt_template), configured.batch_size)

    def factual(backend: str, mode: str) -> ScoringConfig:
        # the configured model for the configured backend; else aegis_onnx's bundled one
        model = configured.factual.model if backend == configured.factual.backend else "bundled:aegis-nli"
        return replace(configured, factual=replace(configured.factual, backend=backend, mode=mode, model=model))

    out = {_name("semantic", configured.semantic.model): row(SemanticScorer, configured)}
    nli = ["aegis_onnx", "policy_judge", *(["hf_nli"] if configured.factual.backend == "hf_nli" else [])]
    for mode in ("paper", "cross_response"):
        for backend in nli:
            f = factual(backend, mode)
            out[_name("factual", backend, f.factual.model, mode)] = row(FactualScorer, f)
    for backend in ("profanity", "policy_judge"):
        value = replace(configured, value=replace(configured.value, backend=backend))
        out[_name("value", backend)] = row(ValueScorer, value)
    if configured.value.backend in ("hf_classifier", "moderation_http"):
        out[_name("value", configured.value.backend, configured.value.model)] = row(ValueScorer, configured)
    return out


def validate(cfg: Config, items: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """AUROC of each scorer (rows) on each kind of badness and on all items (columns)."""
    runs = scorers(cfg)
    scores = {name: fn(items) for name, fn in runs.items()}
    # The fused U with the configured backends, as the pipeline computes it.
    scoring = cfg.scoring
    fact, value = scoring.factual, scoring.value
    picked = [_name("semantic", scoring.semantic.model), _name("factual", fact.backend, fact.model, fact.mode),
              _name("value", value.backend, value.model)]
    u = np.stack([scores[name] for name in picked], axis=1)
    fused_name = f"fused U ({scoring.factual.backend} {scoring.factual.mode}, {scoring.value.backend})"
    scores[fused_name] = fuse(u, scoring.fusion_temperature, scoring.fusion_weights)
    columns = [*KINDS, "all"]
    table = {}
    for name, sc in scores.items():
        row = {}
        for kind in columns:
            idx = [i for i, it in enumerate(items) if kind == "all" or it["dimension"] == kind]
            row[kind] = auroc(sc[idx], [items[i]["label"] for i in idx])
        table[name] = row
    return columns, table


def markdown(columns: list[str], table: dict[str, dict[str, float]], n_items: int) -> str:
    lines = [f"AUROC of each scorer's u for a bad response ({n_items} labelled items; 0.5 = chance)", "",
             "| scorer | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    return "\n".join(lines)


def run_validation(cfg: Config, data: str | None = None) -> str:
    items = load_items(data)
    columns, table = validate(cfg, items)
    return markdown(columns, table, len(items))
