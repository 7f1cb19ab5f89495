"""A generic typed YAML loader: nested dataclasses built from merged YAML layers and dotted
`key=value` overrides, every value checked against its field's type. Errors name the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from udasa_ray.errors import UserError


class ConfigError(UserError, ValueError):
    """A config key is unknown, mistyped or impossible; the message names the key. Exit status 2."""

    exit_code = 2
    kind = "config error"


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return " or ".join(getattr(a, "__name__", str(a)) for a in args)


def check_type(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to `tp` (int -> float only), or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) == 1:  # X | None: X's own error, which names a list's element
            return check_type(key, value, args[0])
        for a in args:
            try:
                return check_type(key, value, a)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(repr, typing.get_args(tp)))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping with string keys, got {value!r}")
        _, item_tp = typing.get_args(tp)
        return {k: check_type(f"{key}.{k}", v, item_tp) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [check_type(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build(tp, value, key + ".")
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp is float and isinstance(value, float) and not math.isfinite(value):  # "nan", ".inf"
        raise ConfigError(f"{key}: expected a finite float, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if tp is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a (nested) mapping; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    return cls(**{k: check_type(prefix + k, v, hints[k]) for k, v in data.items()})


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'generation.n=5' -> {'generation': {'n': 5}}; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"{text}: an override is key=value, e.g. generation.n=5")
    key, raw = text.split("=", 1)
    out: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ConfigError(f"{key}: empty part in dotted key")
        out = {part: out}
    return out


def read_layers(paths: list[str | Path], overrides: list[str]) -> dict[str, Any]:
    """YAML files merged left to right, then the dotted overrides."""
    data: dict[str, Any] = {}
    for p in paths:
        try:
            layer = yaml.safe_load(Path(p).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        data = merge(data, layer)
    for o in overrides:
        data = merge(data, parse_override(o))
    return data
