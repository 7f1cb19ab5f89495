"""The `hf` backend: a transformers model in a Ray Data actor, each request sampled with its own
RNG by the decode loop (decode.py), or searched by RAIN (rain.py, `generation.decoding: rain`)."""

from __future__ import annotations

import time

import numpy as np
import torch

from udasa_ray.generate.decode import SeededSampler, decode
from udasa_ray.generate.rain import rain_decode
from udasa_ray.generate.requests import frame_prompt, reply_prefix
from udasa_ray.models import load_policy


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
        started, g = time.perf_counter(), self.gen
        framed = [frame_prompt(self.tok, p, g["prompt_template"], g["system_prompt"]) for p in batch["query"]]
        prefixes = [reply_prefix(i) for i in batch["sample_idx"]]
        texts = [text + prefix for (text, _), prefix in zip(framed, prefixes, strict=True)]
        inputs = {t: i for i, t in enumerate(dict.fromkeys(texts))}  # a prompt's N requests share one prefill
        # A chat template writes its own special tokens; plain text needs the tokenizer's BOS.
        enc = self.tok(list(inputs), return_tensors="pt", padding=True,
                       add_special_tokens=framed[0][1]).to(self.model.device)
        if g["decoding"] == "rain":
            prompt_ids = [[i for i, m in zip(enc["input_ids"][j].tolist(), enc["attention_mask"][j].tolist(),
                                             strict=True) if m] for j in range(len(inputs))]
            new = [rain_decode(self.model, self.tok, q, prompt_ids[inputs[t]], int(s), g)[0]
                   for q, t, s in zip(batch["query"], texts, batch["seed"], strict=True)]
        else:
            sampler = SeededSampler(list(batch["seed"]), g["temperature"], g["top_p"])
            new = decode(self.model, enc["input_ids"], enc["attention_mask"], [inputs[t] for t in texts], sampler,
                         g["max_new_tokens"], self.eos)
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
            "batch_s": np.full(len(responses), time.perf_counter() - started),  # this call's own seconds
        }
