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
from udasa_ray.pipeline import ORDER, run_pipeline
from udasa_ray.plan import preflight
from udasa_ray.runs import RunDir
from udasa_ray.tracking import tracked


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe, then overlays such as configs/methods/rlaif.yaml "
                   "(repeatable; default configs/tiny-cpu.yaml)")
    p.add_argument("--run-dir", help="default: runs/<config name>")
    p.add_argument("--cluster", help="the cluster file (clusters/): checked against the plan before any work")
    p.add_argument("--through", choices=ORDER, default="report",
                   help="the last step to run (default: all of them), e.g. score to inspect the data before training")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. generation.n=5")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    cfg = load_config(args.config, args.overrides)
    preflight("align", cfg, cluster=args.cluster, configs=args.config)
    run = RunDir(args.run_dir or Path("runs") / "-".join(Path(c).stem for c in args.config))
    with run.hold("jobs/align.py"), tracked(cfg, run.path, "align"):
        done = run_pipeline(cfg, run, args.through)
    where = [  # (step, what, where) of what the steps that ran wrote
        ("ingest", "prompts (+ rejects with reasons)", "prompts.parquet, heldout.parquet, rejects.jsonl"),
        ("generate", "responses", "responses/"), ("score", "uncertainty scores", "scores/"),
        ("pairs", "pairs and curriculum", "pairs/, stages/"),
        ("train", "checkpoints per stage (HF format)", "train/stage_<k>/"),
        ("train", "training metrics", "train/stage_<k>/metrics.jsonl, train/stage_<k>/tensorboard/"),
        ("check", "held-out check", "heldout/summary.json"), ("report", "report", str(done.get("report")))]
    print(f"align: done in {run.path.resolve()}"
          + (f"\n  aligned policy: {done['train']['aligned']}" if "train" in done else ""))
    print("\n".join(f"  {what}: {path}" for step, what, path in where if step in done)
          + "\n  what ran with which config: manifest.json"
          + (f"\n  {cfg.tracking.backend} run: tracking.json" if cfg.tracking.backend != "none" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(entry("align", main))
