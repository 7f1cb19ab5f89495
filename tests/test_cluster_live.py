"""Real Ray clusters on this machine, on loopback: `ray job submit` of jobs/align.py (its data steps) to a head started
with `ray start`, and Ray's fake multi-node autoscaler adding and removing workers for a pipeline
step. Each test stops only the processes of the cluster it started (never `ray stop`, which would
kill every Ray on the machine)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def _agent_ports() -> list[str]:
    """Free ports for the node's agents: the defaults clash with another Ray on this machine (the
    test session's own, say), and then the head never accepts a job ("No available agent")."""
    return [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]


def _stop(temp_dir: Path) -> None:
    """Stop the processes of the cluster whose temp dir is `temp_dir`, and only those: terminated, then killed
    after 2 s (gcs_server and raylet outlast 15 s after SIGTERM)."""
    procs = [p for p in psutil.process_iter(["cmdline"]) if str(temp_dir) in " ".join(p.info["cmdline"] or [])]
    for p in procs:
        p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=2)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=15)


@pytest.fixture
def ray_temp() -> Path:
    # Ray's socket paths must stay under 107 bytes: a short temp dir, not pytest's deep tmp_path.
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="udray-", dir="/tmp"))
    yield d
    _stop(d)


@pytest.mark.timeout(900)
def test_ray_job_submit_runs_align_on_a_local_head(tmp_path, ray_temp, model_cache):
    port, dash = _free_port(), _free_port()
    env = _env()
    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2",
                    f"--temp-dir={ray_temp}", "--disable-usage-stats", *_agent_ports()], env=env, check=True,
                   capture_output=True, timeout=120)
    run = tmp_path / "run"
    submit = [str(BIN / "ray"), "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT),
              "--", "python", "jobs/align.py", "--config", "configs/tiny-cpu.yaml", "--run-dir", str(run),
              "--through", "score", "data.limit=3", "data.heldout_prompts=2", "generation.n=2",
              "generation.max_new_tokens=8", f"models.cache_dir={model_cache}"]
    for _ in range(15):  # the head's dashboard agent takes a few seconds to accept jobs after `ray start`
        job = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=840)
        if "No available agent" not in job.stderr:
            break
        time.sleep(2)
    out = job.stdout + job.stderr
    assert job.returncode == 0, out[-4000:]
    assert re.search(r"Job 'raysubmit_\w+' succeeded", out), out[-3000:]
    assert "Uploading package" in out or "already exists" in out  # the working dir went through Ray
    assert f"align: done in {run}" in out and "uncertainty scores: scores/" in out
    # The job ran on the cluster through its data steps (--through score; the whole pipeline is the align tests').
    assert pq.read_table(run / "responses").num_rows == 6 and pq.read_table(run / "scores").num_rows == 6
    assert json.loads((run / "manifest.json").read_text())["steps"]["score"]["status"] == "done"
    assert not (run / "pairs").exists() and "aligned policy" not in out


def _active(address: str, node_type: str, env: dict[str, str]) -> int:
    """How many nodes of `node_type` `ray status` reports as active."""
    out = subprocess.run([str(BIN / "ray"), "status", "--address", address], env=env, capture_output=True,
                         text=True, timeout=60).stdout
    active = out.split("Active:")[1].split("Pending:")[0] if "Active:" in out else ""
    return sum(int(m.group(1)) for m in re.finditer(rf"(\d+) {re.escape(node_type)}\b", active))


@pytest.mark.timeout(900)
def test_autoscaler_adds_workers_for_a_stage_and_removes_them_when_idle(tmp_path, ray_temp, model_cache):
    """Ray's fake multi-node provider (nodes are local raylets) with a worker type carrying FAKE_GPU,
    a stand-in for a GPU node type. The generation stage's actors ask for FAKE_GPU, so the autoscaler
    must start nodes for them; 15 s after the stage ends they are idle and must be removed."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    config = {
        "cluster_name": "udasa-fake", "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.25,
        "provider": {"type": "external",
                     "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
                     "gcs_address": address, "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "fake_gpu_node": {"resources": {"CPU": 1, "FAKE_GPU": 1}, "node_config": {}, "min_workers": 0,
                              "max_workers": 2},
        },
        "head_node_type": "ray.head.default", "auth": {}, "docker": {}, "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }
    (tmp_path / "autoscaling.json").write_text(json.dumps(config))
    env = _env(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    subprocess.run([str(BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--num-cpus=1", f"--temp-dir={ray_temp}", "--include-dashboard=false",
                    f"--autoscaling-config={tmp_path / 'autoscaling.json'}", "--disable-usage-stats", *_agent_ports()],
                   env=env, check=True, capture_output=True, timeout=120)
    assert _active(address, "fake_gpu_node", env) == 0
    # The real generation stage, 2 actors that each need FAKE_GPU: 2 prompts x 2 samples x 4 tokens.
    run = tmp_path / "run"
    stage = subprocess.Popen(
        [sys.executable, "-m", "udasa_ray.cli", "generate", "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
         "--run-dir", str(run), "data.limit=2", "generation.n=2", "generation.max_new_tokens=4",
         "generation.batch_size=2", "generation.num_actors=2", "generation.cpus_per_actor=1",
         "generation.actor_resources={FAKE_GPU: 1}", f"models.cache_dir={model_cache}"],
        env={**env, "RAY_ADDRESS": address, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    # Each `ray status` is a Python start (1.5 CPU-s): polled every 5 s, and once more as the stage ends, within the
    # 15 idle seconds in which its nodes stay up.
    peak, deadline = 0, time.time() + 600
    while stage.poll() is None and time.time() < deadline:
        peak = max(peak, _active(address, "fake_gpu_node", env))
        time.sleep(5)
    log = stage.communicate(timeout=60)[0]
    peak = max(peak, _active(address, "fake_gpu_node", env))
    assert stage.returncode == 0, log[-4000:]
    assert pq.read_table(run / "responses").num_rows == 4
    assert peak == 2, f"the autoscaler started {peak} fake GPU nodes for 2 actors"
    deadline = time.time() + 120
    while _active(address, "fake_gpu_node", env) and time.time() < deadline:
        time.sleep(5)
    assert _active(address, "fake_gpu_node", env) == 0, "idle workers were not removed"
