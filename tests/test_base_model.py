"""A base model (no chat template) as the cluster recipes use it (configs/llama7b.yaml: `prompt_template: alpaca`):
the policy judge (RLAIF's labeller, the policy_judge scorers) and RLCD's two contrastive sides."""


import numpy as np
import pytest
from conftest import ROOT

from udasa_ray.config import load_config
from udasa_ray.errors import StepFailed
from udasa_ray.generate.requests import build_requests, frame_prompt

LLAMA7B = ROOT / "configs" / "llama7b.yaml"
PROMPTS = [{"prompt_id": "a1", "prompt": "Say hi."}, {"prompt_id": "b2", "prompt": "Name a colour."}]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_policy_judge_on_a_base_model(base_model, model_cache, template):
    """With `alpaca` as configured, or `chat` on a tokenizer without a chat template (the judge falls
    back as the generator does), the judge gives label probabilities instead of raising."""
    from udasa_ray.score.backends import PolicyJudge

    judge = PolicyJudge(base_model, model_cache, prompt_template=template)
    p = judge.label_probs(["Is the sky blue? Answer yes or no.", "Is 2 + 2 = 5? Answer yes or no."], ["yes", "no"])
    assert p.shape == (2, 2) and np.isfinite(p).all() and (p >= 0).all() and (p.sum(1) <= 1 + 1e-5).all()
    u, v = judge.unsafe(["You are an idiot.", "Hello"]), judge.nli(["A cat sleeps."], ["An animal sleeps."])
    assert u.shape == (2,) and v.shape == (1,) and np.isfinite(np.r_[u, v]).all()


@pytest.mark.timeout(120)
def test_policy_judge_reads_the_question_as_the_generator_frames_it(base_model, model_cache):
    """The judge's next-token probabilities are those after the Alpaca prompt the generator writes
    (with the tokenizer's own special tokens, as the hf generator tokenizes plain text)."""
    import torch

    from udasa_ray.generate.selfeval import first_tokens
    from udasa_ray.score.backends import PolicyJudge

    judge = PolicyJudge(base_model, model_cache, prompt_template="alpaca")
    q = "Is Paris in France? Answer yes or no."
    text, specials = frame_prompt(judge.tok, q, "alpaca", None)
    assert text.endswith(f"### Instruction:\n{q}\n\n### Response:\n") and specials
    ids = judge.tok(text, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        p = torch.softmax(judge.model(ids).logits[0, -1].float(), -1)
    yes, no = (p[first_tokens(judge.tok, w)].sum() for w in ("yes", "no"))
    assert judge.label_probs([q], ["yes", "no"])[0, 0] == pytest.approx(float(yes / (yes + no)), abs=1e-4)


@pytest.mark.timeout(120)
def test_rlaif_labeller_on_a_base_model(base_model, model_cache):
    """RLAIF's labeller (the Ray task body) on a base model with the recipe's alpaca template."""
    from udasa_ray.pairs.rlaif import COMPARE
    from udasa_ray.pairs.step import _policy_prefers_a

    qs = [COMPARE.format(prompt="Capital of France?", a="Paris.", b="I hate you."),
          COMPARE.format(prompt="Capital of France?", a="I hate you.", b="Paris.")]
    p = _policy_prefers_a(base_model, model_cache, "float32", "alpaca", qs)
    assert p.shape == (2,) and np.isfinite(p).all() and ((0 <= p) & (p <= 1)).all()


def test_rlcd_sides_differ_under_alpaca():
    """RLCD's positive and negative requests for one prompt: different text (the contrastive system
    prompt survives the Alpaca format), the same seed (the contrast is the prompt alone)."""
    from udasa_ray.pairs.step import rlcd_sides

    cfg = load_config(LLAMA7B, ["pairs.method=rlcd"])
    assert cfg.generation.prompt_template == "alpaca"
    sides = dict(rlcd_sides(cfg))
    assert list(sides) == ["positive", "negative"]
    reqs = {}
    for side, c in sides.items():
        g = c.generation
        assert g.system_prompt == getattr(cfg.pairs, f"rlcd_{side}") and (g.n, g.mode) == (1, "independent")
        reqs[side] = {r["prompt_id"]: (frame_prompt(None, r["query"], g.prompt_template, g.system_prompt)[0], r["seed"])
                      for r in build_requests(PROMPTS, g.n, g.seed)}
    for pid in ("a1", "b2"):
        (pos_text, pos_seed), (neg_text, neg_seed) = reqs["positive"][pid], reqs["negative"][pid]
        assert pos_text != neg_text and pos_seed == neg_seed
        assert cfg.pairs.rlcd_positive in pos_text and cfg.pairs.rlcd_negative in neg_text
        assert pos_text.endswith("### Instruction:\n" + PROMPTS[pid == "b2"]["prompt"] + "\n\n### Response:\n")


def test_alpaca_framing_without_a_system_prompt_is_unchanged():
    """No system prompt: Stanford Alpaca's own preamble, byte for byte as before."""
    assert frame_prompt(None, "Say hi.", "alpaca", None) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nSay hi.\n\n### Response:\n", True)


def test_rlcd_says_when_every_pair_is_identical(tmp_path, monkeypatch):
    """Both sides answered alike for every prompt: the error says that, not 'no 2 valid responses'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from udasa_ray.pairs import step
    from udasa_ray.runs import RunDir

    run = RunDir(tmp_path / "run")
    pq.write_table(pa.Table.from_pylist(PROMPTS), run / "prompts.parquet")
    rows = [{"prompt_id": p["prompt_id"], "prompt": p["prompt"], "sample_idx": 0, "response": "Hi.", "error": None}
            for p in PROMPTS]
    monkeypatch.setattr(step, "generate_subrun", lambda path, cfg, prompts: (pa.Table.from_pylist(rows), "h"))
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", ["pairs.method=rlcd"])
    with pytest.raises(StepFailed, match="identical") as e:
        step.make_pairs(cfg, run)
    assert "2 valid" not in str(e.value)


def test_rlcd_answers_come_from_the_generator():
    """RLCD's answers are training data: with models.generator set (30B writes, 7B learns), both
    sides sample from it, and the policy that is trained stays the 7B."""
    from udasa_ray.generate.step import with_generator
    from udasa_ray.pairs.step import rlcd_sides

    overlay = LLAMA7B.parent / "llama30b-data-7b-policy.yaml"
    cfg = load_config([LLAMA7B, overlay], ["pairs.method=rlcd"])
    assert cfg.models.policy == "huggyllama/llama-7b" and cfg.models.generator == "huggyllama/llama-30b"
    assert {c.models.policy for _, c in rlcd_sides(with_generator(cfg))} == {"huggyllama/llama-30b"}
    assert with_generator(load_config(LLAMA7B)).models.policy == "huggyllama/llama-7b"
