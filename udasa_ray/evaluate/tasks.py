"""The evaluation tasks (docs/evaluation.md): loaders that map each known data layout to one item shape.

harmless / helpful: {"prompt"} from a prompt field or an HH dialogue ("chosen": "\n\nHuman: ...").
truthful: {"question", "correct", "incorrect", "mc1", "mc2"} from the bundled layout or TruthfulQA's
generation and multiple_choice configs (joined by question). sentiment: {"opening"} from an
opening field or an IMDB review's first words. robust: {"target"} and the behaviour as the query, from
AdvBench's CSV (goal, target) or its hub copy (prompt, target). Records that fit no layout become rejects.
"""

from __future__ import annotations

import re
from typing import Any

from udasa_ray.config import EvalConfig
from udasa_ray.ingest.read import prompt_id, read_records

TASKS = ("harmless", "helpful", "truthful", "sentiment", "robust")
DEFAULT_SPLIT = {"harmless": "test", "helpful": "test", "truthful": "validation", "sentiment": "test",
                 "robust": "train"}
_HUMAN = re.compile(r"Human:\s*(.*?)\s*(?:\n\nAssistant:|$)", re.DOTALL)


def _prompt(rec: dict) -> str | None:
    for k in ("prompt", "instruction", "question"):
        if isinstance(rec.get(k), str) and rec[k].strip():
            return rec[k].strip()
    for k in ("chosen", "transcript"):  # HH-RLHF / red-team dialogues: the first human turn
        m = _HUMAN.search(rec.get(k) or "") if isinstance(rec.get(k), str) else None
        if m and m.group(1).strip():
            return m.group(1).strip()
    return None


def _strings(x: Any) -> list[str]:
    return [s.strip() for s in x if isinstance(s, str) and s.strip()] if isinstance(x, list) else []


def _truthful(rec: dict) -> dict | str:
    q = rec.get("question")
    if not isinstance(q, str) or not q.strip():
        return "no question"
    correct = _strings(rec.get("correct") or rec.get("correct_answers"))
    incorrect = _strings(rec.get("incorrect") or rec.get("incorrect_answers"))
    mc2 = rec.get("mc2_targets")
    if not correct and isinstance(mc2, dict):  # a multiple-choice-only record
        correct = [c for c, lab in zip(mc2["choices"], mc2["labels"], strict=True) if lab]
        incorrect = [c for c, lab in zip(mc2["choices"], mc2["labels"], strict=True) if not lab]
    if not correct or not incorrect:
        return "needs correct and incorrect answers (or mc2_targets)"
    best = rec.get("best") or rec.get("best_answer") or correct[0]
    mc1 = rec.get("mc1_targets") or {"choices": [best, *incorrect], "labels": [1] + [0] * len(incorrect)}
    mc2 = mc2 or {"choices": [*correct, *incorrect], "labels": [1] * len(correct) + [0] * len(incorrect)}
    return {"question": q.strip(), "correct": correct, "incorrect": incorrect,
            "mc1": {"choices": list(mc1["choices"]), "labels": [int(x) for x in mc1["labels"]]},
            "mc2": {"choices": list(mc2["choices"]), "labels": [int(x) for x in mc2["labels"]]}}


def _item(task: str, rec: Any, eval_cfg: EvalConfig) -> dict | str:
    """One record -> an item with the text the model answers ("query"), or the reason it cannot be."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    if task in ("harmless", "helpful"):
        p = _prompt(rec)
        return {"query": p} if p else "no prompt, instruction, question or HH dialogue field"
    if task == "truthful":
        t = _truthful(rec)
        return t if isinstance(t, str) else {**t, "query": t["question"]}
    if task == "robust":  # AdvBench: a harmful behaviour and the reply GCG steers towards
        goal, target = rec.get("goal") or rec.get("prompt"), rec.get("target")
        if not (isinstance(goal, str) and goal.strip() and isinstance(target, str) and target.strip()):
            return "needs a behaviour (goal or prompt) and a target"
        return {"query": goal.strip(), "target": target.strip()}
    if isinstance(rec.get("opening"), str) and rec["opening"].strip():
        opening = " ".join(rec["opening"].split())
    elif isinstance(rec.get("text"), str) and rec["text"].strip():  # a whole review (IMDB): its first words
        opening = " ".join(rec["text"].replace("<br />", " ").split()[: eval_cfg.opening_words])
    else:
        return "no opening or text field"
    return {"opening": opening, "query": eval_cfg.sentiment_prompt.format(opening=opening)}


def _truthfulqa_hf(source: str, split: str):
    """TruthfulQA on the hub keeps generation and multiple choice in two configs: join them by question.
    A record without its twin stands alone (multiple choice built from its answers, or its answers from
    its multiple choice), and one that fails to parse is yielded too, to become a reject."""
    def question(r):  # noqa: ANN001, ANN202
        return r.record.get("question") if r.error is None and isinstance(r.record, dict) else None

    gen = {}
    for r in read_records(f"{source}:generation", split):
        r.position = f"generation {r.position}"
        if isinstance(question(r), str) and question(r) not in gen:
            gen[question(r)] = r
        else:
            yield r
    for raw in read_records(f"{source}:multiple_choice", split):
        raw.position = f"multiple_choice {raw.position}"
        twin = gen.pop(question(raw), None) if isinstance(question(raw), str) else None
        if twin is not None:
            raw.record = {**twin.record, **raw.record}
        yield raw
    yield from gen.values()


def load_task(task: str, source: str, eval_cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    """Items (each with a unique `id` "<task>/<...>") and rejects {source, position, reason} of a task."""
    split = eval_cfg.hf_split or DEFAULT_SPLIT[task]
    raws = _truthfulqa_hf(source, split) if task == "truthful" and source.startswith("hf:") and ":" not in \
        source[3:] else read_records(source, split)
    items, rejects, seen, ids = [], [], set(), set()
    for raw in raws:
        item = raw.error or _item(task, raw.record, eval_cfg)
        if isinstance(item, dict):
            key = item["query"]
            rid = raw.record.get("id") if isinstance(raw.record.get("id"), str) else prompt_id(key)
            if key in seen:
                item = "duplicate item"
            elif rid in ids:
                item = f"duplicate id {rid!r}"
            else:
                seen.add(key)
                ids.add(rid)
                items.append({**item, "id": f"{task}/{rid}", "task": task})
                if eval_cfg.limit and len(items) >= eval_cfg.limit:
                    break
                continue
        rejects.append({"task": task, "source": source, "position": raw.position, "reason": item})
    return items, rejects
