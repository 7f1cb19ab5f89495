"""The score step: responses/ -> scores/, scorer actors on Ray Data (each runs the three scorers), then fusion.

Rows travel as prompt groups (a prompt and its N responses), since semantic and cross-response
scores need the whole group. Finished groups are written as Parquet parts; a rerun of a killed
step scores only the prompts not yet on disk.

`generate_and_score` is both steps streamed (`scoring.stream`): generation's finished batches
become prompt groups that go to scorer actors while generation goes on.
"""

from __future__ import annotations

import math
import shutil
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from udasa_ray.config import Config, ScoringConfig
from udasa_ray.errors import StepFailed
from udasa_ray.generate.requests import build_requests
from udasa_ray.generate.step import RESPONSE_SCHEMA, generated, read_responses
from udasa_ray.parts import read_parts, write_part
from udasa_ray.ray_utils import actor_seconds, data_context, finished_batches, init_ray, local_ray, warm_up
from udasa_ray.runs import RunDir, Step
from udasa_ray.score.fusion import fuse, fusion_weights
from udasa_ray.score.scorers import SCORERS, backend_failed

# The policy is read too: a policy_judge scorer backend.
SCORE = Step("score", reads=("scoring", "models"), after=("generate",), outputs=("scores",))
# A sub-run's scores (the held-out check's sides): chained to the sub-run's generation.
SUBRUN_SCORE = Step("score", reads=("scoring",), after=("generate",), outputs=("scores",))


class ScoringFailed(StepFailed):
    """More responses failed in a scorer backend than `scoring.max_error_rate` allows."""

SCORE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("sample_idx", pa.int64()), ("response", pa.string()),
    ("u_sem", pa.float64()), ("u_fact", pa.float64()), ("u_val", pa.float64()), ("U", pa.float64()),
    ("w_sem", pa.float64()), ("w_fact", pa.float64()), ("w_val", pa.float64()), ("u_sem_group", pa.float64()),
    ("error", pa.string()),
])


