"""Preference pairs (the paper's Eq. 7): chosen = lowest U, rejected = a seeded random other."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable


def pair_rng(seed: int, prompt_id: str) -> random.Random:
    # Per prompt, so a pair does not change when other prompts are added or reordered.
    return random.Random(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest())


def valid_groups(rows: Iterable[dict], ok: Callable[[dict], bool]) -> dict[str, list[dict]]:
    """Responses by prompt id (sorted), keeping those without an error, non-empty, and `ok`."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        keep = not r.get("error") and bool(r["response"].strip()) and ok(r)
        groups.setdefault(r["prompt_id"], []).extend([r] if keep else [])
    return {pid: sorted(groups[pid], key=lambda r: r["sample_idx"]) for pid in sorted(groups)}


def build_pairs(rows: Iterable[dict], seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    """Group scored responses by prompt and pick one pair per group.

    A response is valid when it has no error and a finite U. Groups with fewer than two valid
    responses yield no pair; they are counted in the returned stats.
    """
    groups = valid_groups(rows, lambda r: math.isfinite(r["U"]))
    pairs, skipped = [], 0
    for pid, valid in groups.items():
        if len(valid) < 2:
            skipped += 1
            continue
        chosen = min(valid, key=lambda r: (r["U"], r["sample_idx"]))
        rejected = pair_rng(seed, pid).choice([r for r in valid if r is not chosen])
        pair = {"prompt_id": pid, "prompt": chosen["prompt"], "chosen": chosen["response"],
                "rejected": rejected["response"], "chosen_idx": chosen["sample_idx"],
                "rejected_idx": rejected["sample_idx"], "U_chosen": chosen["U"], "U_rejected": rejected["U"],
                "delta_u": rejected["U"] - chosen["U"], "n_valid": len(valid)}
        for d in ("u_sem", "u_fact", "u_val"):
            pair[f"{d}_chosen"], pair[f"{d}_rejected"] = chosen[d], rejected[d]
        pairs.append(pair)
    return pairs, {"groups": len(groups), "pairs": len(pairs), "groups_without_pair": skipped}
