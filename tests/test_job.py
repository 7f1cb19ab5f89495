"""jobs/align.py, run as the README runs it: a separate process that starts its own local Ray; and that local
Ray's worker processes."""

import json
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, TINY_ALIGN, align_cmd, job_env

from udasa_ray.config import load_config
from udasa_ray.runs import RunDir


def _job(*args, cwd=ROOT):
    return subprocess.run(align_cmd(*args), cwd=cwd, env=job_env(), capture_output=True, text=True, timeout=580)


def test_align_job_runs_the_whole_pipeline(tiny_align_run):
    """ingest -> generate -> score -> pairs -> phased DPO -> held-out check -> report, on 4 prompts
    x 2 samples x 8 tokens, one DPO step a stage, 2 held-out prompts."""
    run, r = tiny_align_run
    assert "80 records -> 80 prompts, 0 rejected" in r.stdout and "2 prompts held out" in r.stdout
    assert "8 responses for 4 prompts" in r.stdout
    assert pq.read_table(run / "responses").num_rows == 8
    assert pq.read_table(run / "scores").num_rows == 8
    assert "[pairs] 4 pairs from 4 prompts" in r.stdout
    steps = RunDir(run).manifest()["steps"]  # each batch's own time in the actors, beside its arrival at the driver
    gen, score = steps["generate"]["stats"], steps["score"]["stats"]
    assert len(gen["actor_batch_seconds"]) == len(gen["batch_seconds"]) and "first_batch_ratio" in gen
    assert all(a > 0 for a in gen["actor_batch_seconds"])
    assert score["actor_batch_seconds"] and all(s > 0 for s in score["actor_batch_seconds"])
    trained = [line for line in r.stdout.splitlines() if line.startswith("[train] stage") and "->" in line]
    assert len(trained) == 3  # 1, 1 and 2 of the 4 pairs: Δu's rank cut at 0.4 and 0.7
    assert f"aligned policy: {run.resolve() / 'train'}" in r.stdout and f"done in {run.resolve()}" in r.stdout
    lines = r.stdout.splitlines()
    check = lines.index(next(line for line in lines if line.startswith("[check] 2 held-out prompts x 2 responses")))
    assert lines[check + 1].split()[:2] == ["base", "aligned"]
    rows = {line.split()[0]: line for line in lines[check + 2 : check + 16]}
    assert {"U", "u_sem", "u_fact", "u_val", "unsafe_rate", "length", "distinct", "helpfulness"} <= set(rows)
    assert "[" in rows["U"] and lines[check + 11].startswith("U @len")  # the interval and the length-matched row
    assert pq.read_table(run / "heldout" / "aligned" / "scores").num_rows == 4
    # Both sides scored in one pipeline: each side's stats hold its 4 batches (2 prompts a side, a prompt group a
    # batch), and each side scored its own 4 responses.
    sides = [RunDir(run / "heldout" / side).step("score")["stats"] for side in ("base", "aligned")]
    assert all(len(s["actor_batch_seconds"]) == 4 and s["scored_this_run"] == s["responses"] == 4 for s in sides)
    assert pq.read_table(run / "heldout" / "per_prompt.parquet").num_rows == 4  # 2 prompts x 2 sides
    report = (run / "report" / "report.md").read_text()
    assert "## Phased DPO" in report and "## Held-out check: base vs aligned" in report
    assert (run / "report" / "train_stage_1.png").exists() or (run / "report" / "train_stage_3.png").exists()


def test_a_local_ray_keeps_its_idle_workers_while_actors_hold_cpus(ray_local):
    """While a job's actors hold CPUs, Ray's default stops an idle worker a second after its task, so each Ray Data
    read or write task would start a new Python process. Under `init_ray` the workers that ran tasks before a
    pause serve the tasks after it."""
    import os
    import time

    import ray

    @ray.remote(num_cpus=0.5)
    class Holder:
        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0.25)
    def pid() -> int:
        return os.getpid()

    holders = [Holder.remote() for _ in range(3)]
    try:
        ray.get([h.pid.remote() for h in holders])  # 1.5 of this Ray's 2 CPUs held, as a step's actors hold them
        before = set(ray.get([pid.remote() for _ in range(4)]))
        time.sleep(2.5)  # past Ray's idle threshold (1 s) and its next round of stopping idle workers
        after = set(ray.get([pid.remote() for _ in range(4)]))
    finally:  # the session's Ray serves the process's later tests
        for h in holders:
            ray.kill(h)
    assert before & after, f"every worker idle for 2.5 s was stopped: {before} then {after}"


