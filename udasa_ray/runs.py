"""A run directory: every artifact between steps, plus a manifest of what finished with which config.

A finished stage is skipped when rerun with the same config hash, so a crashed or extended
pipeline picks up where it stopped; `--force` redoes a stage.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from udasa_ray.config import Config


class RunDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().resolve()  # absolute: Ray workers run in other directories
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.path / "manifest.json"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"stages": {}}
        return json.loads(self.manifest_path.read_text())

    def _write(self, m: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(m, indent=2, sort_keys=True))
        os.replace(tmp, self.manifest_path)

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest()["stages"].get(name, {})

    def _update(self, name: str, **fields: Any) -> None:
        m = self.manifest()
        m["stages"].setdefault(name, {}).update(fields)
        self._write(m)

    def run_stage(
        self,
        name: str,
        cfg: Config,
        config_hash: str,
        fn: Callable[[bool], dict[str, Any]],
        outputs: list[str],
        force: bool = False,
    ) -> dict[str, Any]:
        """Run `fn(resume)` unless the stage already finished with this config hash.

        `resume` is True when an unfinished attempt with the same hash left outputs behind;
        otherwise stale outputs are removed first. Returns the stage's stats.
        """
        prev = self.stage(name)
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
