"""Generation requests: one row per (prompt, sample), each with its own seed.

Both backends take the same rows, so a response's randomness comes from (seed, prompt_id,
sample_idx) alone, and a resumed run can skip exactly the rows already written. A row's `query`
is what the model reads: the prompt itself, or (mode `listwise`, the paper's variant) one
request asking for N distinct responses, split afterwards by `split_listwise`.
"""

from __future__ import annotations

import hashlib
import re


def request_seed(base_seed: int, prompt_id: str, sample_idx: int) -> int:
    """A 31-bit seed per request, stable across runs (vLLM and torch both take 31 bits)."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# The paper's generation prompt (Preference Pair Construction).
LISTWISE_TEMPLATE = (
    "You are a professional AI assistant. Please provide {n} distinct responses to the following "
    "question. Ensure each response is independent. Question: {prompt}"
)
LISTWISE = -1  # sample_idx of a listwise request: it stands for all N samples
# A listwise reply is begun for the model as a numbered list: small models in Alpaca framing rarely start
# one by themselves, and the split needs the numbers (docs/pipeline.md).
LISTWISE_PREFIX = "1."


def reply_prefix(sample_idx: int) -> str:
    """The text a request's reply starts with, written into the prompt and kept in the response."""
    return LISTWISE_PREFIX if int(sample_idx) == LISTWISE else ""


def build_requests(prompts: list[dict], n: int, base_seed: int, done: set[tuple[str, int]] = frozenset(),
                   listwise: bool = False) -> list[dict]:
    """Request rows, minus those in `done`, longest prompts first: N per prompt, or one per
    prompt asking for N responses (listwise; a prompt with any row in `done` is skipped).

    Sorting by length keeps similar lengths in one batch (less padding) and puts the slowest
    batches first, so the ETA errs on the safe side.
    """
    if listwise:
        started = {pid for pid, _ in done}
        rows = [{"prompt_id": p["prompt_id"], "prompt": p["prompt"], "sample_idx": LISTWISE,
                 "query": LISTWISE_TEMPLATE.format(n=n, prompt=p["prompt"]),
                 "seed": request_seed(base_seed, p["prompt_id"], LISTWISE)}
                for p in prompts if p["prompt_id"] not in started]
    else:
        rows = [{"prompt_id": p["prompt_id"], "prompt": p["prompt"], "sample_idx": i, "query": p["prompt"],
                 "seed": request_seed(base_seed, p["prompt_id"], i)}
                for p in prompts for i in range(n) if (p["prompt_id"], i) not in done]
    rows.sort(key=lambda r: (-len(r["prompt"]), r["prompt_id"], r["sample_idx"]))
    return rows


# Stanford Alpaca's format, for base models that have no chat template (e.g. LLaMA-7B).
ALPACA_PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.")


def alpaca_prompt(prompt: str, system_prompt: str | None = None) -> str:
    """Alpaca's format; a system prompt takes the place of its preamble, as a system message takes
    the place of a chat template's default one (RLCD's contrastive prompts depend on it)."""
    return f"{system_prompt or ALPACA_PREAMBLE}\n\n### Instruction:\n{prompt}\n\n### Response:\n"


def chat_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": prompt}]


def uses_alpaca(tok, prompt_template: str) -> bool:
    """Alpaca's format when configured, or when the tokenizer has no chat template (a base model)."""
    return prompt_template == "alpaca" or getattr(tok, "chat_template", None) is None


def frame_prompt(tok, prompt: str, prompt_template: str, system_prompt: str | None = None) -> tuple[str, bool]:
    """The text the policy reads for `prompt`, and whether tokenizing it adds the tokenizer's special
    tokens: a chat template writes its own (False); plain Alpaca text needs BOS (True).

    The one framing of the in-process models (the hf generator, the policy judge, the MC log-likelihoods).
    """
    if uses_alpaca(tok, prompt_template):
        return alpaca_prompt(prompt, system_prompt), True
    return tok.apply_chat_template(chat_messages(prompt, system_prompt), tokenize=False,
                                   add_generation_prompt=True), False


_ITEM = re.compile(r"^\s*(?:\*\*)?(?:Response\s*)?(\d+)\s*(?:[.):]|\*\*)+\s*", re.IGNORECASE | re.MULTILINE)


def split_listwise(row: dict, n: int) -> list[dict]:
    """A listwise output row -> N response rows (sample_idx 0..N-1).

    Items are numbered lines ("1.", "2)", "Response 3:"). Fewer than N items is a recorded
    error, not a crash: the missing responses are empty, with the reason in `error`.
    """
    text = row["response"]
    marks = [m for m in _ITEM.finditer(text)]
    items, expect = [], 1
    for k, m in enumerate(marks):  # keep the run 1, 2, 3, ... and ignore other numbers
        if int(m.group(1)) == expect:
            end = next((x.start() for x in marks[k + 1:] if int(x.group(1)) == expect + 1), len(text))
            items.append(text[m.end():end].strip())
            expect += 1
    items = [t for t in items[:n] if t]
    error = None if len(items) == n else f"listwise: found {len(items)} of {n} numbered responses"
    return [{**row, "sample_idx": i, "response": items[i] if i < len(items) else "",
             "error": error if i >= len(items) else None} for i in range(n)]