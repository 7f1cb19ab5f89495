"""Threshold sweep job: `python jobs/tune_thresholds.py --config C --run-dir DIR [key=value ...]`,
or under `ray job submit --working-dir . -- python jobs/tune_thresholds.py ...`.

Makes (or reuses) the run's prompts, responses and scores, then sweeps τ1 < τ2 and the number
of stages with Ray Tune (udasa_ray/tune/sweep.py). Rerun it after an interruption to resume.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray.config import load_config
from udasa_ray.errors import entry
from udasa_ray.pipeline import run_pipeline
from udasa_ray.plan import preflight
from udasa_ray.runs import RunDir
from udasa_ray.tracking import tracked
from udasa_ray.tune.sweep import sweep


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe and overlays (default configs/tiny-cpu.yaml)")
    p.add_argument("--run-dir", help="default: runs/<config name>")
    p.add_argument("--fresh", action="store_true", help="discard a previous sweep instead of resuming it")
    p.add_argument("--cluster", help="the cluster file (clusters/): checked against the plan before any work")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. tune.search=optuna tune.num_samples=12")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    cfg = load_config(args.config, args.overrides)
    preflight("tune_thresholds", cfg, cluster=args.cluster, configs=args.config)
    run = RunDir(args.run_dir or Path("runs") / Path(args.config[0]).stem)
    with run.hold("jobs/tune_thresholds.py"), tracked(cfg, run.path, "tune_thresholds") as tracker:
        run_pipeline(cfg, run, "score")
        result = sweep(cfg, run, args.fresh, tracker)
    print(f"tune_thresholds: {result['finished']}/{result['trials']} trials finished; results in {run / 'tune'}"
          + (f"; best config {run / 'tune' / 'best.yaml'}" if result["best"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(entry("tune_thresholds", main))
