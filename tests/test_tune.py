"""Threshold sweeps: the search space (pure), and real Ray Tune sweeps over phased DPO with the
bundled policy on a tiny step budget, including an interrupted sweep that resumes."""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, job_env

from udasa_ray.config import ConfigError, load_config
from udasa_ray.ingest.read import ingest
from udasa_ray.parts import write_part
from udasa_ray.runs import RunDir, StepMissing
from udasa_ray.score.fusion import fuse
from udasa_ray.score.step import SCORE_SCHEMA
from udasa_ray.tune.space import grid_points, optuna_space, spread_thresholds, trial_name


def test_grid_never_yields_an_invalid_or_duplicate_curriculum():
    pts = grid_points([0.3, 0.4, 0.7], [0.4, 0.7], [1, 2, 3, 4])
    assert all(p["tau1"] < p["tau2"] for p in pts)
    keys = [(p["stages"], *p["thresholds"]) for p in pts]
    assert len(keys) == len(set(keys))
    # one 1-stage trial; 2 stages: cut at τ2 0.4 or 0.7; 3 and 4 stages: (0.3,0.4) (0.3,0.7) (0.4,0.7)
    assert sorted(k for k in keys if k[0] <= 2) == [(1,), (2, 0.4), (2, 0.7)]
    assert len([k for k in keys if k[0] == 3]) == 3 == len([k for k in keys if k[0] == 4])
    assert spread_thresholds(2, 0.4, 0.7) == [0.7] and spread_thresholds(4, 0.2, 0.8) == [0.2, 0.5, 0.8]
    with pytest.raises(ValueError, match="τ1 < τ2"):
        spread_thresholds(3, 0.7, 0.4)
    assert trial_name(3, [0.4, 0.7]) == "k3_0.4_0.7" and trial_name(1, []) == "k1"


def test_optuna_space_samples_only_valid_thresholds():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    # Tune checkpoints the searcher, define-by-run space included: it has to pickle
    space = pickle.loads(pickle.dumps(optuna_space([0.1, 0.8], [0.3, 0.9], [1, 2, 3, 4], min_gap=0.05)))
    for _ in range(200):
        trial = study.ask()
        space(trial)
        p = trial.params
        assert p["tau1"] + 0.05 <= p["tau2"] + 1e-12 and 0.1 <= p["tau1"] and p["tau2"] <= 0.9
        assert p["stages"] in (1, 2, 3, 4)
        spread_thresholds(p["stages"], p["tau1"], p["tau2"])  # never raises
        study.tell(trial, 0.0)


def test_tune_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="tune.objective"):
        load_config(None, ["tune.objective=accuracy"])
    with pytest.raises(ConfigError, match="tune.stages"):
        load_config(None, ["tune.stages=[0, 5]"])
    with pytest.raises(ConfigError, match="ranges for optuna"):
        load_config(None, ["tune.search=optuna", "tune.tau1=[0.3, 0.4, 0.5]"])
    assert load_config(None, ["tune.objective=eval:harmlessness"]).tune.objective == "eval:harmlessness"
    # what a sweep needs of other sections is checked when it starts, not for every run
    from udasa_ray.tune.sweep import check_preconditions

    run, held = RunDir(tmp_path / "unscored"), "data.heldout_prompts=2"
    with pytest.raises(ConfigError, match="needs held-out pairs"):
        check_preconditions(load_config(None, [held, "train.eval_fraction=0"]), run)
    with pytest.raises(ConfigError, match="data.heldout_prompts"):  # heldout_U, the default objective
        check_preconditions(load_config(None, ["tune.asha=false"]), run)
    with pytest.raises(ConfigError, match="pairs.method"):
        check_preconditions(load_config(None, [held, "pairs.method=rlaif"]), run)
    with pytest.raises(StepMissing, match="no finished 'score' step"):
        check_preconditions(load_config(None, [held]), run)


