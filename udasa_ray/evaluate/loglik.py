"""TruthfulQA's multiple-choice scores with the policy: the total log-likelihood of each choice
after the question, framed as the policy is prompted when it generates (torch; the arithmetic on
the log-likelihoods is metrics.mc1 / metrics.mc2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from udasa_ray.evaluate.metrics import mc1, mc2

if TYPE_CHECKING:
    from udasa_ray.config import GenerationConfig


def choice_logliks(model, tok, context: str, choices: list[str], add_special_tokens: bool = False) -> list[float]:
    """Total log-probability of each choice as the continuation of `context` (one batch); the
    tokenizer's special tokens (BOS) go before the context when `add_special_tokens`."""
    import torch

    ctx = tok(context, add_special_tokens=add_special_tokens)["input_ids"]
    seqs = [ctx + tok(" " + c if not context.endswith((" ", "\n")) else c, add_special_tokens=False)["input_ids"]
            for c in choices]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tok.pad_token_id)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logp = torch.log_softmax(logits.float(), -1).cpu()
    out = []
    for i, s in enumerate(seqs):
        tgt = torch.tensor(s[len(ctx):])
        out.append(float(logp[i, len(ctx) - 1 : len(s) - 1].gather(-1, tgt[:, None]).sum()))
    return out


def question_context(tok, question: str, generation: GenerationConfig) -> tuple[str, bool]:
    """The question as the policy sees it when it answers (Alpaca's format or its chat template), and
    whether its tokens start with the tokenizer's special tokens (generate.requests.frame_prompt)."""
    from udasa_ray.generate.requests import frame_prompt

    return frame_prompt(tok, question, generation.prompt_template, generation.system_prompt)


def mc_scores(model, tok, item: dict, generation: GenerationConfig) -> dict[str, float]:
    """{"mc1": ..., "mc2": ...} of one TruthfulQA item (its "mc1"/"mc2" choices and labels)."""
    context, specials = question_context(tok, item["question"], generation)
    return {name: score(choice_logliks(model, tok, context, item[name]["choices"], specials), item[name]["labels"])
            for name, score in (("mc1", mc1), ("mc2", mc2))}
