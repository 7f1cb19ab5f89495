"""The pipeline's stages as resumable steps over a run directory (shared by the CLI and jobs/)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.data.ingest import PROMPT_COLUMNS, IngestError, ingest, split_heldout
from udasa_ray.runs import RunDir


def _source_fingerprint(source: str) -> str:
    p = Path(source).expanduser()
    if not p.is_file():
        return source
    st = p.stat()
    return f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def ingest_stage(cfg: Config, run: RunDir, source: str | None = None, force: bool = False) -> dict:
    source = source or cfg.data.source
    d = cfg.data
    key = json.dumps([_source_fingerprint(source), d.max_prompt_chars, d.hf_split, d.heldout_prompts, d.seed])
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
        prompts, heldout = split_heldout(prompts, d.heldout_prompts, d.seed)
        pq.write_table(pa.Table.from_pylist(prompts).select(PROMPT_COLUMNS), run / "prompts.parquet")
        pq.write_table(pa.Table.from_pylist(heldout, schema=pa.schema([(c, pa.string()) for c in PROMPT_COLUMNS])),
                       run / "heldout.parquet")
        if heldout:
            print(f"[ingest] {len(heldout)} prompts held out for the base-vs-aligned check ({run / 'heldout.parquet'})")
        return {"source": source, "records": total, "prompts": len(prompts), "heldout": len(heldout),
                "rejected": len(rejects)}

    return run.run_stage("ingest", cfg, config_hash, work, ["prompts.parquet", "heldout.parquet", "rejects.jsonl"],
                         force)


def _chain_hash(own: str, run: RunDir, upstream: str) -> str:
    """A stage's hash: its own config sections plus the hash its input was made with."""
    return hashlib.sha256((own + run.stage(upstream)["config_hash"]).encode()).hexdigest()[:16]


def _require(run: RunDir, stage: str, command: str) -> None:
    if run.stage(stage).get("status") != "done":
        raise StageMissing(f"{run.path} has no finished '{stage}' stage: run `udasa {command}` first")


class StageMissing(RuntimeError):
    """A stage's input has not been produced yet."""


def generate_hash(cfg: Config, run: RunDir) -> str:
    """What the responses depend on: the config sections it reads and the ingested prompts."""
    return _chain_hash(cfg.section_hash("models", "data", "generation"), run, "ingest")


def generate_stage(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.generate.pipeline import generate

    if run.stage("ingest").get("status") != "done":
        ingest_stage(cfg, run)
    config_hash = generate_hash(cfg, run)
    stats = run.run_stage("generate", cfg, config_hash, lambda resume: generate(cfg, run, resume),
                          ["responses"], force)
    print(f"[generate] {stats['responses']} responses for {stats['prompts']} prompts in {run / 'responses'}"
          + (f"; {stats['tokens_per_s']} tokens/s" if stats.get("tokens_per_s") else ""))
    return stats


def score_stage(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.uncertainty.pipeline import score

    _require(run, "generate", "generate")
    # The policy model is a scorer backend too (policy_judge), so models is part of the hash.
    config_hash = _chain_hash(cfg.section_hash("scoring", "models"), run, "generate")
    stats = run.run_stage("score", cfg, config_hash, lambda resume: score(cfg, run, resume), ["scores"], force)
    m = stats["mean"]
    print(f"[score] {stats['responses']} responses scored ({stats['with_error']} with an error) in "
          f"{run / 'scores'}; mean u_sem {m['u_sem']:.3f}, u_fact {m['u_fact']:.3f}, u_val {m['u_val']:.3f}, "
          f"U {m['U']:.3f}")
    return stats


# What each pairing method reads: UDASA the scores, RLAIF the raw responses, RLCD only the prompts.
PAIRS_INPUT = {"udasa": "score", "rlaif": "generate", "rlcd": "ingest"}


def pairs_stage(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.curriculum.stage import make_pairs

    method = cfg.pairs.method
    _require(run, PAIRS_INPUT[method], PAIRS_INPUT[method])
    reads = {"udasa": ("scoring",), "rlaif": ("models", "generation"), "rlcd": ("models", "data", "generation")}
    config_hash = _chain_hash(cfg.section_hash("pairs", "curriculum", *reads[method]), run, PAIRS_INPUT[method])
    return run.run_stage("pairs", cfg, config_hash, lambda resume: make_pairs(cfg, run), ["pairs", "stages"], force)


def train_stage(cfg: Config, run: RunDir, force: bool = False) -> dict:
    from udasa_ray.train.phased import train

    _require(run, "pairs", "pairs")
    return train(cfg, run, force)


def check_stage(cfg: Config, run: RunDir, force: bool = False) -> dict | None:
    """Base vs aligned on the held-out prompts (needs a finished train stage)."""
    from udasa_ray.evaluate.heldout import format_check, heldout_check

    summary_path = run / "train" / "summary.json"
    if not summary_path.exists():
        raise StageMissing(f"{run.path} has no trained policy: run `udasa train` first")
    trained = json.loads(summary_path.read_text())
    result = heldout_check(cfg, run, trained["aligned"], trained["aligned_hash"], force)
    if result is None:
        print("[check] no held-out prompts (data.heldout_prompts: 0): skipped")
        return None
    print(f"[check] {result['prompts']} held-out prompts x {cfg.generation.n} responses, means over prompts; "
          f"U, u_*, unsafe rate (u_val > {cfg.scoring.unsafe_threshold}): lower is better; Δ paired by prompt, "
          f"p from a sign-flip test:\n{format_check(result)}")
    return result


def tune_stage(cfg: Config, run: RunDir, fresh: bool = False) -> dict:
    """The threshold sweep over a run's scores (see udasa_ray/tune/sweep.py)."""
    from udasa_ray.config import validate_sweep
    from udasa_ray.tune.sweep import sweep

    validate_sweep(cfg)
    if cfg.pairs.method != "udasa":
        raise StageMissing(f"tune sweeps UDASA's thresholds; pairs.method is {cfg.pairs.method!r}")
    _require(run, "score", "score")
    return sweep(cfg, run, fresh)
