"""The run directory (runs.py): one job at a time, each step's own config, shared steps taken from
another run, and commands that only read a run refusing a path that holds none; the run's tracking run."""

import json
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pytest
from conftest import ROOT

from udasa_ray.cli import main
from udasa_ray.config import load_config
from udasa_ray.parts import CorruptPart, read_parts, write_part
from udasa_ray.pipeline import SHARED_STEPS
from udasa_ray.runs import RunDir, Step

TINY = str(ROOT / "configs" / "tiny-cpu.yaml")
HOLDER = """
import sys
from udasa_ray.runs import RunDir
held = RunDir(sys.argv[1]).hold("the first job")  # kept: a collected generator would release it
held.__enter__()
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_job_on_a_run_stops_and_names_the_holder(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    assert main(["generate", "--config", TINY, "--run-dir", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"in use by pid {holder.pid} on {socket.gethostname()} ('the first job'" in err and ".lock" in err
    assert not (run / "responses").exists()
    holder.kill()  # SIGKILL: gone without releasing, its lock is stale now and is taken over
    holder.wait(timeout=30)
    with RunDir(run).hold("second"):
        assert str(os.getpid()) in (run / ".lock").read_text()
    assert "taking over the lock of pid" in capsys.readouterr().out and not (run / ".lock").exists()


def test_the_manifest_keeps_the_config_each_step_ran_with(tmp_path):
    run = RunDir(tmp_path)
    a, b = load_config(TINY, ["generation.n=2"]), load_config(TINY, ["generation.n=3"])
    run.run(Step("generate", reads=("generation",)), a, lambda resume: {})
    run.run(Step("score", reads=("scoring",)), b, lambda resume: {})
    assert run.step("generate")["config"]["generation"]["n"] == 2
    assert run.step("score")["config"]["generation"]["n"] == 3


def test_an_unreadable_part_is_named_set_aside_and_its_rows_made_again(tmp_path, capsys):
    run, cfg = RunDir(tmp_path), load_config(TINY)
    out, schema = run / "responses", pa.schema([("k", pa.int64())])

    def work(resume: bool) -> dict:
        out.mkdir(exist_ok=True)
        have = set(read_parts(out, schema)["k"].to_pylist()) if resume else set()
        for k in sorted({0, 1, 2} - have):
            write_part(pa.table({"k": [k]}, schema=schema), out)
        return {"made": 3 - len(have)}

    step = Step("generate", reads=("generation",), outputs=("responses",))
    run.run(step, cfg, work)
    part = sorted(out.glob("part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:40])  # the disk filled up
    with pytest.raises(CorruptPart, match=f"{part.name} cannot be read"):
        read_parts(out, schema)
    assert run.run(step, cfg, work) == {"made": 1}
    assert sorted(read_parts(out, schema)["k"].to_pylist()) == [0, 1, 2]
    assert (out / f".corrupt-{part.name}").exists() and "set aside" in capsys.readouterr().out


def test_report_on_a_path_without_a_run_fails_and_creates_nothing(tmp_path, capsys):
    assert main(["report", "--run-dir", str(tmp_path / "typo")]) == 1
    assert "there is no run at" in capsys.readouterr().err and not (tmp_path / "typo").exists()



def test_adopt_takes_the_shared_steps_and_refreshes_a_changed_one(tmp_path):
    """A method run or sweep trial takes the shared steps' outputs and manifest entries, never a later
    step's entry (whose outputs it does not have), and takes a step again once the source reran it."""
    cfg = load_config(TINY)
    src, dst = RunDir(tmp_path / "shared"), RunDir(tmp_path / "method")

    def step(name: str, outputs: list[str], text: str) -> None:
        def work(resume: bool) -> dict:
            for out in outputs:
                (src / out).write_text(text)
            return {}
        src.run(Step(name, reads=("data",), outputs=tuple(outputs)), cfg, work, force=True)

    for name, outs in [("ingest", ["prompts.parquet", "rejects.jsonl"]), ("generate", ["responses"]),
                       ("score", ["scores"]), ("pairs", ["pairs"])]:
        step(name, outs, "v1")
    assert dst.adopt(src, SHARED_STEPS) == ["ingest", "generate", "score"]
    assert (dst / "scores").read_text() == "v1" and not (dst / "pairs").exists()
    assert set(dst.manifest()["steps"]) == {"ingest", "generate", "score"}
    assert dst.adopt(src, SHARED_STEPS) == []  # nothing changed
    step("score", ["scores"], "v2")  # rerun (same config, new data): the copy is stale
    assert dst.adopt(src, SHARED_STEPS) == ["score"] and (dst / "scores").read_text() == "v2"
    assert dst.step("score") == src.step("score")


