"""A run directory: every artifact between pipeline steps, plus a manifest of which step finished
with which config hash.

A finished step is skipped when rerun with the same config hash, so a crashed or extended
pipeline picks up where it stopped; `--force` redoes a step. A step's hash covers the config
sections it reads and the hash of the step whose output it reads (`chain_hash`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from udasa_ray.config import Config
from udasa_ray.errors import StepFailed
from udasa_ray.parts import unreadable_parts

# Fields that do not change a step's output, only where it runs or when it gives up: a run moved
# to another cluster, or given another error budget, keeps its finished steps.
NOT_HASHED = [("generation", "actor_resources"), ("scoring", "actor_resources"), ("scoring", "max_error_rate"),
              ("train", "max_failures")]
# Fields read only in one mode (a predicate on their section): outside it they are left out of the
# hash, so a RAIN or GCG budget does not redo steps that never read it, and runs made before these
# fields existed stay finished. A dotted key reaches into a nested section.
MODAL = {("generation", "rain"): lambda g: g["decoding"] == "rain",
         ("eval", "gcg"): lambda e: "robust" in e["tasks"],
         ("eval", "robust_source"): lambda e: "robust" in e["tasks"],
         ("eval", "judge.vllm"): lambda e: e["judge"]["backend"] == "vllm"}
# Fields added after runs existed: at their default they leave the hash alone, so finished steps
# of older runs stay finished.
ADDED_LATER = {("models", "generator"): None, ("generation", "decoding"): "sample", ("scoring", "stream"): False,
               ("eval", "decoding"): "sample", ("train", "loss_type"): ["sigmoid"], ("train", "loss_weights"): None,
               ("train", "label_smoothing"): 0.0, ("train", "stage_loss_types"): None}


def _pop(d: dict, dotted: str) -> Any:
    *path, last = dotted.split(".")
    for p in path:
        d = d[p]
    return d.pop(last)


class StepMissing(StepFailed):
    """A step's input has not been produced yet."""


class RunBusy(StepFailed):
    """Another live job holds the run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def chain(own: str, upstream_hash: str) -> str:
    """The hash of a step whose own config sections hash to `own` and whose input was made with `upstream_hash`."""
    return hashlib.sha256((own + upstream_hash).encode()).hexdigest()[:16]


def section_hash(cfg: Config, *sections: str) -> str:
    """Hash of the named config sections: a step reruns only when what it reads changed."""
    d = cfg.to_dict()
    for section, key in NOT_HASHED:
        d[section].pop(key)
    for (section, key), read in MODAL.items():
        if not read(d[section]):
            _pop(d[section], key)
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

    @classmethod
    def existing(cls, path: str | os.PathLike) -> RunDir:
        """A run directory that must already hold a run (for commands that only read one)."""
        p = Path(path).expanduser()
        if not (p / "manifest.json").is_file():
            raise StepMissing(f"there is no run at {p} (no manifest.json)")
        return cls(p)

    @contextlib.contextmanager
    def hold(self, command: str) -> Iterator[None]:
        """Hold the run directory for one job: a second job on it stops at once, naming the holder.
        A lock left by a dead process on this host is taken over; one from another host is named,
        since its process cannot be checked from here."""
        lock = self.path / ".lock"
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                try:
                    other = json.loads(lock.read_text())
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and not _alive(int(other.get("pid", 0))):
                    print(f"[run] {self.path}: taking over the lock of pid {other.get('pid')} (no longer running)")
                    lock.unlink(missing_ok=True)
                    continue
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(other.get("since", 0)))
                raise RunBusy(f"{self.path} is in use by pid {other.get('pid', '?')} on {other.get('host', '?')} "
                              f"('{other.get('command', '?')}', since {since}); wait for it, or delete {lock} "
                              "if that job is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)

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
        return chain(own, self.step(upstream)["config_hash"])

    def adopt(self, src: RunDir, steps: Mapping[str, list[str]]) -> list[str]:
        """Take `src`'s finished `steps` (name -> outputs), their outputs and manifest entries, where this
        run lacks them or holds another version (a changed config, a rerun): runs that share their early
        steps (methods, sweep trials) start from the same data, and never from a stale copy. Only these
        steps' entries are taken, never `src`'s later steps. Returns the steps taken."""
        m = self.manifest()
        taken = []
        for name, outputs in steps.items():
            entry = src.step(name)
            if entry.get("status") != "done" or m["steps"].get(name) == entry:
                continue
            for out in outputs:
                have, theirs = self.path / out, src.path / out
                shutil.rmtree(have) if have.is_dir() else have.unlink(missing_ok=True)
                if theirs.exists():
                    (shutil.copytree if theirs.is_dir() else shutil.copyfile)(theirs, have)
            m["steps"][name] = entry
            taken.append(name)
        self._write(m)
        return taken

    def _set_aside_unreadable(self, name: str, outputs: list[str]) -> bool:
        """Rename the step's unreadable part files to `.corrupt-*` (kept for a look, never read);
        True if there were any: the step then resumes and makes their rows again."""
        bad = [b for out in outputs for b in unreadable_parts(self.path / out)]
        for p, why in bad:
            p.rename(p.with_name(f".corrupt-{p.name}"))
            print(f"[{name}] {p} cannot be read ({why}): set aside as .corrupt-{p.name}; its rows are made again")
        return bool(bad)

    def update_step(self, name: str, **fields: Any) -> None:
        m = self.manifest()
        m["steps"].setdefault(name, {}).update(fields)
        self._write(m)

    def begin_step(self, name: str, cfg: Config, config_hash: str, outputs: list[str], force: bool = False
                   ) -> bool | None:
        """Mark the step running with this config hash; None if it already finished with it.

        Returns `resume`: True when an unfinished attempt with the same hash left outputs behind;
        otherwise stale outputs are removed first.
        """
        prev = self.step(name)
        same = not force and prev.get("config_hash") == config_hash
        repaired = same and self._set_aside_unreadable(name, outputs)
        if same and prev.get("status") == "done" and not repaired:
            return None
        resume = same and (prev.get("status") == "running" or repaired)
        if not resume:
            for out in outputs:
                p = self.path / out
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        self.update_step(name, status="running", config_hash=config_hash, config=cfg.to_dict(),
                         started=time.time(), outputs=outputs)
        return resume

    def run_step(
        self,
        name: str,
        cfg: Config,
        config_hash: str,
        fn: Callable[[bool], dict[str, Any]],
        outputs: list[str],
        force: bool = False,
    ) -> dict[str, Any]:
        """Run `fn(resume)` unless the step already finished with this config hash (begin_step).
        Returns the step's stats."""
        resume = self.begin_step(name, cfg, config_hash, outputs, force)
        if resume is None:
            print(f"[{name}] already done with config {config_hash}: skipped (--force to redo)")
            return self.step(name).get("stats", {})
        stats = fn(resume)
        self.update_step(name, status="done", finished=time.time(), stats=stats)
        return stats
