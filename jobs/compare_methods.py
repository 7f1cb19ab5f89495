"""Methods side by side (SPEC §7): `python jobs/compare_methods.py --config configs/tiny-cpu.yaml`.

Each method is the base recipe plus an overlay from configs/methods/ (vanilla is the untrained
policy, RAIN the same policy decoded by RAIN's search). Prompts, responses and scores are made once
in <out>/shared and copied into each method's run directory; pairs, phased DPO and evaluation run
per method. Everything resumes. Ends with `udasa compare` over all methods -> <out>/compare/.
The paper's tables, with its numbers beside ours: jobs/reproduce.py.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from udasa_ray.config import ConfigError
from udasa_ray.data.ingest import IngestError
from udasa_ray.errors import StepFailed
from udasa_ray.evaluate.compare import compare
from udasa_ray.methods import KNOWN, load_methods, run_methods, unknown
from udasa_ray.models import ModelNotAvailable
from udasa_ray.runs import RunDir


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", help="YAML recipe and overlays (default configs/tiny-cpu.yaml)")
    p.add_argument("--methods", nargs="+", default=["vanilla", "one-shot", "three-stage", "rlaif", "rlcd"],
                   help=f"any of: {', '.join(KNOWN)}")
    p.add_argument("--out", default="runs/methods")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every method, e.g. eval.limit=8")
    args = p.parse_args()
    args.config = args.config or ["configs/tiny-cpu.yaml"]
    if bad := unknown(args.methods):
        print(f"compare_methods: unknown method(s) {', '.join(bad)}; known: {', '.join(KNOWN)} "
              "(overrides go before --methods)", file=sys.stderr)
        return 2
    try:
        base, cfgs = load_methods(args.config, args.overrides, args.methods)
    except ConfigError as e:
        print(f"compare_methods: config error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    shared = RunDir(out / "shared")
    try:
        with shared.hold("jobs/compare_methods.py"):  # the shared run stands for the whole comparison
            run_methods(base, cfgs, out, shared)
    except (IngestError, ModelNotAvailable, StepFailed) as e:
        print(f"compare_methods: error: {e}", file=sys.stderr)
        return 1
    table = compare([str(out / m) for m in cfgs], out / "compare")
    print(f"\ncompare_methods: {table}\n" + table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
