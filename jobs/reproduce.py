"""The paper's tables in one job: `python jobs/reproduce.py --config configs/llama7b.yaml --config
configs/paper/datasets.yaml` (on a cluster: `ray job submit -- python jobs/reproduce.py ...`).

Trains and evaluates every method the paper's tables have a row for (vanilla, RAIN, RLAIF, RLCD, UDASA
with one to four stages, UDASA without each uncertainty) and writes <out>/tables.md: the paper's
Tables 1, 2, 4, 5, 7 and its sentiment table, each with our numbers (95% intervals) beside the
paper's. Responses and scores are made once and shared; each method resumes where it stopped, so a
rerun after a failure (or with more methods) redoes nothing that is done. `udasa compare` over the
same methods -> <out>/compare/ (paired differences against vanilla).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray.config import ConfigError
from udasa_ray.data.ingest import IngestError
from udasa_ray.errors import StepFailed
from udasa_ray.evaluate.compare import compare
from udasa_ray.evaluate.tasks import TASKS
from udasa_ray.methods import KNOWN, load_methods, run_methods, unknown
from udasa_ray.models import ModelNotAvailable
from udasa_ray.report import paper
from udasa_ray.runs import RunDir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe and overlays (default configs/tiny-cpu.yaml)")
    p.add_argument("--methods", nargs="+", default=paper.methods(), help=f"any of: {', '.join(KNOWN)}")
    p.add_argument("--tasks", nargs="+", choices=TASKS, help="evaluation tasks (default: the config's eval.tasks)")
    p.add_argument("--out", default="runs/reproduce")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every method, e.g. eval.limit=8")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    if bad := unknown(args.methods):
        print(f"reproduce: unknown method(s) {', '.join(bad)}; known: {', '.join(KNOWN)} "
              "(overrides go before --methods)", file=sys.stderr)
        return 2
    overrides = args.overrides + ([f"eval.tasks={json.dumps(args.tasks)}"] if args.tasks else [])
    methods = sorted(args.methods, key=lambda m: m != "vanilla")  # vanilla first: compare's reference
    try:
        base, cfgs = load_methods(args.config, overrides, methods)
    except ConfigError as e:
        print(f"reproduce: config error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shared = RunDir(out / "shared")
    try:
        with shared.hold("jobs/reproduce.py"):
            summaries = run_methods(base, cfgs, out, shared)
    except (IngestError, ModelNotAvailable, StepFailed) as e:
        print(f"reproduce: error: {e}", file=sys.stderr)
        return 1
    judge = base.eval.judge
    items = {m: s["items"] for m, s in summaries.items()}
    header = (f"Policy `{base.models.policy}`; judge: "
              + (f"LLM `{judge.model}`" if judge.backend == "llm" else "offline (the project's scorers, not GPT-4)")
              + f"; up to {max(items.values())} items over {', '.join(base.eval.tasks)}, "
              f"{base.eval.samples} answer(s) each; methods run: {', '.join(summaries)}.")
    if base.models.policy.startswith("bundled:"):
        header += ("\n\n**A plumbing check, not a reproduction**: a 135M-parameter model on the bundled prompt sets "
                   "with offline judges. It shows that every method and table runs, not what the paper's models do.")
    tables = out / "tables.md"
    tables.write_text(paper.render(summaries, header))
    table = compare([str(out / m) for m in summaries], out / "compare")
    print(f"\nreproduce: {tables}\n" + tables.read_text() + f"\nreproduce: paired differences in {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
