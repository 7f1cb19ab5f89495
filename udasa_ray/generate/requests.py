"""Generation requests: one row per (prompt, sample), each with its own seed.

Both backends take the same rows, so a response's randomness comes from (seed, prompt_id,
sample_idx) alone, and a resumed run can skip exactly the rows already written.
"""

from __future__ import annotations

import hashlib

RESPONSE_COLUMNS = ["prompt_id", "prompt", "sample_idx", "response", "n_tokens", "finish_reason", "model", "seed"]


def request_seed(base_seed: int, prompt_id: str, sample_idx: int) -> int:
    """A 31-bit seed per request, stable across runs (vLLM and torch both take 31 bits)."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def build_requests(prompts: list[dict], n: int, base_seed: int, done: set[tuple[str, int]] = frozenset()) -> list[dict]:
    """N request rows per prompt, minus those in `done`, longest prompts first.

    Sorting by length keeps similar lengths in one batch (less padding) and puts the slowest
    batches first, so the ETA errs on the safe side.
    """
    rows = [
        {"prompt_id": p["prompt_id"], "prompt": p["prompt"], "sample_idx": i,
         "seed": request_seed(base_seed, p["prompt_id"], i)}
        for p in prompts
        for i in range(n)
        if (p["prompt_id"], i) not in done
    ]
    rows.sort(key=lambda r: (-len(r["prompt"]), r["prompt_id"], r["sample_idx"]))
    return rows


# Stanford Alpaca's format, for base models that have no chat template (e.g. LLaMA-7B).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{prompt}\n\n### Response:\n"
)


def chat_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": prompt}]
