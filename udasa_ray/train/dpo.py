"""Phased-DPO stages on Ray Train workers: TRL's DPOTrainer with each stage's LR schedule, early
stopping and metrics, each stage ending in a Hugging Face checkpoint published to the run.

The worker reads everything from its StageJobs (train/job.py, built by train/phased.py), so this
file is the whole of what runs on a training node. One worker group trains the run's stages one
after the other (train_loop), keeping the reference policy loaded between them, and the eval pairs'
reference log-probs, computed once per reference. DeepSpeed is optional and only imported by
transformers when `deepspeed` is set.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
from trl import DPOConfig, DPOTrainer

from udasa_ray.models import read_ahead
from udasa_ray.tracking import stage_run
from udasa_ray.train.job import StageJob
from udasa_ray.train.schedule import EarlyStop, lr_at

# What the metrics file and the report keep of TRL's logs (train keys; eval ones get "eval_").
LOGGED = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "learning_rate",
          "grad_norm"]


def deepspeed_config(zero_stage: int, offload: bool) -> dict[str, Any]:
    """A ZeRO-2/3 config whose sizes and precision transformers fills from the DPOConfig ("auto")."""
    zero: dict[str, Any] = {"stage": zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # save_model writes whole HF weights
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "gradient_clipping": "auto",
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "train_batch_size": "auto"}


def dpo_args(job: StageJob, output_dir: str, precompute: bool) -> DPOConfig:
    """The DPOConfig of a stage. Shared with bench/dpo.py, so both trainers run the same settings."""
    # bf16 is mixed precision (master weights stay fp32). "auto" picks it on a GPU only: on CPUs, even with
    # AVX512-BF16, bf16 autocast trains slower than fp32 (docs/results/speed.md).
    bf16 = job.dtype == "bfloat16" or (job.dtype == "auto" and torch.cuda.is_available())
    return DPOConfig(
        output_dir=output_dir,
        learning_rate=job.peak_lr,
        max_steps=job.steps,
        per_device_train_batch_size=job.batch_size,
        per_device_eval_batch_size=job.batch_size,
        gradient_accumulation_steps=job.grad_accum,
        beta=job.beta,
        max_length=job.max_length,
        precompute_ref_log_probs=precompute,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=job.gradient_checkpointing,
        deepspeed=job.deepspeed,
        eval_strategy="steps" if job.eval_file else "no",
        eval_steps=job.eval_steps,
        eval_on_start=bool(job.eval_file),
        logging_steps=1,
        save_strategy="no",
        report_to=[r for r in (job.report_to, (job.tracking or {}).get("backend")) if r and r != "none"] or "none",
        run_name=job.tracking["name"] if job.tracking else None,
        ld_alpha=job.ld_alpha,
        loss_type=list(job.loss_type),
        loss_weights=list(job.loss_weights) if job.loss_weights else None,
        label_smoothing=job.label_smoothing,
        disable_tqdm=True,
        seed=job.seed,
        data_seed=job.seed,
        dataloader_num_workers=0,
        # Every parameter gets a gradient (full weights or LoRA adapters): DDP's search for unused ones
        # walks the graph after each backward, which transformers turns on by default.
        ddp_find_unused_parameters=False,
    )


class PhasedDPOTrainer(DPOTrainer):
    """DPOTrainer whose LR follows the stage's phased schedule (also under DeepSpeed, which
    refuses an optimizer passed in but asks the trainer for its scheduler).

    With `lazy_train_ref` (a reference model given, precompute on), the eval pairs' reference
    log-probs are precomputed as TRL does, and a training batch's are computed by the reference
    model when the batch comes: a stage that stops early never pays for the pairs it did not reach.
    `eval_ref_logps` (a dict kept between stages) holds the eval pairs' reference log-probs by the
    reference's hash and the tokens, so stages sharing a reference compute them once. (TRL's own
    cache misses there: its key holds the tokenized set's fingerprint, which hashes the DPOConfig.)"""

    def __init__(self, *args: Any, schedule: dict[str, Any], lazy_train_ref: bool = False,
                 eval_ref_logps: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.schedule, self.lazy_train_ref, self.eval_ref_logps = schedule, lazy_train_ref, eval_ref_logps
        super().__init__(*args, **kwargs)
        # TRL precomputes the reference log-probs (here, in the constructor) through a DeepSpeed inference
        # engine wrapped around the policy module itself. Under ZeRO-3 that engine's hooks stay on the module
        # and break the training engine's parameter trace: "IndexError: pop from an empty deque" at the first
        # step with 2 workers (the cluster-shape test). Both datasets are precomputed by now: remove them.
        engine = getattr(self, "_precompute_engine", None)
        if engine is not None:
            engine.destroy()
            self._precompute_engine = None

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):  # noqa: ANN001, ANN202
        if self.lazy_train_ref and name == "train":
            return dataset
        if self.eval_ref_logps is None or name != "eval":
            return super()._precompute_ref_logps(dataset, name, batch_size)
        from datasets.fingerprint import Hasher

        key = Hasher.hash((self._precompute_model_hash,
                           dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"]).to_dict()))
        if key not in self.eval_ref_logps:
            done = super()._precompute_ref_logps(dataset, name, batch_size)
            self.eval_ref_logps[key] = list(done["ref_chosen_logps"]), list(done["ref_rejected_logps"])
        chosen, rejected = self.eval_ref_logps[key]
        return dataset.add_column("ref_chosen_logps", chosen).add_column("ref_rejected_logps", rejected)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
        if self.precompute_ref_logps and "ref_chosen_logps" not in inputs:
            chosen, rejected = self.compute_ref_log_probs(self.ref_model, inputs)  # a lazily referenced batch
            inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = chosen, rejected
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> LambdaLR:
        s = self.schedule
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                         lambda step: lr_at(step, s["steps"], 1.0, s["warmup"], s["decay"]))
        return self.lr_scheduler


class StageLog(TrainerCallback):
    """Rank 0 appends every log line to metrics.jsonl and prints a short one. Evaluations feed
    the early-stop rule, and the best one so far saves the policy to `best_dir`."""

    def __init__(self, path: Path, stage: int, stop: EarlyStop, best_dir: Path) -> None:
        self.path, self.stage, self.stop, self.best_dir = path, stage, stop, best_dir
        self.trainer: DPOTrainer | None = None
        self.reason: str | None = None
        self.best_step: int | None = None
        self.best_accuracy: float | None = None  # eval reward accuracy of the kept policy
        self.evaluated_at: int | None = None  # the step of the last evaluation

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not (state.is_world_process_zero and logs):
            return
        row = {"stage": self.stage, "step": state.global_step, "time": time.time(), **logs}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        prefix = "eval_" if "eval_loss" in logs else ""
        if prefix + "loss" in logs:  # sys.stdout, not print: Ray Train's print patch shows lines twice
            sys.stdout.write(
                f"[train] stage {self.stage} step {state.global_step}/{state.max_steps} {prefix or 'train '}loss "
                f"{logs[prefix + 'loss']:.4f} reward acc {logs.get(prefix + 'rewards/accuracies', float('nan')):.2f} "
                f"margin {logs.get(prefix + 'rewards/margins', float('nan')):+.3f}"
                + (f" lr {logs['learning_rate']:.2e}" if "learning_rate" in logs else "") + "\n")
            sys.stdout.flush()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        self.evaluated_at = state.global_step
        reason = self.stop.update(metrics["eval_loss"], metrics.get("eval_rewards/accuracies"))
        if self.stop.stale == 0:  # every rank saves: ZeRO-3 gathers the shards
            self.best_step, self.best_accuracy = state.global_step, metrics.get("eval_rewards/accuracies")
            self.trainer.save_model(str(self.best_dir))
        if reason and state.global_step > 0:  # the evaluation at step 0 is the baseline
            self.reason = reason
            control.should_training_stop = True


def _datasets(job: StageJob, rank: int):
    """On-disk datasets in the shared work dir: TRL's reference log-prob cache is written by rank 0
    next to the data and read by the other ranks, so all must see the same files."""
    import torch.distributed as dist
    from datasets import Dataset

    def load():
        cache = str(Path(job.work_dir) / "hf-cache")
        train = Dataset.from_parquet(job.train_file, cache_dir=cache)
        evaluation = Dataset.from_parquet(job.eval_file, cache_dir=cache) if job.eval_file else None
        return train, evaluation

    distributed = dist.is_available() and dist.is_initialized()
    if rank == 0 or not distributed:
        out = load()
    if distributed:
        dist.barrier()
    return out if rank == 0 or not distributed else load()


def _lora(job: StageJob):  # noqa: ANN202
    """The stage's PEFT LoraConfig, or None for full fine-tuning."""
    if not job.lora:
        return None
    from peft import LoraConfig

    lo = job.lora
    return LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                      target_modules=lo["target_modules"], task_type="CAUSAL_LM")


