"""What a local Ray's own processes cost torch work on the same cores: a fixed training step of the bundled SmolLM2
(forward, backward and AdamW on 4 x 192 tokens, 2 threads), timed in a process alone, in a plain process beside a
local Ray started as the job starts it (`init_ray`), beside that Ray holding `--actors` idle actors (about what a
job holds while it trains: Ray Data's and Ray Train's helpers, idle workers), and as a Ray task of 2 CPUs beside
the same company. The settings alternate, `--repeats` rounds. Where Ray runs, the context switches per second of
its processes (the threads' own counts in /proc) are counted for 5 s before the work starts.

    python bench/beside_ray.py [--repeats 2] [--actors 10] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # importable from a plain checkout

SETTINGS = ("alone", "beside an idle Ray", "beside Ray and its idle actors", "in a Ray worker, same company")
STEPS = 12  # the first two are not timed: first-call costs


def train_steps(cache: str) -> float:
    """The measured work: the median seconds of a training step of the bundled policy, on 2 threads."""
    import torch
    from transformers import AutoModelForCausalLM

    from udasa_ray.models import resolve

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve("bundled:smollm2-135m-instruct", cache), dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(0, 1000, (4, 192))
    seconds = []
    for _ in range(STEPS):
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[2:])


def switches_per_s(pids: list[int], seconds: float = 5.0) -> float:
    """Context switches per second of `pids`' threads together (voluntary and not)."""
    def total() -> int:
        n = 0
        for pid in pids:
            try:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                        if "ctxt_switches" in line:
                            n += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass
        return n

    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


def ray_processes() -> list[int]:
    """This process's descendants: a local Ray's GCS, raylet, dashboard, agents and workers."""
    import psutil

    return [p.pid for p in psutil.Process().children(recursive=True)]


def measured(setting: str, actors: int, cache: str) -> dict:
    """`setting` measured in a process of its own: the last line it prints."""
    done = subprocess.run([sys.executable, __file__, "--measure", setting, str(actors), cache],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"measuring {setting!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(setting: str, actors: int, cache: str) -> dict:
    """One measurement of `setting`, in this process (started for it)."""
    if setting == "alone":
        return {"step_s": train_steps(cache)}
    import ray

    from udasa_ray.config import load_config
    from udasa_ray.ray_utils import init_ray

    init_ray(load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), []).ray)  # the embedded default's local Ray

    @ray.remote(num_cpus=0)
    class Idle:
        def ready(self) -> bool:
            return True

    company = [Idle.remote() for _ in range(actors if setting != "beside an idle Ray" else 0)]
    ray.get([a.ready.remote() for a in company])
    time.sleep(5)  # the workers' and actors' own start settles
    out = {"ray_switches_per_s": round(switches_per_s(ray_processes()))}
    if setting == "in a Ray worker, same company":
        out["step_s"] = ray.get(ray.remote(num_cpus=2)(train_steps).remote(cache))
    else:  # a plain process, no Ray in it
        out["step_s"] = measured("alone", 0, cache)["step_s"]
    ray.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--actors", type=int, default=10)
    p.add_argument("--cache", default="~/.cache/udasa-ray")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure[0], int(a.measure[1]), a.measure[2])))
        return
    from udasa_ray.models import cpu_kind

    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for _ in range(a.repeats):
        for setting in SETTINGS:
            runs[setting].append(measured(setting, a.actors, a.cache))
            print(setting, runs[setting][-1], flush=True)
    alone = statistics.mean(r["step_s"] for r in runs["alone"])
    print(f"\n{cpu_kind()}; a training step of the bundled SmolLM2 on 2 threads, {a.actors} idle actors\n"
          "| where | seconds a step | against alone | Ray's context switches/s |\n|---|---|---:|---|")
    for setting, rs in runs.items():
        steps = [r["step_s"] for r in rs]
        sw = ", ".join(str(r["ray_switches_per_s"]) for r in rs if "ray_switches_per_s" in r) or "-"
        print(f"| {setting} | {', '.join(f'{s:.3f}' for s in steps)} | {statistics.mean(steps) / alone:.3f}x | {sw} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": cpu_kind(), "actors": a.actors, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
