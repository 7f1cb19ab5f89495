"""The main job: `python jobs/align.py --config C` or `ray job submit -- python jobs/align.py ...`.

Starts a local Ray, or joins the cluster named by RAY_ADDRESS. Every stage is resumable: a
rerun skips what finished. So far: ingest -> generate -> score -> pairs + curriculum -> report
(phased DPO comes next).
"""

import argparse
import sys
from pathlib import Path

# `python jobs/align.py` puts jobs/ on the path, not the project: make the package importable
# from a plain checkout (as `ray job submit --working-dir .` ships it), installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from udasa_ray import stages
from udasa_ray.config import ConfigError, load_config
from udasa_ray.data.ingest import IngestError
from udasa_ray.models import ModelNotAvailable
from udasa_ray.report import write_report
from udasa_ray.runs import RunDir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny-cpu.yaml")
    p.add_argument("--run-dir", help="default: runs/<config name>")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. generation.n=5")
    args = p.parse_args()
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"align: config error: {e}", file=sys.stderr)
        return 2
    run = RunDir(args.run_dir or Path("runs") / Path(args.config).stem)
    try:
        stages.ingest_stage(cfg, run)
        stages.generate_stage(cfg, run)
        stages.score_stage(cfg, run)
        stages.pairs_stage(cfg, run)
    except (IngestError, ModelNotAvailable, stages.StageMissing) as e:
        print(f"align: error: {e}", file=sys.stderr)
        return 1
    report = write_report(run)
    print(f"align: artifacts in {run.path.resolve()}: prompts.parquet, rejects.jsonl, responses/, scores/, "
          f"pairs/, stages/, manifest.json; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
