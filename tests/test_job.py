"""jobs/align.py, run as the README runs it: a separate process that starts its own local Ray."""

import json
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, TINY_ALIGN, align_cmd, job_env


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
    trained = [line for line in r.stdout.splitlines() if line.startswith("[train] stage") and "->" in line]
    assert len(trained) >= 2  # min-max scaling puts the extreme pairs in different stages
    assert f"aligned policy: {run.resolve() / 'train'}" in r.stdout and f"done in {run.resolve()}" in r.stdout
    lines = r.stdout.splitlines()
    check = lines.index(next(line for line in lines if line.startswith("[check] 2 held-out prompts x 2 responses")))
    assert lines[check + 1].split()[:2] == ["base", "aligned"]
    rows = {line.split()[0]: line for line in lines[check + 2 : check + 16]}
    assert {"U", "u_sem", "u_fact", "u_val", "unsafe_rate", "length", "distinct", "helpfulness"} <= set(rows)
    assert "[" in rows["U"] and lines[check + 11].startswith("U @len")  # the interval and the length-matched row
    assert pq.read_table(run / "heldout" / "aligned" / "scores").num_rows == 4
    assert pq.read_table(run / "heldout" / "per_prompt.parquet").num_rows == 4  # 2 prompts x 2 sides
    report = (run / "report" / "report.md").read_text()
    assert "## Phased DPO" in report and "## Held-out check: base vs aligned" in report
    assert (run / "report" / "train_stage_1.png").exists() or (run / "report" / "train_stage_3.png").exists()


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
def test_curriculum_vs_oneshot_shares_the_run_and_the_step_budget(tiny_align_run, tmp_path, model_cache):
    """The one-shot run reuses the curriculum run's responses, scores and base held-out answers, trains
    one stage for the curriculum's total planned steps, and is compared with it prompt by prompt."""
    run, _ = tiny_align_run
    base_parts = sorted((run / "heldout" / "base" / "responses").glob("part-*"))
    one = tmp_path / "oneshot"
    r = subprocess.run([sys.executable, str(ROOT / "jobs" / "curriculum_vs_oneshot.py"), "--config",
                        str(ROOT / "configs" / "tiny-cpu.yaml"), "--run-dir", str(run), "--out", str(one), "--eval",
                        *TINY_ALIGN, f"models.cache_dir={model_cache}", "eval.limit=1", "eval.samples=1",
                        "eval.max_new_tokens=4", "eval.bootstrap=100"], env=job_env(), capture_output=True, text=True,
                       timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    curriculum = json.loads((run / "train" / "summary.json").read_text())
    budget = sum(s["planned_steps"] for s in curriculum["stages"])
    assert len(curriculum["stages"]) >= 2 and f"at most {budget} steps" in r.stdout
    (stage,) = json.loads((one / "train" / "summary.json").read_text())["stages"]
    assert stage["planned_steps"] == budget and stage["train_pairs"] == 4
    # The base policy's held-out answers were reused, not regenerated (new parts would have new names).
    assert sorted((one / "heldout" / "base" / "responses").glob("part-*")) == [
        one / "heldout" / "base" / "responses" / p.name for p in base_parts]
    result = json.loads((one / "heldout" / "vs_curriculum.json").read_text())
    assert result["budget_steps"] == budget and result["paired"]["U"]["prompts"] == 2
    assert "one-shot − curriculum" in r.stdout
    # --eval: the three policies on the four tasks, side by side.
    table = (one / "compare" / "compare.md").read_text()
    assert all(f"| {m} |" in table for m in ("vanilla", "one-shot", "three-stage"))


@pytest.mark.timeout(900)
def test_reproduce_runs_each_kind_of_method_writes_the_tables_and_resumes(tiny_align_run, tmp_path, model_cache):
    """jobs/reproduce.py on the tiny run's responses and scores: vanilla (evaluated as it is), RAIN (the
    same policy, decoded by RAIN's search) and one-shot UDASA (trained), with the robust task. Every
    table is written with the paper's figures; rows of methods not run are "—". GCG's transfer suffixes
    are found once for all methods, white-box ones per policy. A rerun finds every step done."""
    import shutil

    run, _ = tiny_align_run
    out = tmp_path / "reproduce"
    shutil.copytree(run, out / "shared")
    cmd = [sys.executable, str(ROOT / "jobs" / "reproduce.py"), "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
           "--out", str(out), *TINY_ALIGN, f"models.cache_dir={model_cache}", "eval.limit=1", "eval.samples=1",
           "eval.max_new_tokens=8", "eval.bootstrap=100", "generation.rain.segment_tokens=4",
           "generation.rain.max_searches=2", "eval.gcg.steps=1", "eval.gcg.search_width=4", "eval.gcg.suffix_tokens=4",
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
    again = subprocess.run(cmd, cwd=tmp_path, env=job_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done") >= 7 and "generate:" not in again.stderr  # nothing made again
