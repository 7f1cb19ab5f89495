"""Methods side by side (SPEC §7): each is the base recipe plus an overlay from configs/methods/.

Vanilla and RAIN train nothing: they evaluate the base policy, sampled or decoded by RAIN's search.
The others make pairs their way (UDASA, RLAIF, RLCD), train phased DPO and evaluate the result.
Prompts, responses and scores are made once in a shared run directory and copied into each method's
(again whenever they change there), whose manifest then skips them. GCG suffixes (the robust task)
are kept in the shared directory too, so the transfer suffixes are optimised once. Everything resumes.
"""

from __future__ import annotations

from pathlib import Path

from udasa_ray import steps
from udasa_ray.config import Config, load_config
from udasa_ray.evaluate.run import evaluate_model, format_summary
from udasa_ray.report.run import write_report
from udasa_ray.runs import RunDir

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


def run_methods(base: Config, cfgs: dict[str, Config], out: Path, shared: RunDir) -> dict[str, dict]:
    """Train (where the method does) and evaluate every method in <out>/<method>; returns each
    method's evaluation summary."""
    steps.ingest_step(base, shared)
    kinds = {c.pairs.method for m, c in cfgs.items() if m not in INFERENCE_ONLY}
    if "udasa" in kinds:
        steps.generate_score_step(base, shared)
    elif "rlaif" in kinds:
        steps.generate_step(base, shared)
    summaries = {}
    for method, cfg in cfgs.items():
        print(f"\n=== {method} ===")
        if method in INFERENCE_ONLY:
            summary = evaluate_model(cfg, cfg.models.policy, out / method / "eval", method, attack_cache=shared / "gcg")
        else:
            run = RunDir(out / method)
            run.adopt(shared, steps.SHARED_STEPS)
            steps.pairs_step(cfg, run)
            trained = steps.train_step(cfg, run)
            write_report(run)
            summary = evaluate_model(cfg, trained["aligned"], run / "eval", method, trained["aligned_hash"],
                                     attack_cache=shared / "gcg")
        print(f"[eval] {method}:\n{format_summary(summary)}")
        summaries[method] = summary
    return summaries
