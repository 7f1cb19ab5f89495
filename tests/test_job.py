"""jobs/align.py, run as the README runs it: a separate process that starts its own local Ray."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _job(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, str(ROOT / "jobs" / "align.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=580)


@pytest.mark.timeout(600)
def test_align_job_runs_the_whole_pipeline(tmp_path, model_cache):
    """ingest -> generate -> score -> pairs -> phased DPO -> held-out check -> report, on 4 prompts
    x 2 samples x 8 tokens, one DPO step a stage, 2 held-out prompts."""
    run = tmp_path / "run"  # given relative, as `make run` does: Ray Train workers run in other directories
    r = _job("--config", str(ROOT / "configs" / "tiny-cpu.yaml"), "--run-dir", "run", "data.limit=4",
             "data.heldout_prompts=2", "generation.n=2", "generation.max_new_tokens=8", "train.max_steps_per_stage=1",
             "train.max_length=64", "train.eval_fraction=0", f"models.cache_dir={model_cache}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "80 records -> 80 prompts, 0 rejected" in r.stdout and "2 prompts held out" in r.stdout
    assert "8 responses for 4 prompts" in r.stdout
    assert pq.read_table(run / "responses").num_rows == 8
    assert pq.read_table(run / "scores").num_rows == 8
    assert "[pairs] 4 pairs from 4 prompts" in r.stdout
    trained = [line for line in r.stdout.splitlines() if line.startswith("[train] stage") and "->" in line]
    assert len(trained) >= 2  # min-max scaling puts the extreme pairs in different stages
    assert f"aligned policy: {run / 'train'}" in r.stdout and f"done in {run}" in r.stdout
    lines = r.stdout.splitlines()
    check = lines.index(next(line for line in lines if line.startswith("[check] 2 held-out prompts x 2 responses")))
    assert lines[check + 2].startswith("base") and lines[check + 3].startswith("aligned")
    assert pq.read_table(run / "heldout" / "aligned" / "scores").num_rows == 4
    report = (run / "report" / "report.md").read_text()
    assert "## Phased DPO" in report and "## Held-out check: base vs aligned" in report
    assert (run / "report" / "train_stage_1.png").exists() or (run / "report" / "train_stage_3.png").exists()


def test_align_job_config_error_exits_2(tmp_path):
    r = _job("--run-dir", str(tmp_path), "curriculum.thresholds=[0.7,0.4]")
    assert r.returncode == 2 and "curriculum.thresholds: must increase" in r.stderr
