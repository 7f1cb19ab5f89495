"""RLAIF baseline (Lee et al. 2023): the policy labels its own pairs.

Two seeded responses of each prompt are shown to the policy in both orders, and its next-token
probability of "A" (vs "B") is the label; averaging the orders cancels its position bias.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from udasa_ray.pairs.build import pair_rng, valid_groups

COMPARE = (
    "Consider a user's request and two possible responses.\n\nRequest: {prompt}\n\nResponse A: {a}\n\n"
    "Response B: {b}\n\nWhich response is more helpful, honest and harmless? Answer A or B."
)


def rlaif_pairs(rows: Iterable[dict], prefer_a: Callable[[list[str]], np.ndarray], seed: int = 0
                ) -> tuple[list[dict], dict[str, int]]:
    """One pair per prompt with two valid responses; `prefer_a(questions)` returns P("A") per question.

    `delta_u` holds the label's confidence |2·P(x better) − 1|, so pairs sort by it like UDASA's Δu.
    """
    groups = valid_groups(rows, lambda r: True)
    cands = [(pid, sorted(pair_rng(seed, pid).sample(v, 2), key=lambda r: r["sample_idx"]))
             for pid, v in groups.items() if len(v) >= 2]
    ab = [COMPARE.format(prompt=x["prompt"], a=x["response"], b=y["response"]) for _, (x, y) in cands]
    ba = [COMPARE.format(prompt=x["prompt"], a=y["response"], b=x["response"]) for _, (x, y) in cands]
    p = np.asarray(prefer_a(ab + ba), dtype=np.float64) if cands else np.zeros(0)
    pref_x = (p[: len(cands)] + 1.0 - p[len(cands):]) / 2
    pairs = []
    for (pid, (x, y)), px in zip(cands, pref_x, strict=True):
        chosen, rejected = (x, y) if px >= 0.5 else (y, x)
        pairs.append({"prompt_id": pid, "prompt": x["prompt"], "chosen": chosen["response"],
                      "rejected": rejected["response"], "chosen_idx": chosen["sample_idx"],
                      "rejected_idx": rejected["sample_idx"], "preference": float(max(px, 1 - px)),
                      "delta_u": float(abs(2 * px - 1)), "n_valid": len(groups[pid])})
    return pairs, {"groups": len(groups), "pairs": len(pairs), "groups_without_pair": len(groups) - len(pairs)}