def test_a_tracking_run_gone_from_its_store_is_started_again(tmp_path):
    """The run recorded in tracking.json is resumed while the store has it; once deleted there (in MLflow's UI,
    say), the next job gets a new run instead of failing."""
    from mlflow import MlflowClient

    from udasa_ray.tracking import tracked

    cfg = load_config(None, ["tracking.backend=mlflow"])
    ids = []
    for _ in range(2):
        with tracked(cfg, tmp_path, "align") as tracker:
            ids.append(tracker.run_id)
    assert ids[0] == ids[1]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    client.delete_run(ids[0])
    with tracked(cfg, tmp_path, "align") as tracker:
        pass
    assert tracker.run_id != ids[0] and json.loads((tmp_path / "tracking.json").read_text())["run_id"] == tracker.run_id
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_a_failed_job_marks_its_tracking_run_failed_and_keeps_its_own_error(tmp_path):
    """The job's own error goes on as it was; its MLflow run is logged what the run has and marked FAILED."""
    from mlflow import MlflowClient

    from udasa_ray.errors import StepFailed
    from udasa_ray.tracking import tracked

    (tmp_path / "manifest.json").write_text(json.dumps({"steps": {"ingest": {"status": "done",
                                                                             "stats": {"prompts": 3}}}}))
    with pytest.raises(StepFailed, match="generation broke"):
        with tracked(load_config(None, ["tracking.backend=mlflow"]), tmp_path, "align") as tracker:
            raise StepFailed("generation broke")
    run = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(tracker.run_id)
    assert run.info.status == "FAILED" and run.data.metrics == {"ingest/prompts": 3.0}


def test_a_run_made_before_the_step_protocol_keeps_its_finished_steps(tmp_path):
    """tests/data/manifest-v0.1.json holds the hashes the code before the step protocol recorded for
    configs/tiny-cpu.yaml as it was then (`overrides`): each main step, the three curriculum stages and the held-out
    sides' generation. The protocol computes the same hashes, so such a run skips every finished step instead of
    redoing it."""
    import json

    from udasa_ray.generate.step import GENERATE, SUBRUN_GENERATE
    from udasa_ray.ingest.read import ingest, split_heldout
    from udasa_ray.ingest.step import INGEST
    from udasa_ray.pairs.step import PAIRS
    from udasa_ray.score.step import SCORE
    from udasa_ray.train.step import stage_step

    saved = json.loads((ROOT / "tests" / "data" / "manifest-v0.1.json").read_text())
    cfg = load_config(ROOT / saved["config"], saved["overrides"])
    run = RunDir(tmp_path / "old")
    run.manifest_path.write_text(json.dumps(saved["manifest"]))
    for step in (GENERATE, SCORE, PAIRS["udasa"]):
        assert run.todo(step, run.config_hash(step, cfg)) is None, step.name
    d = cfg.data
    key = json.dumps([d.source, d.max_prompt_chars, d.hf_split, d.heldout_prompts, d.seed])
    assert run.todo(INGEST, run.config_hash(INGEST, cfg, key=[key])) is None
    stages = run.chain([stage_step(k, k == 1) for k in (1, 2, 3)], cfg)
    assert [todo for *_, todo in stages] == [False, False, False]
    # The held-out check's sides: the same prompts and settings, salted with the training behind the aligned side.
    _, heldout = split_heldout(ingest(d.source, d.max_prompt_chars, d.hf_split)[0], d.heldout_prompts, d.seed)
    prompts = json.dumps([[p["prompt_id"], p["prompt"]] for p in heldout])
    for side, salt in (("base", ""), ("aligned", stages[-1][1])):
        assert run.config_hash(SUBRUN_GENERATE, cfg, key=[prompts], salt=[salt]) == saved[f"heldout/{side}"]["generate"]
    # A changed config section is not taken for the old one.
    other = load_config(ROOT / saved["config"], [*saved["overrides"], "generation.temperature=0.5"])
    assert run.todo(GENERATE, run.config_hash(GENERATE, other)) is not None
