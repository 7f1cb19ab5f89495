"""Methods side by side (SPEC §7): `python jobs/compare_methods.py --config configs/tiny-cpu.yaml`.

Each method is the base recipe plus an overlay from configs/methods/ (vanilla is the untrained
policy). Prompts, responses and scores are made once in <out>/shared and copied into each
method's run directory (again whenever they change there), whose manifest then skips them;
pairs, phased DPO and evaluation run per method. Everything resumes. Ends with `udasa compare`
over all methods -> <out>/compare/.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray import steps
from udasa_ray.config import Config, ConfigError, load_config
from udasa_ray.data.ingest import IngestError
from udasa_ray.errors import StepFailed
from udasa_ray.evaluate.compare import compare
from udasa_ray.evaluate.run import evaluate_model, format_summary
from udasa_ray.models import ModelNotAvailable
from udasa_ray.report.run import write_report
from udasa_ray.runs import RunDir

METHODS_DIR = Path(__file__).resolve().parent.parent / "configs" / "methods"
OVERLAYS = sorted(f.stem for f in METHODS_DIR.glob("*.yaml"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe and overlays (default configs/tiny-cpu.yaml)")
    p.add_argument("--methods", nargs="+", default=["vanilla", "one-shot", "three-stage", "rlaif", "rlcd"],
                   help=f"vanilla and any of: {', '.join(OVERLAYS)}")
    p.add_argument("--out", default="runs/methods")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every method, e.g. eval.limit=8")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    unknown = [m for m in args.methods if m != "vanilla" and m not in OVERLAYS]
    if unknown:
        print(f"compare_methods: unknown method(s) {', '.join(unknown)}; known: vanilla, {', '.join(OVERLAYS)} "
              "(overrides go before --methods)", file=sys.stderr)
        return 2
    try:
        base = load_config(args.config, args.overrides)
        cfgs = {m: base if m == "vanilla" else load_config([*args.config, METHODS_DIR / f"{m}.yaml"], args.overrides)
                for m in args.methods}
    except ConfigError as e:
        print(f"compare_methods: config error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shared = RunDir(out / "shared")
    try:
        with shared.hold("jobs/compare_methods.py"):  # the shared run stands for the whole comparison
            return run_methods(base, cfgs, out, shared)
    except (IngestError, ModelNotAvailable, StepFailed) as e:
        print(f"compare_methods: error: {e}", file=sys.stderr)
        return 1


def run_methods(base: Config, cfgs: dict[str, Config], out: Path, shared: RunDir) -> int:
    steps.ingest_step(base, shared)
    methods = {c.pairs.method for m, c in cfgs.items() if m != "vanilla"}
    if "udasa" in methods:
        steps.generate_score_step(base, shared)
    elif "rlaif" in methods:
        steps.generate_step(base, shared)
    for method, cfg in cfgs.items():
        print(f"\n=== {method} ===")
        if method == "vanilla":
            summary = evaluate_model(cfg, cfg.models.policy, out / "vanilla" / "eval", "vanilla")
        else:
            run = RunDir(out / method)
            run.adopt(shared, steps.SHARED_STEPS)
            steps.pairs_step(cfg, run)
            trained = steps.train_step(cfg, run)
            write_report(run)
            summary = evaluate_model(cfg, trained["aligned"], run / "eval", method, trained["aligned_hash"])
        print(f"[eval] {method}:\n{format_summary(summary)}")
    table = compare([str(out / m) for m in cfgs], out / "compare")
    print(f"\ncompare_methods: {table}\n" + table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
