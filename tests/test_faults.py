"""Fault injection on the whole job: `jobs/align.py` killed (SIGKILL to its process group) in ingest, the
last stage's training and the held-out check, and its generation and scorer actors and Ray Train workers killed
by pid mid-task; the run finished by reruns must hold the same artifacts as one uninterrupted run
(`tiny_align_run`), row for row. Four launches: a kill inside generation or scoring resumes that step's rows,
which the steps' own tests show (tests/test_generate.py, tests/test_scoring.py).

Every kill waits for an observed event (a part file written, a step marked running or done, a Ray worker
process running a task), never for a time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from conftest import TINY_ALIGN, align_cmd, job_env

from udasa_ray.runs import RunDir

pytestmark = pytest.mark.slow

# Ray titles its worker processes after the task they run: "ray::<actor class>.<method>". Ray Data's actor
# pools run the map function in MapWorker(MapBatches(<class>)).
GENERATOR, SCORER = "MapBatches(HFGenerator)).submit", "MapBatches(ScorerChain)).submit"
TRAIN_WORKER = "ray::RayTrainWorker"


def _ray_procs(title: str, job: subprocess.Popen) -> list[psutil.Process]:
    """The job's live processes whose title contains `title`: its local Ray's are its descendants."""
    try:
        procs = psutil.Process(job.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in procs:
        try:
            if title in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


class Job:
    """One `jobs/align.py` process in its own process group, its output in a log file."""

    def __init__(self, run: Path, log: Path, *extra: str) -> None:
        self.run, self.log = RunDir(run), log
        self.stage_dirs = _stage_dirs()  # left by earlier workers
        with log.open("w") as out:
            self.proc = subprocess.Popen(align_cmd("--run-dir", str(run), *TINY_ALIGN, *extra), env=job_env(),
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def status(self, step: str) -> str | None:
        try:
            return self.run.step(step).get("status")
        except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or caught mid-replace
            return None

    def parts(self, out: str) -> int:
        return len(list((self.run / out).glob("part-*.parquet")))

    def wait_for(self, what: str, ready, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"the job exited ({self.proc.returncode}) before {what}:\n{self.log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {what} within {timeout:.0f}s:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.01)

    def training(self, stage: int) -> bool:
        """Stage `stage` is in its training function: the folder it trains into (train/dpo.py: train_loop) exists.
        Earlier, a worker killed while Ray Train starts the function is an error Ray Train does not retry."""
        return self.status(f"train_stage_{stage}") == "running" and any(
            p.name.startswith(f"udasa-stage{stage}-") for p in _stage_dirs() - self.stage_dirs)

    def kill_worker(self, title: str) -> None:
        """SIGKILL the one Ray worker process running `title`, as a lost node or an OOM kill would."""
        (p,) = _ray_procs(title, self.proc)
        p.kill()

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout: float = 400) -> tuple[int, str]:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not finish within {timeout:.0f}s:\n{self.log.read_text()[-4000:]}")
        return rc, self.log.read_text()


def _stage_dirs() -> set[Path]:
    """The folders Ray Train workers train stages in (train/dpo.py: train_loop); a killed worker leaves its own."""
    return set(Path(tempfile.gettempdir()).glob("udasa-stage*"))


@pytest.fixture
def launch():
    """Start `Job`s; at the end none is left running and the killed workers' folders are gone."""
    jobs, before = [], _stage_dirs()

    def start(*args: object) -> Job:
        jobs.append(Job(*args))
        return jobs[-1]

    yield start
    for job in jobs:
        if job.proc.poll() is None:
            job.kill()
    for folder in _stage_dirs() - before:
        shutil.rmtree(folder, ignore_errors=True)


def _rows(path: Path) -> list[dict]:
    rows = pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: (r["prompt_id"], r.get("sample_idx", 0), r.get("side", "")))


def _same(got: list[dict], want: list[dict], what: str, runs: tuple[Path, Path]) -> None:
    """Row for row: text and integers equal (each run's own path read as RUN), floats to 1e-6 (NaN equal to NaN)."""
    assert len(got) == len(want), f"{what}: {len(got)} rows, uninterrupted {len(want)}"
    for rows, run in zip((got, want), runs, strict=True):
        for r in rows:
            r.update({k: v.replace(str(run), "RUN") for k, v in r.items() if isinstance(v, str)})
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), what
        for k, v in w.items():
            if isinstance(v, float):
                assert (math.isnan(v) and math.isnan(g[k])) or g[k] == pytest.approx(v, rel=1e-6, abs=1e-9), \
                    f"{what}: {k} of {w['prompt_id']}: {g[k]} != {v}"
            else:
                assert g[k] == v, f"{what}: {k} of {w['prompt_id']}: {g[k]!r} != {v!r}"


