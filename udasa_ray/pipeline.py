"""The pipeline's order, in one place: ingest -> generate -> score -> pairs -> train -> check -> report.

`run_pipeline` runs the steps from `since` through `through` that the pairing method needs (UDASA
pairs read scores, RLAIF pairs the raw responses, RLCD pairs generate their own answers), each
skipped when it finished with the same config and resumed when it was cut (runs.py). With
`scoring.stream`, generation and scoring run as one streamed pipeline. The `udasa` command, the
jobs and the sweep's trials all go through it; each step lives in its own package's step.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from udasa_ray.check.step import check_step
from udasa_ray.config import Config
from udasa_ray.generate.step import GENERATE, generate_step, with_generator
from udasa_ray.ingest.step import INGEST, ingest_step
from udasa_ray.pairs.step import pairs_step
from udasa_ray.report.step import write_report
from udasa_ray.runs import RunDir
from udasa_ray.score.step import SCORE, generate_and_score, score_step
from udasa_ray.train.step import train

ORDER = ("ingest", "generate", "score", "pairs", "train", "check", "report")
# The steps that runs of one recipe share (methods compared, sweep trials): taken with RunDir.adopt.
SHARED_STEPS = (INGEST, GENERATE, SCORE)
# What each pairing method does without: RLAIF labels unscored responses, RLCD generates its own answers.
NOT_NEEDED = {"udasa": set(), "rlaif": {"score"}, "rlcd": {"generate", "score"}}


def run_pipeline(cfg: Config, run: RunDir, through: str = "report", since: str = "ingest", force: bool = False,
                 source: str | None = None,
                 on_stage: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the steps `since` .. `through` in order; returns each one's result by name (the train step's is the
    aligned policy; the check's None without held-out prompts; the report's its path). A step asked for alone
    runs whatever the method; generation, when the run has no prompts yet, ingests them first.
    `source` overrides data.source for ingest; `on_stage` is called after each curriculum stage (train)."""
    steps = ORDER[ORDER.index(since): ORDER.index(through) + 1]
    if len(steps) > 1:
        steps = tuple(s for s in steps if s not in NOT_NEEDED[cfg.pairs.method])
    if "generate" in steps and "ingest" not in steps and run.step("ingest").get("status") != "done":
        steps = ("ingest", *steps)
    streamed = cfg.scoring.stream and {"generate", "score"} <= set(steps)
    make = {
        "ingest": lambda: ingest_step(cfg, run, source, force),
        "generate": lambda: generate_step(cfg, run, force and not streamed),
        "score": lambda: score_step(cfg, run, force and not streamed), "pairs": lambda: pairs_step(cfg, run, force),
        "train": lambda: train(cfg, run, force, on_stage), "check": lambda: check_step(cfg, run, force),
        "report": lambda: write_report(run),
    }
    done: dict[str, Any] = {}
    for name in steps:
        if name == "generate" and streamed:  # the two steps then finish as usual, resuming what the stream made
            run.stream([GENERATE, SCORE], cfg, lambda: generate_and_score(with_generator(cfg), run), force)
        done[name] = make[name]()
    return done
