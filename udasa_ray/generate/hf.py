"""The `hf` backend: a transformers model in a Ray Data actor, sampling with one RNG per request.

`generate` samples from one global RNG, so a response would depend on which rows share its
batch and in what order actors take batches. Here a logits processor draws each row's token from
that row's own generator (seeded by request_seed) and leaves only that token allowed; `generate`
then picks it greedily. The random draws are the request's alone; the logits can still differ in
their last bits with the batch's padding (notably in bf16), so an exact rerun uses the same
batch size.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from udasa_ray.generate.requests import frame_prompt, reply_prefix
from udasa_ray.models import load_policy


class SeededSampler(LogitsProcessor):
    """Temperature + top-p sampling, row i drawing from generators[i].

    Top-p needs only the head of the distribution: a top-k of `head` tokens replaces a sort of
    the whole vocabulary (66 ms a step at batch 40), falling back to the full sort when the head
    holds less than top_p of the mass, so the result is exact either way.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, head: int = 512) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.head = head

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p >= 1.0:
            kept, idx = probs, None
        else:
            kept, idx = probs.topk(min(self.head, probs.shape[-1]), dim=-1)
            if (kept.sum(-1) < self.top_p).any():
                kept, idx = probs.sort(dim=-1, descending=True)
            # Drop tokens once the mass before them reaches top_p (the first token always stays).
            kept = kept.masked_fill((kept.cumsum(-1) - kept) >= self.top_p, 0.0)
        # Inverse-CDF sampling: one uniform draw per row, from that row's own generator.
        cdf = kept.cumsum(-1)
        # The draws stay on the CPU generators (the same numbers on any device), then move to the logits.
        u = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(cdf.device)[:, None] * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u).clamp_(max=cdf.shape[-1] - 1)
        tokens = pick if idx is None else idx.gather(-1, pick)
        return torch.full_like(scores, float("-inf")).scatter_(-1, tokens, 0.0)


class HFGenerator:
    """Ray Data callable class: a batch of request rows in, the same rows with responses out."""

    def __init__(self, model: str, cache_dir: str, gen: dict, num_threads: int) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one progress bar, the driver's
        torch.set_num_threads(num_threads)
        self.gen = gen
        self.model_name = model
        self.model, self.tok = load_policy(model, cache_dir, gen["dtype"])
        self.eos = self.tok.eos_token_id

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        g = self.gen
        framed = [frame_prompt(self.tok, p, g["prompt_template"], g["system_prompt"]) for p in batch["query"]]
        prefixes = [reply_prefix(i) for i in batch["sample_idx"]]
        # A chat template writes its own special tokens; plain text needs the tokenizer's BOS.
        enc = self.tok([text + prefix for (text, _), prefix in zip(framed, prefixes, strict=True)], return_tensors="pt",
                       padding=True, add_special_tokens=framed[0][1]).to(self.model.device)
        sampler = SeededSampler(list(batch["seed"]), g["temperature"], g["top_p"])
        config = GenerationConfig(
            do_sample=False, max_new_tokens=g["max_new_tokens"], pad_token_id=self.tok.pad_token_id,
            eos_token_id=self.eos,
        )
        with torch.inference_mode():
            out = self.model.generate(**enc, generation_config=config, logits_processor=LogitsProcessorList([sampler]))
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        responses, n_tokens, finish = [], [], []
        for ids, prefix in zip(new, prefixes, strict=True):
            stopped = self.eos in ids
            ids = ids[: ids.index(self.eos) + 1] if stopped else ids
            responses.append((prefix + self.tok.decode(ids, skip_special_tokens=True)).strip())
            n_tokens.append(len(ids))
            finish.append("stop" if stopped else "length")
        return {
            "prompt_id": batch["prompt_id"],
            "prompt": batch["prompt"],
            "sample_idx": batch["sample_idx"],
            "response": np.array(responses, dtype=object),
            "n_tokens": np.array(n_tokens, dtype=np.int64),
            "finish_reason": np.array(finish, dtype=object),
            "model": np.array([self.model_name] * len(responses), dtype=object),
            "seed": batch["seed"],
        }
