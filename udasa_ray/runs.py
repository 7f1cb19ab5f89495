"""A run directory and the step protocol: every artifact between pipeline steps, plus a manifest of
which step finished with which config hash.

A `Step` declares its name, the config sections it reads, the steps of the run whose outputs it
reads and its own outputs; `RunDir.run` runs it: skipped when it finished with the same hash,
resumed when an attempt with that hash was cut, redone (outputs cleared) otherwise or with
`force`, its stats recorded. A step's hash is `step_hash` of what it depends on: anything else it
reads (an input file's fingerprint, a sub-run's prompts), its config sections, and the hashes of
the steps it reads. Curriculum stages (`train_stage_<k>`), the held-out check's sides and the
evaluation's judging are steps too, in the run or in a sub-run directory of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
# Subsections read only in one mode, hashed outside it as older runs hashed them (their defaults then): a run on
# another backend neither redoes a step when they change nor sees a hash change when fields or defaults are added.
UNREAD_AS = {("generation", "vllm"): (lambda g: g["backend"] != "vllm", {
    "tensor_parallel_size": 1, "replicas": 1, "batch_size": 64, "gpu_memory_utilization": 0.9, "max_model_len": 4096,
    "dtype": "bfloat16", "enable_prefix_caching": True})}
# Fields added after runs existed: at their default they leave the hash alone, so finished steps
# of older runs stay finished.
ADDED_LATER = {("models", "generator"): None, ("generation", "decoding"): "sample", ("scoring", "stream"): False,
               ("eval", "decoding"): "sample", ("train", "loss_type"): ["sigmoid"], ("train", "loss_weights"): None,
               ("train", "label_smoothing"): 0.0, ("train", "stage_loss_types"): None, ("train", "total_steps"): 0,
               ("train", "eval_seed"): None, ("curriculum", "order"): "easy_first"}


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


def step_hash(*parts: str) -> str:
    """The one hash of a step, over the parts it depends on, in order."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def section_hash(cfg: Config, *sections: str) -> str:
    """Hash of the named config sections: a step reruns only when what it reads changed."""
    d = cfg.to_dict()
    for section, key in NOT_HASHED:
        d[section].pop(key)
    for (section, key), read in MODAL.items():
        if not read(d[section]):
            _pop(d[section], key)
    for (section, key), (unread, value) in UNREAD_AS.items():
        if unread(d[section]):
            d[section][key] = value
    for (section, key), default in ADDED_LATER.items():
        if d[section][key] == default:
            d[section].pop(key)
    blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """A pipeline step (or a sub-step: a curriculum stage, a side of the held-out check).

    `reads`: the config sections its output depends on; `after`: the steps of the same run whose
    outputs it reads (each must have finished; their hashes chain into this one's); `outputs`: what
    it writes, relative to the run directory (cleared when it is redone); `published`: for a step
    whose result can land on disk before the manifest records it (a stage a Ray Train worker
    published when the job was killed), its stats given the outputs' path and the hash, or None;
    `substeps`: a step made of sub-steps that decide for themselves what is left (the curriculum
    stages of the train step), so its work runs every time, quickly when they are all done."""

    name: str
    reads: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    published: Callable[[Path, str], dict[str, Any] | None] | None = None
    substeps: bool = False


