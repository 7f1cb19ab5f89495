"""`udasa report`: a Markdown summary of a run with PNG plots, from its artifacts alone."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq

from udasa_ray.check.step import interval
from udasa_ray.parts import read_parts
from udasa_ray.report.card import write_card
from udasa_ray.report.plots import pyplot, save
from udasa_ray.runs import RunDir
from udasa_ray.score.step import SCORE_SCHEMA


def _plot_uncertainties(scores: dict[str, np.ndarray], path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4), sharey=True)
    titles = {"u_sem": "semantic u_sem", "u_fact": "factual u_fact", "u_val": "value u_val", "U": "fused U"}
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        v = scores[key][np.isfinite(scores[key])]
        ax.hist(v, bins=np.linspace(0, 1, 26), color="#4C72B0" if key != "U" else "#C44E52")
        ax.set_title(f"{title} (mean {v.mean():.2f})" if len(v) else title)
        ax.set_xlim(0, 1)
    axes[0].set_ylabel("responses")
    save(fig, path)


def _plot_delta(pairs: list[dict], summary: dict, path) -> None:
    plt = pyplot()
    scaled = np.array([p["delta_scaled"] for p in pairs])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.hist(scaled, bins=30, color="#55A868")
    for t in summary["thresholds"]:
        ax.axvline(t, color="black", linestyle="--")
        ax.text(t, ax.get_ylim()[1] * 0.95, f" τ={t}", va="top")
    sizes = ", ".join(f"{s['name']}: {s['pairs']}" for s in summary["stages"])
    ax.set_title(f"Δu on the {summary['scale']} scale ({len(pairs)} pairs; {sizes})", fontsize=10)
    ax.set_xlabel(f"Δu ({summary['scale']})")
    ax.set_ylabel("pairs")
    save(fig, path)


def _plot_stage(rows: list[dict], title: str, path) -> None:
    """Loss, reward accuracy, margin (train and eval) and learning rate against the step."""
    plt = pyplot()
    panels = [("loss", "DPO loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"),
              ("learning_rate", "learning rate")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, style in (("", "-"), ("eval_", "o--")):
            pts = [(r["step"], r[prefix + key]) for r in rows if prefix + key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label="eval" if prefix else "train", markersize=4)
        ax.set_title(label)
        ax.set_xlabel("step")
        if key != "learning_rate":
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save(fig, path, dpi=100)


def _training(run: RunDir, out) -> list[str]:
    summary = json.loads((run / "train" / "summary.json").read_text())
    lines = ["", "## Phased DPO", "", f"Aligned policy: `{summary['aligned']}`; {summary['eval_pairs']} pairs held "
             "out for early stopping.", "",
             "| stage | steps (planned) | train pairs | peak lr | β | stopped early | kept step (eval loss) | "
             "eval reward acc |", "|---|---|---|---|---|---|---|---|"]
    for st in summary["stages"]:
        metrics = run / "train" / f"stage_{st['stage']}" / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
        acc = {r["step"]: r["eval_rewards/accuracies"] for r in rows if "eval_rewards/accuracies" in r}
        kept = (f"{st['best_step']} ({st['best_eval_loss']:.4f})" if st.get("best_step") is not None
                else f"{st['steps']} (last; no eval split)")
        lines.append(f"| {st['stage']}. {st['name']} | {st['steps']} ({st['planned_steps']}) | {st['train_pairs']} | "
                     f"{st['peak_lr']:g} | {st['beta']} | {st['stopped_early'] or 'no'} | {kept} | "
                     f"{acc.get(st.get('best_step'), float('nan')):.3f} |")
        if rows:
            _plot_stage(rows, f"stage {st['stage']} ({st['name']})", out / f"train_stage_{st['stage']}.png")
    lines.append("")
    lines += [f"![stage {st['stage']}](train_stage_{st['stage']}.png)" for st in summary["stages"]]
    check = run / "heldout" / "summary.json"
    if check.exists():
        c = json.loads(check.read_text())
        lines += ["", "## Held-out check: base vs aligned", "",
                  f"{c['prompts']} prompts never trained on, {c['responses_per_prompt']} fresh responses each. Each "
                  "metric is averaged per prompt, then compared prompt by prompt: Δ = aligned − base with its 95% "
                  "bootstrap interval over prompts and a sign-flip permutation test's p. Lower is better for U, "
                  "each u and the unsafe rate; length (tokens), refusals, the share of distinct responses and the "
                  "offline helpfulness score (1–10) show what else changed.", "",
                  "| metric | base | aligned | Δ [95% CI] | p |", "|---|---|---|---|---|"]
        for m, d in c["paired"].items():
            lines.append(f"| {m} | {c['base'][m]:.4f} | {c['aligned'][m]:.4f} | "
                         f"{interval(d)} | {d['p']:.3g} |")
        for k, d in c.get("length_matched", {}).items():  # aligned moved back to the base's length
            lines.append(f"| {k} at matched length | | | {interval(d)} | {d['p']:.3g} |")
    return lines


def _length(run: RunDir, scores) -> list[str]:  # noqa: ANN001
    """Does an uncertainty measure how long an answer is? Correlations on this run's responses and,
    once there are pairs, how often the chosen answer is the shorter one."""
    from udasa_ray.generate.step import read_responses
    from udasa_ray.score.length import chosen_shorter, length_correlation

    resp = read_responses(run / "responses")
    if not resp.num_rows:
        return []
    n_tokens = {(r["prompt_id"], r["sample_idx"]): r["n_tokens"] for r in resp.select(
        ["prompt_id", "sample_idx", "n_tokens"]).to_pylist() if r["n_tokens"] is not None}
    rows = scores.select(["prompt_id", "sample_idx", "U", "u_sem", "u_fact", "u_val"]).to_pylist()
    length = [n_tokens.get((r["prompt_id"], r["sample_idx"]), float("nan")) for r in rows]
    groups = [r["prompt_id"] for r in rows]
    lines = ["", "### Length and uncertainty", "",
             "Spearman ρ of each uncertainty with the response's token count, over all responses and within "
             "prompts (both centred on the prompt's mean). A positive ρ within prompts means the scorer "
             "prefers shorter answers to the same request, which DPO on these pairs can learn as brevity.", "",
             "| | ρ (all) | ρ (within prompts) |", "|---|---|---|"]
    for k in ("U", "u_sem", "u_fact", "u_val"):
        c = length_correlation([float("nan") if r[k] is None else r[k] for r in rows], length, groups)
        lines.append(f"| {k} | {c['all']:+.3f} | {c['within']:+.3f} |")
    capped = sum(r["finish_reason"] == "length" for r in resp.select(["finish_reason"]).to_pylist())
    lines += ["", f"{capped} of {resp.num_rows} responses stopped at `generation.max_new_tokens`."]
    if (run / "pairs" / "pairs.parquet").exists():
        pairs = pq.read_table(run / "pairs" / "pairs.parquet").to_pylist()
        if pairs and all((p["prompt_id"], p.get(f"{side}_idx")) in n_tokens for p in pairs for side in
                         ("chosen", "rejected")):
            share = chosen_shorter(pairs, n_tokens)
            lines += ["", "Share of pairs whose chosen answer is the shorter one (0.5: length does not decide): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in share.items()) + "."]
    return lines


def _clip(text: str, n: int = 220) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def write_report(run: RunDir, examples_per_stage: int = 2) -> str:
    """Write report.md and its PNGs in the run directory; return the report's path."""
    out = run / "report"
    out.mkdir(exist_ok=True)
    m = run.manifest()
    lines = [f"# udasa-ray run report: `{run.path}`", "", "## Pipeline steps", "",
             "| step | status | stats |", "|---|---|---|"]
    for name, st in m["steps"].items():
        stats = json.dumps(st.get("stats", {}), sort_keys=True)
        lines.append(f"| {name} | {st.get('status')} | `{_clip(stats, 300)}` |")
    if (run / "scores").is_dir():
        t = read_parts(run / "scores", SCORE_SCHEMA)
        scores = {k: t[k].to_numpy(zero_copy_only=False).astype(float) for k in ("u_sem", "u_fact", "u_val", "U")}
        _plot_uncertainties(scores, out / "uncertainties.png")
        errors = [e for e in t["error"].to_pylist() if e]
        lines += ["", "## Uncertainties", "", f"{t.num_rows} responses, {len(errors)} with a scoring error.", "",
                  "| | mean | median | min | max |", "|---|---|---|---|---|"]
        for k, v in scores.items():
            v = v[np.isfinite(v)]
            if len(v):
                lines.append(f"| {k} | {v.mean():.3f} | {np.median(v):.3f} | {v.min():.3f} | {v.max():.3f} |")
        lines += ["", "![uncertainties](uncertainties.png)"]
        lines += _length(run, t)
        if errors:
            lines += ["", "Errors (first 5): " + "; ".join(_clip(e, 120) for e in errors[:5])]
    if (run / "stages" / "summary.json").exists():
        summary = json.loads((run / "stages" / "summary.json").read_text())
        pairs = pq.read_table(run / "pairs" / "pairs.parquet").to_pylist()
        _plot_delta(pairs, summary, out / "delta_u.png")
        method = summary.get("method", "udasa")
        how = {"udasa": f"lowest fused U ({', '.join(summary.get('dimensions', ['sem', 'fact', 'val']))}) chosen",
               "rlaif": "RLAIF: the policy labelled two of its responses (Δu column: label confidence)",
               "rlcd": "RLCD: positive vs negative contrastive prompt (no per-pair score)"}[method]
        lines += ["", "## Pairs and curriculum", "", f"Method: {how}.", "",
                  f"{summary['pairs']} pairs from {summary['groups']} prompts; {summary['groups_without_pair']} "
                  f"prompts had fewer than 2 valid responses. Thresholds {summary['thresholds']} on the "
                  f"`{summary['scale']}` scale; stages {'cumulative' if summary['cumulative'] else 'disjoint'}.", "",
                  "| stage | pairs | Δu (raw) | Δu (scaled) |", "|---|---|---|---|"]
        for s in summary["stages"]:
            raw, scaled = (f"{s[k][0]:.3f} – {s[k][1]:.3f}" if s["pairs"] else "—" for k in ("delta_u", "delta_scaled"))
            lines.append(f"| {s['stage']}. {s['name']} | {s['pairs']} | {raw} | {scaled} |")
        empty = [s["name"] for s in summary["stages"] if not s["pairs"]]
        if empty:
            lines += ["", f"Empty stages ({', '.join(empty)}): no pair's scaled Δu falls in their range; training "
                      "skips them. Other thresholds or another scale (`curriculum.scale`) would fill them."]
        lines += ["", "![delta u](delta_u.png)", "", "### Example pairs", ""]
        for s in summary["stages"]:
            if not s["pairs"]:
                continue
            rows = pq.read_table(run / "stages" / s["file"]).to_pylist()[:examples_per_stage]
            lines += [f"**Stage {s['stage']} ({s['name']})**", "", "| prompt | chosen (U) | rejected (U) | Δu |",
                      "|---|---|---|---|"]
            for p in rows:
                u = {k: f" ({p[k]:.2f})" if p.get(k) is not None else "" for k in ("U_chosen", "U_rejected")}
                lines.append(f"| {_clip(p['prompt'], 100)} | {_clip(p['chosen'])}{u['U_chosen']} | "
                             f"{_clip(p['rejected'])}{u['U_rejected']} | {p['delta_u']:.3f} |")
            lines.append("")
    if (run / "train" / "summary.json").exists():
        lines += _training(run, out)
        lines += ["", f"Model card: {write_card(run) / 'README.md'} (`udasa push` uploads it with the checkpoint)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
