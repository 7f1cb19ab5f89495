"""Experiment tracking (`tracking.backend`: none, mlflow or wandb): one tracking run per run directory.

Every job on a run directory opens its tracking run again, by the id kept in `<run>/tracking.json`, so a
killed and resubmitted job goes on logging to the run it started; a job with another config starts a
new tracking run (MLflow's params cannot change). When the job ends, failed or not, the driver logs what
the run's artifacts hold: the resolved config as params, each pipeline step's stats, the held-out check,
the evaluation and the report's plots. Training curves come from the trainer itself: each curriculum
stage's TRL trainer reports to the backend (`report_to`) in its Ray Train worker (rank 0), as a run of
its own under the job's (MLflow: a child run; W&B: a run in the job's group).

MLflow's default store is the one MLflow recommends for local use, a SQLite file in the job's folder
(`sqlite:///<dir>/mlflow.db`, artifacts in `<dir>/mlartifacts`): the run directory, or a methods job's
`--out`. W&B runs offline by default, its files in `<run>/wandb/` (`wandb sync` uploads them).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udasa_ray.config import Config
from udasa_ray.errors import StepFailed

STATE = "tracking.json"
# What a run directory shows, logged as files: the report's, the sweep's and a methods job's plots and tables.
ARTIFACTS = ["report/*.png", "report/report.md", "tune/*.png", "tune/trials.md", "tables.md", "compare/*.png",
             "compare/compare.md"]
PACKAGES = {"mlflow": "mlflow-skinny (or mlflow)", "wandb": "wandb"}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def numbers(d: dict[str, Any], prefix: str) -> dict[str, float]:
    """The numeric leaves of `d` as metrics `<prefix>/<dotted key>` (names both backends accept)."""
    return {re.sub(r"[^0-9A-Za-z_\-. :/]", "_", f"{prefix}/{k}"): float(v) for k, v in flatten(d).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def artifact_metrics(run_dir: Path) -> dict[str, float]:
    """What a run directory's artifacts report: each finished step's stats, the held-out check, the evaluation."""
    steps = _json(run_dir / "manifest.json").get("steps", {})
    metrics = {}
    for name, entry in steps.items():
        if entry.get("status") == "done":
            metrics |= numbers(entry.get("stats") or {}, name)
    return metrics | numbers(_json(run_dir / "heldout" / "summary.json"), "heldout") | numbers(
        _json(run_dir / "eval" / "summary.json"), "eval")


@dataclass
class Tracker:
    """An open tracking run, recorded in `<run_dir>/tracking.json` for the stages' trainers (stage_spec)."""

    backend: str
    run_dir: Path
    run_id: str
    group: str  # the job's run: W&B's group, an MLflow parent
    where: str  # the MLflow store's URI, or the W&B folder
    handle: Any  # mlflow: its MlflowClient; wandb: its Run

    def log_run(self, name: str) -> None:
        metrics = artifact_metrics(self.run_dir)
        files = [f for pattern in ARTIFACTS for f in sorted(self.run_dir.glob(pattern))]
        plots = [f for f in files if f.suffix == ".png"]
        if self.backend == "mlflow":
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(k, v, now, 0) for k, v in metrics.items()]
            for i in range(0, len(items), 1000):  # MLflow's batch limit for metrics
                self.handle.log_batch(self.run_id, metrics=items[i:i + 1000])
            for f in files:
                folder = f.parent.relative_to(self.run_dir).as_posix()
                self.handle.log_artifact(self.run_id, str(f), None if folder == "." else folder)
        else:
            import wandb

            self.handle.summary.update(metrics)
            if plots:
                self.handle.log({p.relative_to(self.run_dir).with_suffix("").as_posix(): wandb.Image(str(p))
                                 for p in plots})
            for f in files:
                if f.suffix != ".png":
                    self.handle.save(str(f), base_path=str(self.run_dir), policy="now")
        print(f"[tracking] {name}: {len(metrics)} metrics and {len(plots)} plots logged to {self.backend} run "
              f"{self.run_id} ({self.where})")

    def close(self, ok: bool) -> None:
        if self.backend == "mlflow":
            self.handle.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
        else:
            self.handle.finish(exit_code=0 if ok else 1)


def _config(cfg: Config) -> dict[str, Any]:
    """The resolved config as dotted keys, less where it is tracked."""
    return {k: v for k, v in flatten(cfg.to_dict()).items() if not k.startswith("tracking.")}