def _skipped(step: Step, config_hash: str) -> None:
    print(f"[{step.name}] already done with config {config_hash}: skipped (--force to redo)")


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

    def made_with(self, name: str) -> str:
        """The hash step `name` was made (or is being made) with."""
        if "config_hash" not in self.step(name):
            raise StepMissing(f"{self.path} has no '{name}' step: run `udasa {name}` first")
        return self.step(name)["config_hash"]

    def require(self, name: str, command: str) -> None:
        """Raise StepMissing unless step `name` finished; `command` is the `udasa` one that makes it."""
        if self.step(name).get("status") != "done":
            raise StepMissing(f"{self.path} has no finished '{name}' step: run `udasa {command}` first")

    def config_hash(self, step: Step, cfg: Config, key: Sequence[str] = (), salt: Sequence[str] = ()) -> str:
        """`step`'s hash: `key` (what else it reads, e.g. an input's fingerprint), its config sections, the
        hashes of the steps it reads (`after`), then `salt` (the hash of an input made elsewhere: the stage
        before, the training behind a policy)."""
        own = [section_hash(cfg, *step.reads)] if step.reads else []
        return step_hash(*key, *own, *(self.made_with(name) for name in step.after), *salt)

    def adopt(self, src: RunDir, steps: Sequence[Step]) -> list[str]:
        """Take `src`'s finished `steps`, their outputs and manifest entries, where this run lacks them or
        holds another version (a changed config, a rerun): runs that share their early steps (methods,
        sweep trials) start from the same data, and never from a stale copy. Only these steps' entries are
        taken, never `src`'s later steps. Returns the names of the steps taken."""
        m = self.manifest()
        taken = []
        for step in steps:
            name = step.name
            entry = src.step(name)
            if entry.get("status") != "done" or m["steps"].get(name) == entry:
                continue
            for out in step.outputs:
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

    def todo(self, step: Step, config_hash: str, force: bool = False) -> bool | None:
        """None when `step` finished with `config_hash` (recorded so, or published on disk by a job killed
        before it could record it); else whether an attempt with this hash left outputs to resume from."""
        prev = self.step(step.name)
        same = not force and prev.get("config_hash") == config_hash
        repaired = same and self._set_aside_unreadable(step.name, list(step.outputs))
        if same and prev.get("status") != "done" and step.published:
            stats = step.published(self.path / step.outputs[0], config_hash)
            if stats is not None:
                self.update_step(step.name, status="done", finished=time.time(), stats=stats)
                prev = self.step(step.name)
        if same and prev.get("status") == "done" and not repaired:
            return None
        return same and (prev.get("status") == "running" or repaired)

    def start(self, step: Step, cfg: Config, config_hash: str, resume: bool) -> None:
        """Mark `step` running with this hash; its outputs are cleared first unless it resumes."""
        if not resume:
            for out in step.outputs:
                p = self.path / out
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        self.update_step(step.name, status="running", config_hash=config_hash, config=cfg.to_dict(),
                         started=time.time(), outputs=list(step.outputs))

    def finish(self, step: Step, stats: dict[str, Any]) -> None:
        self.update_step(step.name, status="done", finished=time.time(), stats=stats)

    def run(self, step: Step, cfg: Config, work: Callable[[bool], dict[str, Any]], force: bool = False,
            key: Sequence[str] = (), salt: Sequence[str] = ()) -> dict[str, Any]:
        """Run `work(resume)` for `step` unless it finished with the same hash (see `todo`); returns its stats.
        The steps it reads must have finished."""
        resume = self.begin(step, cfg, force, key, salt)
        if resume is None:
            return self.step(step.name).get("stats", {})
        stats = work(resume)
        self.finish(step, stats)
        return stats

    def begin(self, step: Step, cfg: Config, force: bool = False, key: Sequence[str] = (),
              salt: Sequence[str] = ()) -> bool | None:
        """Start `step` as `run` does, for work that `finish`es it later: None (and skipped) when it finished with
        the same hash, else whether it resumes. The steps it reads must have finished."""
        for name in step.after:
            self.require(name, name)
        config_hash = self.config_hash(step, cfg, key, salt)
        resume = True if step.substeps else self.todo(step, config_hash, force)
        if resume is None:
            _skipped(step, config_hash)
            return None
        self.start(step, cfg, config_hash, resume)
        return resume

    def chain(self, steps: Sequence[Step], cfg: Config, force: bool = False) -> list[tuple[Step, str, bool]]:
        """Sub-steps that each read the one before (the first reads its `after` steps): each with its hash and
        whether it is to do. Once one is to do, so is every one after it."""
        out: list[tuple[Step, str, bool]] = []
        todo = False
        for step in steps:
            config_hash = self.config_hash(step, cfg, salt=[out[-1][1]] if out else [])
            todo = todo or self.todo(step, config_hash, force) is not None
            if not todo:
                _skipped(step, config_hash)
            out.append((step, config_hash, todo))
        return out

    def stream(self, steps: Sequence[Step], cfg: Config, work: Callable[[], dict[str, Any]], force: bool = False
               ) -> None:
        """Steps that each read the one before, made together by one `work()` (generation streamed into
        scoring): each is begun (a later one afresh when the one before starts afresh), `work` runs once and
        its stats are kept in the first step's entry as `stream`; each step then finishes through `run`,
        which resumes it and makes whatever `work` left. Nothing runs when the first step already finished."""
        resume: bool | None = True
        for i, step in enumerate(steps):
            config_hash = self.config_hash(step, cfg)
            resume = self.todo(step, config_hash, force or not resume)
            if resume is None:
                if i == 0:
                    return
                continue
            self.start(step, cfg, config_hash, resume)
        if stats := work():
            self.update_step(steps[0].name, stream=stats)
