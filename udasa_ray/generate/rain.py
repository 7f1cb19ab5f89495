"""RAIN (Li et al. 2023, "RAIN: Your Language Models Can Align Themselves without Finetuning"):
the paper's inference-time baseline, as a decoding of the hf backend (`generation.decoding: rain`).

The answer grows one token set (`segment_tokens`) at a time. Before a set is committed, searches look
up to `depth` sets ahead of the committed answer: each walks down the tree by value plus an
exploration bonus, samples `candidates` continuations at the leaf (the request's seeded sampler),
asks the policy itself whether each partial answer is good (`question`, answered by the first label
word's probability) and backs the judgements up its path. After `min_searches`, once the best next
set's value reaches `value_threshold`, or after `max_searches`, the most visited next set is
committed and its subtree kept. Sets judged bad are searched away from, never committed: the rewind.

Where this differs from the paper's algorithm: every child of an expansion is judged at once (one
batched forward) and the path gets their mean; a sampled set's prior is uniform (sampling already
draws sets in proportion to their probability); the similarity-based update of sibling values
(embedding similarity between token sets) is left out.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import torch

from udasa_ray.generate.decode import SeededSampler, decode
from udasa_ray.generate.selfeval import label_probs


@dataclass
class Node:
    tokens: list[int]  # the token set this node appends
    ended: bool  # it ends with EOS
    visits: int = 0
    value: float = 0.0  # the mean judgement backed up through it
    children: list[Node] = field(default_factory=list)


def _sub_seed(seed: int, k: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:rain:{k}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def _select(node: Node, c: float) -> Node:
    bonus = c * math.sqrt(node.visits) / len(node.children)  # uniform prior 1 / candidates
    return max(node.children, key=lambda ch: ch.value + bonus / (1 + ch.visits))


def rain_decode(model, tok, prompt: str, prompt_ids: list[int], seed: int, g: dict) -> tuple[list[int], dict]:
    """RAIN's answer to `prompt` (already framed and tokenized as `prompt_ids`): its new tokens (up to
    and including EOS) and what the search did (searches, model judgements, token sets committed)."""
    r, eos, limit = g["rain"], tok.eos_token_id, g["max_new_tokens"]
    template = g["prompt_template"]
    committed: list[int] = []
    root = Node([], False)
    draws = judged = searches = 0

    def judge(texts: list[str]) -> list[float]:
        qs = [r["question"].format(prompt=prompt, response=t) for t in texts]
        return label_probs(model, tok, qs, r["labels"], template)[:, 0].tolist()

    while len(committed) < limit and not root.ended:
        for search in range(r["max_searches"]):
            searches += 1
            path = [root]
            while path[-1].children and len(path) <= r["depth"] and not path[-1].ended:
                path.append(_select(path[-1], r["exploration"]))
            leaf, ahead = path[-1], [t for n in path[1:] for t in n.tokens]  # the root's are committed
            room = limit - len(committed) - len(ahead)
            if leaf.ended or leaf.children or room <= 0:  # nothing to expand: its value is backed up again
                values = [leaf.value]
            else:
                seeds = [_sub_seed(seed, draws + i) for i in range(r["candidates"])]
                draws += len(seeds)
                ids = torch.tensor([prompt_ids + committed + ahead], device=model.device)
                sets = decode(model, ids, torch.ones_like(ids), [0] * len(seeds),
                              SeededSampler(seeds, g["temperature"], g["top_p"]), min(room, r["segment_tokens"]), eos)
                leaf.children = [Node(s, eos in s) for s in sets]
                values = judge([tok.decode(committed + ahead + s, skip_special_tokens=True) for s in sets])
                judged += len(values)
                for child, v in zip(leaf.children, values, strict=True):
                    child.visits, child.value = 1, v
            mean = sum(values) / len(values)
            for n in path:
                n.visits += 1
                n.value += (mean - n.value) / n.visits
            best = max(ch.value for ch in root.children)
            if search + 1 >= r["min_searches"] and best >= r["value_threshold"]:
                break
        root = max(root.children, key=lambda ch: (ch.visits, ch.value))
        committed += root.tokens
    return committed[:limit], {"searches": searches, "judged": judged}
