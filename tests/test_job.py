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
                          capture_output=True, text=True, timeout=280)


@pytest.mark.timeout(300)
def test_align_job_runs_the_pipeline_so_far(tmp_path, model_cache):
    """ingest -> generate -> score -> pairs -> report, on 2 prompts x 2 samples x 4 tokens."""
    run = tmp_path / "run"
    r = _job("--config", str(ROOT / "configs" / "tiny-cpu.yaml"), "--run-dir", str(run), "data.limit=2",
             "generation.n=2", "generation.max_new_tokens=4", f"models.cache_dir={model_cache}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "80 records -> 80 prompts, 0 rejected" in r.stdout
    assert "4 responses for 2 prompts" in r.stdout and f"artifacts in {run}" in r.stdout
    assert pq.read_table(run / "responses").num_rows == 4
    assert pq.read_table(run / "scores").num_rows == 4
    assert "[pairs] " in r.stdout and (run / "report" / "report.md").exists()


def test_align_job_config_error_exits_2(tmp_path):
    r = _job("--run-dir", str(tmp_path), "curriculum.thresholds=[0.7,0.4]")
    assert r.returncode == 2 and "curriculum.thresholds: must increase" in r.stderr
