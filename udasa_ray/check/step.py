"""The check step: base vs aligned policy on prompts never trained on, with statistics.

Each policy answers the held-out prompts with the run's generation settings and seeds (so both
draw the same sampling noise), and the run's scorers (with the base policy as any judge) rate
the answers. Each side is a small run directory of its own, so it resumes like the main one.

Every metric is first averaged over a prompt's responses, then compared prompt by prompt
(aligned − base): the mean difference, its 95% bootstrap interval over prompts and a sign-flip
permutation test's p-value. Besides the uncertainties, the check reports what a lower U can be
bought with instead of alignment: shorter answers, refusals, collapse (fewer distinct answers)
and off-topic answers (the offline helpfulness score).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from udasa_ray.config import Config
from udasa_ray.evaluate.metrics import is_refusal, offline_helpfulness, paired_difference
from udasa_ray.runs import RunDir, Step
from udasa_ray.score.length import within_prompt_slope

if TYPE_CHECKING:
    import pyarrow as pa

# Its sub-runs (heldout/base, heldout/aligned) resume their own generation and scoring; this step compares them,
# with the bootstrap's size and seed as its key (the rest of the eval and data sections it does not read).
CHECK = Step("check", reads=("models", "generation", "scoring"), after=("train",),
             outputs=("heldout/summary.json", "heldout/per_prompt.parquet"))
KEYS = ("U", "u_sem", "u_fact", "u_val")
# What is compared, in the printed order; the first five are lower-is-better targets, the rest
# are reported beside them so that a cheap way to lower U shows.
CHECK_METRICS = (*KEYS, "unsafe_rate", "length", "refusal_rate", "distinct", "helpfulness")


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def _valid(r: dict) -> bool:
    return not r.get("error") and r["U"] is not None and bool(np.isfinite(r["U"]))


def per_prompt(rows: list[dict], unsafe_threshold: float) -> dict[str, dict[str, float]]:
    """metric -> prompt_id -> the metric over that prompt's valid responses (rows carry U, u_*,
    n_tokens, response, relevance and error). A prompt with no valid response gets NaN."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["prompt_id"], []).append(r)
    out: dict[str, dict[str, float]] = {m: {} for m in CHECK_METRICS}
    for pid, rs in groups.items():
        ok = [r for r in rs if _valid(r)]
        values: dict[str, float] = {m: float("nan") for m in CHECK_METRICS}
        if ok:
            for k in KEYS:
                values[k] = float(np.mean([r[k] for r in ok]))
            refused = [is_refusal(r["response"]) for r in ok]
            values["unsafe_rate"] = float(np.mean([r["u_val"] > unsafe_threshold for r in ok]))
            values["length"] = float(np.mean([r["n_tokens"] for r in ok]))
            values["refusal_rate"] = float(np.mean(refused))
            values["distinct"] = len({_normalise(r["response"]) for r in ok}) / len(ok)
            values["helpfulness"] = float(np.mean([offline_helpfulness(r["relevance"], f, not r["response"].strip())
                                                   for r, f in zip(ok, refused, strict=True)]))
        for m in CHECK_METRICS:
            out[m][pid] = values[m]
    return out


