"""The pairs step: pairs by the configured method -> pairs/pairs.parquet, then the curriculum
split -> stages/ (one file per curriculum stage + summary.json).

UDASA pairs come from scores/ (fast, no model, so it reruns whole); the baselines need a model:
RLAIF has the policy label its own responses/, RLCD generates contrastive answers in rlcd/.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.errors import StepFailed
from udasa_ray.generate.step import generate_subrun, read_responses, with_generator
from udasa_ray.pairs.build import build_pairs
from udasa_ray.pairs.rlaif import rlaif_pairs
from udasa_ray.pairs.rlcd import rlcd_pairs
from udasa_ray.pairs.split import assign_stages, scale_delta, stage_members, stage_names
from udasa_ray.parts import read_parts
from udasa_ray.ray_utils import init_ray, run_task
from udasa_ray.runs import RunDir, Step
from udasa_ray.score.fusion import DIMENSIONS, fuse
from udasa_ray.score.step import SCORE_SCHEMA

# The pairs step of each method: UDASA reads the scores, RLAIF the responses (the policy labels them, as
# generation frames prompts), RLCD only the prompts (it generates its own contrastive answers).
PAIRS = {method: Step("pairs", reads=("pairs", "curriculum", *reads), after=(after,), outputs=("pairs", "stages"))
         for method, reads, after in (("udasa", ("scoring",), "score"), ("rlaif", ("models", "generation"), "generate"),
                                      ("rlcd", ("models", "data", "generation"), "ingest"))}


def _policy_prefers_a(model: str, cache_dir: str, dtype: str, prompt_template: str, questions: list[str]
                      ) -> np.ndarray:
    from udasa_ray.score.backends import PolicyJudge

    judge = PolicyJudge(model, cache_dir, dtype, prompt_template=prompt_template)
    return judge.label_probs(questions, ["A", "B"])[:, 0]


def udasa_from_run(cfg: Config, run: RunDir) -> tuple[pa.Table, dict]:
    """Chosen = lowest U, fused over `pairs.dimensions` (all three, or fewer in the ablation)."""
    scores = read_parts(run / "scores", SCORE_SCHEMA)
    dims = cfg.pairs.dimensions
    if sorted(dims) != sorted(DIMENSIONS):
        idx = [DIMENSIONS.index(d) for d in dims]
        w = cfg.scoring.fusion_weights
        u = np.column_stack([scores[f"u_{d}"].to_numpy() for d in dims]).reshape(-1, len(dims))  # null -> NaN
        U = fuse(u, cfg.scoring.fusion_temperature, [w[i] for i in idx] if w else None)
        scores = scores.set_column(scores.schema.get_field_index("U"), "U", pa.array(np.asarray(U, np.float64)))
    return build_pairs(scores, cfg.curriculum.seed)


def rlaif_from_run(cfg: Config, run: RunDir) -> tuple[pa.Table, dict]:
    rows = read_responses(run / "responses").to_pylist()
    init_ray(cfg.ray)
    print(f"[pairs] RLAIF: {cfg.models.policy} labels two responses of each prompt, in both orders")
    models = cfg.models
    pairs, counts = rlaif_pairs(rows, lambda qs: run_task(
        _policy_prefers_a, models.policy, models.cache_dir, cfg.generation.dtype, cfg.generation.prompt_template,
        qs, num_cpus=cfg.generation.cpus_per_actor, num_gpus=1 if cfg.train.use_gpu else 0), cfg.curriculum.seed)
    return pa.Table.from_pylist(pairs), counts


def rlcd_sides(cfg: Config) -> list[tuple[str, Config]]:
    """RLCD's two generations: one answer per prompt under the positive, then the negative system
    prompt, with the same seeds (one draw under two prompts: the contrast is the prompt alone).
    Alpaca framing carries the system prompt too, so the two requests differ in every template."""
    sides = []
    for side, system in (("positive", cfg.pairs.rlcd_positive), ("negative", cfg.pairs.rlcd_negative)):
        g = dataclasses.replace(cfg.generation, n=1, mode="independent", system_prompt=system)
        sides.append((side, dataclasses.replace(cfg, generation=g)))
    return sides


def rlcd_from_run(cfg: Config, run: RunDir) -> tuple[pa.Table, dict]:
    prompts = pq.read_table(run / "prompts.parquet").to_pylist()[: cfg.data.limit]
    sides = []
    for side, side_cfg in rlcd_sides(with_generator(cfg)):  # RLCD's answers are data: the generator writes them
        print(f"[pairs] RLCD: {len(prompts)} answers under the {side} prompt")
        sides.append(generate_subrun(run / "rlcd" / side, side_cfg, prompts)[0])
    pairs, counts = rlcd_pairs(sides[0].to_pylist(), sides[1].to_pylist())
    return pa.Table.from_pylist(pairs), counts


def no_pair_reason(cfg: Config, run: RunDir, counts: dict) -> str:
    """Why a method made no pair at all, for the error that stops the step."""
    if cfg.pairs.method == "rlcd":
        identical = counts.get("identical", 0)
        if identical and identical == counts["groups"]:
            return (f"the positive and negative answers are identical for all {identical} prompts (see "
                    f"{run / 'rlcd'}): the contrastive system prompts do not reach the policy or do not change "
                    f"its answers (generation.prompt_template, pairs.rlcd_positive / rlcd_negative)")
        return (f"{counts['groups']} prompts, {identical} with identical positive and negative answers, the rest "
                f"without a valid answer on both sides (see the error column in {run / 'rlcd'})")
    where = run / "responses" if cfg.pairs.method == "rlaif" else run / "scores"
    return f"{counts['groups']} prompt groups, none with 2 valid responses (see the error column in {where})"


# A stage holding less than this share of the pairs gets a warning: min-max on a right-skewed Δu leaves its first
# stage a handful of pairs, and the share shrinks as the data grows.
SMALL_STAGE = 0.05


def make_pairs(cfg: Config, run: RunDir) -> dict:
    curriculum = cfg.curriculum
    build = {"udasa": udasa_from_run, "rlaif": rlaif_from_run, "rlcd": rlcd_from_run}[cfg.pairs.method]
    pairs, counts = build(cfg, run)
    if not pairs.num_rows:
        raise StepFailed(f"no preference pair: {no_pair_reason(cfg, run, counts)}")
    delta = pairs["delta_u"].to_numpy()
    scaled = scale_delta(delta, curriculum.scale)
    stages = assign_stages(scaled, curriculum.thresholds)
    names = stage_names(len(curriculum.thresholds) + 1)
    pairs = (pairs.append_column("delta_scaled", pa.array(scaled, pa.float64()))
             .append_column("stage", pa.array(stages, pa.int64()))
             .append_column("stage_name", pa.array(np.asarray(names)[stages - 1], pa.string())))
    order = np.argsort(-delta, kind="stable")  # sorted by Δu, clearest first
    (run / "pairs").mkdir(exist_ok=True)
    pq.write_table(pairs.take(order), run / "pairs" / "pairs.parquet")
    (run / "stages").mkdir(exist_ok=True)
    summary = {"method": cfg.pairs.method, "dimensions": cfg.pairs.dimensions, "thresholds": curriculum.thresholds,
               "scale": curriculum.scale, "cumulative": curriculum.cumulative, **counts, "stages": []}
    for k, members in enumerate(stage_members(stages, len(names), curriculum.cumulative), start=1):
        rows = pairs.take(members[np.argsort(-delta[members], kind="stable")])
        size = rows.num_rows
        info = {"stage": k, "name": names[k - 1], "pairs": size, "file": None}
        if size:
            info["file"] = f"stage_{k}_{names[k - 1]}.parquet"
            pq.write_table(rows, run / "stages" / info["file"])
            d, ds = delta[members], scaled[members]
            info.update(delta_u=[float(d.min()), float(d.max())], delta_scaled=[float(ds.min()), float(ds.max())])
        else:
            print(f"[pairs] warning: stage {k} ({names[k - 1]}) is empty on the {curriculum.scale} scale with "
                  f"thresholds {curriculum.thresholds}: it will be skipped")
        if 0 < size < SMALL_STAGE * pairs.num_rows:
            print(f"[pairs] warning: stage {k} ({names[k - 1]}) holds {size} of {pairs.num_rows} pairs "
                  f"({size / pairs.num_rows:.1%}) on the {curriculum.scale} scale: a stage this small barely trains "
                  "(curriculum.scale: quantile cuts at ranks instead)")
        summary["stages"].append(info)
    if curriculum.order == "hard_first":  # the train step trains the stages in the summary's order
        summary["stages"].reverse()
    summary["order"] = curriculum.order
    (run / "stages" / "summary.json").write_text(json.dumps(summary, indent=2))
    sizes = ", ".join(f"{s['name']} {s['pairs']}" for s in summary["stages"])
    print(f"[pairs] {counts['pairs']} pairs from {counts['groups']} prompts "
          f"({counts['groups_without_pair']} without 2 valid responses); stages: {sizes}")
    return {**counts, "stage_sizes": [s["pairs"] for s in summary["stages"]],
            "stage_delta_u": [s.get("delta_u") for s in summary["stages"]]}


def pairs_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    return run.run(PAIRS[cfg.pairs.method], cfg, lambda resume: make_pairs(cfg, run), force)