def group_responses(table: pa.Table, skip: set[str] = frozenset()) -> list[dict]:
    """One row per prompt: its responses ordered by sample_idx."""
    groups: dict[str, dict] = {}
    for r in sorted(table.to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"])):
        if r["prompt_id"] in skip:
            continue
        g = groups.setdefault(r["prompt_id"], {"prompt_id": r["prompt_id"], "prompt": r["prompt"],
                                               "sample_idx": [], "response": [], "gen_error": []})
        g["sample_idx"].append(r["sample_idx"])
        g["response"].append(r["response"])
        g["gen_error"].append(r["error"])  # e.g. a listwise reply with too few items
    return list(groups.values())


def explode(groups: list[dict], temperature: float, weights: list[float] | None) -> pa.Table:
    """Group rows with score lists -> one row per response, with weights and fused U."""
    rows = []
    for g in groups:
        for k, idx in enumerate(g["sample_idx"]):
            u = [g["u_sem"][k], g["u_fact"][k], g["u_val"][k]]
            errors = [e for e in (g["gen_error"][k], g["err_sem"][k], g["err_fact"][k], g["err_val"][k]) if e]
            ok = all(math.isfinite(x) for x in u)
            w = fusion_weights(np.array(u), temperature, weights) if ok else [math.nan] * 3
            rows.append({"prompt_id": g["prompt_id"], "prompt": g["prompt"], "sample_idx": idx,
                         "response": g["response"][k], "u_sem": u[0], "u_fact": u[1], "u_val": u[2],
                         "U": fuse(u, temperature, weights) if ok else math.nan,
                         "w_sem": float(w[0]), "w_fact": float(w[1]), "w_val": float(w[2]),
                         "u_sem_group": g["u_sem_group"], "error": "; ".join(errors) or None})
    return pa.Table.from_pylist(rows, schema=SCORE_SCHEMA)


class ScorerChain:
    """The three scorers in one Ray actor, their backends built once and shared (a policy_judge loads the policy
    once): one process to start and one set of imports per actor, and no batch waits between scorers."""

    def __init__(self, cfg: Config) -> None:
        import torch

        # Ray gives an actor floor(its CPUs) threads, 1 for the default's 1.5; the scorers run one after another, so
        # each gets every CPU the actor asked for, rounded up.
        torch.set_num_threads(max(1, math.ceil(scorer_asks(cfg.scoring)["num_cpus"])))
        shared: dict = {}
        self.scorers = [scorer(cfg.scoring, cfg.models, shared, cfg.generation.prompt_template) for scorer in SCORERS]

    def __call__(self, groups: pa.Table) -> pa.Table:
        for scorer in self.scorers:
            groups = scorer(groups)
        return groups


def scorer_asks(scoring: ScoringConfig) -> dict[str, Any]:
    """What one scorer actor asks of the cluster: what the three scorers would ask on their own."""
    return {"num_cpus": scoring.cpus_per_actor * len(SCORERS),
            "resources": {k: v * len(SCORERS) for k, v in scoring.actor_resources.items()}}


def scorer_pool(cfg: Config) -> dict[str, Any]:
    """The score step's `Dataset.map_batches` arguments: `scoring.num_actors` ScorerChain actors."""
    import ray

    return {"fn_constructor_kwargs": {"cfg": cfg}, "batch_size": cfg.scoring.batch_size, "batch_format": "pyarrow",
            "compute": ray.data.ActorPoolStrategy(size=cfg.scoring.num_actors), **scorer_asks(cfg.scoring)}


def score(cfg: Config, run: RunDir, resume: bool = False) -> dict:
    """Score `run`'s responses into scores/ (when it resumes, the prompts not on disk yet); returns its stats."""
    return score_runs(cfg, [(run, resume)])[0]


def score_runs(cfg: Config, runs: list[tuple[RunDir, bool]]) -> list[dict]:
    """Score the responses of each (run, resume) in one scoring pipeline, so its scorer actors start once (the
    held-out check's sides); each scored part goes to its own run's scores/. Returns each run's stats, with the
    pipeline's timings."""
    import ray

    scoring = cfg.scoring
    groups: list[dict] = []
    for i, (run, resume) in enumerate(runs):
        (run / "scores").mkdir(exist_ok=True)
        done = set(read_parts(run / "scores", SCORE_SCHEMA)["prompt_id"].to_pylist()) if resume else set()
        todo = group_responses(read_responses(run / "responses"), done)
        if done:
            print(f"[score] resuming: {len(done)} prompts on disk, {len(todo)} to go")
        groups += [{**g, "run": i} for g in todo]
    t0, batches = time.perf_counter(), []
    if groups:
        init_ray(cfg.ray)
        data_context()
        size = scoring.batch_size
        blocks = [pa.Table.from_pylist(groups[i : i + size]) for i in range(0, len(groups), size)]
        ds = ray.data.from_arrow(blocks)
        ds = ds.map_batches(ScorerChain, **scorer_pool(cfg))
        n_resp = sum(len(g["response"]) for g in groups)
        with tqdm(total=n_resp, desc="score", unit="resp", dynamic_ncols=True) as bar:
            for batch in finished_batches(ds):
                rows = batch.to_pylist()
                for i in dict.fromkeys(r["run"] for r in rows):
                    table = explode([r for r in rows if r["run"] == i], scoring.fusion_temperature,
                                    scoring.fusion_weights)
                    write_part(table, runs[i][0] / "scores")
                n = sum(len(r["response"]) for r in rows)
                bar.update(n)
                batches.append((sum(actor_seconds(batch, f"s_{s.dim}") for s in SCORERS), n))
    timing = {"seconds": round(time.perf_counter() - t0, 1),
              **warm_up([b[0] for b in batches], [b[1] for b in batches], scoring.num_actors)}
    return [_scored(scoring, run, sum(len(g["response"]) for g in groups if g["run"] == i), timing)
            for i, (run, _) in enumerate(runs)]


def _scored(scoring: ScoringConfig, run: RunDir, scored_now: int, timing: dict) -> dict:
    """A run's score stats from its scores/ on disk; fails the step (and clears scores/) when more responses
    failed in a scorer backend than `scoring.max_error_rate` allows."""
    table = read_parts(run / "scores", SCORE_SCHEMA)
    errors = [e for e in table["error"].to_pylist() if e]
    failed = [e for e in errors if backend_failed(e)]
    if table.num_rows and len(failed) / table.num_rows > scoring.max_error_rate:
        shutil.rmtree(run / "scores")  # nothing half-scored is kept: the rerun scores every response again
        raise ScoringFailed(f"{len(failed)} of {table.num_rows} responses failed in a scorer backend, above "
                            f"scoring.max_error_rate={scoring.max_error_rate}; the first: {failed[0]}")
    return {"responses": table.num_rows, "scored_this_run": scored_now, "with_error": len(errors), **timing,
            "mean": {k: float(np.nanmean(table[k].to_numpy(zero_copy_only=False))) if table.num_rows else None
                     for k in ("u_sem", "u_fact", "u_val", "U")}}


def score_subruns(cfg: Config, subs: list[RunDir], force: bool = False) -> None:
    """The score sub-step of several sub-runs (the check's sides), those to do scored in one pipeline."""
    todo = [(sub, resume) for sub in subs if (resume := sub.begin(SUBRUN_SCORE, cfg, force)) is not None]
    for (sub, _), stats in zip(todo, score_runs(cfg, todo), strict=True):
        sub.finish(SUBRUN_SCORE, stats)


def score_step(cfg: Config, run: RunDir, force: bool = False) -> dict:
    stats = run.run(SCORE, cfg, lambda resume: score(cfg, run, resume), force)
    m = stats["mean"]
    print(f"[score] {stats['responses']} responses scored ({stats['with_error']} with an error) in "
          f"{run / 'scores'}; mean u_sem {m['u_sem']:.3f}, u_fact {m['u_fact']:.3f}, u_val {m['u_val']:.3f}, "
          f"U {m['U']:.3f}")
    return stats


def generate_and_score(cfg: Config, run: RunDir) -> dict:
    """Generate the responses of the prompts that have none on disk and score them as they come:
    each finished generation batch is written to responses/, its whole prompts are grouped and
    sent to `scoring.num_actors` ScorerChain actors, and each scored batch is written to scores/.

    The generate and score steps that follow pick up whatever a kill left (responses without
    scores, prompts half generated by an earlier unstreamed run). Returns throughput stats.
    """
    import ray
    from ray.util import ActorPool

    gen, scoring = cfg.generation, cfg.scoring
    prompts = pq.read_table(run / "prompts.parquet").to_pylist()[: cfg.data.limit]
    started = set(read_responses(run / "responses")["prompt_id"].to_pylist())
    requests = build_requests([p for p in prompts if p["prompt_id"] not in started], gen.n, gen.seed,
                              listwise=gen.mode == "listwise")
    if not requests:
        return {}
    init_ray(cfg.ray)
    asks = scorer_asks(scoring)
    need = gen.num_actors * gen.cpus_per_actor + scoring.num_actors * asks["num_cpus"]
    have = ray.cluster_resources().get("CPU", 0)
    if local_ray(cfg.ray) and need > have:  # else its actors would wait for each other's CPUs forever
        raise StepFailed(f"scoring.stream runs generation and scoring at once: {need:g} CPUs "
                         f"(generation.num_actors x cpus_per_actor + scoring.num_actors x 3 x cpus_per_actor) on a "
                         f"local Ray of {have:g} (ray.num_cpus); lower them or set scoring.stream: false")
    chain = ray.remote(**asks)(ScorerChain)
    pool = ActorPool([chain.remote(cfg) for _ in range(scoring.num_actors)])
    for out in ("responses", "scores"):
        (run / out).mkdir(exist_ok=True)
    open_groups: dict[str, list[dict]] = {}
    ready: list[dict] = []
    n_resp = len({r["prompt_id"] for r in requests}) * gen.n
    t0, tokens = time.perf_counter(), 0
    gen_bar = tqdm(total=n_resp, desc="generate", unit="resp", dynamic_ncols=True, position=0)
    score_bar = tqdm(total=n_resp, desc="score", unit="resp", dynamic_ncols=True, position=1)

    def collect(wait: bool) -> None:
        while pool.has_next():
            try:
                batch = pool.get_next_unordered(timeout=None if wait else 0)
            except TimeoutError:
                return
            table = explode(batch.to_pylist(), scoring.fusion_temperature, scoring.fusion_weights)
            write_part(table, run / "scores")
            score_bar.update(table.num_rows)

    def submit(groups: list[dict]) -> None:
        pool.submit(lambda actor, t: actor.__call__.remote(t), pa.Table.from_pylist(groups))

    with gen_bar, score_bar:
        for rows, n_tokens, _ in generated(cfg, requests):
            tokens += n_tokens
            table = pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA)
            write_part(table, run / "responses")
            gen_bar.update(table.num_rows)
            for r in table.to_pylist():
                open_groups.setdefault(r["prompt_id"], []).append(r)
            whole = [pid for pid, rs in open_groups.items() if len(rs) == gen.n]
            ready += group_responses(pa.Table.from_pylist([r for pid in whole for r in open_groups.pop(pid)],
                                                          schema=RESPONSE_SCHEMA))
            while len(ready) >= scoring.batch_size:
                submit(ready[: scoring.batch_size])
                ready = ready[scoring.batch_size :]
            collect(wait=False)
        gen_s = time.perf_counter() - t0
        if ready:
            submit(ready)
        collect(wait=True)
    seconds = time.perf_counter() - t0
    return {"responses": gen_bar.n, "scored": score_bar.n, "tokens": tokens, "seconds": round(seconds, 1),
            "generation_seconds": round(gen_s, 1), "tokens_per_s": round(tokens / gen_s, 1),
            "responses_per_s": round(score_bar.n / seconds, 2)}