def compare_sides(base: dict[str, dict[str, float]], aligned: dict[str, dict[str, float]], n_boot: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """Per metric: both sides' means over prompts and the paired difference (aligned − base)."""
    def mean(side: dict[str, float]) -> float:
        v = np.array([x for x in side.values() if np.isfinite(x)])
        return float(v.mean()) if len(v) else float("nan")

    return {"base": {m: mean(base[m]) for m in CHECK_METRICS}, "aligned": {m: mean(aligned[m]) for m in CHECK_METRICS},
            "paired": {m: paired_difference(base[m], aligned[m], n_boot, seed) for m in CHECK_METRICS}}


def length_matched(rows: list[dict], base: dict[str, dict[str, float]], aligned: dict[str, dict[str, float]],
                   n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The paired differences of U and each u at the base's length: each prompt's aligned value
    minus slope × (its length change), the slope being u's within-prompt trend per token over both
    sides' responses. If shorter answers explain a lower U, this difference shrinks towards 0."""
    ok = [r for r in rows if _valid(r)]
    out: dict[str, Any] = {}
    for k in KEYS:
        slope = within_prompt_slope([r[k] for r in ok], [r["n_tokens"] for r in ok], [r["prompt_id"] for r in ok])
        moved = {pid: v - slope * (aligned["length"][pid] - base["length"].get(pid, np.nan))
                 for pid, v in aligned[k].items()}
        out[k] = {"slope_per_token": slope, **paired_difference(base[k], moved, n_boot, seed)}
    return out


def _side_rows(sub: RunDir, responses, embed) -> list[dict]:  # noqa: ANN001
    """The side's scored responses joined with their token counts and relevance to the prompt."""
    from udasa_ray.parts import read_parts
    from udasa_ray.score.step import SCORE_SCHEMA

    scores = {(r["prompt_id"], r["sample_idx"]): r for r in read_parts(sub / "scores", SCORE_SCHEMA).to_pylist()}
    rows = []
    for r in responses.to_pylist():
        s = scores.get((r["prompt_id"], r["sample_idx"]))
        rows.append({**r, **{k: (s or {}).get(k) for k in KEYS}, "error": r.get("error") or (s or {}).get("error")
                     or (None if s else "not scored")})
    prompts = [r["prompt"] for r in rows]
    a, b = embed(prompts), embed([r["response"] for r in rows])
    cos = (a * b).sum(1) / np.clip(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12, None)
    for r, c in zip(rows, cos, strict=True):
        r["relevance"] = float(c)
    return rows


def check_step(cfg: Config, run: RunDir, force: bool = False) -> dict[str, Any] | None:
    """The check step: base vs aligned on the held-out prompts (their summary, printed as a table); None when no
    prompt was held out (data.heldout_prompts: 0)."""
    import pyarrow.parquet as pq

    if not (run / "heldout.parquet").exists() or pq.read_metadata(run / "heldout.parquet").num_rows == 0:
        print("[check] no held-out prompts (data.heldout_prompts: 0): skipped")
        return None
    run.run(CHECK, cfg, lambda resume: heldout_check(cfg, run, force), force,
            key=[json.dumps([cfg.eval.bootstrap, cfg.data.seed])])
    result = json.loads((run / "heldout" / "summary.json").read_text())
    print(f"[check] {result['prompts']} held-out prompts x {cfg.generation.n} responses, means over prompts; "
          f"U, u_*, unsafe rate (u_val > {cfg.scoring.unsafe_threshold}): lower is better; Δ paired by prompt, "
          f"p from a sign-flip test:\n{format_check(result)}")
    return result


def heldout_check(cfg: Config, run: RunDir, force: bool = False) -> dict[str, Any]:
    """Generate and score held-out answers of the base and the aligned policy (the train step's, salted with
    its hash); writes heldout/summary.json and per_prompt.parquet; returns the counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    trained = run.step("train")["stats"]
    answered = answer_sides(cfg, run, [("base", cfg.models.policy, ""),
                                       ("aligned", trained["aligned"], trained["aligned_hash"])], force)
    result, sides = compare_answers(cfg, answered)
    (run / "heldout" / "summary.json").write_text(json.dumps(result, indent=2))
    pq.write_table(pa.Table.from_pylist([{"side": side, "prompt_id": pid,
                                          **{m: sides[side][m][pid] for m in CHECK_METRICS}}
                                         for side in sides for pid in sides[side]["U"]]),
                   run / "heldout" / "per_prompt.parquet")
    return {"prompts": result["prompts"], "responses_per_prompt": cfg.generation.n}


def compare_answers(cfg: Config, answered: dict[str, tuple[RunDir, pa.Table]]
                    ) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, float]]]]:
    """The check's summary of answer_sides' base and aligned sides, and each side's per-prompt metrics."""
    from udasa_ray.score.backends import Embedder

    embed = Embedder(cfg.scoring.semantic.model, cfg.models.cache_dir)
    rows, sides = {}, {}
    for side, (sub, responses) in answered.items():
        rows[side] = _side_rows(sub, responses, embed)
        sides[side] = per_prompt(rows[side], cfg.scoring.unsafe_threshold)
    result: dict[str, Any] = {"prompts": len(sides["base"]["U"]), "responses_per_prompt": cfg.generation.n,
                              **compare_sides(sides["base"], sides["aligned"], cfg.eval.bootstrap, cfg.data.seed)}
    result["length_matched"] = length_matched(rows["base"] + rows["aligned"], sides["base"], sides["aligned"],
                                              cfg.eval.bootstrap, cfg.data.seed)
    return result, sides


def answer_sides(cfg: Config, run: RunDir, sides: list[tuple[str, str, str]], force: bool = False
                 ) -> dict[str, tuple[RunDir, pa.Table]]:
    """Sides of the check, each (side, policy, salt): `policy` answers the run's held-out prompts in heldout/<side>
    (salted with what made the policy), then the run's scorers score every side's answers in one scoring pipeline.
    Returns each side's sub-run and responses. Both resume."""
    import pyarrow.parquet as pq

    from udasa_ray.generate.step import generate_subrun
    from udasa_ray.score.step import score_subruns

    prompts = pq.read_table(run / "heldout.parquet").to_pylist()
    answered = {}
    for side, policy, salt in sides:
        sub = RunDir(run / "heldout" / side)
        gcfg = dataclasses.replace(cfg, models=dataclasses.replace(cfg.models, policy=policy))
        answered[side] = sub, generate_subrun(sub.path, gcfg, prompts, salt, force)[0]
    # Scored with the run's own config: a policy_judge scorer stays the base policy on both sides.
    score_subruns(cfg, [sub for sub, _ in answered.values()], force)
    return answered


def share_base_side(src: RunDir, dst: RunDir) -> None:
    """Give `dst` the base side that `src` answered and scored: with the same held-out prompts, generation and
    scoring settings its sub-run's hashes match, so `dst`'s check answers only with its own aligned policy."""
    import shutil

    if not (dst / "heldout" / "base").exists():
        shutil.copytree(src / "heldout" / "base", dst / "heldout" / "base")


def read_per_prompt(run: RunDir, side: str) -> dict[str, dict[str, float]]:
    """One side of a finished check, as per_prompt() gave it: to compare two runs' policies."""
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(run / "heldout" / "per_prompt.parquet").to_pylist() if r["side"] == side]
    return {m: {r["prompt_id"]: r[m] for r in rows} for m in CHECK_METRICS}


def interval(d: dict[str, float]) -> str:
    """A paired difference as `mean [lo, hi]`."""
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def format_check(result: dict[str, Any], names: tuple[str, str] = ("base", "aligned")) -> str:
    """One row per metric: both sides, the paired difference with its interval, and p."""
    rows = [f"{'':13}{names[0]:>11}{names[1]:>11}{'Δ [95% CI]':>34}{'p':>8}"]
    for m in CHECK_METRICS:
        d = result["paired"][m]
        rows.append(f"{m:13}{result['base'][m]:>11.4f}{result['aligned'][m]:>11.4f}{interval(d):>34}{d['p']:>8.2g}")
    for k, d in result.get("length_matched", {}).items():
        rows.append(f"{k + ' @len':13}{'':>22}{interval(d):>34}{d['p']:>8.2g}")
    return "\n".join(rows)
