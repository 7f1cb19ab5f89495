"""Phased DPO with the real bundled policy on a few steps: the stage loop on Ray Train with its
schedule, a failing worker, LoRA, and DeepSpeed ZeRO-2 on CPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, job_env

from udasa_ray.config import load_config
from udasa_ray.ingest.read import ingest
from udasa_ray.runs import RunDir
from udasa_ray.train.schedule import lr_at

pytestmark = pytest.mark.slow

# A few steps of everything: short sequences, 2 warm-up and 2 decay steps, an evaluation every step.
FAST = ["train.max_steps_per_stage=4", "train.batch_size=2", "train.max_length=64", "train.warmup_steps=2",
        "train.decay_steps=2", "train.eval_steps=1", "train.patience=5", "train.cpus_per_worker=2", "ray.num_cpus=2"]


def pairs_run(path: Path, stage_sizes: list[int]) -> RunDir:
    """A run directory as the pairs stage leaves it, with hand-written pairs: a helpful chosen
    answer against an unhelpful rejected one."""
    prompts, _ = ingest("bundled:prompts", 2000)
    pairs, k = [], 0
    for stage, size in enumerate(stage_sizes, start=1):
        for p in prompts[k : k + size]:
            pairs.append({"prompt_id": p["prompt_id"], "prompt": p["prompt"], "stage": stage,
                          "chosen": "Here is a short, careful answer: " + p["reference"][:80],
                          "rejected": "I don't know. Figure it out yourself."})
        k += size
    run = RunDir(path)
    (run / "pairs").mkdir()
    (run / "stages").mkdir()
    pq.write_table(pa.Table.from_pylist(pairs), run / "pairs" / "pairs.parquet")
    names = ["conservative", "moderate", "exploratory"][: len(stage_sizes)]
    info = []
    for stage, name in enumerate(names, start=1):
        f = f"stage_{stage}_{name}.parquet"
        pq.write_table(pa.Table.from_pylist([p for p in pairs if p["stage"] == stage]), run / "stages" / f)
        info.append({"stage": stage, "name": name, "pairs": stage_sizes[stage - 1], "file": f})
    (run / "stages" / "summary.json").write_text(json.dumps({"stages": info}))
    run.update_step("pairs", status="done", config_hash="hand-written")
    return run


def _cli(run: RunDir, *extra: str) -> list[str]:
    return [sys.executable, "-m", "udasa_ray.cli", "train", "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
            "--run-dir", str(run.path), *FAST, *extra]


# What a stage's trainer prints for each train step (StageLog, rank 0), forwarded by Ray to the driver's stdout.
STEP_LINE = re.compile(r"\[train\] stage (\d) step (\d+)/\d+ train loss")


@pytest.mark.timeout(900)
def test_stage_loop_on_two_ddp_workers_follows_the_schedule(tmp_path, model_cache):
    """Two stages on 2 gloo workers from the CLI, tracked in MLflow. (A kill in a stage and its resume:
    tests/test_faults.py.)"""
    run = pairs_run(tmp_path / "run", [16, 16])
    # No eval split here, so no early stop: every planned step runs and the schedule shows whole.
    cmd = _cli(run, "train.eval_fraction=0", "train.num_workers=2", "train.cpus_per_worker=1",
               f"models.cache_dir={model_cache}", "tracking.backend=mlflow")
    # No log dedup, which would hold back stage 2's step lines as repeats of stage 1's (same text but numbers).
    env = {**job_env(), "RAY_DEDUP_LOGS": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    steps = [(int(stage), int(n)) for stage, n in STEP_LINE.findall(out.stdout + out.stderr)]
    assert steps == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2), (2, 3), (2, 4)]
    # Both stages in one Ray Train run: its two workers started once, not once per stage.
    assert (out.stdout + out.stderr).count("Started training worker group of size 2") == 1
    assert run.step("train_stage_1")["status"] == run.step("train_stage_2")["status"] == "done"

    # The stages trained as planned: 16 pairs, 2 workers x batch 2 -> 4 steps, LR warm-up, peak, decay.
    summary = json.loads((run / "train" / "summary.json").read_text())
    assert summary["aligned"] == str(run / "train" / "stage_2") and summary["eval_pairs"] == 0
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", FAST)
    for st in summary["stages"]:
        assert st["steps"] == st["planned_steps"] == 4 and st["train_pairs"] == 16 and not st["stopped_early"]
        assert st["world_size"] == 2
        rows = [json.loads(line) for line in (run / "train" / f"stage_{st['stage']}" / "metrics.jsonl").open()]
        lrs = [r["learning_rate"] for r in rows if "learning_rate" in r]
        peak = cfg.train.lr_stage1 if st["stage"] == 1 else cfg.train.lr
        assert lrs == pytest.approx([peak / 2, peak, peak * 2 / 3, peak / 3])
        assert lrs == pytest.approx([lr_at(s, 4, peak, 2, 2) for s in range(4)])
        assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
        assert all(0 <= r["rewards/accuracies"] <= 1 for r in rows if "rewards/accuracies" in r)
    assert summary["stages"][0]["beta"] == cfg.train.beta  # the last stage gets the stronger KL term
    assert summary["stages"][1]["beta"] == cfg.train.beta_last_stage

    # Each checkpoint is a Hugging Face model that moved away from the base policy.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(summary["base"])
    tuned = AutoModelForCausalLM.from_pretrained(summary["aligned"])
    AutoTokenizer.from_pretrained(summary["aligned"])
    diffs = [(a - b).abs().max().item() for a, b in zip(base.parameters(), tuned.parameters(), strict=True)]
    assert 0 < max(diffs) < 1e-2
    assert json.loads((run / "train" / "stage_2" / "trainer_state.json").read_text())["global_step"] == 4
    assert any((run / "train" / "stage_2" / "tensorboard").iterdir())
    del base, tuned, torch

    # Tracked: the job is one MLflow run; each stage's TRL trainer logged its curves (rank 0 only) as a child run.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{run.path.resolve()}/mlflow.db")

    def tracked_runs() -> tuple[object, list]:
        runs = client.search_runs([client.get_experiment_by_name("udasa-ray").experiment_id])
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1, [r.info.run_name for r in runs]
        return parents[0], sorted((r for r in runs if r.info.run_id != parents[0].info.run_id),
                                  key=lambda r: r.info.run_name)

    job, children = tracked_runs()
    assert job.info.status == "FINISHED" and job.data.params["train.num_workers"] == "2"
    assert job.data.metrics["train_stage_2/steps"] == 4
    assert [c.info.run_name for c in children] == ["stage_1 conservative", "stage_2 moderate"]
    for child, st in zip(children, summary["stages"], strict=True):
        assert child.data.tags["mlflow.parentRunId"] == job.info.run_id and child.info.status == "FINISHED"
        rows = [json.loads(line) for line in (run / "train" / f"stage_{st['stage']}" / "metrics.jsonl").open()]
        losses = [(m.step, m.value) for m in client.get_metric_history(child.info.run_id, "loss")]
        assert losses == [(r["step"], pytest.approx(r["loss"])) for r in rows if "loss" in r]
        assert child.data.params["beta"] == str(st["beta"])  # TRL's own arguments, logged by its callback

    # Same config again: nothing retrains, and the job's MLflow run is the one it started.
    again = subprocess.run(cmd, capture_output=True, text=True, env=job_env(), timeout=300)
    assert again.returncode == 0 and again.stdout.count("already done") == 2
    assert tracked_runs()[0].info.run_id == job.info.run_id and len(tracked_runs()[1]) == 2


@pytest.mark.timeout(600)
def test_deepspeed_zero2_on_cpu_with_early_stop(tmp_path, model_cache, ray_local):
    from udasa_ray.train.step import train

    run = pairs_run(tmp_path / "run", [6])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml",
                      [*FAST, "train.eval_fraction=0.34", "train.deepspeed.zero_stage=2", "train.lr_stage1=3e-5",
                       f"models.cache_dir={model_cache}"])
    summary = train(cfg, run)
    (stage,) = summary["stages"]
    assert stage["zero_stage"] == 2 and stage["world_size"] == 1
    assert stage["train_pairs"] == 4 and stage["eval_pairs"] == 2 and stage["planned_steps"] == 2
    # These pairs are easy (a helpful answer against a refusal): one step makes every held-out pair
    # prefer its chosen answer, and the reward-saturation rule ends the stage. The step is 10x the default's, so
    # that it also holds in bf16 (`train.dtype: bfloat16`, or auto on a GPU): DeepSpeed then runs the forward on
    # bf16 weights, which round most of a 3e-6 Adam step away (held-out margin after one step on a CPU with
    # AVX512-BF16, measured: -0.012 at 3e-6, +0.116 at 3e-5 in bf16, +2.9 at 3e-5 in fp32).
    assert stage["steps"] == 1 and "eval reward accuracy 1.000" in stage["stopped_early"]
    assert stage["best_step"] == 1 and stage["best_eval_loss"] < 0.69  # the kept policy is the better one
    rows = [json.loads(line) for line in (run / "train" / "stage_1" / "metrics.jsonl").open()]
    evals = [r for r in rows if "eval_loss" in r]
    # At step 0 the policy is its own reference: loss ln 2, up to bf16 rounding of the two forwards.
    assert [r["step"] for r in evals] == [0, 1] and evals[0]["eval_loss"] == pytest.approx(0.6931, abs=0.01)
    assert any("loss" in r and r["loss"] > 0 for r in rows)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(summary["aligned"]).num_parameters() > 1e8


@pytest.mark.timeout(600)
def test_lora_stage_on_ray_train_merges_into_a_full_checkpoint(tmp_path, model_cache, ray_local):
    import torch
    from safetensors.torch import load_file

    from udasa_ray.train.step import train

    run = pairs_run(tmp_path / "run", [8])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml",
                      [*FAST, "train.eval_fraction=0", "train.lora.enabled=true", "train.lora.r=4",
                       "train.lora.lr_stage1=1e-3", "train.lora.target_modules=[q_proj,v_proj]",
                       f"models.cache_dir={model_cache}"])
    summary = train(cfg, run)
    (stage,) = summary["stages"]
    assert stage["lora_r"] == 4 and stage["steps"] == 4 and stage["peak_lr"] == 1e-3
    # Only the adapters trained: r x (in + out) per targeted projection, 30 layers x (q + v).
    assert stage["trainable_params"] == 30 * (4 * (576 + 576) + 4 * (576 + 192))
    out = run / "train" / "stage_1"
    assert not (out / "adapter_config.json").exists() and not (out / "best").exists()
    base = load_file(Path(summary["base"]) / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    assert set(merged) == set(base)  # a plain checkpoint: the base's tensors, no lora_A/lora_B
    moved = {k for k in base if not torch.equal(base[k], merged[k])}
    # Merging changed exactly the targeted projections, in every layer, and nothing else.
    assert moved == {k for k in base if k.endswith(("q_proj.weight", "v_proj.weight"))} and len(moved) == 60
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(summary["aligned"])
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.timeout(600)
def test_lora_under_deepspeed_zero2_on_cpu(tmp_path, model_cache, ray_local):
    import torch
    from safetensors.torch import load_file

    from udasa_ray.train.step import train

    run = pairs_run(tmp_path / "run", [4])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml",
                      [*FAST, "train.eval_fraction=0", "train.max_steps_per_stage=2", "train.deepspeed.zero_stage=2",
                       "train.lora.enabled=true", "train.lora.r=2", "train.lora.lr_stage1=1e-3",
                       f"models.cache_dir={model_cache}"])
    (stage,) = train(cfg, run)["stages"]
    assert stage["zero_stage"] == 2 and stage["lora_r"] == 2 and stage["steps"] == 2
    base = load_file(Path(train(cfg, run)["base"]) / "model.safetensors")  # a rerun: skipped, same summary
    merged = load_file(run / "train" / "stage_1" / "model.safetensors")
    assert set(merged) == set(base) and not (run / "train" / "stage_1" / "adapter_config.json").exists()
    moved = {k for k in base if not torch.equal(base[k], merged[k])}
    assert moved and all(k.endswith("_proj.weight") for k in moved)  # only LoRA targets changed


def test_runs_sharing_a_configured_work_dir_keep_their_own_training_files(tmp_path):
    """`train.work_dir` is one folder for every run (the cluster configs put it on shared storage): each run's stage
    data goes into its own subfolder there, so a second run does not overwrite the first one's files."""
    from udasa_ray.train.step import planned_stages, stage_job

    shared = tmp_path / "shared-work"
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [*FAST, f"train.work_dir={shared}"])
    # Same run name in two places, and different data: the names inside the work dir are fixed.
    runs = [pairs_run(tmp_path / "a" / "run", [6]), pairs_run(tmp_path / "b" / "run", [9])]
    jobs = []
    for run in runs:
        stage = planned_stages(run)[0]
        eval_ids = {pq.read_table(run / "stages" / stage["file"]).column("prompt_id")[0].as_py()}
        jobs.append(stage_job(cfg, run, stage, 1, True, "start", "base", eval_ids))
    (a, b) = jobs
    assert len({a.train_file, b.train_file}) == 2 and len({a.eval_file, b.eval_file}) == 2
    assert len({a.work_dir, b.work_dir}) == 2
    for job, size in zip(jobs, [6, 9], strict=True):
        assert Path(job.work_dir).parent == shared.resolve()
        assert Path(job.train_file).parent == Path(job.eval_file).parent == Path(job.work_dir)
        assert pq.read_table(job.train_file).num_rows == size - 1  # the other run did not overwrite it
        assert pq.read_table(job.eval_file).num_rows == 1
    # The same run gets the same folder again (resume), and without train.work_dir the run keeps <run>/train/work.
    again = stage_job(cfg, runs[0], planned_stages(runs[0])[0], 1, True, "start", "base", set())
    assert again.work_dir == a.work_dir
    plain = stage_job(load_config(ROOT / "configs" / "tiny-cpu.yaml", FAST), runs[0], planned_stages(runs[0])[0],
                      1, True, "start", "base", set())
    assert Path(plain.train_file).parent == runs[0] / "train" / "work"


