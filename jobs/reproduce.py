"""The paper's tables in one job: `python jobs/reproduce.py --config configs/llama7b.yaml --config
configs/paper/datasets.yaml` (on a cluster: `ray job submit -- python jobs/reproduce.py ...`).

Trains and evaluates every method the paper's tables have a row for (vanilla, RAIN, RLAIF, RLCD, UDASA
with one to four stages, UDASA without each uncertainty) and writes <out>/tables.md: the paper's
Tables 1, 2, 4, 5, 7 and its sentiment table, each with our numbers (95% intervals) beside the
paper's. Responses and scores are made once and shared; each method resumes where it stopped, so a
rerun after a failure (or with more methods) redoes nothing that is done. `udasa compare` over the
same methods -> <out>/compare/ (paired differences against vanilla).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # importable from a plain checkout

from methods import job, parser

from udasa_ray.config import Config
from udasa_ray.errors import entry
from udasa_ray.evaluate.compare import compare
from udasa_ray.evaluate.tasks import TASKS
from udasa_ray.report import paper


def main() -> int:
    p = parser(__doc__.splitlines()[0], paper.methods(), "runs/reproduce")
    p.add_argument("--tasks", nargs="+", choices=TASKS, help="evaluation tasks (default: the config's eval.tasks)")
    args = p.parse_args()
    overrides = args.overrides + ([f"eval.tasks={json.dumps(args.tasks)}"] if args.tasks else [])
    methods = sorted(args.methods, key=lambda m: m != "vanilla")  # vanilla first: compare's reference
    return job("reproduce", args.config, overrides, methods, Path(args.out), lambda b, s: tables(b, s, Path(args.out)),
               args.cluster)


def tables(base: Config, summaries: dict[str, dict], out: Path) -> None:
    """<out>/tables.md (the paper's tables, ours beside them) and <out>/compare/."""
    judge = base.eval.judge
    items = {m: s["items"] for m, s in summaries.items()}
    header = (f"Policy `{base.models.policy}`; judge: "
              + (f"LLM `{judge.model}` ({judge.backend})" if judge.backend != "offline"
                 else "offline (the project's scorers, not GPT-4)")
              + f"; up to {max(items.values())} items over {', '.join(base.eval.tasks)}, "
              f"{base.eval.samples} answer(s) each; methods run: {', '.join(summaries)}.")
    if base.models.policy.startswith("bundled:"):
        header += ("\n\n**A plumbing check, not a reproduction**: a 135M-parameter model on the bundled prompt sets "
                   "with offline judges. It shows that every method and table runs, not what the paper's models do.")
    path = out / "tables.md"
    path.write_text(paper.render(summaries, header))
    table = compare([str(out / m) for m in summaries], out / "compare")
    print(f"\nreproduce: {path}\n" + path.read_text() + f"\nreproduce: paired differences in {table}")


if __name__ == "__main__":
    sys.exit(entry("reproduce", main))