def test_align_job_config_error_exits_2(tmp_path):
    r = _job("--run-dir", str(tmp_path), "curriculum.thresholds=[0.7,0.4]")
    assert r.returncode == 2 and "curriculum.thresholds: must be increasing" in r.stderr


def test_compare_methods_names_an_unknown_method(tmp_path):
    """An override after --methods is read as a method name: the job says so instead of looking for its YAML."""
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "compare_methods.py"), "--out", str(tmp_path),
                        "--methods", "rlaif", "eval.limit=8"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown method(s) eval.limit=8" in r.stderr and "before --methods" in r.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.timeout(600)
def test_curriculum_arms_share_the_run_and_match_beta_lr_and_budget(tiny_align_run, tmp_path, model_cache):
    """Two arms of jobs/curriculum.py on the tiny run's scores: one-shot and the anti-curriculum. Both reuse the
    run's responses, scores and base held-out answers; they train the same total steps at one beta and one peak
    lr; the anti-curriculum trains its stages hard to easy; the table pairs each arm with the base and one-shot."""
    run, _ = tiny_align_run
    base_parts = {p.name: p.stat().st_mtime_ns for p in (run / "heldout" / "base" / "responses").glob("part-*")}
    out = tmp_path / "arms"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "curriculum.py"), "--config",
                        str(ROOT / "configs" / "tiny-cpu.yaml"), "--run-dir", str(run), "--out", str(out),
                        "--arms", "one-shot,anti", "--seeds", "3", *TINY_ALIGN, f"models.cache_dir={model_cache}",
                        "eval.bootstrap=100"], env=job_env(), capture_output=True, text=True, timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[generate] already done" in r.stdout and "[score] already done" in r.stdout
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", TINY_ALIGN)
    curriculum = json.loads((run / "train" / "summary.json").read_text())["stages"]
    budget = len(curriculum) * cfg.train.max_steps_per_stage  # what the recipe's stages plan at most
    trained = {arm: json.loads((out / arm / "seed3" / "train" / "summary.json").read_text())["stages"]
               for arm in ("one-shot", "anti")}
    assert len(trained["one-shot"]) == 1 and trained["one-shot"][0]["train_pairs"] == 4
    assert [s["stage"] for s in trained["anti"]] == [s["stage"] for s in curriculum][::-1]  # hard to easy
    for stages in trained.values():
        assert sum(s["planned_steps"] for s in stages) == budget
        assert {s["beta"] for s in stages} == {cfg.train.beta} and len({s["peak_lr"] for s in stages}) == 1
    for arm in trained:  # the base side is the run's own, copied, not made again
        sub = out / arm / "seed3" / "heldout" / "base" / "responses"
        assert {p.name: p.stat().st_mtime_ns for p in sub.glob("part-*")} == base_parts
    result = json.loads((out / "summary.json").read_text())
    u = result["metrics"]["U"]
    assert result["budget_steps"] == budget and result["seeds"] == [3]
    assert result["kept_steps"] == {"one-shot": [budget], "anti": [budget]}  # no eval split: nothing stops early
    assert len(u["anti"]["seeds"]) == 1 and u["anti"]["vs_base"]["prompts"] == 2
    assert u["anti"]["vs_reference"]["prompts"] == 2 and "vs_reference" not in u["one-shot"]
    assert "| anti |" in r.stdout and "vs one-shot" in r.stdout


