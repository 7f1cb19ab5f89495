"""Pairs stage: scores/ -> pairs/pairs.parquet and stages/ (one file a stage + summary.json).

Fast (no model), so it reruns whole rather than resuming.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import Config
from udasa_ray.curriculum.split import assign_stages, scale_delta, stage_members, stage_names
from udasa_ray.pairs.build import build_pairs
from udasa_ray.parts import read_parts
from udasa_ray.runs import RunDir
from udasa_ray.uncertainty.pipeline import SCORE_SCHEMA


def make_pairs(cfg: Config, run: RunDir) -> dict:
    c = cfg.curriculum
    pairs, counts = build_pairs(read_parts(run / "scores", SCORE_SCHEMA).to_pylist(), c.seed)
    if not pairs:
        raise RuntimeError(f"no preference pair: {counts['groups']} prompt groups, none with 2 valid responses "
                           f"(see the error column in {run / 'scores'})")
    delta = np.array([p["delta_u"] for p in pairs])
    scaled = scale_delta(delta, c.scale)
    stages = assign_stages(scaled, c.thresholds)
    names = stage_names(len(c.thresholds) + 1)
    for p, s, st in zip(pairs, scaled, stages, strict=True):
        p["delta_scaled"], p["stage"], p["stage_name"] = float(s), int(st), names[st - 1]
    order = np.argsort(-delta, kind="stable")  # sorted by Δu, clearest first
    (run / "pairs").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([pairs[i] for i in order]), run / "pairs" / "pairs.parquet")
    (run / "stages").mkdir(exist_ok=True)
    summary = {"thresholds": c.thresholds, "scale": c.scale, "cumulative": c.cumulative, **counts, "stages": []}
    for k, members in enumerate(stage_members(stages, len(names), c.cumulative), start=1):
        rows = [pairs[i] for i in members[np.argsort(-delta[members], kind="stable")]]
        info = {"stage": k, "name": names[k - 1], "pairs": len(rows), "file": None}
        if rows:
            info["file"] = f"stage_{k}_{names[k - 1]}.parquet"
            pq.write_table(pa.Table.from_pylist(rows), run / "stages" / info["file"])
            d, ds = delta[members], scaled[members]
            info.update(delta_u=[float(d.min()), float(d.max())], delta_scaled=[float(ds.min()), float(ds.max())])
        else:
            print(f"[pairs] warning: stage {k} ({names[k - 1]}) is empty on the {c.scale} scale with "
                  f"thresholds {c.thresholds}: it will be skipped")
        summary["stages"].append(info)
    (run / "stages" / "summary.json").write_text(json.dumps(summary, indent=2))
    sizes = ", ".join(f"{s['name']} {s['pairs']}" for s in summary["stages"])
    print(f"[pairs] {counts['pairs']} pairs from {counts['groups']} prompts "
          f"({counts['groups_without_pair']} without 2 valid responses); stages: {sizes}")
    return {**counts, "stage_sizes": [s["pairs"] for s in summary["stages"]]}
