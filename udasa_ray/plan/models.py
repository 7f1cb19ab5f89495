"""Model sizes without weights: the architecture fields of a model's config.json and the parameter count
they imply.

A config is looked up in configs/model-configs/<org>--<name>.json first (shipped for the models the
recipes name, so a plan works offline), then in a local model folder or the bundled-model cache, then
through transformers' AutoConfig (which fetches config.json alone).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udasa_ray.config import ConfigError

MODEL_CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs" / "model-configs"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ENCODERS = ("bert", "roberta", "deberta", "deberta-v2", "xlm-roberta", "distilbert", "electra")


@dataclass(frozen=True)
class ModelShape:
    """The fields a memory or time estimate needs."""

    name: str
    model_type: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    max_positions: int
    type_vocab: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def decoder(self) -> bool:
        return self.model_type not in ENCODERS

    @property
    def params(self) -> int:
        """Parameters: embeddings, attention (grouped KV heads), MLP (gated in decoders), norms, and the LM
        head unless tied to the embeddings."""
        h, i = self.hidden, self.intermediate
        q_out, kv_out = self.heads * self.head_dim, self.kv_heads * self.head_dim
        if not self.decoder:  # biases, two LayerNorms a layer, position embeddings, a pooler or classifier head
            layer = (h * q_out + 2 * h * kv_out + q_out * h + 3 * q_out + h) + (2 * h * i + i + h) + 4 * h
            if self.model_type.startswith("deberta"):  # disentangled attention: position projections, relative table
                layer += 2 * h * h + h
            positions = self.max_positions * (2 if self.model_type.startswith("deberta") else 1)
            return self.vocab * h + (positions + self.type_vocab) * h + 2 * h + self.layers * layer + h * h + h
        layer = h * q_out + 2 * h * kv_out + q_out * h + 3 * h * i + 2 * h
        return self.vocab * h * (1 if self.tied else 2) + self.layers * layer + h

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """vLLM's KV cache per token: keys and values of every layer's KV heads."""
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def shape_from(name: str, cfg: dict[str, Any]) -> ModelShape:
    """A ModelShape from config.json's fields (the older LLaMA configs leave num_key_value_heads out: MHA)."""
    try:
        heads = cfg["num_attention_heads"]
        return ModelShape(name=name, model_type=cfg.get("model_type", "llama"), hidden=cfg["hidden_size"],
                          intermediate=cfg["intermediate_size"], layers=cfg["num_hidden_layers"], heads=heads,
                          kv_heads=cfg.get("num_key_value_heads") or heads, vocab=cfg["vocab_size"],
                          tied=bool(cfg.get("tie_word_embeddings", False)),
                          max_positions=cfg.get("max_position_embeddings", 0), type_vocab=cfg.get("type_vocab_size", 0))
    except KeyError as e:
        raise ConfigError(f"{name}: its config.json has no {e.args[0]}: the plan cannot size it") from None


def shipped(name: str) -> Path:
    return MODEL_CONFIGS / (name.replace("/", "--") + ".json")


def _local_config(name: str, cache_dir: str) -> Path | None:
    """config.json of a local model folder, or of a bundled model once it is unpacked in the cache."""
    if name.startswith("bundled:"):
        folder = Path(cache_dir).expanduser() / name.removeprefix("bundled:")
        return folder / "config.json" if (folder / ".complete").exists() else None
    path = Path(name).expanduser()
    return path / "config.json" if (path / "config.json").is_file() else None


@functools.lru_cache(maxsize=64)
def model_shape(name: str, cache_dir: str = "~/.cache/udasa-ray") -> ModelShape | None:
    """The shape of model `name`; None for a bundled model not unpacked yet (a local run, which needs no plan)."""
    for path in (shipped(name), _local_config(name, cache_dir)):
        if path is not None and path.is_file():
            return shape_from(name, json.loads(path.read_text()))
    if name.startswith("bundled:"):
        return None
    try:
        from transformers import AutoConfig

        return shape_from(name, AutoConfig.from_pretrained(name).to_dict())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{name}: no config.json found ({shipped(name).relative_to(MODEL_CONFIGS.parent.parent)} "
                          f"or the Hugging Face Hub: {str(e).splitlines()[0]})") from None
