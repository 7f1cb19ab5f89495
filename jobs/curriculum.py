"""The curriculum, tested fairly: arms that differ only in how the same pairs are grouped and ordered.

    python jobs/curriculum.py --config configs/small-cpu.yaml --run-dir RUN [--arms A,B] [--seeds 0,1,2]

RUN's prompts, responses and scores are made (or reused) once, and the base policy answers the held-out
prompts once (RUN/heldout/base). Each arm and seed is then a run of its own, OUT/<arm>/seed<k> (OUT defaults
to RUN-curriculum), that takes RUN's scores, pairs them with its own curriculum, trains and checks. Every arm
trains with the same beta in every stage, the same peak learning rate in every stage, the same total step
budget (train.total_steps, shared among an arm's stages by their pairs) and the same early-stopping pairs
(train.eval_seed); the seed (train.seed) draws the capped stages' pairs and the batch order.

Arms: one-shot (all pairs in one stage), curriculum (easy to hard on Δu's rank, the configured thresholds),
minmax (the same thresholds on min-max scaled Δu), anti (hard to easy) and previous (each stage's DPO
reference is the policy before it, as sDPO and Curri-DPO do).

Prints, per arm, the held-out ΔU vs base (each seed, their mean, and a paired interval over prompts with the
seeds averaged per prompt) and each arm against one-shot -> OUT/summary.json and OUT/summary.md.
Everything resumes.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray.check.arms import arms_markdown, compare_arms
from udasa_ray.check.step import CHECK_METRICS, answer_sides, read_per_prompt, share_base_side
from udasa_ray.config import load_config
from udasa_ray.errors import entry
from udasa_ray.pipeline import SHARED_STEPS, run_pipeline
from udasa_ray.runs import RunDir
from udasa_ray.tracking import tracked

ARMS = {"one-shot": ["curriculum.thresholds=[]"],
        "curriculum": ["curriculum.scale=quantile"],
        "minmax": ["curriculum.scale=minmax"],
        "anti": ["curriculum.scale=quantile", "curriculum.order=hard_first"],
        "previous": ["curriculum.scale=quantile", "train.reference=previous"]}
REFERENCE = "one-shot"


def kept_steps(run: RunDir) -> int:
    """The optimizer steps behind the arm's aligned policy: each stage's kept step (0 when early stopping kept
    the policy it started from)."""
    stages = json.loads((run / "train" / "summary.json").read_text())["stages"]
    return sum(s["steps"] if s.get("best_step") is None else s["best_step"] for s in stages)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", required=True, help="the recipe (repeatable)")
    p.add_argument("--run-dir", required=True, help="the run whose scores every arm pairs and trains on")
    p.add_argument("--out", help="where the arms' runs go (default: RUN-curriculum)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {','.join(ARMS)} (default: all)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values, one run per arm each")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every arm")
    args = p.parse_args()
    args.arms = args.arms.split(",")
    if unknown := [a for a in args.arms if a not in ARMS]:
        p.error(f"unknown arm(s) {', '.join(unknown)}: expected some of {','.join(ARMS)}")
    try:
        args.seeds = [int(x) for x in args.seeds.split(",")]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    cfg = load_config(args.config, args.overrides)
    t = cfg.train
    # The step budget: the recipe's own, else what its stages would plan at most.
    budget = t.total_steps or t.max_steps_per_stage * (len(cfg.curriculum.thresholds) + 1)
    lr = (f"train.lora.lr_stage1={t.lora.lr}" if t.lora.enabled else f"train.lr_stage1={t.lr}")
    matched = [f"train.beta_last_stage={t.beta}", lr, f"train.total_steps={budget}",
               f"train.eval_seed={t.seed if t.eval_seed is None else t.eval_seed}"]
    run, out = RunDir(args.run_dir), Path(args.out or f"{Path(args.run_dir)}-curriculum")
    print(f"[curriculum] arms {', '.join(args.arms)} x seeds {args.seeds}: {budget} steps each, beta {t.beta} and "
          f"peak lr {lr.split('=')[1]} in every stage, one early-stopping split")
    out.mkdir(parents=True, exist_ok=True)
    with run.hold("jobs/curriculum.py"), tracked(cfg, out, "curriculum"):
        run_pipeline(cfg, run, "score")
        answer_sides(cfg, run, [("base", cfg.models.policy, "")])  # once, shared by every arm
        sides: dict[str, list[dict[str, dict[str, float]]]] = {}
        kept: dict[str, list[int]] = {}
        for arm in args.arms:
            for seed in args.seeds:
                sub = RunDir(out / arm / f"seed{seed}")
                print(f"[curriculum] {arm}, seed {seed} -> {sub.path}")
                arm_cfg = load_config(args.config, [*args.overrides, *matched, *ARMS[arm], f"train.seed={seed}"])
                sub.adopt(run, SHARED_STEPS)
                share_base_side(run, sub)
                run_pipeline(arm_cfg, sub, "check", since="pairs")
                sides.setdefault(arm, []).append(read_per_prompt(sub, "aligned"))
                kept.setdefault(arm, []).append(kept_steps(sub))
        base = read_per_prompt(RunDir(out / args.arms[0] / f"seed{args.seeds[0]}"), "base")
    reference = REFERENCE if REFERENCE in sides else None
    result = {m: compare_arms(base[m], {a: [s[m] for s in runs] for a, runs in sides.items()}, reference,
                              cfg.eval.bootstrap, cfg.data.seed) for m in CHECK_METRICS}
    (out / "summary.json").write_text(json.dumps({"budget_steps": budget, "matched": matched, "seeds": args.seeds,
                                                  "arms": {a: ARMS[a] for a in args.arms}, "kept_steps": kept,
                                                  "metrics": result}, indent=2))
    tables = [f"### {m}\n\n{arms_markdown(result[m], m, reference)}" for m in ("U", "u_sem", "u_fact", "u_val",
                                                                                "length")]
    steps = "; ".join(f"{a} {', '.join(map(str, k))}" for a, k in kept.items())
    (out / "summary.md").write_text(f"Steps kept by early stopping, of {budget}, per seed: {steps}.\n\n"
                                    + "\n\n".join(tables) + "\n")
    print("[curriculum] held-out, paired by prompt (lower U is better):\n" + tables[0])
    print(f"curriculum: done; {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(entry("curriculum", main))
