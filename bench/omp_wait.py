"""Two torch processes on the same cores, by OpenMP wait policy: the bundled SmolLM2 decodes (greedy, 4 prompts x
48 tokens, 2 threads) in one process alone, then in two processes at once, with OpenMP's default wait (threads spin
before they sleep), OMP_WAIT_POLICY=PASSIVE (they sleep at once), and one thread a process.

A decode step is many small parallel regions, so a thread that waits at a barrier while the other process holds
the core it needs spins through the other's time slice. `make test` runs two test processes, so its workers set
OMP_WAIT_POLICY=PASSIVE (tests/conftest.py).

    python bench/omp_wait.py [--repeats 4] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # importable from a plain checkout

SETTINGS = {"default (spin, then sleep)": ({}, 2), "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
            "1 thread": ({}, 1)}


def decode(repeats: int, threads: int, cache: str) -> None:
    """The measured work, in a process of its own: prints its seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from udasa_ray.models import resolve

    torch.set_num_threads(threads)
    path = resolve("bundled:smollm2-135m-instruct", cache)
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    enc = tok(["Tell me about the moon."] * 4, return_tensors="pt", padding=True)
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=8, do_sample=False)  # first-call costs, not measured
        start = time.perf_counter()
        for _ in range(repeats):
            model.generate(**enc, max_new_tokens=48, min_new_tokens=48, do_sample=False)
    print(round(time.perf_counter() - start, 2))


def run(copies: int, env: dict, threads: int, repeats: int, cache: str) -> list[float]:
    cmd = [sys.executable, __file__, "--decode", str(repeats), str(threads), cache]
    procs = [subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0].split()[-1]) for p in procs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--cache", default="~/.cache/udasa-ray")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--decode", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.decode:
        decode(int(args.decode[0]), int(args.decode[1]), args.decode[2])
        return

    from udasa_ray.models import cpu_kind

    rows = []
    for name, (env, threads) in SETTINGS.items():
        alone, together = run(1, env, threads, args.repeats, args.cache), run(2, env, threads, args.repeats, args.cache)
        rows.append({"setting": name, "alone_s": alone[0], "two_at_once_s": together})
    result = {"cpu": cpu_kind(), "work": f"{args.repeats} x generate(4 prompts, 48 tokens)", "rows": rows}
    print(f"{result['cpu']}; each process: {result['work']}")
    print("| setting | alone | each of two at once | two at once ÷ the two one after the other |\n|---|---:|---:|---:|")
    for r in rows:
        ratio = max(r["two_at_once_s"]) / (2 * r["alone_s"])
        print(f"| {r['setting']} | {r['alone_s']:.2f} s | {', '.join(f'{t:.2f}' for t in r['two_at_once_s'])} s "
              f"| {ratio:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
