"""The hf backend's decode loop: seeded sampling, one RNG per request, and a KV cache with room reserved.

`generate` samples from one global RNG, so a response would depend on which rows share its
batch and in what order actors take batches. Here each row draws its tokens from its own
generator (seeded by request_seed). The random draws are the request's alone; the logits can
still differ in their last bits with the batch's padding and shape (notably in bf16), so an exact
rerun uses the same batch size.

The loop is our own rather than `generate`'s: a prompt's N samples share one prefill (its KV cache
is copied to each), and a row that has finished leaves the batch, so no step computes tokens that
are thrown away.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class SeededSampler:
    """Temperature + top-p sampling, request i drawing from generators[i].

    Top-p needs only the head of the distribution: a top-k of `head` tokens replaces a sort of
    the whole vocabulary (a large share of a decode step), falling back to the full sort when the head
    holds less than top_p of the mass, so the result is exact either way.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float, head: int = 512) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.head = head

    def draw(self, scores: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        """One token per row of `scores` (logits); row j belongs to request rows[j] (default: j)."""
        generators = self.generators if rows is None else [self.generators[i] for i in rows]
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
        u = torch.stack([torch.rand((), generator=g) for g in generators]).to(cdf.device)[:, None] * cdf[:, -1:]
        pick = torch.searchsorted(cdf, u).clamp_(max=cdf.shape[-1] - 1)
        return (pick if idx is None else idx.gather(-1, pick))[:, 0]


class ReservedLayer(DynamicLayer):
    """A KV cache layer that writes each step into room reserved at the prefill, where `DynamicLayer`
    concatenates (a copy of the whole cache per layer and step: 13% of decode time at batch 80)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room, self.length = room, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            b, h, t, d = key_states.shape
            self.k, self.v = (key_states.new_empty((b, h, t + self.room, d)) for _ in range(2))
        n = key_states.shape[-2]
        self.k[:, :, self.length : self.length + n] = key_states
        self.v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self.keys, self.values = self.k[:, :, : self.length], self.v[:, :, : self.length]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.k, self.v = self.k[indices], self.v[indices]
        self.keys, self.values = self.k[:, :, : self.length], self.v[:, :, : self.length]


@torch.inference_mode()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: list[int], sampler: SeededSampler,
           max_new_tokens: int, eos: int) -> list[list[int]]:
    """Sample continuations of the (left-padded) inputs: request j continues input rows[j] with
    sampler's generator j. Returns each request's new tokens, up to and including its EOS."""
    cache = Cache(layers=[ReservedLayer(max_new_tokens) for _ in range(model.config.num_hidden_layers)])
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    index = torch.tensor(rows, device=input_ids.device)
    cache.batch_select_indices(index)  # each request continues its input's one prefill
    logits, mask = logits[index], attention_mask[index]
    position = mask.long().sum(-1, keepdim=True)  # where each request's next token goes
    live = list(range(len(rows)))  # the requests still in the batch, in batch order
    out: list[list[int]] = [[] for _ in rows]
    for step in range(max_new_tokens):
        tokens = sampler.draw(logits, live)
        for request, token in zip(live, tokens.tolist(), strict=True):
            out[request].append(token)
        going = tokens != eos
        if step == max_new_tokens - 1 or not going.any():
            break
        if not going.all():  # finished requests leave the batch
            keep = going.nonzero()[:, 0]
            cache.batch_select_indices(keep)
            mask, position, tokens = mask[keep], position[keep], tokens[keep]
            live = [live[i] for i in keep.tolist()]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=position, past_key_values=cache,
                       use_cache=True).logits[:, -1]
        position = position + 1
    return out