def test_a_failed_stage_names_its_worker_error(tmp_path, monkeypatch):
    """A worker's exception reaches the user as one line naming it and what to do, not a traceback."""
    from udasa_ray.errors import StepFailed
    from udasa_ray.train import step
    from udasa_ray.train.job import StageJob

    class Trainer:  # Ray Train's TorchTrainer as it fails: the error carries each rank's traceback
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            raise RuntimeError("Training failed due to worker errors:\n[Rank 0,1 Error Snippet]:\nTraceback (most "
                               "recent call last):\n  File \"dpo.py\", line 3\nIndexError: pop from an empty deque\n"
                               "... (Output truncated. See individual worker logs for full details) ...")

    monkeypatch.setattr("ray.train.torch.TorchTrainer", Trainer)
    job = StageJob(stage=2, name="moderate", start="m", ref="m", train_file="t", eval_file=None, work_dir="w",
                   steps=1, warmup=0, decay=0, peak_lr=1e-6, beta=0.1, batch_size=1, grad_accum=1, max_length=64,
                   precompute=True, eval_steps=1, patience=1, reward_saturation=1.0, dtype="float32", seed=0,
                   threads=1, deepspeed=None)
    with pytest.raises(StepFailed) as e:
        step.fit_stages(load_config(None), [job], tmp_path / "ray")
    assert str(e.value).startswith("stage 2 (moderate) failed on Ray Train: IndexError: pop from an empty deque")
    assert "finished stages are kept" in str(e.value)