def test_trial_rows_keep_an_errored_trials_thresholds(tmp_path):
    """A row's curriculum comes from the trial's config, so a trial that failed before reporting
    still shows what it tried; a trial ASHA stopped has no objective."""
    from types import SimpleNamespace

    from udasa_ray.tune.sweep import trial_rows

    points = grid_points([0.4], [0.7], [1, 3])
    run = RunDir(tmp_path / "run")
    final = {"stage": 3, "stages_trained": 3, "stage_accuracy": 0.75, "objective": 0.75}
    results = [SimpleNamespace(config={"point": 1}, metrics={}, error=RuntimeError("boom")),
               SimpleNamespace(config={"stages": 2, "tau1": 0.3, "tau2": 0.6}, metrics=None, error=RuntimeError()),
               SimpleNamespace(config={"point": 1}, metrics={**final, "stage": 1, "objective": math.nan}, error=None),
               SimpleNamespace(config={"point": 1}, metrics=final, error=None)]
    rows = trial_rows(results, points, run)
    assert [(r["trial"], r["stages"], r["tau1"], r["tau2"], r["thresholds"], r["status"]) for r in rows] == [
        ("k3_0.4_0.7", 3, 0.4, 0.7, "[0.4, 0.7]", "error"), ("k2_0.6", 2, 0.3, 0.6, "[0.6]", "error"),
        ("k3_0.4_0.7", 3, 0.4, 0.7, "[0.4, 0.7]", "stopped (ASHA)"), ("k3_0.4_0.7", 3, 0.4, 0.7, "[0.4, 0.7]", "done")]
    assert rows[0]["trial_dir"] == str(run / "tune" / "trials" / "k3_0.4_0.7")
    assert rows[2]["objective"] is None and rows[3]["objective"] == 0.75 and rows[3]["stages_done"] == 3


def scored_run(path: Path, prompts: int = 16, n: int = 3) -> RunDir:
    """A run as the score stage leaves it: per prompt, a careful answer with low uncertainty and
    curt ones with higher, spread so that Δu covers the thresholds' range; the next 2 prompts held out."""
    rows, bundled = [], ingest("bundled:prompts", 2000)[0]
    run = RunDir(path)
    for name, chosen in (("prompts.parquet", bundled[:prompts]), ("heldout.parquet", bundled[prompts:prompts + 2])):
        pq.write_table(pa.Table.from_pylist([{"prompt_id": p["prompt_id"], "prompt": p["prompt"]} for p in chosen]),
                       run / name)
    run.update_step("ingest", status="done", config_hash="hand-written")
    for i, p in enumerate(bundled[:prompts]):
        for s in range(n):
            u = (0.05, 0.1, 0.0) if s == 0 else (0.1 + 0.8 * i / prompts, 0.5 + 0.4 * s / n, 0.1)
            rows.append({"prompt_id": p["prompt_id"], "prompt": p["prompt"], "sample_idx": s,
                         "response": "Here is a careful answer: " + p["reference"][:60] if s == 0 else
                         f"No idea ({s}).", "u_sem": u[0], "u_fact": u[1], "u_val": u[2], "U": float(fuse(u)),
                         "error": None})
    (run / "scores").mkdir()
    write_part(pa.Table.from_pylist(rows, schema=SCORE_SCHEMA), run / "scores")
    run.update_step("score", status="done", config_hash="hand-written")
    return run


# One optimizer step a stage, an evaluation after it, on 4 held-out pairs; 2 answers of 8 tokens to each held-out
# prompt for the objective.
TINY = ["train.max_steps_per_stage=1", "train.max_length=64", "train.warmup_steps=0", "train.decay_steps=0",
        "train.eval_steps=1", "train.eval_fraction=0.25", "tune.tau1=[0.4]", "tune.tau2=[0.7]", "ray.num_cpus=2",
        "data.heldout_prompts=2", "generation.n=2", "generation.max_new_tokens=8"]


def _tune(run: RunDir, model_cache: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "udasa_ray.cli", "tune", "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
            "--run-dir", str(run.path), f"models.cache_dir={model_cache}", *TINY, *extra]


