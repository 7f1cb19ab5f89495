"""Preference pairs (the paper's Eq. 7): chosen = lowest U, rejected = a seeded random other."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


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


def _valid(t: pa.Table) -> np.ndarray:
    """Rows without an error, with a non-blank response and a finite U."""
    err, response = t["error"].cast(pa.string()), t["response"]
    no_error = pc.or_kleene(pc.is_null(err), pc.equal(err, ""))
    answered = pc.and_(pc.greater(pc.binary_length(response), 0), pc.invert(pc.utf8_is_space(response)))
    ok = pc.fill_null(pc.and_kleene(no_error, answered), False).to_numpy()
    return ok & np.isfinite(t["U"].to_numpy())  # a null U reads as NaN


def build_pairs(scores: pa.Table, seed: int = 0) -> tuple[pa.Table, dict[str, int]]:
    """One pair per prompt from its scored responses, column by column: the driver sorts row numbers,
    not rows, and takes the texts of the chosen and rejected responses alone.

    A response is valid when it has no error, a non-blank answer and a finite U. Groups with fewer
    than two valid responses yield no pair; they are counted in the returned stats. Pairs come in
    prompt-id order; the rejected one is drawn from the others in sample order.
    """
    order = pc.sort_indices(scores, sort_keys=[("prompt_id", "ascending"), ("sample_idx", "ascending")]).to_numpy()
    rows = order[_valid(scores)[order]]  # valid rows' numbers, by prompt then sample
    pid = scores["prompt_id"].take(pa.array(rows, pa.int64())).combine_chunks()
    starts = np.flatnonzero(np.r_[True, pc.not_equal(pid[1:], pid[:-1]).to_numpy(zero_copy_only=False)]
                            ) if len(rows) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(rows)])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    U, sample = scores["U"].to_numpy()[rows], scores["sample_idx"].to_numpy()[rows]
    lowest = np.lexsort((sample, U, group_of))  # by group, then U, then sample: each group's first is chosen
    chosen = lowest[np.r_[0, np.cumsum(sizes)[:-1]]] if len(starts) else lowest
    keep = sizes >= 2
    rejected = [pair_rng(seed, p).choice([i for i in range(start, start + size) if i != c])
                for p, start, size, c in zip(pid.take(pa.array(starts[keep], pa.int64())).to_pylist(), starts[keep],
                                             sizes[keep], chosen[keep], strict=True)]
    ch = scores.take(pa.array(rows[chosen[keep]], pa.int64()))
    rj = scores.take(pa.array(rows[np.asarray(rejected, np.int64)], pa.int64()))
    cols = {"prompt_id": ch["prompt_id"], "prompt": ch["prompt"], "chosen": ch["response"],
            "rejected": rj["response"], "chosen_idx": ch["sample_idx"], "rejected_idx": rj["sample_idx"],
            "U_chosen": ch["U"], "U_rejected": rj["U"], "delta_u": pc.subtract(rj["U"], ch["U"]),
            "n_valid": pa.array(sizes[keep], pa.int64())}
    for d in ("u_sem", "u_fact", "u_val"):
        cols[f"{d}_chosen"], cols[f"{d}_rejected"] = ch[d], rj[d]
    pairs = pa.table(cols)
    groups = len(pc.unique(scores["prompt_id"]))
    return pairs, {"groups": groups, "pairs": len(pairs), "groups_without_pair": groups - len(pairs)}