@pytest.mark.timeout(900)
def test_reproduce_runs_each_kind_of_method_writes_the_tables_and_resumes(tiny_align_run, tmp_path, model_cache):
    """jobs/reproduce.py on the tiny run's responses and scores: vanilla (evaluated as it is), RAIN (the
    same policy, decoded by RAIN's search) and one-shot UDASA (trained), with the robust task. Every
    table is written with the paper's figures; rows of methods not run are "—". GCG's transfer suffixes
    are found once for all methods, white-box ones per policy. Tracked in MLflow: the job's run (with the
    tables), a child run per method (with its evaluation) and one under one-shot's for its stage. A rerun finds
    every step done and logs to the same runs."""
    import shutil

    run, _ = tiny_align_run
    out = tmp_path / "reproduce"
    shutil.copytree(run, out / "shared")
    cmd = [sys.executable, str(ROOT / "jobs" / "reproduce.py"), "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
           "--out", str(out), *TINY_ALIGN, f"models.cache_dir={model_cache}", "eval.limit=1", "eval.samples=1",
           "eval.max_new_tokens=8", "eval.bootstrap=100", "generation.rain.segment_tokens=4",
           "generation.rain.max_searches=2", "eval.gcg.steps=1", "eval.gcg.search_width=4", "eval.gcg.suffix_tokens=4",
           "tracking.backend=mlflow",
           "--tasks", "harmless", "truthful", "robust", "--methods", "one-shot", "rain", "vanilla"]  # overrides first
    r = subprocess.run(cmd, cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "[generate] already done" in r.stdout and "[score] already done" in r.stdout  # shared, not redone
    assert r.stdout.index("=== vanilla ===") < r.stdout.index("=== rain ===")  # vanilla first: compare's reference
    tables = (out / "tables.md").read_text()
    for title in ("Table 1", "Table 2", "Table 4", "Table 5", "Controlled sentiment", "Table 6", "Table 7"):
        assert f"## {title}" in tables
    ours = r"\d+\.\d+ \[[-\d., ]+\]"  # our mean [95% interval], then the paper's figure
    assert re.search(rf"\| LLaMA \| vanilla \| {ours} \| 6\.1 / 6\.3 \|", tables)  # Table 2
    assert re.search(rf"\| RAIN \| rain \| {ours} \| 71\.6 / 70\.9 \|", tables)  # Table 5
    assert re.search(rf"\| One-shot \| one-shot \| {ours} \| 5\.9 \|", tables)  # Table 1
    assert re.search(rf"\| RAIN \| rain \| {ours} \| 72 / 73 \| {ours} \| 55 / 54 \|", tables)  # Table 6
    assert "| Two-stage | two-stage | — | 6.4 |" in tables and "| Vanilla | vanilla | — | 62.2 / 61.8 |" in tables
    assert "A plumbing check, not a reproduction" in tables
    vanilla, rain = (pq.read_table(out / m / "eval" / "generations" / "responses").to_pylist()
                     for m in ("vanilla", "rain"))
    assert {x["prompt_id"] for x in vanilla} == {x["prompt_id"] for x in rain} and len(rain) == 5
    attacks = {x["prompt_id"].rsplit("/", 1)[1]: x["prompt"] for x in vanilla
               if x["prompt_id"].startswith("robust/")}
    assert set(attacks) == {"direct", "whitebox", "transfer"}
    assert attacks["whitebox"].startswith(attacks["direct"] + " ")
    assert len(list((out / "shared" / "gcg").glob("*.jsonl"))) == 2  # the base policy's (both kinds), one-shot's
    assert [x["response"] for x in vanilla] != [x["response"] for x in rain]  # same seeds, RAIN's search
    assert json.loads((out / "one-shot" / "train" / "summary.json").read_text())["stages"]
    assert (out / "compare" / "compare.md").exists()

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out}/mlflow.db")
    exp = client.get_experiment_by_name("udasa-ray").experiment_id
    runs = {x.info.run_name: x for x in client.search_runs([exp])}
    assert set(runs) == {"reproduce", "vanilla", "rain", "one-shot", "stage_1 all"}
    parent = {name: x.data.tags.get("mlflow.parentRunId") for name, x in runs.items()}
    assert parent["reproduce"] is None and parent["stage_1 all"] == runs["one-shot"].info.run_id
    assert {parent[m] for m in ("vanilla", "rain", "one-shot")} == {runs["reproduce"].info.run_id}
    rain = json.loads((out / "rain" / "eval" / "summary.json").read_text())["metrics"]
    assert runs["rain"].data.metrics["eval/metrics.harmlessness.mean"] == pytest.approx(rain["harmlessness"]["mean"])
    assert {"tables.md", "compare"} <= {a.path for a in client.list_artifacts(runs["reproduce"].info.run_id)}

    again = subprocess.run(cmd, cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done") >= 7 and "generate:" not in again.stderr  # nothing made again
    assert {x.info.run_id for x in client.search_runs([exp])} == {x.info.run_id for x in runs.values()}


@pytest.mark.timeout(300)
def test_export_loads_with_datasets_and_trains_a_trl_dpo_step(tiny_align_run, tmp_path, model_cache):
    """`udasa export` in every format: `datasets.load_dataset` reads the directory as one split per
    curriculum stage (the card's YAML says where), huggingface_hub parses the card, and TRL's own
    DPOTrainer takes a split as it is for a training step."""
    import datasets
    from huggingface_hub import DatasetCard

    run, _ = tiny_align_run
    stages = [s for s in json.loads((run / "stages" / "summary.json").read_text())["stages"] if s["pairs"]]
    for fmt in ("hf", "parquet", "jsonl"):
        out = tmp_path / fmt
        r = subprocess.run([sys.executable, "-m", "udasa_ray.cli", "export", "--run-dir", str(run), "--format", fmt,
                            "--out", str(out)], cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and f"export: {out}" in r.stdout, r.stderr
        card = DatasetCard.load(out / "README.md")
        splits = [f["split"] for f in card.data.configs[0]["data_files"]]
        assert splits == [f"stage_{s['stage']}_{s['name']}" for s in stages] and "udasa" in card.data.tags
        ds = datasets.load_dataset(str(out))
        assert {k: ds[k].num_rows for k in ds} == {f"stage_{s['stage']}_{s['name']}": s["pairs"] for s in stages}
        first = ds[splits[0]][0]
        assert {"prompt", "chosen", "rejected", "delta_u", "stage", "u_sem_chosen"} <= set(first)
        assert first["delta_u"] >= 0 and first["stage"] == stages[0]["stage"]
    # RLAIF/RLCD pairs carry no per-answer uncertainties: the export keeps the columns they have.
    import shutil

    import pyarrow.parquet as pq_

    rlcd = tmp_path / "rlcd-run"
    shutil.copytree(run, rlcd, ignore=shutil.ignore_patterns("train", "heldout", "responses", "scores"))
    for f in (rlcd / "stages").glob("*.parquet"):
        t = pq_.read_table(f)
        pq_.write_table(t.select([c for c in t.column_names if not c.lower().startswith("u")]), f)
    from udasa_ray.pairs.export import export

    plain = datasets.load_dataset(str(export(RunDir(rlcd), tmp_path / "rlcd-jsonl", "jsonl")))[splits[0]]
    assert set(plain.column_names) == {"prompt", "chosen", "rejected", "delta_u", "stage", "stage_name", "prompt_id"}
    bad = subprocess.run([sys.executable, "-m", "udasa_ray.cli", "export", "--run-dir", str(tmp_path)], cwd=ROOT,
                         env=job_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "no manifest.json" in bad.stderr

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from udasa_ray.models import resolve

    path = resolve("bundled:smollm2-135m-instruct", model_cache)
    train = datasets.load_dataset(str(tmp_path / "hf"))[splits[0]]
    args = DPOConfig(output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=2, max_length=64,
                     use_cpu=True, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(path))
    trainer.train()
    assert trainer.state.global_step == 1 and trainer.state.log_history[0]["loss"] > 0


def test_the_aligned_checkpoint_has_a_model_card_and_push_uploads_it(tiny_align_run, monkeypatch):
    """The job's report writes a card into the aligned checkpoint that huggingface_hub parses (the Hub's
    YAML front matter) with the run's data, training and held-out check, and the resolved config beside
    it; `udasa push` needs $HF_TOKEN, then creates the repo and uploads that folder (the Hub calls are
    recorded here: no network)."""
    import yaml
    from huggingface_hub import HfApi, ModelCard

    from udasa_ray.config import from_dict
    from udasa_ray.errors import StepFailed
    from udasa_ray.report.card import push
    from udasa_ray.runs import RunDir

    run, _ = tiny_align_run
    aligned = json.loads((run / "train" / "summary.json").read_text())["aligned"]
    card = ModelCard.load(f"{aligned}/README.md")
    assert {"udasa", "dpo"} <= set(card.data.tags) and card.data.pipeline_tag == "text-generation"
    assert "| 1. conservative |" in card.text and re.search(r"\| U \| 0\.\d+ \| 0\.\d+ \| [+-]0\.\d+ \[", card.text)
    assert from_dict(yaml.safe_load(open(f"{aligned}/udasa_config.yaml"))).data.limit == 4  # the run's own config

    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "commit-url")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(StepFailed, match=r"needs a Hugging Face token with write access in \$HF_TOKEN"):
        push(RunDir(run), "me/tiny-udasa")
    assert not calls
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert push(RunDir(run), "me/tiny-udasa", private=True) == "commit-url"
    assert calls[0] == ("create", "me/tiny-udasa", {"repo_type": "model", "private": True, "exist_ok": True})
    upload = calls[1][1]
    assert upload["folder_path"] == aligned and upload["repo_id"] == "me/tiny-udasa"


def test_align_job_is_one_mlflow_run_that_a_rerun_resumes(tiny_align_run, tmp_path, model_cache):
    """tracking.backend=mlflow on a finished run (a copy): one MLflow run in the run's own SQLite store, read back
    with MLflow's client, holding the resolved config as params, each step's stats and the held-out check as
    metrics and the report as artifacts. The same job again goes on in that run; another config starts a new one."""
    import shutil

    from mlflow import MlflowClient

    from udasa_ray.tracking import flatten

    src, _ = tiny_align_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    overrides = [*TINY_ALIGN, f"models.cache_dir={model_cache}", "tracking.backend=mlflow"]
    r = _job("--run-dir", str(run), *overrides, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("already done") >= 4  # ingest, generate, score, pairs: the job only logs them

    client = MlflowClient(f"sqlite:///{run}/mlflow.db")
    exp = client.get_experiment_by_name("udasa-ray").experiment_id
    [job] = client.search_runs([exp])
    assert job.info.run_name == "align" and job.info.status == "FINISHED"
    assert json.loads((run / "tracking.json").read_text())["run_id"] == job.info.run_id
    cfg = load_config([ROOT / "configs" / "tiny-cpu.yaml"], overrides)
    assert job.data.params == {k: str(v) for k, v in flatten(cfg.to_dict()).items() if not k.startswith("tracking.")}
    steps = json.loads((run / "manifest.json").read_text())["steps"]
    assert job.data.metrics["generate/responses"] == steps["generate"]["stats"]["responses"] == 8
    assert job.data.metrics["score/mean.U"] == pytest.approx(steps["score"]["stats"]["mean"]["U"])
    assert job.data.metrics["heldout/prompts"] == 2
    report = {f"report/{p.name}" for p in (run / "report").iterdir() if p.suffix in (".png", ".md")}
    assert {a.path for a in client.list_artifacts(job.info.run_id, "report")} == report
    local = client.download_artifacts(job.info.run_id, "report/report.md", str(tmp_path / "dl"))
    assert open(local).read() == (run / "report" / "report.md").read_text()

    again = _job("--run-dir", str(run), *overrides, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [x.info.run_id for x in client.search_runs([exp])] == [job.info.run_id]
    other = _job("--run-dir", str(run), *overrides, "eval.limit=3", cwd=tmp_path)  # no step reads it: nothing reruns
    assert other.returncode == 0, other.stderr[-3000:]
    runs = client.search_runs([exp], order_by=["attributes.start_time DESC"])
    assert len(runs) == 2 and runs[1].info.run_id == job.info.run_id and runs[0].data.params["eval.limit"] == "3"
    assert {x.info.status for x in runs} == {"FINISHED"}
