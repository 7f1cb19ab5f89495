"""What one Ray Train worker needs to train one curriculum stage: built on the driver by
train/phased.py, passed to the workers as a dict (Ray Train's `train_loop_config`) and rebuilt
there. No torch or TRL here, so the driver can build it without them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StageJob:
    stage: int  # the curriculum stage's number (1-based)
    name: str  # conservative, moderate, exploratory, ...
    start: str  # the policy the stage starts from (a Hugging Face checkpoint directory)
    ref: str  # the DPO reference policy
    train_file: str  # DPO rows (prompt/chosen/rejected), Parquet, in the shared work dir
    eval_file: str | None  # held-out pairs for early stopping, or None
    work_dir: str  # shared by the ranks: dataset and reference log-prob caches
    steps: int  # planned optimizer steps
    warmup: int  # LR schedule phases, in steps
    decay: int
    peak_lr: float
    beta: float
    batch_size: int  # pairs per worker per micro-step
    grad_accum: int
    max_length: int
    precompute: bool  # reference log-probs once before training
    eval_steps: int
    patience: int
    reward_saturation: float
    dtype: str  # "auto", "float32" or "bfloat16" (mixed precision)
    seed: int
    threads: int  # torch threads per worker
    stage_pairs: int = 0  # the stage's pairs before the step budget cut them (0: as trained)
    gradient_checkpointing: bool = False
    report_to: str = "none"  # TensorBoard, or none; plus the tracking backend when `tracking` is set
    tracking: dict[str, Any] | None = None  # tracking.stage_spec: the tracking run the stage reports under
    deepspeed: dict[str, Any] | None = None  # a DeepSpeed config, or None for DDP
    ld_alpha: float | None = None
    loss_type: tuple[str, ...] = ("sigmoid",)  # TRL's DPO loss types, summed with loss_weights
    loss_weights: tuple[float, ...] | None = None
    label_smoothing: float = 0.0
    lora: dict[str, Any] | None = None  # config.LoRAConfig as a dict, or None for full fine-tuning
    out: str = ""  # where rank 0 publishes the finished stage (<run>/train/stage_<k>), "" to leave it in place
    step_hash: str = ""  # the stage's hash in the run manifest, written into its stage.json

    def finished(self) -> bool:
        """The stage's checkpoint is published with this hash: a worker retried by Ray Train and a rerun
        of a killed job skip it."""
        return bool(self.out) and published(self.out, self.step_hash) is not None


def published(out: str | Path, step_hash: str) -> dict[str, Any] | None:
    """The summary (stage.json) of a stage published to `out` with `step_hash`, or None."""
    done = Path(out) / "stage.json"
    stats = json.loads(done.read_text()) if done.exists() else {}
    return stats if stats.get("step_hash") == step_hash and stats else None