def _open(cfg: Config, run_dir: Path, name: str, store: Path, parent: Tracker | None) -> Tracker:
    t = cfg.tracking
    try:
        __import__(t.backend)
    except ImportError as e:
        raise StepFailed(f"tracking.backend: {t.backend} needs {PACKAGES[t.backend]} installed "
                         f"(pip install 'udasa-ray[tracking]'): {e}") from e
    params = {k: str(v) for k, v in _config(cfg).items()}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _json(run_dir / STATE)
    uri = t.uri or f"sqlite:///{store.resolve() / 'mlflow.db'}"
    same = state.get("backend") == t.backend and state.get("params_hash") == digest and (
        t.backend == "wandb" or state.get("uri") == uri)
    group = parent.group if parent else None
    if t.backend == "mlflow":
        from mlflow import MlflowClient
        from mlflow.entities import Param

        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(t.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(
            t.experiment, artifact_location=None if t.uri else (store.resolve() / "mlartifacts").as_uri())
        same = same and state["run_id"] in {r.info.run_id for r in client.search_runs(
            [exp_id], f"attributes.run_id = '{state['run_id']}'")}  # not deleted from the store since
        if same:
            run_id = state["run_id"]
            client.update_run(run_id, "RUNNING")
        else:
            tags = {"udasa.job": name, "udasa.run_dir": str(run_dir.resolve())} | (
                {"mlflow.parentRunId": parent.run_id} if parent else {})
            run_id = client.create_run(exp_id, run_name=name, tags=tags).info.run_id
            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow's batch limit for params
                client.log_batch(run_id, params=items[i:i + 100])
        group, where, handle = group or run_id, uri, client
    else:
        import wandb

        run_id = state["run_id"] if same else uuid.uuid4().hex[:12]
        group, where = group or (state["group"] if same else run_id), str(run_dir.resolve() / "wandb")

        def init(run_id: str):  # noqa: ANN202
            return wandb.init(project=t.experiment, dir=str(run_dir.resolve()), mode=t.wandb_mode, id=run_id,
                              resume="allow", name=name, group=group, job_type=name, config=_config(cfg),
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))

        try:
            handle = init(run_id)
        except Exception as e:  # noqa: BLE001 - W&B's own error type
            if not same or "in use" not in str(e):
                raise
            # A job killed with its W&B run open leaves the run held: the rerun logs to a new run in the same group.
            print(f"[tracking] W&B run {run_id} is still held by the job that was killed: logging to a new run in "
                  f"its group {group}")
            run_id = uuid.uuid4().hex[:12]
            handle = init(run_id)
    mlflow_store = {"uri": uri, "experiment_id": exp_id} if t.backend == "mlflow" else {}
    (run_dir / STATE).write_text(json.dumps({"backend": t.backend, "run_id": run_id, "group": group, "job": name,
                                             "params_hash": digest, **mlflow_store}, indent=2))
    return Tracker(t.backend, run_dir, run_id, group, where, handle)


@contextlib.contextmanager
def tracked(cfg: Config, run_dir: Path, name: str, store: Path | None = None,
            parent: Tracker | None = None) -> Iterator[Tracker | None]:
    """The job `name`'s tracking run for `run_dir` (None with tracking.backend: none), its artifacts logged
    when the job ends, failed or not. MLflow's default store is in `store` (default: `run_dir`)."""
    if cfg.tracking.backend == "none":
        yield None
        return
    tracker = _open(cfg, Path(run_dir), name, Path(store or run_dir), parent)
    ok = False
    try:
        yield tracker
        ok = True
    finally:
        try:
            tracker.log_run(name)
        except Exception as e:  # noqa: BLE001 - a tracking failure must not hide the job's own error
            if ok:
                raise
            print(f"[tracking] could not log the failed job: {e}", file=sys.stderr)
        tracker.close(ok)


def tune_callbacks(cfg: Config, tracker: Tracker | None) -> list[Any]:
    """Ray Tune's own loggers: each sweep trial a tracking run under the sweep job's."""
    if tracker is None:
        return []
    if tracker.backend == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        return [MLflowLoggerCallback(tracking_uri=tracker.where, experiment_name=cfg.tracking.experiment,
                                     tags={"mlflow.parentRunId": tracker.run_id})]
    from ray.air.integrations.wandb import WandbLoggerCallback

    os.environ["WANDB_MODE"] = cfg.tracking.wandb_mode  # what Ray's callback reads to skip the login
    return [WandbLoggerCallback(project=cfg.tracking.experiment, group=tracker.group, mode=cfg.tracking.wandb_mode,
                                dir=str(tracker.run_dir.resolve()))]


def stage_spec(cfg: Config, run_dir: Path, stage_name: str) -> dict[str, Any] | None:
    """What a stage's trainer needs to report under the run directory's open tracking run, or None."""
    state = _json(run_dir / STATE)
    if cfg.tracking.backend == "none" or state.get("backend") != cfg.tracking.backend:
        return None
    if state["backend"] == "mlflow":
        return {"backend": "mlflow", "uri": state["uri"], "experiment_id": state["experiment_id"],
                "parent": state["run_id"], "name": stage_name}
    return {"backend": "wandb", "project": cfg.tracking.experiment, "dir": str(run_dir.resolve()),
            "mode": cfg.tracking.wandb_mode, "group": state["group"], "name": stage_name}


@contextlib.contextmanager
def stage_run(spec: dict[str, Any] | None, rank: int) -> Iterator[None]:
    """Around a stage's training on a Ray Train worker: on rank 0, the run TRL's own callback (`report_to`)
    logs into. MLflow: a child of the job's run, open here so the callback logs into it (the final evaluation
    after training too) and closed when the stage ends. W&B: the callback starts it from the environment set
    here (W&B reads it once per process: the worker's first stage sets it); it is finished here, so that the next
    stage in this worker gets a run of its own."""
    if not spec or rank != 0:
        yield
        return
    if spec["backend"] == "mlflow":
        import mlflow

        mlflow.set_tracking_uri(spec["uri"])  # the callback keeps a URI once set: this run's, in every stage
        with mlflow.start_run(experiment_id=spec["experiment_id"], run_name=spec["name"],
                              tags={"mlflow.parentRunId": spec["parent"], "udasa.stage": spec["name"]}):
            yield
        return
    os.environ.update({"WANDB_PROJECT": spec["project"], "WANDB_DIR": spec["dir"], "WANDB_MODE": spec["mode"],
                       "WANDB_RUN_GROUP": spec["group"], "WANDB_JOB_TYPE": "train", "WANDB_SILENT": "true"})
    try:
        yield
    finally:
        import wandb

        if wandb.run is not None:
            wandb.run.finish()