def _trials(run: RunDir) -> list[dict]:
    with open(run / "tune" / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sweep_killed_in_a_trial_resumes_and_writes_table_plots_and_best_config(tmp_path, model_cache):
    """A 1-stage and a 2-stage trial on the default objective (held-out U), tracked with W&B offline. The base
    policy answers the held-out prompts once, before the trials. The sweep is killed (SIGKILL to its process
    group) once the 2-stage trial has finished stage 1; the rerun restores the experiment, keeps the finished
    1-stage trial, does not retrain stage 1, and writes the table, the plots and a best.yaml that loads. W&B holds
    the sweep job's run and one per trial from Ray Tune's own logger."""
    run = scored_run(tmp_path / "run")
    cmd = _tune(run, model_cache, "tune.stages=[1, 2]", "tune.asha=false", "tracking.backend=wandb")
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=job_env(), start_new_session=True)
    k2 = RunDir(run / "tune" / "trials" / "k2_0.7")
    deadline = time.time() + 800
    while time.time() < deadline and proc.poll() is None:
        if k2.manifest_path.exists() and k2.step("train_stage_1").get("status") == "done":
            break
        time.sleep(1)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "tune" / "trials.csv").exists()
    stage1 = k2 / "train" / "stage_1" / "model.safetensors"
    mtime = stage1.stat().st_mtime_ns

    out = subprocess.run(cmd, capture_output=True, text=True, env=job_env(), timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "[tune] resuming the sweep" in out.stdout
    assert stage1.stat().st_mtime_ns == mtime  # stage 1 of the interrupted trial was not retrained
    trials = _trials(run)
    assert sorted(t["trial"] for t in trials) == ["k1", "k2_0.7"] and {t["status"] for t in trials} == {"done"}
    base = run / "heldout" / "base" / "responses"
    made = {p.name: p.stat().st_mtime_ns for p in base.glob("part-*.parquet")}
    assert made and len(pq.read_table(base)) == 2 * 2
    for t in trials:  # each trial trained its own curriculum from the run's scores
        trial = RunDir(run / "tune" / "trials" / t["trial"])
        summary = json.loads((trial / "stages" / "summary.json").read_text())
        assert summary["thresholds"] == json.loads(t["thresholds"])
        # Its objective: the mean U of its own answers; the base side is the sweep's, copied, not made again.
        check = json.loads((trial / "heldout" / "summary.json").read_text())
        assert float(t["objective"]) == pytest.approx(check["aligned"]["U"]) and 0 <= check["aligned"]["U"] <= 1
        assert {p.name: p.stat().st_mtime_ns for p in (trial / "heldout" / "base" / "responses").glob("part-*")} == made
    stages = json.loads((k2 / "train" / "summary.json").read_text())["stages"]
    assert len(stages) == 2 and all(s["steps"] == 1 for s in stages)
    table = (run / "tune" / "trials.md").read_text()
    assert "**Best:**" in table and (run / "tune" / "heatmap.png").exists() and (run / "tune" / "stages.png").exists()
    best = load_config(run / "tune" / "best.yaml")  # the user passes it to jobs/align.py as is
    top = min(trials, key=lambda t: float(t["objective"]))  # lower held-out U is better
    assert best.curriculum.thresholds == json.loads(top["thresholds"])
    assert best.models.cache_dir == model_cache and best.train.max_steps_per_stage == 1

    # W&B offline files, one folder per process that logged a run. A killed job can leave its run held, and the
    # rerun's job run is then a new one in the same group; Ray Tune's logger resumes each trial's run by its id.
    state = json.loads((run / "tracking.json").read_text())
    logs: dict[str, bytes] = {}
    for p in (run / "wandb").glob("offline-run-*/run-*.wandb"):
        run_id = p.parent.name.rsplit("-", 1)[1]
        logs[run_id] = logs.get(run_id, b"") + p.read_bytes()
    job = logs.pop(state["run_id"])
    assert b"tune.stages" in job and b"heatmap" in job  # the config, and the sweep's plots as images
    trials = [t for t in logs.values() if b"stage_accuracy" in t]
    assert len(trials) == 2 and all(state["group"].encode() in t for t in [*trials, job])