def test_a_stage_published_by_a_killed_job_counts_as_done_only_with_its_hash(tmp_path):
    """A job killed after its Train run published stage 1 left the manifest at "running": the rerun records the
    stage as done from its stage.json, but only when that holds the stage's own hash."""
    from udasa_ray.train.job import published
    from udasa_ray.train.step import stage_step

    run = pairs_run(tmp_path / "run", [4])
    step = stage_step(1, first=True)
    out = run / step.outputs[0]
    out.mkdir(parents=True)
    run.update_step(step.name, status="running", config_hash="h1")
    assert published(out, "h1") is None and run.todo(step, "h1") is not None
    (out / "stage.json").write_text(json.dumps({"stage": 1, "step_hash": "h0", "steps": 3}))
    assert published(out, "h1") is None and run.todo(step, "h1") is not None
    assert run.step(step.name)["status"] == "running"
    (out / "stage.json").write_text(json.dumps({"stage": 1, "step_hash": "h1", "steps": 3}))
    assert published(out, "h1")["steps"] == 3
    assert run.todo(step, "h1", force=True) is not None  # --force retrains it
    assert run.todo(step, "h2") is not None  # another config: not this stage
    assert run.todo(step, "h1") is None
    assert run.step(step.name)["status"] == "done" and run.step(step.name)["stats"]["steps"] == 3


