"""A run directory: every artifact between pipeline steps, plus a manifest of which step finished
with which config hash.

A finished step is skipped when rerun with the same config hash, so a crashed or extended
pipeline picks up where it stopped; `--force` redoes a step. A step's hash covers the config
sections it reads and the hash of the step whose output it reads (`chain_hash`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from udasa_ray.config import Config

# Fields that only say where work runs: a run moved to another cluster keeps its finished steps.
PLACEMENT_ONLY = [("generation", "actor_resources")]
# Fields added after runs existed: at their default they leave the hash alone, so finished steps
# of older runs stay finished.
ADDED_LATER = {("models", "generator"): None}


class StepMissing(RuntimeError):
    """A step's input has not been produced yet."""


def section_hash(cfg: Config, *sections: str) -> str:
    """Hash of the named config sections: a step reruns only when what it reads changed."""
    d = cfg.to_dict()
    for section, key in PLACEMENT_ONLY:
        d[section].pop(key)
    for (section, key), default in ADDED_LATER.items():
        if d[section][key] == default:
            d[section].pop(key)
    blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()  # absolute: Ray workers run in other directories
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.path / "manifest.json"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"steps": {}}
        m = json.loads(self.manifest_path.read_text())
        if "steps" not in m:  # runs made before 0.2 named them "stages"
            m["steps"] = m.pop("stages", {})
        return m

    def _write(self, m: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True))
        os.replace(tmp, self.manifest_path)

    def step(self, name: str) -> dict[str, Any]:
        return self.manifest()["steps"].get(name, {})

    def require(self, name: str, command: str) -> None:
        """Raise StepMissing unless step `name` finished; `command` is the `udasa` one that makes it."""
        if self.step(name).get("status") != "done":
            raise StepMissing(f"{self.path} has no finished '{name}' step: run `udasa {command}` first")

    def chain_hash(self, own: str, upstream: str) -> str:
        """A step's hash: its own config sections' hash plus the hash its input was made with."""
        return hashlib.sha256((own + self.step(upstream)["config_hash"]).encode()).hexdigest()[:16]

    def _update(self, name: str, **fields: Any) -> None:
        m = self.manifest()
        m["steps"].setdefault(name, {}).update(fields)
        self._write(m)

    def run_step(
        self,
        name: str,
        cfg: Config,
        config_hash: str,
        fn: Callable[[bool], dict[str, Any]],
        outputs: list[str],
        force: bool = False,
    ) -> dict[str, Any]:
        """Run `fn(resume)` unless the step already finished with this config hash.

        `resume` is True when an unfinished attempt with the same hash left outputs behind;
        otherwise stale outputs are removed first. Returns the step's stats.
        """
        prev = self.step(name)
        if not force and prev.get("status") == "done" and prev.get("config_hash") == config_hash:
            print(f"[{name}] already done with config {config_hash}: skipped (--force to redo)")
            return prev.get("stats", {})
        resume = not force and prev.get("status") == "running" and prev.get("config_hash") == config_hash
        if not resume:
            for out in outputs:
                p = self.path / out
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        m = self.manifest()
        m["config"] = cfg.to_dict()
        self._write(m)
        self._update(name, status="running", config_hash=config_hash, started=time.time(), outputs=outputs)
        stats = fn(resume)
        self._update(name, status="done", finished=time.time(), stats=stats)
        return stats
