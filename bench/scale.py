"""How time and memory grow with the work, in two curves on synthetic prompts.

The driver's data path: ingest, pairs (with the curriculum split), export and the report on scored responses,
at Alpaca's size (52k prompts x 5 responses) and around it. Generation and scoring are not run: their scores are
written as the score step leaves them (one part file per 50,000 rows), with answers of about 64 tokens.

The Ray Data path: ingest, then the generate and score steps as the job runs them (the embedded default's
models and actors on the local Ray), with tiny answers (4 new tokens, 2 per prompt, the factual scorer in its
one-pair `paper` mode) so that thousands of prompts fit in minutes; rows in and out are checked (every
(prompt, sample) once), and what Ray spilled from its object store is read from its memory summary.

Each size runs in a fresh process, so its peak resident memory (ru_maxrss, read after each step) is the
driver's own; the synthetic files are made by another process first.

    python bench/scale.py [--prompts 5200 52000 520000] [--ray-prompts 500 2000 8000] [--out docs/results]

Prints a table per size (wall seconds, peak RSS after it, seconds per 1,000 prompts) and writes
<out>/scale.json and <out>/scale.png (both curves).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

WORDS = ("the answer depends on context and careful reasoning about each step of the problem with examples "
         "clear explanation model data value risk safety honest helpful question because therefore").split()
ROWS_PER_PART = 50_000


def _text(rng, words: int) -> str:  # noqa: ANN001
    return " ".join(rng.choice(WORDS, size=words))


def make_inputs(folder: Path, prompts: int, n: int) -> None:
    """prompts.jsonl (Alpaca's fields) and scores/ as the score step leaves them, with seeded random u's."""
    import numpy as np
    import pyarrow as pa

    from udasa_ray.parts import write_part
    from udasa_ray.score.fusion import fuse
    from udasa_ray.score.step import SCORE_SCHEMA

    rng = np.random.default_rng(0)
    with open(folder / "prompts.jsonl", "w") as f:
        for i in range(prompts):
            f.write(json.dumps({"instruction": f"Question {i}: " + _text(rng, 12), "input": "", "output": ""}) + "\n")
    (folder / "scores").mkdir()
    ids = [f"p{i}" for i in range(prompts)]
    for start in range(0, prompts * n, ROWS_PER_PART):
        rows = range(start, min(start + ROWS_PER_PART, prompts * n))
        u = rng.uniform(0, 1, size=(len(rows), 3))
        U = fuse(u)
        write_part(pa.Table.from_pylist([
            {"prompt_id": ids[r // n], "prompt": "Question", "sample_idx": r % n, "response": _text(rng, 48),
             "u_sem": float(a), "u_fact": float(b), "u_val": float(c), "U": float(x), "error": None}
            for r, (a, b, c), x in zip(rows, u, U, strict=True)], schema=SCORE_SCHEMA), folder / "scores")


def measure(folder: Path) -> dict:
    """The data path's steps on `folder`'s inputs, in this process: wall seconds and peak RSS (MiB) after each."""
    import shutil

    from udasa_ray.config import load_config
    from udasa_ray.ingest.step import ingest_step
    from udasa_ray.pairs.export import export
    from udasa_ray.pairs.step import pairs_step
    from udasa_ray.report.step import write_report
    from udasa_ray.runs import RunDir

    run = RunDir(folder / "run")
    shutil.copytree(folder / "scores", run / "scores")
    cfg = load_config(None, [f"data.source={folder / 'prompts.jsonl'}", "data.heldout_prompts=100",
                             "data.max_prompt_chars=2000"])
    out = {}

    def timed(name: str, fn) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        fn()
        out[name] = {"seconds": round(time.perf_counter() - t0, 2),
                     "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}

    out["start"] = {"seconds": 0.0, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    timed("ingest", lambda: ingest_step(cfg, run))
    run.update_step("generate", status="done", config_hash="synthetic")
    run.update_step("score", status="done", config_hash="synthetic")
    timed("pairs", lambda: pairs_step(cfg, run))
    timed("export", lambda: export(run, folder / "export", "hf"))
    timed("report", lambda: write_report(run))
    return out


# Tiny answers for the Ray Data curve: what grows with the prompts is the path, not the decoding.
RAY_OVERRIDES = ["generation.max_new_tokens=4", "generation.n=2", "scoring.factual.mode=paper",
                 "data.heldout_prompts=0", "data.max_prompt_chars=2000"]


def measure_ray(folder: Path, prompts: int) -> dict:
    """Ingest, generate and score on `prompts` of `folder`'s prompts with the embedded default on the local Ray:
    wall seconds and peak RSS after each, the rows checked, and what the object store spilled."""
    from ray._private.internal_api import memory_summary

    from udasa_ray.config import load_config
    from udasa_ray.generate.step import read_responses
    from udasa_ray.parts import read_parts
    from udasa_ray.pipeline import run_pipeline
    from udasa_ray.runs import RunDir
    from udasa_ray.score.step import SCORE_SCHEMA

    cfg = load_config(None, [f"data.source={folder / 'prompts.jsonl'}", f"data.limit={prompts}", *RAY_OVERRIDES])
    run, out = RunDir(folder / f"ray-{prompts}"), {}
    for step in ("ingest", "generate", "score"):
        t0 = time.perf_counter()
        run_pipeline(cfg, run, step, since=step)
        out[step] = {"seconds": round(time.perf_counter() - t0, 2),
                     "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    want = prompts * cfg.generation.n
    for name, table in (("responses", read_responses(run / "responses")),
                        ("scores", read_parts(run / "scores", SCORE_SCHEMA))):
        keys = set(zip(table["prompt_id"].to_pylist(), table["sample_idx"].to_pylist(), strict=True))
        out[name] = {"rows": table.num_rows, "distinct": len(keys), "expected": want}
        assert table.num_rows == len(keys) == want, f"{name}: {table.num_rows} rows, {len(keys)} distinct, {want} due"
    spilled = re.search(r"Spilled (\d+) MiB", memory_summary(stats_only=True))
    out["spilled_mib"] = int(spilled.group(1)) if spilled else 0
    out["first_batch_ratio"] = {k: run.step(k)["stats"].get("first_batch_ratio") for k in ("generate", "score")}
    return out


def plot(results: dict[int, dict], ray_results: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 * bool(results) + bool(ray_results)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    axes = list(axes[0])
    if results:
        a, b, sizes = axes.pop(0), axes.pop(0), sorted(results)
        for s in [s for s in results[sizes[0]] if s != "start"]:
            a.plot(sizes, [results[k][s]["seconds"] for k in sizes], "o-", label=s)
        a.plot(sizes, [results[sizes[0]]["pairs"]["seconds"] * k / sizes[0] for k in sizes], "k:", label="linear")
        a.set(xscale="log", yscale="log", xlabel="prompts (x5 responses)", ylabel="wall seconds",
              title="time per step")
        a.legend()
        b.plot(sizes, [results[k]["report"]["peak_rss_mib"] for k in sizes], "o-", label="peak RSS of the driver")
        b.plot(sizes, [results[k]["start"]["peak_rss_mib"] for k in sizes], "o--", label="after imports")
        b.set(xscale="log", yscale="log", xlabel="prompts (x5 responses)", ylabel="MiB", title="driver memory")
        b.legend()
    if ray_results:
        c, ray_sizes = axes.pop(0), sorted(ray_results)
        for s in ("generate", "score"):
            c.plot(ray_sizes, [ray_results[k][s]["seconds"] / k for k in ray_sizes], "o-", label=s)
        c.set(xscale="log", xlabel="prompts (x2 answers of 4 tokens)", ylabel="wall seconds per prompt",
              title="Ray Data path (local Ray, 2 CPUs)")
        c.set_ylim(bottom=0)
        c.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", nargs="*", type=int, default=[5200, 52000, 520000])
    p.add_argument("--ray-prompts", nargs="*", type=int, default=[500, 2000, 8000])
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--make", nargs=2, metavar=("DIR", "PROMPTS"), help=argparse.SUPPRESS)
    p.add_argument("--measure", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--measure-ray", nargs=2, metavar=("DIR", "PROMPTS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make:
        make_inputs(Path(args.make[0]), int(args.make[1]), args.n)
        return 0
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return 0
    if args.measure_ray:
        print(json.dumps(measure_ray(Path(args.measure_ray[0]), int(args.measure_ray[1]))))
        return 0
    results = {}
    for prompts in args.prompts:
        with tempfile.TemporaryDirectory(prefix="udasa-scale-") as tmp:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--make", tmp, str(prompts), "--n", str(args.n)], check=True)
            made = time.perf_counter() - t0
            r = subprocess.run([sys.executable, __file__, "--measure", tmp], check=True, capture_output=True, text=True)
            results[prompts] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"\n{prompts:,} prompts x {args.n} ({made:.0f} s to make the inputs):")
        print(f"{'step':8} {'seconds':>9} {'s / 1k prompts':>15} {'peak RSS MiB':>13}")
        for step, v in results[prompts].items():
            print(f"{step:8} {v['seconds']:>9.2f} {1000 * v['seconds'] / prompts:>15.3f} {v['peak_rss_mib']:>13.1f}")
    ray_results = {}
    for prompts in args.ray_prompts:
        with tempfile.TemporaryDirectory(prefix="udasa-scale-ray-") as tmp:
            subprocess.run([sys.executable, __file__, "--make", tmp, str(prompts), "--n", "1"], check=True)
            r = subprocess.run([sys.executable, __file__, "--measure-ray", tmp, str(prompts)], check=True,
                               stdout=subprocess.PIPE, text=True)
            ray_results[prompts] = v = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"\nRay Data path, {prompts:,} prompts x 2 answers: {v['responses']['rows']} responses and "
              f"{v['scores']['rows']} scores, each (prompt, sample) once; {v['spilled_mib']} MiB spilled; "
              f"first-batch ratio {v['first_batch_ratio']}")
        print(f"{'step':8} {'seconds':>9} {'s / prompt':>11} {'peak RSS MiB':>13}")
        for step in ("ingest", "generate", "score"):
            print(f"{step:8} {v[step]['seconds']:>9.2f} {v[step]['seconds'] / prompts:>11.4f} "
                  f"{v[step]['peak_rss_mib']:>13.1f}")
    from udasa_ray.models import cpu_kind

    out = Path(args.out)
    (out / "scale.json").write_text(json.dumps({"machine": cpu_kind(),
                                                "n": args.n, "results": results, "ray_overrides": RAY_OVERRIDES,
                                                "ray_results": ray_results}, indent=2))
    plot(results, ray_results, out / "scale.png")
    print(f"\n-> {out / 'scale.json'}, {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
