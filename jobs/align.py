"""The main job: `python jobs/align.py --config C` or `ray job submit -- python jobs/align.py ...`.

Starts a local Ray, or joins the cluster named by RAY_ADDRESS after checking the plan against the cluster
(--cluster FILE, or the launcher's config on the head; what does not fit stops it with exit 2).
ingest -> generate -> score -> pairs + curriculum -> phased DPO -> held-out check of base vs aligned ->
report. Every step is resumable: a rerun skips what finished, and training resumes after its last
finished stage.
"""

import argparse
import sys
from pathlib import Path

# `python jobs/align.py` puts jobs/ on the path, not the project: make the package importable
# from a plain checkout (as `ray job submit --working-dir .` ships it), installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from udasa_ray.config import load_config
from udasa_ray.errors import entry
from udasa_ray.pipeline import run_pipeline
from udasa_ray.plan import preflight
from udasa_ray.runs import RunDir
from udasa_ray.tracking import tracked


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe, then overlays such as configs/methods/rlaif.yaml "
                   "(repeatable; default configs/tiny-cpu.yaml)")
    p.add_argument("--run-dir", help="default: runs/<config name>")
    p.add_argument("--cluster", help="the cluster file (clusters/): checked against the plan before any work")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. generation.n=5")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    cfg = load_config(args.config, args.overrides)
    preflight("align", cfg, cluster=args.cluster, configs=args.config)
    run = RunDir(args.run_dir or Path("runs") / "-".join(Path(c).stem for c in args.config))
    with run.hold("jobs/align.py"), tracked(cfg, run.path, "align"):
        done = run_pipeline(cfg, run)
    root = run.path.resolve()
    where = {
        "prompts (+ rejects with reasons)": "prompts.parquet, heldout.parquet, rejects.jsonl",
        "responses": "responses/", "uncertainty scores": "scores/", "pairs and curriculum": "pairs/, stages/",
        "checkpoints per stage (HF format)": "train/stage_<k>/", "training metrics": "train/stage_<k>/metrics.jsonl, "
        "train/stage_<k>/tensorboard/", "held-out check": "heldout/summary.json", "report": "report/report.md",
        "what ran with which config": "manifest.json",
        **({f"{cfg.tracking.backend} run": "tracking.json"} if cfg.tracking.backend != "none" else {}),
    }
    print(f"align: done in {root}\n  aligned policy: {done['train']['aligned']}")
    print("\n".join(f"  {k}: {v}" for k, v in where.items()) + f"\n  report: {done['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(entry("align", main))
