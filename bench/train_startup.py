"""What a Ray Train run costs beyond its work: `TorchTrainer.fit()` of a function that only reports, on the
local Ray, at several settings of `RAY_TRAIN_HEALTH_CHECK_INTERVAL_S` (how often the controller checks on its
workers; 2 s is Ray's default, the train step sets 0.2 s).

Ray Train passes the variable from the driver to the controller at each `fit()`, so one Ray serves every
setting. The first fit of the process also starts Ray Train's own actors and is reported apart.

    python bench/train_startup.py [--intervals 2.0 0.5 0.2] [--repeats 3] [--workers 1] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout


def report_once(config: dict) -> None:
    import ray.train

    ray.train.report({"done": 1})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intervals", type=float, nargs="+", default=[2.0, 0.5, 0.2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args()

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from udasa_ray.config import RayConfig
    from udasa_ray.models import cpu_kind
    from udasa_ray.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=max(2, args.workers)))
    storage = tempfile.mkdtemp(prefix="train-startup-")

    def fit(name: str) -> float:
        start = time.perf_counter()
        TorchTrainer(report_once, scaling_config=ScalingConfig(num_workers=args.workers),
                     run_config=RunConfig(name=name, storage_path=storage)).fit()
        return time.perf_counter() - start

    first = fit("first")
    rows = []
    for interval in args.intervals:
        os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = str(interval)
        walls = [fit(f"i{interval}-{k}") for k in range(args.repeats)]
        rows.append({"interval_s": interval, "fit_seconds": [round(w, 2) for w in walls],
                     "median": round(statistics.median(walls), 2)})
    ray.shutdown()
    result = {"cpu": cpu_kind(), "workers": args.workers, "first_fit_seconds": round(first, 2), "rows": rows}
    print(f"{result['cpu']}; {args.workers} worker(s); the process's first fit {first:.2f} s")
    print("| health-check interval | fit() walls | median |\n|---:|---|---:|")
    for r in rows:
        print(f"| {r['interval_s']:g} s | {', '.join(f'{w:.2f}' for w in r['fit_seconds'])} s | {r['median']:.2f} s |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
