"""RLCD baseline (Yang et al. 2024): chosen and rejected come from contrastive prompts.

The same request is answered once under a positive and once under a negative system prompt
(same sampling seed), and the positive answer is preferred: no scorer, no judge.
"""

from __future__ import annotations

from collections.abc import Iterable

from udasa_ray.pairs.build import valid_groups


def rlcd_pairs(positive: Iterable[dict], negative: Iterable[dict]) -> tuple[list[dict], dict[str, int]]:
    """Pairs (first valid response of each side) for prompts answered validly under both prompts.

    A prompt whose two answers are identical teaches nothing and is skipped (counted in `identical`).
    """
    pos, neg = valid_groups(positive, lambda r: True), valid_groups(negative, lambda r: True)
    prompts = sorted(set(pos) | set(neg))
    pairs, identical = [], 0
    for pid in prompts:
        if not pos.get(pid) or not neg.get(pid):
            continue
        if pos[pid][0]["response"] == neg[pid][0]["response"]:
            identical += 1
            continue
        c, r = pos[pid][0], neg[pid][0]
        pairs.append({"prompt_id": pid, "prompt": c["prompt"], "chosen": c["response"], "rejected": r["response"],
                      "chosen_idx": c["sample_idx"], "rejected_idx": r["sample_idx"], "delta_u": 0.0,
                      "n_valid": 2})
    return pairs, {"groups": len(prompts), "pairs": len(pairs), "groups_without_pair": len(prompts) - len(pairs),
                   "identical": identical}