@pytest.mark.timeout(300)
def test_stage_loss_types_reach_trl(tmp_path, model_cache):
    """train.stage_loss_types gives each curriculum stage its own TRL loss. Our list of loss names is TRL's
    trainer's own; and in a real stage, IPO's loss of a policy against itself (the first evaluation) is
    (1 / 2β)² = 25 at β 0.1, where DPO's is ln 2: the loss reached TRL, not only the config."""
    import dataclasses
    import inspect

    import trl.trainer.dpo_trainer

    from udasa_ray.config.validate import DPO_LOSSES
    from udasa_ray.models import resolve
    from udasa_ray.train.dpo import dpo_args, train_stage
    from udasa_ray.train.step import planned_stages, stage_job

    assert set(re.findall(r'loss_type == "(\w+)"', inspect.getsource(trl.trainer.dpo_trainer))) == set(DPO_LOSSES)
    run = pairs_run(tmp_path / "run", [4, 4])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml",
                      [*FAST, "curriculum.thresholds=[0.5]", "train.stage_loss_types=[[ipo], [robust, sft]]",
                       "train.label_smoothing=0.1"])
    base = resolve("bundled:smollm2-135m-instruct", model_cache)
    eval_ids = {pq.read_table(run / "stages" / s["file"]).column("prompt_id")[0].as_py() for s in planned_stages(run)}
    jobs = [stage_job(cfg, run, s, i, i == 2, base, base, eval_ids) for i, s in enumerate(planned_stages(run), 1)]
    assert [j.loss_type for j in jobs] == [("ipo",), ("robust", "sft")]
    args = dpo_args(jobs[1], str(tmp_path / "args"), precompute=True)
    assert (args.loss_type, args.loss_weights, args.label_smoothing) == (["robust", "sft"], None, 0.1)
    # dtype auto trains in fp32 on a CPU, also one with AVX512-BF16 (bf16 autocast trained slower there); bf16 if asked
    assert jobs[1].dtype == "auto" and not args.bf16
    assert dpo_args(dataclasses.replace(jobs[1], dtype="bfloat16"), str(tmp_path / "args"), precompute=True).bf16
    rpo = load_config(ROOT / "configs" / "tiny-cpu.yaml", [*FAST, "train.loss_type=[sigmoid, sft]",
                                                           "train.loss_weights=[1.0, 0.2]"])
    job = stage_job(rpo, run, planned_stages(run)[0], 1, False, base, base, eval_ids)
    args = dpo_args(job, str(tmp_path / "args"), precompute=True)
    assert (args.loss_type, args.loss_weights) == (["sigmoid", "sft"], [1.0, 0.2])
    summary = train_stage(dataclasses.replace(jobs[0], steps=1, warmup=0, decay=1, out=""), str(tmp_path / "ipo"))
    assert summary["loss_type"] == ["ipo"]
    first = next(json.loads(line) for line in (tmp_path / "ipo" / "metrics.jsonl").open() if "eval_loss" in line)
    assert first["step"] == 0 and first["eval_loss"] == pytest.approx(25.0, rel=1e-3)