def _finish(kept: Path, out: Path, start: str, lora: bool) -> None:
    """Put the kept policy in `out` as a full Hugging Face checkpoint: LoRA adapters are merged
    into the stage's start policy (so vLLM and from_pretrained load it as any model)."""
    if lora:
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32)
        PeftModel.from_pretrained(model, str(kept)).merge_and_unload().save_pretrained(str(out))
        shutil.rmtree(kept)
        return
    for f in kept.iterdir():
        os.replace(f, out / f.name)
    kept.rmdir()


def train_stage(job: StageJob, output_dir: str, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one stage; returns its summary. Writes the checkpoint to `output_dir` (rank 0).

    `shared` keeps what the next stage in this process can reuse (the reference policy)."""
    import torch.distributed as dist

    shared = {} if shared is None else shared

    torch.set_num_threads(max(1, int(job.threads)))
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")
    if job.deepspeed and dist.is_available() and dist.is_initialized():
        import deepspeed

        # DeepSpeed adopts Ray Train's process group. On a GPU, transformers' Accelerate state does this;
        # on CPU (use_cpu) it does not, and ZeRO-3's sharded load would count a world of 1 and fail its
        # batch-size check.
        deepspeed.init_distributed(dist_backend=dist.get_backend())
    # DPOConfig first: under ZeRO-3 it is what lets from_pretrained shard the weights as they load.
    args = dpo_args(job, str(out / "trainer"), precompute=job.precompute)
    tok = AutoTokenizer.from_pretrained(job.start)
    # The policy is read into this process's memory, not mapped from the file: the optimizer writes every weight,
    # and a write to a mapped page copies it from the file first, page by page.
    model = AutoModelForCausalLM.from_pretrained(job.start, dtype=torch.float32, disable_mmap=True)
    # Full weights without DeepSpeed keep the reference loaded (once per worker while it stays the same) and compute
    # training batches' reference log-probs as they come; otherwise TRL precomputes them all at construction.
    lazy = job.precompute and not job.deepspeed and not job.lora
    ref = None
    if job.deepspeed and job.ref != job.start:
        # DeepSpeed takes the reference into this stage's engine (ZeRO-3 partitions it): loaded for each stage, and
        # not kept, as the engine's hooks stay on it.
        ref = AutoModelForCausalLM.from_pretrained(read_ahead(job.ref), dtype=torch.float32)
    elif lazy or job.ref != job.start:
        if shared.get("ref", (None,))[0] != job.ref:
            shared["ref"] = job.ref, AutoModelForCausalLM.from_pretrained(read_ahead(job.ref), dtype=torch.float32)
        ref = shared["ref"][1]
    train, evaluation = _datasets(job, rank)
    log = StageLog(out / "metrics.jsonl", job.stage, EarlyStop(job.patience, job.reward_saturation), out / "best")
    t0 = time.perf_counter()  # construction included: it is where reference log-probs are precomputed
    trainer = PhasedDPOTrainer(model=model, ref_model=ref, args=args, train_dataset=train, eval_dataset=evaluation,
                               processing_class=tok, callbacks=[log], peft_config=_lora(job),
                               schedule={"steps": job.steps, "warmup": job.warmup, "decay": job.decay},
                               lazy_train_ref=lazy,
                               eval_ref_logps=None if job.deepspeed else shared.setdefault("eval_ref_logps", {}))
    trainer.remove_callback(PrinterCallback)  # StageLog prints a shorter line
    log.trainer = trainer
    with stage_run(job.tracking, rank):
        trainer.train()
        if evaluation is not None and log.evaluated_at != trainer.state.global_step:
            trainer.evaluate()  # the steps after the last evaluation get judged too
    seconds = time.perf_counter() - t0
    # With a held-out split, the stage's policy is its best evaluation (maybe its start); else the last step.
    if evaluation is None:
        trainer.save_model(str(out / "best"))  # every rank: ZeRO-3 gathers the shards here
    if rank == 0:
        _finish(out / "best", out, job.start, bool(job.lora))
    zero = trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else 0
    summary = {"stage": job.stage, "name": job.name, "step_hash": job.step_hash, "planned_steps": job.steps,
               "steps": trainer.state.global_step,
               "stopped_early": log.reason, "best_step": log.best_step,
               "best_eval_loss": log.stop.best if evaluation is not None else None,
               "best_eval_reward_accuracy": log.best_accuracy,
               "train_pairs": len(train), "stage_pairs": job.stage_pairs or len(train),
               "eval_pairs": len(evaluation or []),
               "beta": job.beta, "loss_type": list(job.loss_type),
               "peak_lr": job.peak_lr, "seconds": round(seconds, 1), "peak_rss_gb": _peak_rss_gb(),
               "world_size": args.world_size,
               "bf16": args.bf16, "zero_stage": zero, "lora_r": job.lora["r"] if job.lora else None,
               "trainable_params": sum(getattr(p, "ds_numel", p.numel())  # ZeRO-3: a rank holds only a shard
                                       for p in trainer.model.parameters() if p.requires_grad)}
    if rank == 0:
        tok.save_pretrained(str(out))
        trainer.state.save_to_json(str(out / "trainer_state.json"))
        (out / "stage.json").write_text(json.dumps(summary, indent=2))
        shutil.rmtree(out / "trainer", ignore_errors=True)
    if trainer.is_deepspeed_enabled:
        _release_engines(trainer)
    return summary


def _peak_rss_gb() -> float:
    """This worker's peak resident memory so far, in GB: a high-water mark over the stages it has trained."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**30 if sys.platform == "darwin" else 2**20), 2)


def _release_engines(trainer: Any) -> None:
    """Release a finished stage's DeepSpeed engines (the policy's, and TRL's own for the reference), so that a worker
    that trains the next stage holds only that stage: their hooks, and ZeRO-3's module-level stack of each engine's
    top module (which `destroy()` leaves), otherwise keep every stage's policy, optimizer state and reference alive."""
    from deepspeed.runtime.zero import parameter_offload

    for engine in (getattr(trainer, "model_wrapped", None), getattr(trainer, "ref_model", None)):
        if hasattr(engine, "destroy"):
            engine.destroy()
    trainer.accelerator.free_memory()
    parameter_offload.FWD_MODULE_STACK.clear()  # no forward is running between stages


def _publish(tmp: str, out: str) -> None:
    """Move a finished stage from the worker's folder to the run (`out`, on storage all nodes share, like
    Ray Train's): moved beside it (a rename on the same file system, else a copy), then renamed into place, so
    `out/stage.json` means a whole checkpoint. `tmp` is left empty, for its owner to remove."""
    partial = Path(out + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.move(tmp, partial)
    os.mkdir(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: train the stages in order, each one starting from the one
    before; rank 0 publishes each to the run and every rank waits for it before the next. A stage
    already published with its hash is skipped, so a worker group restarted by Ray Train after a
    failure (train.max_failures) goes on from the stage it was in."""
    import ray.train
    import torch.distributed as dist

    rank = ray.train.get_context().get_world_rank()
    shared: dict[str, Any] = {}
    for job in (StageJob(**c) for c in config["stages"]):
        if job.finished():
            continue
        with tempfile.TemporaryDirectory(prefix=f"udasa-stage{job.stage}-") as tmp:
            summary = train_stage(job, tmp, shared)
            gc.collect()  # the stage's trainer and models, which refer to each other, before the next stage loads
            if rank == 0:
                _publish(tmp, job.out)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # the next stage starts from the published checkpoint
        ray.train.report({k: v for k, v in summary.items() if v is not None})
