"""GCG (Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned Language Models"):
a suffix appended to a harmful request, optimised so that the model's reply begins with a target
("Sure, here is ..."). The robustness task (the paper's Table 6) attacks with it.

Each step takes the gradient of the target's loss with respect to a one-hot encoding of the suffix,
proposes for every position the `topk` tokens whose gradient promises the largest drop, evaluates
`search_width` candidates that each swap one position for one proposal (a batched forward), and
moves to the best. The best suffix seen is returned. Only ASCII, non-special tokens are proposed,
and a candidate whose text does not tokenize back to itself is dropped, so the suffix means the
same tokens when it is sent as text. Written for this project: nanogcg pins transformers <= 4.47.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from udasa_ray.config import Config, GCGConfig
from udasa_ray.generate.requests import frame_prompt
from udasa_ray.models import load_policy

_SLOT = "{SUFFIX_SLOT}"


def allowed_tokens(tok, vocab: int) -> torch.Tensor:
    """The tokens GCG may put in a suffix: ASCII, printable, not blank, not special (a mask over the vocabulary)."""
    ok = torch.zeros(vocab, dtype=torch.bool)
    special = set(tok.all_special_ids)
    for i in range(min(vocab, len(tok))):
        text = tok.decode([i])
        ok[i] = i not in special and text.isascii() and text.isprintable() and bool(text.strip())
    return ok


def _losses(model, before: torch.Tensor, suffixes: torch.Tensor, after: torch.Tensor, target: torch.Tensor,
            embeds: torch.Tensor | None = None) -> torch.Tensor:
    """The target's mean cross-entropy after each suffix (rows of `suffixes`, or `embeds` for one)."""
    n = suffixes.shape[0]
    pieces = [before.expand(n, -1), suffixes, after.expand(n, -1), target.expand(n, -1)]
    table = model.get_input_embeddings()
    if embeds is None:
        x = table(torch.cat(pieces, 1))
    else:
        x = torch.cat([table(pieces[0]), embeds, table(torch.cat(pieces[2:], 1))], 1)
    start = before.shape[1] + suffixes.shape[1] + after.shape[1]
    logits = model(inputs_embeds=x).logits[:, start - 1 : -1].float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.expand(n, -1), reduction="none").mean(1)


def gcg(model, tok, behavior: str, target: str, g: GCGConfig, prompt_template: str = "chat",
        system_prompt: str | None = None, allowed: torch.Tensor | None = None) -> tuple[str, float]:
    """A suffix for `behavior` (sent as f"{behavior} {suffix}") and the target's loss after it. `allowed`:
    allowed_tokens(tok, vocab), computed once by a caller that attacks several behaviours."""
    text, specials = frame_prompt(tok, f"{behavior} {_SLOT}", prompt_template, system_prompt)
    head, tail = text.split(_SLOT)
    dev = model.device
    ids = lambda s, sp=False: torch.tensor([tok(s, add_special_tokens=sp)["input_ids"]], device=dev)  # noqa: E731
    before, after, tgt = ids(head, specials), ids(tail), ids(target)
    table = model.get_input_embeddings()
    vocab = table.weight.shape[0]
    allowed = (allowed_tokens(tok, vocab) if allowed is None else allowed).to(dev)
    suffix = ids(" ".join(["!"] * g.suffix_tokens))[:, : g.suffix_tokens]
    rng = torch.Generator().manual_seed(g.seed)
    with torch.no_grad():
        best_loss = float(_losses(model, before, suffix, after, tgt)[0])
    best = suffix.clone()
    for _ in range(g.steps):
        onehot = torch.nn.functional.one_hot(suffix[0], vocab).to(table.weight.dtype).requires_grad_()
        loss = _losses(model, before, suffix, after, tgt, embeds=(onehot @ table.weight)[None])[0]
        (grad,) = torch.autograd.grad(loss, onehot)
        grad[:, ~allowed] = float("inf")
        top = (-grad).topk(min(g.topk, int(allowed.sum())), dim=1).indices.cpu()  # [positions, topk]
        pos = torch.randint(suffix.shape[1], (g.search_width,), generator=rng)
        pick = torch.randint(top.shape[1], (g.search_width,), generator=rng)
        cands = suffix.cpu().repeat(g.search_width, 1)
        cands[torch.arange(g.search_width), pos] = top[pos, pick]
        keep = [c for c in cands.tolist() if tok(tok.decode(c), add_special_tokens=False)["input_ids"] == c]
        if not keep:
            continue
        cands = torch.tensor(keep, device=dev)
        with torch.no_grad():
            losses = torch.cat([_losses(model, before, cands[i : i + 64], after, tgt)
                                for i in range(0, len(cands), 64)])
        i = int(losses.argmin())
        suffix = cands[i : i + 1]
        if float(losses[i]) < best_loss:
            best_loss, best = float(losses[i]), suffix.clone()
    return tok.decode(best[0]), best_loss


def suffixes(cfg: Config, model: str, items: list[dict], salt: str, cache: Path) -> dict[str, str]:
    """A GCG suffix for each robust item (id -> suffix) against `model`, kept in `cache` (JSONL per model
    and attack budget, a line per behaviour as it is found): an interrupted evaluation resumes, and the
    transfer suffixes are optimised once for all the methods that share `cache`."""
    budget = {k: v for k, v in vars(cfg.eval.gcg).items() if k != "transfer_from"}  # not what a suffix depends on
    key = json.dumps([model, salt, budget, cfg.generation.prompt_template, cfg.generation.system_prompt],
                     sort_keys=True)
    path = Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    found, kept = {}, []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                found[rec["id"]] = rec["suffix"]
                kept.append(line)
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by a kill: that behaviour is attacked again
        path.write_text("".join(line + "\n" for line in kept))  # new lines are not appended to a cut one
    todo = [it for it in items if it["id"] not in found]
    if todo:
        torch.set_num_threads(max(1, int(cfg.eval.num_cpus)))
        policy, tok = load_policy(model, cfg.models.cache_dir, cfg.generation.dtype)
        policy.requires_grad_(False)
        allowed = allowed_tokens(tok, policy.get_input_embeddings().weight.shape[0])
        with path.open("a") as f:
            for it in todo:
                suffix, loss = gcg(policy, tok, it["query"], it["target"], cfg.eval.gcg,
                                   cfg.generation.prompt_template, cfg.generation.system_prompt, allowed)
                print(f"[gcg] {it['id']}: target loss {loss:.3f} with {suffix!r}")
                f.write(json.dumps({"id": it["id"], "suffix": suffix, "loss": loss, "model": model}) + "\n")
                f.flush()
                found[it["id"]] = suffix
    return {it["id"]: found[it["id"]] for it in items}
