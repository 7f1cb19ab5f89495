"""Shared fixtures: one local Ray, one bundled-model cache and one base-model stand-in per test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """Bundled models are unpacked once per session (UDASA_TEST_CACHE reuses a cache across runs)."""
    return os.environ.get("UDASA_TEST_CACHE") or str(tmp_path_factory.mktemp("model-cache"))


@pytest.fixture(scope="session")
def base_model(model_cache, tmp_path_factory) -> str:
    """The bundled SmolLM2 with its chat template taken away: a stand-in for a base LLaMA."""
    from transformers import AutoTokenizer

    from udasa_ray.models import resolve

    src = Path(resolve("bundled:smollm2-135m-instruct", model_cache))
    dst = tmp_path_factory.mktemp("base-model")
    for f in src.iterdir():
        if f.name in ("chat_template.jinja", ".complete") or f.suffix == ".safetensors":
            continue
        (dst / f.name).write_bytes(f.read_bytes())
    for f in src.glob("*.safetensors"):
        os.symlink(f, dst / f.name)  # 0.5 GB: linked, not copied
    assert AutoTokenizer.from_pretrained(dst).chat_template is None
    return str(dst)


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from udasa_ray.config import RayConfig
    from udasa_ray.ray_utils import init_ray

    init_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


def kill_after(run, step: str, out: str, keep: int) -> int:
    """Leave `run` as a kill after `keep` batches would: later part files gone, the step still
    marked running. Returns how many parts there were."""
    parts = sorted((run / out).glob("part-*.parquet"))
    for p in parts[keep:]:
        p.unlink()
    m = json.loads(run.manifest_path.read_text())
    m["steps"][step]["status"] = "running"
    run.manifest_path.write_text(json.dumps(m))
    return len(parts)
