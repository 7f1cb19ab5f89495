"""The `udasa` command: one subcommand per pipeline step, each resumable over a run directory,
plus evaluation, comparison, reports, scorer validation and a job's plan on a cluster. `COMMANDS` maps a name to
its handler."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from udasa_ray.config import Config, load_config
from udasa_ray.errors import entry
from udasa_ray.plan import JOBS
from udasa_ray.runs import RunDir
from udasa_ray.tracking import tracked

CONFIG_HELP = "YAML recipe, then overlays such as configs/methods/rlaif.yaml (repeatable; default: built-in)"

STEPS = {
    "ingest": "read prompts: [INPUT] -> prompts.parquet + rejects.jsonl (INPUT: a file or hf:<dataset>; "
              "default data.source)",
    "generate": "sample N responses per prompt -> responses/",
    "score": "semantic, factual and value uncertainty + fused U -> scores/",
    "pairs": "preference pairs and the Δu curriculum split -> pairs/, stages/",
    "train": "phased DPO on Ray Train, curriculum stage by stage -> train/stage_<k>/ (Hugging Face checkpoints)",
    "check": "base vs aligned policy on the held-out prompts -> heldout/",
    "tune": "Ray Tune over τ1 < τ2 and the number of stages on the run's scores -> tune/ "
            "(resumes an interrupted sweep; --force starts afresh)",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="udasa", description="UDASA self-alignment on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help in STEPS.items():
        s = sub.add_parser(name, help=help)
        s.add_argument("--config", action="append", help=CONFIG_HELP)
        s.add_argument("--run-dir", required=True, help="directory holding the run's artifacts")
        s.add_argument("--force", action="store_true", help="redo the step even if it finished")
        s.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. generation.n=5")
    ev = sub.add_parser("eval", help="one model on the paper's tasks (harmless, helpful, truthful, sentiment; "
                        "robust when in eval.tasks) -> <out>/summary.json, metrics.parquet")
    ev.add_argument("--config", action="append", help=CONFIG_HELP)
    ev.add_argument("--model", required=True, help="a run directory (its aligned policy), a model path or name")
    ev.add_argument("--out", help="default: <run>/eval, or runs/eval/<model name>")
    ev.add_argument("--label", help="the name in comparison tables (default: the run's or model's name)")
    ev.add_argument("--force", action="store_true", help="regenerate and rejudge")
    ev.add_argument("overrides", nargs="*", metavar="key=value")
    cmp_ = sub.add_parser("compare", help="evaluated runs side by side: Markdown tables with intervals, bar plots")
    cmp_.add_argument("runs", nargs="+", help="run or evaluation directories; the first is the reference")
    cmp_.add_argument("--out", default="runs/compare")
    rep = sub.add_parser("report", help="Markdown report with plots -> RUN_DIR/report/")
    rep.add_argument("--run-dir", required=True)
    exp = sub.add_parser("export", help="the run's pairs for TRL / OpenRLHF / LLaMA-Factory: a split per curriculum "
                         "stage and a dataset card -> OUT (default RUN_DIR/export-FORMAT)")
    exp.add_argument("--run-dir", required=True)
    exp.add_argument("--format", choices=("hf", "parquet", "jsonl"), default="hf")
    exp.add_argument("--out")
    hub = sub.add_parser("push", help="the aligned checkpoint and its model card to the Hugging Face Hub "
                         "(token in $HF_TOKEN)")
    hub.add_argument("--run-dir", required=True)
    hub.add_argument("--repo-id", required=True, help="e.g. your-name/smollm2-135m-udasa")
    hub.add_argument("--private", action="store_true")
    plan = sub.add_parser("plan", help="every step a job runs: the Ray resources it asks for, whether the cluster's "
                          "node types place it, GPU memory and time estimates; exit 2 if it does not fit")
    plan.add_argument("--config", action="append", help=CONFIG_HELP)
    plan.add_argument("--job", default="align", choices=JOBS, help="the job planned (default: align)")
    plan.add_argument("--methods", nargs="+", help="reproduce / compare_methods: the methods (default: the job's)")
    plan.add_argument("--tasks", nargs="+", help="evaluation tasks (default: the config's eval.tasks)")
    where = plan.add_mutually_exclusive_group()
    where.add_argument("--cluster", help="a Ray cluster launcher YAML or KubeRay RayCluster/RayJob (clusters/)")
    where.add_argument("--gpus-per-node", type=int, help="instead of a file: nodes of N GPUs each")
    plan.add_argument("--gpu-memory", type=float, help="GB a GPU (with --gpus-per-node, or for GPU types the "
                      "plan does not know)")
    plan.add_argument("--gpu", help="the GPU model with --gpus-per-node, e.g. A100-80GB (its memory and speed)")
    plan.add_argument("--cpus-per-node", type=float, help="with --gpus-per-node (default 12 a GPU)")
    plan.add_argument("--nodes", type=float, default=1, help="with --gpus-per-node (default 1)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("overrides", nargs="*", metavar="key=value")
    val = sub.add_parser("validate-scorers", help="AUROC of every scorer on a labelled set")
    val.add_argument("--config", action="append", help=CONFIG_HELP)
    val.add_argument("--data", help="labelled JSONL (default: the bundled set)")
    val.add_argument("--out", help="also write the Markdown table to this file")
    val.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def _step(cfg: Config, args: argparse.Namespace) -> int:
    from udasa_ray.pipeline import run_pipeline

    run = RunDir(args.run_dir)
    with run.hold(f"udasa {args.command}"), tracked(cfg, run.path, f"udasa {args.command}") as tracker:
        if args.command == "tune":
            from udasa_ray.tune.sweep import sweep

            sweep(cfg, run, fresh=args.force, tracker=tracker)
        else:
            run_pipeline(cfg, run, args.command, since=args.command, force=args.force, source=args.input)
    return 0


def _eval(cfg: Config, args: argparse.Namespace) -> int:
    from udasa_ray.evaluate.step import evaluate_model, format_summary

    trained = Path(args.model) / "train" / "summary.json"
    if trained.exists():  # a run directory: its aligned policy, salted with what trained it
        t = json.loads(trained.read_text())
        model, salt, out, label = t["aligned"], t["aligned_hash"], Path(args.model) / "eval", Path(args.model).name
    else:
        name = Path(args.model.removeprefix("bundled:")).name
        model, salt, out, label = args.model, "", Path("runs") / "eval" / name, name
    out = Path(args.out) if args.out else out
    # A run directory's evaluation goes to its tracking run; a model's has no run to go to.
    with tracked(cfg, Path(args.model), "udasa eval") if trained.exists() else contextlib.nullcontext():
        summary = evaluate_model(cfg, model, out, args.label or label, salt, args.force)
    print(f"[eval] {summary['label']} ({model}), judge {summary['judge']}:\n{format_summary(summary)}")
    return 0


def _plan(cfg: Config, args: argparse.Namespace) -> int:
    from udasa_ray import plan
    from udasa_ray.plan.cluster import from_file, from_flags, local

    configs, overrides = args.config or [], args.overrides + ([f"eval.tasks={json.dumps(args.tasks)}"]
                                                              if args.tasks else [])
    cfg = load_config(configs, overrides) if args.tasks else cfg
    cfgs = None
    if args.job in ("reproduce", "compare_methods"):
        cfgs = plan.method_configs(configs, overrides, args.methods or plan.default_methods(args.job))
    if args.cluster:
        cluster = from_file(args.cluster, args.gpu_memory)
    elif args.gpus_per_node is not None:
        cluster = from_flags(args.gpus_per_node, args.gpu_memory, args.gpu, args.cpus_per_node, args.nodes)
    else:
        cluster = local(cfg.ray.num_cpus)
    made = plan.make_plan(args.job, cfg, cfgs, cluster, configs)
    print(json.dumps(made.to_json(), indent=2) if args.json else made.table())
    made.check()
    return 0


def _compare(args: argparse.Namespace) -> int:
    from udasa_ray.evaluate.compare import compare

    print(f"compare: {compare(args.runs, args.out)}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from udasa_ray.report.step import write_report

    print(f"report: {write_report(RunDir.existing(args.run_dir))}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from udasa_ray.pairs.export import export

    run = RunDir.existing(args.run_dir)
    print(f"export: {export(run, Path(args.out) if args.out else run / f'export-{args.format}', args.format)}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from udasa_ray.report.card import push

    print(f"push: {push(RunDir.existing(args.run_dir), args.repo_id, args.private)}")
    return 0


def _validate_scorers(cfg: Config, args: argparse.Namespace) -> int:
    from udasa_ray.score.auroc import run_validation

    table = run_validation(cfg, args.data)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


# name -> (handler, whether it takes a config); every pipeline step shares one handler.
COMMANDS: dict[str, tuple[Callable[..., int], bool]] = {
    **{name: (_step, True) for name in STEPS},
    "eval": (_eval, True),
    "validate-scorers": (_validate_scorers, True),
    "plan": (_plan, True),
    "compare": (_compare, False),
    "report": (_report, False),
    "export": (_export, False),
    "push": (_push, False),
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Positionals may stand before and after options: argparse leaves the later ones over.
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler, takes_config = COMMANDS[args.command]
    if args.command == "compare":
        args.runs += extra
    elif extra and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if takes_config:
        args.overrides = args.overrides + extra
        # `ingest` takes an optional INPUT among the overrides: the one item that is not key=value.
        args.input = None
        if args.command == "ingest":
            plain = [a for a in args.overrides if "=" not in a or Path(a).exists()]
            if len(plain) > 1:
                print(f"udasa: error: one INPUT at most, got {plain}", file=sys.stderr)
                return 2
            args.input = plain[0] if plain else None
            args.overrides = [a for a in args.overrides if a not in plain]
    return entry("udasa", lambda: handler(load_config(args.config, args.overrides), args) if takes_config
                 else handler(args))


if __name__ == "__main__":
    sys.exit(main())
