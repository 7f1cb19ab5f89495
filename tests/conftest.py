"""Shared fixtures: a local Ray for each run of tests that need one, one base-model stand-in per test process, one
bundled-model cache and one finished tiny align run per run of the suite; the repository root and the helpers that
launch jobs.

Tiers: a test that uses a model or Ray through these fixtures is marked `slow` here; tests that load a
model or start Ray otherwise carry the mark themselves. `make test-fast` runs the rest.

`make test` runs the suite in two pytest-xdist workers, a module at a time each (`--dist loadfile`), the
costliest modules first, then the `solo` modules beside the fast tier; plain `pytest` runs everything in one
process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from filelock import FileLock

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Fixtures that load a bundled model or start Ray: a test that uses any of them (directly or through another
# fixture) is in the slow tier.
SLOW_FIXTURES = {"model_cache", "ray_local"}


# The modules that start the most jobs, costliest first: `make test`'s two workers take modules in collection
# order, and a costly module taken last would leave the other worker idle while it runs.
COSTLY_FIRST = ["test_cluster_shape.py", "test_job.py", "test_tune.py", "test_faults.py", "test_train.py",
                "test_eval.py", "test_vllm_engine.py", "test_generate.py", "test_scoring.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(COSTLY_FIRST)}
    # Stable: a module keeps its own order, except that its tests on the in-process Ray come first, one after the
    # other, so that the Ray is started once per module (see ray_local).
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), str(item.path), not _uses_ray(item)))


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker gets a temp dir and a Ray temp dir of its own, so that neither worker's jobs see the other's
    files (tests/test_faults.py watches the temp dir for the training stages its job starts). Its processes' OpenMP
    threads sleep when they wait, rather than spin: two processes that each spin-wait on both cores slow each other
    down many times over (bench/omp_wait.py)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        config.worker_tmp = tempfile.mkdtemp(prefix=f"udasa-{worker}-")  # short: Ray's socket paths live under it
        os.environ["TMPDIR"] = os.environ["RAY_TMPDIR"] = config.worker_tmp
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "worker_tmp"):
        shutil.rmtree(config.worker_tmp, ignore_errors=True)


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this run of the suite that xdist's workers share (the parent of their own base temp dirs)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    """Bundled models are unpacked once per run of the suite (`models.resolve` builds each under a file lock, so the
    xdist workers share them); UDASA_TEST_CACHE reuses a cache across runs."""
    return os.environ.get("UDASA_TEST_CACHE") or str(shared_dir(tmp_path_factory) / "model-cache")


@pytest.fixture(scope="session")
def base_model(model_cache, tmp_path_factory) -> str:
    """The bundled SmolLM2 with its chat template taken away: a stand-in for a base LLaMA."""
    from transformers import AutoTokenizer

    from udasa_ray.models import resolve

    src = Path(resolve("bundled:smollm2-135m-instruct", model_cache))
    dst = tmp_path_factory.mktemp("base-model")
    for f in src.iterdir():
        if f.name in ("chat_template.jinja", ".complete") or f.suffix == ".safetensors":
            continue
        (dst / f.name).write_bytes(f.read_bytes())
    for f in src.glob("*.safetensors"):
        os.symlink(f, dst / f.name)  # 0.5 GB: linked, not copied
    assert AutoTokenizer.from_pretrained(dst).chat_template is None
    return str(dst)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray in the test process, as `init_ray` starts it for a job. The hooks below start it before the
    setup of a test that asks for it (module-scoped fixtures use it too) and shut it down after the last of a run
    of such tests (a Ray that a test started in this process without asking is shut down after it as well): an
    idle local Ray (GCS, raylet, dashboard, idle workers) keeps about a tenth of a core busy, and the tests in
    between start jobs with a Ray of their own."""


def _uses_ray(item: pytest.Item | None) -> bool:
    return item is not None and "ray_local" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _uses_ray(item):
        from udasa_ray.config import RayConfig
        from udasa_ray.ray_utils import init_ray

        init_ray(RayConfig(num_cpus=2))  # returns at once while one runs


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and not _uses_ray(nextitem):
        ray.shutdown()


ROOT = Path(__file__).resolve().parent.parent
# jobs/align.py on 4 prompts x 2 samples x 8 tokens, one response and one prompt group per part file,
# one DPO step a stage, 2 held-out prompts: small, with enough part files to be cut between.
TINY_ALIGN = ["data.limit=4", "data.heldout_prompts=2", "generation.n=2", "generation.max_new_tokens=8",
              "generation.batch_size=1", "scoring.batch_size=1", "train.max_steps_per_stage=1", "train.max_length=64",
              "train.eval_fraction=0"]


def job_env() -> dict[str, str]:
    """The environment jobs and `udasa` commands run in here, as the README runs them: their own local Ray (no
    RAY_ADDRESS) and their own W&B service (no WANDB_SERVICE left by an in-process W&B test: a job killed while
    connected to this process's service would leave its runs held there), unbuffered output, this checkout
    importable from any working directory."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    env.pop("WANDB_SERVICE", None)
    return env


def align_cmd(*args: str) -> list[str]:
    """`python jobs/align.py` on the embedded default, with `args` after it."""
    return [sys.executable, str(ROOT / "jobs" / "align.py"), "--config", str(ROOT / "configs" / "tiny-cpu.yaml"), *args]


@pytest.fixture(scope="session")
def tiny_align_run(model_cache, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One uninterrupted `jobs/align.py` run of TINY_ALIGN, given a relative run directory as `make run` does
    (Ray Train workers run in other directories). The job's own test reads its output; the kill-resume
    test compares its artifacts with a killed run's; the curriculum, reproduction and export jobs build on it. The
    first xdist worker to need it runs it; the other waits on the lock and reads the same run and output."""
    cwd = shared_dir(tmp_path_factory) / "align"
    with FileLock(f"{cwd}.lock"):
        if not (cwd / "job.json").exists():
            cwd.mkdir(exist_ok=True)  # a job cut off earlier in this run resumes
            r = subprocess.run(align_cmd("--run-dir", "run", *TINY_ALIGN, f"models.cache_dir={model_cache}"),
                               cwd=cwd, env=job_env(), capture_output=True, text=True, timeout=580)
            (cwd / "job.json").write_text(json.dumps({"args": r.args, "returncode": r.returncode,
                                                      "stdout": r.stdout, "stderr": r.stderr}))
    r = subprocess.CompletedProcess(**json.loads((cwd / "job.json").read_text()))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return cwd / "run", r


def kill_after(run, step: str, out: str, keep: int) -> int:
    """Leave `run` as a kill after `keep` batches would: later part files gone, the step still
    marked running. Returns how many parts there were."""
    parts = sorted((run / out).glob("part-*.parquet"))
    for p in parts[keep:]:
        p.unlink()
    m = json.loads(run.manifest_path.read_text())
    m["steps"][step]["status"] = "running"
    run.manifest_path.write_text(json.dumps(m))
    return len(parts)
