"""How the driver's data path grows with the work: ingest, pairs (with the curriculum split), export and the
report, on synthetic prompts and scored responses, at Alpaca's size (52k prompts x 5 responses) and around it.

Generation and scoring are not run: their scores are written as the score step leaves them (one part file per
50,000 rows), with answers of about 64 tokens. Each size runs in a fresh process, so its peak resident memory
(ru_maxrss, read after each step) is the driver's own; the synthetic files are made by another process first.

    python bench/scale.py [--prompts 5200 52000 520000] [--n 5] [--out docs/results]

Prints a table per step (wall seconds, peak RSS after it, seconds per 1,000 prompts) and writes
<out>/scale.json and <out>/scale.png (both curves, log-log).
"""

from __future__ import annotations

import argparse
import json
import platform
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


def plot(results: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results)
    steps = [s for s in results[sizes[0]] if s != "start"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for s in steps:
        a.plot(sizes, [results[k][s]["seconds"] for k in sizes], "o-", label=s)
    a.plot(sizes, [results[sizes[0]]["pairs"]["seconds"] * k / sizes[0] for k in sizes], "k:", label="linear")
    a.set(xscale="log", yscale="log", xlabel="prompts (x5 responses)", ylabel="wall seconds", title="time per step")
    a.legend()
    b.plot(sizes, [results[k]["report"]["peak_rss_mib"] for k in sizes], "o-", label="peak RSS of the driver")
    b.plot(sizes, [results[k]["start"]["peak_rss_mib"] for k in sizes], "o--", label="after imports")
    b.set(xscale="log", yscale="log", xlabel="prompts (x5 responses)", ylabel="MiB", title="driver memory")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", nargs="+", type=int, default=[5200, 52000, 520000])
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--out", default="docs/results")
    p.add_argument("--make", nargs=2, metavar=("DIR", "PROMPTS"), help=argparse.SUPPRESS)
    p.add_argument("--measure", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.make:
        make_inputs(Path(args.make[0]), int(args.make[1]), args.n)
        return 0
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
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
    out = Path(args.out)
    (out / "scale.json").write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                                "n": args.n, "results": results}, indent=2))
    plot(results, out / "scale.png")
    print(f"\n-> {out / 'scale.json'}, {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