@pytest.mark.timeout(1200)
def test_killed_everywhere_and_rerun_equals_an_uninterrupted_run(tiny_align_run, launch, tmp_path, model_cache):
    reference, _ = tiny_align_run
    run, cache = tmp_path / "run", f"models.cache_dir={model_cache}"
    runs = (run, reference.resolve())
    logs: dict[str, str] = {}
    responses = 8  # TINY_ALIGN: 4 prompts x 2 samples, one part file each

    # 1. Ingest: killed as soon as the step starts.
    job = launch(run, tmp_path / "1.log", cache)
    job.wait_for("ingest to start", lambda: job.status("ingest") is not None)
    job.kill()
    assert job.status("generate") is None

    # 2. The generation actor killed by pid while it generates, then a scorer actor mid-task: Ray Data restarts
    # each and its step finishes in this same job, every row once. Then the one Ray Train worker is killed by pid
    # in stage 1: with train.max_failures 0 (the default), the job stops with a message naming the stage, and
    # keeps every finished step. (A job killed inside a step resumes that step's rows: the steps' own tests.)
    job = launch(run, tmp_path / "2.log", cache)
    job.wait_for("a response part", lambda: 1 <= job.parts("responses") < responses and _ray_procs(GENERATOR, job.proc))
    job.kill_worker(GENERATOR)
    job.wait_for("generation to finish", lambda: job.status("generate") == "done")
    job.wait_for("a scorer at work", lambda: _ray_procs(SCORER, job.proc))
    job.kill_worker(SCORER)
    job.wait_for("scoring to finish", lambda: job.status("score") == "done")
    job.wait_for("stage 1 training", lambda: job.training(1))
    job.kill_worker(TRAIN_WORKER)
    rc, logs["2"] = job.finish()
    assert rc == 1, logs["2"][-3000:]
    assert "align: error: stage 1 (conservative) failed on Ray Train:" in logs["2"]
    assert "rerun to train it again, finished stages are kept" in logs["2"]
    assert job.status("pairs") == "done" and job.status("train_stage_1") == "running"

    # 3. Stage 1 trains again, then stage 2; then the last stage's worker is killed by pid: with train.max_failures
    # 1 Ray Train restarts the worker group, which skips the stages it published and trains the last one again from
    # its start, in this job. Then the job is killed in the held-out check, after the base side is scored.
    retry = "train.max_failures=1"  # not part of any step's hash: finished steps stay finished
    job = launch(run, tmp_path / "3.log", cache, retry)
    job.wait_for("the last stage training", lambda: job.training(3))
    stage1 = run / "train" / "stage_1" / "model.safetensors"
    trained_at = stage1.stat().st_mtime_ns
    job.kill_worker(TRAIN_WORKER)
    job.wait_for("the last stage to finish", lambda: job.status("train_stage_3") == "done")
    job.wait_for("held-out base scores", lambda: job.parts("heldout/base/scores") >= 1)
    job.kill()
    logs["3"] = job.log.read_text()
    assert stage1.stat().st_mtime_ns == trained_at  # the restarted workers went on after the finished stage
    assert not (run / "heldout" / "summary.json").exists()

    # 4. The rerun finishes, after the last finished step and sub-step.
    job = launch(run, tmp_path / "4.log", cache, retry)
    rc, logs["4"] = job.finish()
    assert rc == 0, logs["4"][-3000:]
    assert "[generate] already done" in logs["4"] and "[train_stage_1] already done" in logs["4"]
    assert "[train_stage_3] already done" in logs["4"] and "[train] stage" not in logs["4"]
    assert stage1.stat().st_mtime_ns == trained_at

    # Same artifacts as the uninterrupted run: no row lost, none twice, same content.
    for name in ("prompts.parquet", "heldout.parquet"):
        _same(_rows(run / name), _rows(reference / name), name, runs)
    assert (run / "rejects.jsonl").read_text() == (reference / "rejects.jsonl").read_text()
    for out in ("responses", "scores", "heldout/base/responses", "heldout/aligned/responses",
                "heldout/base/scores", "heldout/aligned/scores"):
        rows = _rows(run / out)
        assert len({(r["prompt_id"], r["sample_idx"]) for r in rows}) == len(rows), f"{out}: a row twice"
        _same(rows, _rows(reference / out), out, runs)
    assert len(_rows(run / "responses")) == responses
    _same(_rows(run / "pairs" / "pairs.parquet"), _rows(reference / "pairs" / "pairs.parquet"), "pairs", runs)
    stage_files = sorted(p.name for p in (reference / "stages").glob("*.parquet"))
    assert stage_files and sorted(p.name for p in (run / "stages").glob("*.parquet")) == stage_files
    for name in stage_files:
        _same(_rows(run / "stages" / name), _rows(reference / "stages" / name), name, runs)
    _same(_rows(run / "heldout" / "per_prompt.parquet"), _rows(reference / "heldout" / "per_prompt.parquet"),
          "held-out per prompt", runs)
    # Training: the same stages, steps and losses; the retried and resumed stages trained as if never cut.
    got, want = (json.loads((r / "train" / "summary.json").read_text()) for r in (run, reference))
    assert [s["stage"] for s in got["stages"]] == [s["stage"] for s in want["stages"]] == [1, 2, 3]
    for g, w in zip(got["stages"], want["stages"], strict=True):
        losses = [[r["loss"] for r in map(json.loads, (d / "train" / f"stage_{w['stage']}" / "metrics.jsonl").open())
                   if "loss" in r] for d in (run, reference)]
        assert losses[0] == pytest.approx(losses[1], rel=1e-5) and losses[1], f"stage {w['stage']}"
        assert g["steps"] == w["steps"] and g["train_pairs"] == w["train_pairs"]
    got, want = (RunDir(r).manifest()["steps"] for r in (run, reference))
    assert {k: v["config_hash"] for k, v in got.items()} == {k: v["config_hash"] for k, v in want.items()}
    assert all(v["status"] == "done" for v in got.values())
    assert not list(run.rglob(".corrupt-*")) and not (run / ".lock").exists()
