"""The sweep's outputs in run/tune/: trials.csv and trials.md, the τ1 × τ2 heatmap (heatmap.png),
the objective by number of stages (stages.png) and the best trial's config (best.yaml)."""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from udasa_ray.config import Config
from udasa_ray.evaluate.registry import direction
from udasa_ray.report.plots import pyplot, save
from udasa_ray.runs import RunDir


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def write_sweep_report(cfg: Config, run: RunDir, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """trials.csv and trials.md, the τ1 × τ2 heatmap, the by-stages plot, and best.yaml."""
    import numpy as np
    import pandas as pd

    plt = pyplot()

    out = run / "tune"
    obj, md = cfg.tune.objective, direction(cfg.tune.objective)
    df = pd.DataFrame(rows).sort_values(["stages", "tau1", "tau2"], na_position="last")
    df.to_csv(out / "trials.csv", index=False)
    done = df[df["objective"].apply(_finite)]
    best = None
    if len(done):
        best = done.loc[done["objective"].idxmax() if md == "max" else done["objective"].idxmin()].to_dict()
    lines = [f"# Threshold sweep: {obj} ({'higher' if md == 'max' else 'lower'} is better)", "",
             f"{len(df)} trials, {len(done)} finished; run {run.path}.", "",
             "| stages | τ1 | τ2 | thresholds | stages trained | last stage pair acc. | objective | status |",
             "|---|---|---|---|---|---|---|---|"]
    def f(x: Any) -> str:
        return f"{x:.3f}" if _finite(x) else "—"

    for r in df.to_dict("records"):
        lines.append(f"| {r['stages']} | {f(r['tau1'])} | {f(r['tau2'])} | {r['thresholds']} | {r['stages_done']} | "
                     f"{f(r['stage_accuracy'])} | {f(r['objective'])} | {r['status']} |")
    if best:
        lines += ["", f"**Best:** {best['stages']} stage(s), τ1 = {best['tau1']:.3f}, τ2 = {best['tau2']:.3f} "
                  f"(thresholds {best['thresholds']}), {obj} = {best['objective']:.4f}. Config: `{out / 'best.yaml'}`."]
    fig, ax = plt.subplots(figsize=(5, 4))
    two = done[done["stages"] >= 3]
    if len(two):
        if cfg.tune.search == "grid":  # every tried cell; one without a finished trial says why
            tried = df[df["stages"] >= 3].assign(objective=lambda d: d["objective"].astype(float))
            grid = tried.groupby(["tau1", "tau2"])["objective"].agg("max" if md == "max" else "min").unstack()
            im = ax.imshow(grid.values, origin="lower", cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(grid.columns)), [f"{x:.2f}" for x in grid.columns])
            ax.set_yticks(range(len(grid.index)), [f"{x:.2f}" for x in grid.index])
            for (i, j), v in np.ndenumerate(grid.values):
                ax.text(j, i, f"{v:.3f}" if np.isfinite(v) else "stopped", ha="center", va="center",
                        color="w" if np.isfinite(v) else "k", fontsize=9)
        else:
            im = ax.scatter(two["tau2"], two["tau1"], c=two["objective"], cmap="viridis", s=60)
        fig.colorbar(im, ax=ax, label=obj)
    ax.set_xlabel("τ2")
    ax.set_ylabel("τ1")
    ax.set_title(f"{obj}, 3- and 4-stage trials ({'best' if len(two) else 'none finished'} per cell)", fontsize=9)
    save(fig, out / "heatmap.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(done["stages"], done["objective"], color="C0", label="trials")
    per_k = done.groupby("stages")["objective"].agg("max" if md == "max" else "min")
    ax.plot(per_k.index, per_k.values, "o-", color="C1", label="best per K")
    ax.set_xticks([1, 2, 3, 4])
    ax.set_xlabel("number of stages")
    ax.set_ylabel(obj)
    ax.legend(fontsize=8)
    save(fig, out / "stages.png")
    lines += ["", "![heatmap](heatmap.png) ![stages](stages.png)", ""]
    (out / "trials.md").write_text("\n".join(lines))
    if best:
        d = cfg.to_dict()
        d["curriculum"]["thresholds"] = json.loads(best["thresholds"])
        (out / "best.yaml").write_text(f"# Best of the sweep in {out}: {obj} = {best['objective']:.4f}\n"
                                       + yaml.safe_dump(d, sort_keys=False))
    print("\n".join(lines[:-2]))
    return {"trials": len(df), "finished": len(done), "best": best}
