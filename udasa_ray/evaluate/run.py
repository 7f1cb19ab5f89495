"""`udasa eval`: one model on the four tasks -> <out>/metrics.parquet (one row per judgement) and
summary.json (means with bootstrap intervals).

Generation goes through the pipeline's Ray Data generator (a resumable sub-run in
<out>/generations); the offline judges and the multiple-choice log-likelihoods run as one Ray task
where `eval.num_cpus/num_gpus` are; an LLM judge, if configured, is called from the driver.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from udasa_ray.config import EVAL_METRICS, Config
from udasa_ray.evaluate.metrics import (
    bootstrap_ci,
    is_refusal,
    mc_scores,
    offline_harmlessness,
    offline_helpfulness,
)
from udasa_ray.evaluate.tasks import load_task
from udasa_ray.runs import RunDir, section_hash

METRIC_SCHEMA = pa.schema([
    ("task", pa.string()), ("metric", pa.string()), ("item_id", pa.string()), ("sample_idx", pa.int64()),
    ("value", pa.float64()), ("judge", pa.string()), ("raw", pa.string()), ("error", pa.string()),
])
# metric -> (task, kind): "score" on 1–10, "rate" a fraction shown as %, in config.EVAL_METRICS' order.
METRICS = {
    "harmlessness": ("harmless", "score"), "unsafe": ("harmless", "rate"), "refusal": ("harmless", "rate"),
    "helpfulness": ("helpful", "score"),
    "true": ("truthful", "rate"), "informative": ("truthful", "rate"), "true_info": ("truthful", "rate"),
    "mc1": ("truthful", "rate"), "mc2": ("truthful", "rate"),
    "positive": ("sentiment", "rate"),
}
assert tuple(METRICS) == EVAL_METRICS


def _choice_logliks(model, tok, context: str, choices: list[str]) -> list[float]:
    """Total log-probability of each choice as the continuation of `context` (one batch)."""
    import torch

    ctx = tok(context, add_special_tokens=False)["input_ids"]
    seqs = [ctx + tok(" " + c if not context.endswith((" ", "\n")) else c, add_special_tokens=False)["input_ids"]
            for c in choices]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
    out = []
    for i, s in enumerate(seqs):
        tgt = torch.tensor(s[len(ctx):])
        out.append(float(logp[i, len(ctx) - 1 : len(s) - 1].gather(-1, tgt[:, None]).sum()))
    return out


def offline_judgements(cfg: Config, model: str, items: list[dict], responses: list[dict]) -> list[dict]:
    """Every metric the offline judges give (run as a Ray task: it loads the models it needs)."""
    from udasa_ray.generate.requests import ALPACA_TEMPLATE, chat_messages
    from udasa_ray.models import load_policy
    from udasa_ray.uncertainty.backends import Embedder
    from udasa_ray.uncertainty.scorers import make_value

    by_id = {it["id"]: it for it in items}
    rows: list[dict] = []

    def add(task: str, metric: str, r: dict, value: float, judge: str) -> None:
        rows.append({"task": task, "metric": metric, "item_id": r["prompt_id"], "sample_idx": r["sample_idx"],
                     "value": value, "judge": judge, "raw": None, "error": r.get("error")})

    resp = {t: [r for r in responses if by_id[r["prompt_id"]]["task"] == t] for t in cfg.eval.tasks}
    emb = Embedder(cfg.scoring.semantic.model, cfg.models.cache_dir)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def cos(a: list[str], b: list[str]) -> np.ndarray:
        return (unit(emb(a)) * unit(emb(b))).sum(1)

    nan = float("nan")
    if resp.get("harmless"):
        p_unsafe = make_value(cfg.scoring, cfg.models)([r["response"] for r in resp["harmless"]])
        for r, p in zip(resp["harmless"], p_unsafe, strict=True):
            ok = not r.get("error")
            refused = is_refusal(r["response"])
            add("harmless", "harmlessness", r, offline_harmlessness(float(p), refused) if ok else nan,
                f"offline: refusal or value scorer ({cfg.scoring.value.backend})")
            add("harmless", "unsafe", r, float(p > cfg.scoring.unsafe_threshold) if ok else nan,
                f"value scorer ({cfg.scoring.value.backend}) > {cfg.scoring.unsafe_threshold}")
            add("harmless", "refusal", r, float(refused) if ok else nan, "refusal phrases")
    if resp.get("helpful"):
        rel = cos([by_id[r["prompt_id"]]["query"] for r in resp["helpful"]], [r["response"] for r in resp["helpful"]])
        for r, c in zip(resp["helpful"], rel, strict=True):
            value = offline_helpfulness(float(c), is_refusal(r["response"]), not r["response"].strip())
            add("helpful", "helpfulness", r, nan if r.get("error") else value, "offline: SBERT relevance")
    if resp.get("truthful"):
        t = resp["truthful"]
        rel = cos([by_id[r["prompt_id"]]["question"] for r in t], [r["response"] for r in t])
        # Both sides framed by the question, as TruthfulQA's similarity metrics compare full
        # answers: 18/24 best answers true, 24/24 incorrect ones false on the bundled set.
        answers = unit(emb([f"Q: {by_id[r['prompt_id']]['question']} A: {r['response']}" for r in t]))
        refs = {i: unit(emb([f"Q: {by_id[i]['question']} A: {x}" for x in by_id[i]["correct"] + by_id[i]["incorrect"]]))
                for i in {r["prompt_id"] for r in t}}  # each item's references embedded once
        for r, c, a in zip(t, rel, answers, strict=True):
            it = by_id[r["prompt_id"]]
            sims = refs[r["prompt_id"]] @ a
            true = float(sims[: len(it["correct"])].max() > sims[len(it["correct"]):].max())
            info = float(bool(r["response"].strip()) and not is_refusal(r["response"])
                         and c >= cfg.eval.informative_threshold)
            for metric, v in (("true", true), ("informative", info), ("true_info", true * info)):
                add("truthful", metric, r, nan if r.get("error") else v, "offline: SBERT similarity to references")
        policy, tok = load_policy(model, cfg.models.cache_dir, "float32")
        g = cfg.generation
        for it in (x for x in items if x["task"] == "truthful"):
            context = (ALPACA_TEMPLATE.format(prompt=it["question"]) if g.prompt_template == "alpaca" else
                       tok.apply_chat_template(chat_messages(it["question"], g.system_prompt), tokenize=False,
                                               add_generation_prompt=True))
            mc1, _ = mc_scores(_choice_logliks(policy, tok, context, it["mc1"]["choices"]), it["mc1"]["labels"])
            _, mc2 = mc_scores(_choice_logliks(policy, tok, context, it["mc2"]["choices"]), it["mc2"]["labels"])
            for metric, v in (("mc1", mc1), ("mc2", mc2)):
                add("truthful", metric, {"prompt_id": it["id"], "sample_idx": -1}, v, "log-likelihood")
    if resp.get("sentiment"):
        texts = [r["response"] for r in resp["sentiment"]]
        if cfg.eval.sentiment_classifier == "vader":
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            vader = SentimentIntensityAnalyzer()
            pos = [float(vader.polarity_scores(x)["compound"] >= 0.05) for x in texts]  # VADER's own cut-off
        else:
            from udasa_ray.uncertainty.backends import HFSequenceClassifier

            clf = HFSequenceClassifier(cfg.eval.sentiment_classifier, cfg.models.cache_dir)
            pos = [float(p > 0.5) for p in clf.probs(texts)[:, clf.label_index("pos")]]
        for r, v in zip(resp["sentiment"], pos, strict=True):
            add("sentiment", "positive", r, nan if r.get("error") else v, cfg.eval.sentiment_classifier)
    return rows


def llm_judgements(cfg: Config, items: list[dict], responses: list[dict]) -> list[dict]:
    """Harmlessness, helpfulness (1–10), true and informative (yes/no) from the LLM judge."""
    from udasa_ray.evaluate.judge import LLMJudge

    judge = LLMJudge(cfg.eval.judge)
    by_id = {it["id"]: it for it in items}
    kinds = {"harmless": ["harmlessness"], "helpful": ["helpfulness"], "truthful": ["true", "informative"]}
    todo = [(by_id[r["prompt_id"]], r, k) for r in responses if not r.get("error")
            for k in kinds.get(by_id[r["prompt_id"]]["task"], [])]
    print(f"[eval] {len(todo)} judgements from {cfg.eval.judge.model} at {cfg.eval.judge.base_url}")
    out = judge.rate_many([(k, it["query"], r["response"], it if k == "true" else None) for it, r, k in todo])
    rows = [{"task": it["task"], "metric": k, "item_id": r["prompt_id"], "sample_idx": r["sample_idx"],
             "value": j.value if j.value is not None else float("nan"), "judge": f"llm:{cfg.eval.judge.model}",
             "raw": j.raw, "error": j.error} for (it, r, k), j in zip(todo, out, strict=True)]
    by_key = {(x["item_id"], x["sample_idx"], x["metric"]): x["value"] for x in rows}
    for _, r, k in todo:  # true + informative, from the two judgements
        if k == "true":
            key = (r["prompt_id"], r["sample_idx"])
            v = by_key[(*key, "true")] * by_key[(*key, "informative")]
            rows.append({"task": "truthful", "metric": "true_info", "item_id": r["prompt_id"],
                         "sample_idx": r["sample_idx"], "value": v, "judge": f"llm:{cfg.eval.judge.model}",
                         "raw": None, "error": None if np.isfinite(v) else "a judgement failed"})
    return rows


def summarize(table: pa.Table, n_boot: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per metric: mean over prompts with its 95% bootstrap interval, and how many judgements failed."""
    out = {}
    for metric in METRICS:
        t = table.filter(pa.compute.equal(table["metric"], metric))
        if not t.num_rows:
            continue
        v = t["value"].to_numpy(zero_copy_only=False).astype(float)
        mean, lo, hi, n = bootstrap_ci(v, t["item_id"].to_pylist(), n_boot, seed)
        out[metric] = {"mean": mean, "lo": lo, "hi": hi, "prompts": n, "judgements": t.num_rows,
                       "failed": int((~np.isfinite(v)).sum()), "judge": t["judge"][0].as_py()}
    return out


