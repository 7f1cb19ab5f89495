"""Methods side by side (docs/evaluation.md): each is the base recipe plus an overlay from configs/methods/.

Vanilla and RAIN train nothing: they evaluate the base policy, sampled or decoded by RAIN's search.
The others make pairs their way (UDASA, RLAIF, RLCD), train phased DPO and evaluate the result.
Prompts, responses and scores are made once in a shared run directory and copied into each method's
(again whenever they change there), whose manifest then skips them. GCG suffixes (the robust task)
are kept in the shared directory too, so the transfer suffixes are optimised once. Everything resumes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from udasa_ray.config import Config, ConfigError, load_config
from udasa_ray.evaluate.step import evaluate_model, format_summary
from udasa_ray.pipeline import SHARED_STEPS, run_pipeline
from udasa_ray.plan import preflight
from udasa_ray.report.step import write_report
from udasa_ray.runs import RunDir
from udasa_ray.tracking import Tracker, tracked

METHODS_DIR = Path(__file__).resolve().parent.parent / "configs" / "methods"
KNOWN = ["vanilla", *sorted(f.stem for f in METHODS_DIR.glob("*.yaml"))]
INFERENCE_ONLY = {"vanilla", "rain"}  # the base policy, evaluated as it is


def unknown(methods: list[str]) -> list[str]:
    return [m for m in methods if m not in KNOWN]


def load_methods(configs: list[str], overrides: list[str], methods: list[str]) -> tuple[Config, dict[str, Config]]:
    """The base recipe and each method's config (raises ConfigError)."""
    base = load_config(configs, overrides)
    return base, {m: base if m == "vanilla" else load_config([*configs, METHODS_DIR / f"{m}.yaml"], overrides)
                  for m in methods}


def run_methods(base: Config, cfgs: dict[str, Config], out: Path, shared: RunDir,
                tracker: Tracker | None = None) -> dict[str, dict]:
    """Train (where the method does) and evaluate every method in <out>/<method>; returns each
    method's evaluation summary. With tracking, each method is a tracking run under the job's (`tracker`)."""
    kinds = {c.pairs.method for m, c in cfgs.items() if m not in INFERENCE_ONLY}
    run_pipeline(base, shared, "score" if "udasa" in kinds else "generate" if "rlaif" in kinds else "ingest")
    summaries = {}
    for method, cfg in cfgs.items():
        print(f"\n=== {method} ===")
        with tracked(cfg, out / method, method, store=out, parent=tracker):
            if method in INFERENCE_ONLY:
                summary = evaluate_model(cfg, cfg.models.policy, out / method / "eval", method,
                                         attack_cache=shared / "gcg")
            else:
                run = RunDir(out / method)
                run.adopt(shared, SHARED_STEPS)
                trained = run_pipeline(cfg, run, "train", since="pairs")["train"]
                write_report(run)
                summary = evaluate_model(cfg, trained["aligned"], run / "eval", method, trained["aligned_hash"],
                                         attack_cache=shared / "gcg")
        print(f"[eval] {method}:\n{format_summary(summary)}")
        summaries[method] = summary
    return summaries


def parser(description: str, methods: list[str], out: str) -> argparse.ArgumentParser:
    """The arguments jobs/compare_methods.py and jobs/reproduce.py share."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", action="append", help="YAML recipe and overlays (default configs/tiny-cpu.yaml)")
    p.add_argument("--methods", nargs="+", default=methods, help=f"any of: {', '.join(KNOWN)}")
    p.add_argument("--out", default=out)
    p.add_argument("--cluster", help="the cluster file (clusters/): checked against the plan before any work")
    p.add_argument("overrides", nargs="*", help="dotted overrides for every method, e.g. eval.limit=8")
    return p


def job(prog: str, configs: list[str] | None, overrides: list[str], methods: list[str], out: Path,
        finish: Callable[[Config, dict[str, dict]], None], cluster: str | None = None) -> int:
    """A methods job: check the names, load each method's config, check the plan on a cluster (`cluster`: its
    file), hold <out>/shared, run them all and `finish(base config, each method's evaluation summary)` (its
    tables), all inside the job's tracking run. Raises ConfigError for an unknown method, a bad config or a plan
    that does not fit, StepFailed when a step failed."""
    if bad := unknown(methods):
        raise ConfigError(f"unknown method(s) {', '.join(bad)}; known: {', '.join(KNOWN)} (overrides go before "
                          "--methods)")
    configs = configs or ["configs/tiny-cpu.yaml"]
    base, cfgs = load_methods(configs, overrides, methods)
    preflight(prog, base, cfgs, cluster, configs)
    shared = RunDir(out / "shared")
    with shared.hold(f"jobs/{prog}.py"), tracked(base, out, prog) as tracker:  # the shared run stands for the job
        finish(base, run_methods(base, cfgs, out, shared, tracker))
    return 0
