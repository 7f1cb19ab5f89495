"""Typed run configuration: a recipe (configs/*.yaml), overlays and dotted overrides, loaded into
the dataclasses of schema.py, type-checked by loader.py and value-checked by validate.py.

Every number the pipeline uses lives here, so a recipe is the whole story of a run; the run
manifest (runs.py) hashes the sections a step reads to tell whether a finished step can be reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from udasa_ray.config.loader import ConfigError, build, parse_override, read_layers
from udasa_ray.config.schema import (
    Config,
    EvalConfig,
    GCGConfig,
    GenerationConfig,
    JudgeConfig,
    ModelsConfig,
    RayConfig,
    ScoringConfig,
    VLLMConfig,
)
from udasa_ray.config.validate import validate

__all__ = ["Config", "ConfigError", "EvalConfig", "GCGConfig", "GenerationConfig", "JudgeConfig", "ModelsConfig",
           "RayConfig", "ScoringConfig", "VLLMConfig", "from_dict", "load_config", "parse_override"]


def from_dict(data: dict[str, Any]) -> Config:
    """A config from its dict form (Config.to_dict, or merged YAML), type-checked and validated."""
    cfg = build(Config, data)
    validate(cfg)
    return cfg


def load_config(path: str | Path | list[str | Path] | None = None, overrides: list[str] = ()) -> Config:
    """Load YAML recipes (or the defaults), apply dotted overrides, type-check and validate.

    Several files merge left to right: a recipe, then overlays such as configs/methods/rlaif.yaml.
    """
    paths = [] if path is None else [path] if isinstance(path, str | Path) else list(path)
    return from_dict(read_layers(paths, list(overrides)))