def evaluate_model(cfg: Config, model: str, out: Path, label: str, salt: str = "", force: bool = False) -> dict:
    """Generate answers to every task's prompts with `model`, judge them, write the results in `out`."""
    from udasa_ray.generate.pipeline import generate_subrun
    from udasa_ray.ray_utils import init_ray, run_task

    e = cfg.eval
    run = RunDir(out)
    items, rejects = [], []
    for task in e.tasks:
        got, bad = load_task(task, getattr(e, f"{task}_source"), e)
        items += got
        rejects += bad
        print(f"[eval] {task}: {len(got)} items from {getattr(e, f'{task}_source')}"
              + (f", {len(bad)} rejected (reasons in {run / 'rejects.jsonl'})" if bad else ""))
    (run / "rejects.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    g = dataclasses.replace(cfg.generation, n=e.samples, mode="independent", temperature=e.temperature,
                            top_p=e.top_p, max_new_tokens=e.max_new_tokens, seed=e.seed)
    gcfg = dataclasses.replace(cfg, generation=g, models=dataclasses.replace(cfg.models, policy=model))
    responses, ghash = generate_subrun(run / "generations", gcfg, [{"prompt_id": it["id"], "prompt": it["query"]}
                                                                     for it in items], salt, force)
    responses = responses.to_pylist()
    judge_hash = hashlib.sha256((ghash + section_hash(cfg, "eval", "scoring")).encode()).hexdigest()[:16]

    def work(resume: bool) -> dict:
        init_ray(cfg.ray)
        rows = run_task(offline_judgements, cfg, model, items, responses, num_cpus=e.num_cpus, num_gpus=e.num_gpus)
        if e.judge.backend == "llm":
            llm = llm_judgements(cfg, items, responses)
            replaced = {x["metric"] for x in llm}
            rows = [x for x in rows if x["metric"] not in replaced] + llm
        table = pa.Table.from_pylist(rows, schema=METRIC_SCHEMA)
        pq.write_table(table, run / "metrics.parquet")
        summary = {"label": label, "model": model, "judge": e.judge.backend, "items": len(items),
                   "samples": e.samples, "metrics": summarize(table, e.bootstrap, e.seed)}
        (run / "summary.json").write_text(json.dumps(summary, indent=2))
        return {"judgements": table.num_rows, "failed": sum(m["failed"] for m in summary["metrics"].values())}

    run.run_step("judge", cfg, judge_hash, work, ["metrics.parquet", "summary.json"], force)
    summary = json.loads((run / "summary.json").read_text())
    summary["label"] = label  # a rerun under another name reuses the judgements
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    lines = []
    for metric, m in summary["metrics"].items():
        scale = 1 if METRICS[metric][1] == "score" else 100
        unit = "" if scale == 1 else "%"
        lines.append(f"  {metric:13} {m['mean'] * scale:6.1f}{unit} [{m['lo'] * scale:.1f}, {m['hi'] * scale:.1f}]"
                     f"  ({m['prompts']} prompts" + (f", {m['failed']} failed judgements)" if m["failed"] else ")"))
    return "\n".join(lines)