@pytest.mark.timeout(600)
def test_reference_log_probs_come_once_per_reference_and_only_for_batches_trained(tmp_path, model_cache,
                                                                                monkeypatch):
    """Full weights without DeepSpeed: the eval pairs' reference log-probs are computed once for all stages that
    share the reference (kept in the worker by the reference's hash and the tokens), and a training batch's
    when the batch comes, by the reference model, not the policy: at stage 1's first step the policy still is
    the reference, so the rewards are 0; and a 1-step stage of 3 pairs computes 2, not 3."""
    import dataclasses

    from udasa_ray.models import resolve
    from udasa_ray.train import dpo
    from udasa_ray.train.step import planned_stages, stage_job

    calls = []  # (stage, pairs in the batch, whether the model was the trainer's reference)
    compute = dpo.PhasedDPOTrainer.compute_ref_log_probs

    def spy(self, model, inputs):  # noqa: ANN001, ANN202
        calls.append((stage, inputs["input_ids"].shape[0] // 2, model is self.ref_model and model is not self.model))
        return compute(self, model, inputs)

    monkeypatch.setattr(dpo.PhasedDPOTrainer, "compute_ref_log_probs", spy)
    run = pairs_run(tmp_path / "run", [4, 4])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [*FAST, "curriculum.thresholds=[0.5]"])
    base = resolve("bundled:smollm2-135m-instruct", model_cache)
    eval_ids = {pq.read_table(run / "stages" / s["file"]).column("prompt_id")[0].as_py() for s in planned_stages(run)}
    jobs = [dataclasses.replace(stage_job(cfg, run, s, i, i == 2, base, base, eval_ids), steps=1, warmup=0, decay=1,
                                dtype="float32", out="") for i, s in enumerate(planned_stages(run), 1)]
    shared: dict = {}
    stage = 1
    first = dpo.train_stage(jobs[0], str(tmp_path / "s1"), shared)
    assert (first["train_pairs"], first["eval_pairs"], first["steps"]) == (3, 2, 1)
    assert calls == [(1, 2, True), (1, 2, True)]  # the eval pairs, then the one batch trained: 4 pairs, not 5
    step1 = next(json.loads(line) for line in (tmp_path / "s1" / "metrics.jsonl").open() if '"loss"' in line)
    assert step1["step"] == 1 and abs(step1["rewards/chosen"]) < 1e-4 and abs(step1["rewards/rejected"]) < 1e-4
    assert step1["loss"] == pytest.approx(0.6931, abs=1e-3)
    ref = shared["ref"]
    stage = 2
    dpo.train_stage(dataclasses.replace(jobs[1], start=str(tmp_path / "s1")), str(tmp_path / "s2"), shared)
    assert calls[2:] == [(2, 2, True)]  # the eval pairs' came from the cache
    assert shared["ref"] is ref and ref[0] == base


def test_wandb_offline_runs_for_the_job_and_each_stage(tmp_path, model_cache):
    """tracking.backend=wandb, offline: the job's run (the config, in <run>/wandb) and, from TRL's own callback,
    a run for the stage in the job's group, with the trainer's curves. The stage trains in a fresh process, as on
    a Ray Train worker, since W&B reads its environment once per process (MLflow through Ray Train: the DDP test)."""
    import dataclasses
    import multiprocessing

    import wandb

    from udasa_ray.models import resolve
    from udasa_ray.tracking import tracked
    from udasa_ray.train.dpo import train_stage
    from udasa_ray.train.step import planned_stages, stage_job

    run = pairs_run(tmp_path / "run", [4])
    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [*FAST, "tracking.backend=wandb"])
    base = resolve("bundled:smollm2-135m-instruct", model_cache)
    with tracked(cfg, run.path, "align") as tracker:
        job = stage_job(cfg, run, planned_stages(run)[0], 1, True, base, base, set())
        assert job.tracking == {"backend": "wandb", "project": "udasa-ray", "dir": str(run.path.resolve()),
                                "mode": "offline", "group": tracker.group, "name": "stage_1 conservative"}
        stage = dataclasses.replace(job, steps=2, warmup=0, decay=1, out="")
        worker = multiprocessing.get_context("spawn").Process(target=train_stage, args=(stage, str(tmp_path / "s")))
        worker.start()
        worker.join(300)
        assert worker.exitcode == 0
    wandb.teardown()  # this process's W&B service, and the variable that leads later processes to it
    logs = {p.parent.name: p.read_bytes() for p in (run / "wandb").glob("offline-run-*/run-*.wandb")}
    [job_log] = [v for k, v in logs.items() if k.endswith(tracker.run_id)]
    [stage_log] = [v for k, v in logs.items() if not k.endswith(tracker.run_id)]
    assert b"train.max_steps_per_stage" in job_log and b"align" in job_log
    assert tracker.group.encode() in stage_log and b"stage_1 conservative" in stage_log
    assert b"train/loss" in stage_log and b"train/rewards/accuracies" in stage_log  # TRL's curves, its own names
