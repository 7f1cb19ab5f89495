"""The pipeline's steps, each resumable over a run directory (shared by the CLI, jobs/ and tune/).

ingest -> generate -> score -> pairs -> train -> check. Each step records its config hash in the
run's manifest (runs.py); a step's implementation is imported only when the step runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.data.ingest import PROMPT_COLUMNS, IngestError, ingest, split_heldout
from udasa_ray.runs import RunDir, StepMissing, section_hash

# The steps that runs of one recipe share (methods compared, sweep trials), with their outputs: taken
# with RunDir.adopt.
SHARED_STEPS = {"ingest": ["prompts.parquet", "heldout.parquet", "rejects.jsonl"], "generate": ["responses"],
                "score": ["scores"]}


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
    config_hash = hashlib.sha256(key.encode()).hexdigest()[:16]

    def work(resume: bool) -> dict:
        prompts, rejects = ingest(source, cfg.data.max_prompt_chars, cfg.data.hf_split)
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

    return run.run_step("ingest", cfg, config_hash, work, SHARED_STEPS["ingest"], force)


def generate_hash(cfg: Config, run: RunDir) -> str:
    """What the responses depend on: the config sections it reads and the ingested prompts."""
    return run.chain_hash(section_hash(cfg, "models", "data", "generation"), "ingest")


def generate_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.generate.pipeline import generate, with_generator

    if run.step("ingest").get("status") != "done":
        ingest_step(cfg, run)
    config_hash = generate_hash(cfg, run)
    stats = run.run_step("generate", cfg, config_hash, lambda resume: generate(with_generator(cfg), run, resume),
                          SHARED_STEPS["generate"], force)
    print(f"[generate] {stats['responses']} responses for {stats['prompts']} prompts in {run / 'responses'}"
          + (f"; {stats['tokens_per_s']} tokens/s" if stats.get("tokens_per_s") else ""))
    return stats


def score_hash(cfg: Config, run: RunDir) -> str:
    """What the scores depend on: the responses, and the policy model too (a policy_judge scorer backend)."""
    return run.chain_hash(section_hash(cfg, "scoring", "models"), "generate")


def score_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.uncertainty.pipeline import score

    run.require("generate", "generate")
    stats = run.run_step("score", cfg, score_hash(cfg, run), lambda resume: score(cfg, run, resume),
                         SHARED_STEPS["score"], force)
    m = stats["mean"]
    print(f"[score] {stats['responses']} responses scored ({stats['with_error']} with an error) in "
          f"{run / 'scores'}; mean u_sem {m['u_sem']:.3f}, u_fact {m['u_fact']:.3f}, u_val {m['u_val']:.3f}, "
          f"U {m['U']:.3f}")
    return stats


def generate_score_step(cfg: Config, run: RunDir, force: bool = False) -> None:
    """The generate and score steps; with scoring.stream, one pipeline generates and scores at once,
    then the two steps finish (they find their work done, or pick up what a kill left)."""
    from udasa_ray.generate.pipeline import with_generator
    from udasa_ray.uncertainty.pipeline import generate_and_score

    if cfg.scoring.stream:
        if run.step("ingest").get("status") != "done":
            ingest_step(cfg, run)
        resume = run.begin_step("generate", cfg, generate_hash(cfg, run), SHARED_STEPS["generate"], force)
        if resume is not None:  # responses still to make
            # Scores start afresh with fresh responses, and resume with resumed ones.
            run.begin_step("score", cfg, score_hash(cfg, run), SHARED_STEPS["score"], force or not resume)
            if stream := generate_and_score(with_generator(cfg), run):  # {}: nothing left to stream
                run.update_step("generate", stream=stream)
        force = False  # the streamed outputs are this run's: resume them
    generate_step(cfg, run, force)
    score_step(cfg, run, force)


# What each pairing method reads: UDASA the scores, RLAIF the raw responses, RLCD only the prompts.
PAIRS_INPUT = {"udasa": "score", "rlaif": "generate", "rlcd": "ingest"}


def pairs_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.pairs.step import make_pairs

    method = cfg.pairs.method
    run.require(PAIRS_INPUT[method], PAIRS_INPUT[method])
    reads = {"udasa": ("scoring",), "rlaif": ("models", "generation"), "rlcd": ("models", "data", "generation")}
    config_hash = run.chain_hash(section_hash(cfg, "pairs", "curriculum", *reads[method]), PAIRS_INPUT[method])
    return run.run_step("pairs", cfg, config_hash, lambda resume: make_pairs(cfg, run), ["pairs", "stages"], force)


def train_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.train.phased import train

    run.require("pairs", "pairs")
    return train(cfg, run, force)


def check_step(cfg: Config, run: RunDir, force: bool = False) -> dict | None:
    """Base vs aligned on the held-out prompts (needs a finished train step)."""
    from udasa_ray.evaluate.heldout import format_check, heldout_check

    summary_path = run / "train" / "summary.json"
    if not summary_path.exists():
        raise StepMissing(f"{run.path} has no trained policy: run `udasa train` first")
    trained = json.loads(summary_path.read_text())
    result = heldout_check(cfg, run, trained["aligned"], trained["aligned_hash"], force)
    if result is None:
        print("[check] no held-out prompts (data.heldout_prompts: 0): skipped")
        return None
    print(f"[check] {result['prompts']} held-out prompts x {cfg.generation.n} responses, means over prompts; "
          f"U, u_*, unsafe rate (u_val > {cfg.scoring.unsafe_threshold}): lower is better; Δ paired by prompt, "
          f"p from a sign-flip test:\n{format_check(result)}")
    return result
