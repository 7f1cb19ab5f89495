"""Scorer actors for Ray Data: each takes a batch of prompt groups and adds one uncertainty.

A group row holds one prompt and its N responses (lists). A backend failure on a batch is
retried record by record, so one bad record gets an error string instead of killing the stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from udasa_ray.config import ModelsConfig, ScoringConfig
from udasa_ray.http import EndpointUnreachable
from udasa_ray.score import backends
from udasa_ray.score.semantic import semantic_uncertainty

NAN = float("nan")
FAILED = "failed"  # in a record's error: its backend raised (not a data condition such as an empty response)


def backend_failed(error: str | None) -> bool:
    return bool(error) and f": {FAILED}: " in error


def score_robust(fn: Callable[[list], Sequence[float]], items: list, what: str) -> tuple[list[float], list[str | None]]:
    """Scores in [0, 1] for `items`, or NaN with an error for the items whose scoring failed."""

    def check(v: float) -> float:
        if not (math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6):
            raise ValueError(f"score {v} outside [0, 1]")
        return min(1.0, max(0.0, v))

    try:
        return [check(float(v)) for v in fn(items)], [None] * len(items)
    except EndpointUnreachable as e:  # nothing answers: record by record would only fail slower
        return [NAN] * len(items), [f"{what}: {FAILED}: {type(e).__name__}: {e}"[:300]] * len(items)
    except Exception:  # isolate the failing records
        scores, errors = [], []
        for it in items:
            try:
                scores.append(check(float(fn([it])[0])))
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - any backend error becomes the record's error
                scores.append(NAN)
                errors.append(f"{what}: {FAILED}: {type(e).__name__}: {e}"[:300])
        return scores, errors


def _valid(responses: list[str]) -> list[int]:
    return [i for i, r in enumerate(responses) if r and r.strip()]


def _build(shared: dict | None, key: tuple, make: Callable[[], Any]) -> Any:
    """`make()`, or the backend already in `shared` under `key` (validate-scorers loads each model once)."""
    if shared is None:
        return make()
    if key not in shared:
        shared[key] = make()
    return shared[key]


def _policy_judge(models: ModelsConfig, shared: dict | None, prompt_template: str) -> backends.PolicyJudge:
    """The policy as a judge, its questions framed as `generation.prompt_template` frames prompts."""
    return _build(shared, ("policy_judge", models.policy, prompt_template),
                  lambda: backends.PolicyJudge(models.policy, models.cache_dir, prompt_template=prompt_template))


class GroupScorer:
    """Shared batch plumbing: rows in, the same rows with `u_<dim>` and `err_<dim>` lists out.

    `shared` (optional) is a dict in which backends are built once and reused between scorers.
    `prompt_template` (`generation.prompt_template`) frames the policy_judge backend's questions; on a
    tokenizer without a chat template the judge uses Alpaca's format whatever it says.
    """

    dim = ""

    def score_groups(self, groups: list[dict], targets: Collection[int] | None = None
                     ) -> tuple[list[list[float]], list[list[str | None]]]:
        """u and error (None when scored) of every response of every group. With `targets`, only the
        responses at those positions need a score (validate-scorers scores one response against its
        others); the rest are context and may be left NaN with an error."""
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        started, rows = time.perf_counter(), batch.to_pylist()
        scores, errors = self.score_groups(rows)
        seconds = time.perf_counter() - started  # this call's own time, for the step's per-batch stats
        for row, s, e in zip(rows, scores, errors, strict=True):
            row[f"u_{self.dim}"], row[f"err_{self.dim}"], row[f"s_{self.dim}"] = s, e, seconds
        return pa.Table.from_pylist(rows)


class SemanticScorer(GroupScorer):
    dim = "sem"

    def __init__(self, scoring: ScoringConfig, models: ModelsConfig, shared: dict | None = None,
                 prompt_template: str = "chat") -> None:
        sem = scoring.semantic
        self.embed = _build(shared, ("embedder", sem.model, sem.batch_size),
                            lambda: backends.Embedder(sem.model, models.cache_dir, sem.batch_size))

    def score_groups(self, groups, targets=None):  # embeddings are cheap: scores every response
        valid = [_valid(row["response"]) for row in groups]
        texts = [row["response"][i] for row, v in zip(groups, valid, strict=True) for i in v]
        emb = self.embed(texts) if texts else np.zeros((0, 1))
        scores, errors, start = [], [], 0
        for row, v in zip(groups, valid, strict=True):
            n = len(row["response"])
            s, e = [NAN] * n, ["semantic: empty response"] * n
            row["u_sem_group"] = NAN
            if len(v) >= 2:
                per, row["u_sem_group"] = semantic_uncertainty(emb[start : start + len(v)])
                for i, u in zip(v, per, strict=True):
                    s[i], e[i] = float(u), None
            else:
                for i in v:
                    e[i] = "semantic: fewer than 2 non-empty responses"
            start += len(v)
            scores.append(s)
            errors.append(e)
        return scores, errors


def make_factual(scoring: ScoringConfig, models: ModelsConfig, shared: dict | None = None,
                 prompt_template: str = "chat") -> Callable[[list[str], list[str]], np.ndarray]:
    f = scoring.factual
    if f.backend == "aegis_onnx":
        return _build(shared, (f.backend, f.model, f.threads),
                      lambda: backends.AegisNLI(f.model, models.cache_dir, f.threads))
    if f.backend == "hf_nli":
        return _build(shared, (f.backend, f.model), lambda: backends.HFNLI(f.model, models.cache_dir))
    return _policy_judge(models, shared, prompt_template).nli


class FactualScorer(GroupScorer):
    dim = "fact"

    def __init__(self, scoring: ScoringConfig, models: ModelsConfig, shared: dict | None = None,
                 prompt_template: str = "chat") -> None:
        self.nli = make_factual(scoring, models, shared, prompt_template)
        self.mode = scoring.factual.mode

    def score_groups(self, groups, targets=None):
        # One NLI call for the batch: the (premise, hypothesis) pairs each response needs.
        pairs, owner = [], []  # owner[k] = (group, response) whose score pair k feeds
        for g, row in enumerate(groups):
            valid = _valid(row["response"])
            for i in valid if targets is None else [i for i in valid if i in targets]:
                premises = [row["prompt"]] if self.mode == "paper" else [row["response"][j] for j in valid if j != i]
                for p in premises:
                    pairs.append((p, row["response"][i]))
                    owner.append((g, i))
        vals, errs = score_robust(lambda ps: self.nli([p for p, _ in ps], [h for _, h in ps]), pairs, "factual")
        acc: dict[tuple[int, int], list] = {}
        for key, v, e in zip(owner, vals, errs, strict=True):
            acc.setdefault(key, []).append((v, e))
        scores, errors = [], []
        for g, row in enumerate(groups):
            s, e, valid = [], [], set(_valid(row["response"]))
            for i in range(len(row["response"])):
                got = acc.get((g, i))
                if not got:
                    s.append(NAN)
                    e.append("factual: empty response" if i not in valid else
                             "factual: not asked" if targets is not None and i not in targets else
                             "factual: no other response to compare with")
                elif any(err for _, err in got):
                    s.append(NAN)
                    e.append(next(err for _, err in got if err))
                else:
                    s.append(float(np.mean([v for v, _ in got])))
                    e.append(None)
            scores.append(s)
            errors.append(e)
        return scores, errors


def make_value(scoring: ScoringConfig, models: ModelsConfig, shared: dict | None = None,
               prompt_template: str = "chat") -> Callable[[list[str]], np.ndarray]:
    v = scoring.value
    if v.backend == "profanity":
        return _build(shared, (v.backend,), backends.Profanity)
    if v.backend == "hf_classifier":
        return _build(shared, (v.backend, v.model, v.unsafe_label),
                      lambda: backends.HFSafety(v.model, models.cache_dir, v.unsafe_label))
    if v.backend == "moderation_http":
        return _build(shared, (v.backend, v.endpoint, v.model, v.api_key_env),
                      lambda: backends.ModerationHTTP(v.endpoint, v.model, v.api_key_env))
    return _policy_judge(models, shared, prompt_template).unsafe


class ValueScorer(GroupScorer):
    dim = "val"

    def __init__(self, scoring: ScoringConfig, models: ModelsConfig, shared: dict | None = None,
                 prompt_template: str = "chat") -> None:
        self.classify = make_value(scoring, models, shared, prompt_template)

    def score_groups(self, groups, targets=None):
        flat = [(g, i) for g, row in enumerate(groups) for i in _valid(row["response"])
                if targets is None or i in targets]
        vals, errs = score_robust(self.classify, [groups[g]["response"][i] for g, i in flat], "value")
        got = {key: (v, e) for key, v, e in zip(flat, vals, errs, strict=True)}
        empty, skipped = (NAN, "value: empty response"), (NAN, "value: not asked")
        cells = [[got.get((g, i), skipped if targets is not None and i not in targets else empty)
                  for i in range(len(row["response"]))] for g, row in enumerate(groups)]
        return [[v for v, _ in c] for c in cells], [[e for _, e in c] for c in cells]


SCORERS = (SemanticScorer, FactualScorer, ValueScorer)
