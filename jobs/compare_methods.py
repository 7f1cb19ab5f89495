"""Methods side by side (docs/evaluation.md): `python jobs/compare_methods.py --config configs/tiny-cpu.yaml`.

Each method is the base recipe plus an overlay from configs/methods/ (vanilla is the untrained
policy, RAIN the same policy decoded by RAIN's search). Prompts, responses and scores are made once
in <out>/shared and copied into each method's run directory; pairs, phased DPO and evaluation run
per method. Everything resumes. Ends with `udasa compare` over all methods -> <out>/compare/.
The paper's tables, with its numbers beside ours: jobs/reproduce.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from methods import job, parser

from udasa_ray.config import Config
from udasa_ray.errors import entry
from udasa_ray.evaluate.compare import compare
from udasa_ray.plan import COMPARE_METHODS


def main() -> int:
    args = parser(__doc__.splitlines()[0], COMPARE_METHODS, "runs/methods").parse_args()

    def finish(base: Config, summaries: dict[str, dict]) -> None:
        table = compare([str(Path(args.out) / m) for m in args.methods], Path(args.out) / "compare")
        print(f"\ncompare_methods: {table}\n" + table.read_text())

    return job("compare_methods", args.config, args.overrides, args.methods, Path(args.out), finish, args.cluster)


if __name__ == "__main__":
    sys.exit(entry("compare_methods", main))
