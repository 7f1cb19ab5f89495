"""The policy asked about a text: next-token probabilities of label words after a question.

Shared by the policy judge (a scorer backend, judge-based RLAIF) and RAIN's self-evaluation.
"""

from __future__ import annotations

import numpy as np

from udasa_ray.generate.requests import frame_prompt


def first_tokens(tok, word: str) -> list[int]:
    """The first token of `word` as the model may write it (bare, capitalised, after a space)."""
    return sorted({tok.encode(v, add_special_tokens=False)[0] for v in (word, word.capitalize(), " " + word)})


def label_probs(model, tok, questions: list[str], labels: list[str], prompt_template: str = "chat",
                batch_size: int = 16) -> np.ndarray:
    """P(label) for each question, renormalised over the label words' first tokens. A question is
    framed as the generator frames a prompt (`prompt_template`), with no system prompt."""
    import torch

    token_sets = [first_tokens(tok, w) for w in labels]
    out = []
    for i in range(0, len(questions), batch_size):
        framed = [frame_prompt(tok, q, prompt_template) for q in questions[i : i + batch_size]]
        enc = tok([text for text, _ in framed], return_tensors="pt", padding=True,
                  add_special_tokens=framed[0][1]).to(model.device)
        with torch.inference_mode():
            p = torch.softmax(model(**enc).logits[:, -1].float(), -1)
        mass = torch.stack([p[:, ids].sum(-1) for ids in token_sets], -1)
        out.append((mass / mass.sum(-1, keepdim=True)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(labels)))
