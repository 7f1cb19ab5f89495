"""`udasa validate-scorers`: how well each scorer separates bad responses from good ones.

The labelled set (data/scorer_validation.jsonl, written for this project) holds items of four
kinds: semantic (disagrees with the other samples), factual (a false fact), value (unsafe) and
topic (off-topic), each with four good "other" samples of the same prompt and a label (1 = bad).
Every scorer is run on every item; the table gives AUROC (0.5 = chance) per kind of badness.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from udasa_ray.config import Config
from udasa_ray.uncertainty import backends
from udasa_ray.uncertainty.fusion import fuse
from udasa_ray.uncertainty.semantic import semantic_uncertainty

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


def _semantic(cfg: Config) -> Callable[[list[dict]], np.ndarray]:
    embed = backends.Embedder(cfg.scoring.semantic.model, cfg.models.cache_dir)
    return lambda items: np.array([semantic_uncertainty(embed([it["response"], *it["others"]]))[0][0] for it in items])


def _factual(nli: Callable, mode: str) -> Callable[[list[dict]], np.ndarray]:
    def run(items: list[dict]) -> np.ndarray:
        if mode == "paper":
            return np.asarray(nli([it["prompt"] for it in items], [it["response"] for it in items]))
        prem = [o for it in items for o in it["others"]]
        hyp = [it["response"] for it in items for _ in it["others"]]
        return np.asarray(nli(prem, hyp)).reshape(len(items), -1).mean(axis=1)

    return run


def _value(clf: Callable) -> Callable[[list[dict]], np.ndarray]:
    return lambda items: np.asarray(clf([it["response"] for it in items]))


def _name(dim: str, backend: str, model: str | None = None, mode: str | None = None) -> str:
    named = backend in ("hf_nli", "hf_classifier")
    return " / ".join(x for x in (dim, f"{backend} {model}" if named else backend, mode) if x)


def scorers(cfg: Config) -> dict[str, Callable[[list[dict]], np.ndarray]]:
    """Every scorer that runs here: the offline backends, plus those the config names."""
    s, m = cfg.scoring, cfg.models
    out = {_name("semantic", s.semantic.model): _semantic(cfg)}
    aegis = backends.AegisNLI("bundled:aegis-nli", m.cache_dir, s.factual.threads)
    judge = backends.PolicyJudge(m.policy, m.cache_dir)
    hf_nli = backends.HFNLI(s.factual.model, m.cache_dir) if s.factual.backend == "hf_nli" else None
    for mode in ("paper", "cross_response"):
        out[_name("factual", "aegis_onnx", mode=mode)] = _factual(aegis, mode)
        out[_name("factual", "policy_judge", mode=mode)] = _factual(judge.nli, mode)
        if hf_nli:
            out[_name("factual", "hf_nli", s.factual.model, mode)] = _factual(hf_nli, mode)
    out[_name("value", "profanity")] = _value(backends.Profanity())
    out[_name("value", "policy_judge")] = _value(judge.unsafe)
    if s.value.backend == "hf_classifier":
        out[_name("value", "hf_classifier", s.value.model)] = _value(
            backends.HFSafety(s.value.model, m.cache_dir, s.value.unsafe_label))
    if s.value.backend == "moderation_http":
        out[_name("value", "moderation_http")] = _value(
            backends.ModerationHTTP(s.value.endpoint, s.value.model, s.value.api_key_env))
    return out


def validate(cfg: Config, items: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """AUROC of each scorer (rows) on each kind of badness and on all items (columns)."""
    runs = scorers(cfg)
    scores = {name: fn(items) for name, fn in runs.items()}
    # The fused U with the configured backends, as the pipeline computes it.
    s = cfg.scoring
    picked = [_name("semantic", s.semantic.model), _name("factual", s.factual.backend, s.factual.model, s.factual.mode),
              _name("value", s.value.backend, s.value.model)]
    u = np.stack([scores[name] for name in picked], axis=1)
    fused_name = f"fused U ({s.factual.backend} {s.factual.mode}, {s.value.backend})"
    scores[fused_name] = fuse(u, s.fusion_temperature, s.fusion_weights)
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
