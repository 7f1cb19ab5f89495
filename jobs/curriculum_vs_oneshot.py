"""Curriculum vs one-shot DPO on the same scored pairs and the same step budget (the paper's central
claim, at whatever scale the run has).

    python jobs/curriculum_vs_oneshot.py --config configs/small-cpu.yaml --run-dir RUN [--eval]

RUN is a finished `jobs/align.py` run of the curriculum (its held-out check included). The one-shot
run (default RUN-oneshot) shares RUN's prompts, responses, scores and the base policy's held-out
answers, and trains all pairs in one stage for as many optimizer steps as the curriculum planned in
total, at the curriculum's later-stage peak learning rate. Both aligned policies are then compared
prompt by prompt on the held-out prompts (one-shot − curriculum, 95% bootstrap interval, sign-flip
p) -> <one-shot run>/heldout/vs_curriculum.json. With --eval, vanilla, one-shot and the curriculum
are also evaluated on the four tasks and laid side by side by `udasa compare` -> <one-shot run>/compare/.
Everything resumes.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray.check.step import compare_sides, format_check, read_per_prompt
from udasa_ray.config import load_config
from udasa_ray.errors import entry
from udasa_ray.evaluate.compare import compare as compare_evals
from udasa_ray.evaluate.step import evaluate_model
from udasa_ray.pipeline import SHARED_STEPS, run_pipeline
from udasa_ray.runs import RunDir, StepMissing
from udasa_ray.tracking import tracked

ONE_SHOT = Path(__file__).resolve().parent.parent / "configs" / "methods" / "one-shot.yaml"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True, help="the curriculum run's recipe (repeatable)")
    p.add_argument("--run-dir", required=True, help="a finished align run of the curriculum")
    p.add_argument("--out", help="the one-shot run directory (default: RUN-oneshot)")
    p.add_argument("--eval", action="store_true", help="also evaluate vanilla, one-shot and curriculum on 4 tasks")
    p.add_argument("overrides", nargs="*", help="dotted overrides for both runs")
    args = p.parse_args()
    cfg = load_config(args.config, args.overrides)
    curriculum = RunDir(args.run_dir)
    for need in ("train/summary.json", "heldout/per_prompt.parquet"):
        if not (curriculum / need).is_file():
            raise StepMissing(f"{args.run_dir} is not a finished align run (no {need})")
    trained = json.loads((curriculum / "train" / "summary.json").read_text())
    budget = sum(s["planned_steps"] for s in trained["stages"])
    train_cfg = cfg.train
    peak = f"train.lora.lr_stage1={train_cfg.lora.lr}" if train_cfg.lora.enabled else f"train.lr_stage1={train_cfg.lr}"
    # Epochs enough that the step cap, not the data, ends the stage (stages round their steps up each).
    one_cfg = load_config([*args.config, ONE_SHOT], [*args.overrides, f"train.max_steps_per_stage={budget}",
                                                      f"train.epochs_per_stage={float(budget)}", peak])
    one = RunDir(Path(args.out or f"{curriculum.path}-oneshot"))
    with one.hold("jobs/curriculum_vs_oneshot.py"), tracked(one_cfg, one.path, "curriculum_vs_oneshot"):
        one.adopt(curriculum, SHARED_STEPS)
        if not (one / "heldout" / "base").exists():  # the base side of the held-out check: a run of its own
            shutil.copytree(curriculum / "heldout" / "base", one / "heldout" / "base")
        print(f"[one-shot] all pairs in one stage, at most {budget} steps (the curriculum's planned total), "
              f"{peak.split('=')[0]}={peak.split('=')[1]}")
        one_trained = run_pipeline(one_cfg, one, "check", since="pairs")["train"]

        result = compare_sides(read_per_prompt(curriculum, "aligned"), read_per_prompt(one, "aligned"),
                         cfg.eval.bootstrap, cfg.data.seed)
        print("[compare] held-out prompts, one-shot − curriculum, paired by prompt (lower U is better):\n"
              + format_check(result, ("curriculum", "one-shot")))
        (one / "heldout" / "vs_curriculum.json").write_text(json.dumps(
            {"budget_steps": budget, "curriculum": result["base"], "one_shot": result["aligned"],
             "paired": result["paired"]}, indent=2))
        if args.eval:
            runs = {"vanilla": one / "vanilla", "one-shot": one.path, "three-stage": curriculum.path}
            evaluate_model(cfg, cfg.models.policy, runs["vanilla"] / "eval", "vanilla")
            evaluate_model(one_cfg, one_trained["aligned"], one / "eval", "one-shot", one_trained["aligned_hash"])
            evaluate_model(cfg, trained["aligned"], curriculum / "eval", "three-stage", trained["aligned_hash"])
            table = compare_evals([str(r) for r in runs.values()], one / "compare")
            print(f"\n[compare] {table}\n" + Path(table).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(entry("curriculum_vs_oneshot", main))
