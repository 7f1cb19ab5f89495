"""GPU memory estimates, per GPU, in GB (1e9 bytes): what a step's model needs where it runs. Bounds from
sizes, not measurements: weights in their dtype, DeepSpeed ZeRO's partitions, a bound on activations from
the batch and sequence length, vLLM's share of the GPU and the KV cache it leaves."""

from __future__ import annotations

from dataclasses import dataclass, field

from udasa_ray.config import VLLMConfig
from udasa_ray.config.schema import TrainConfig
from udasa_ray.plan.models import DTYPE_BYTES, ModelShape

GB = 1e9
RUNTIME_GB = 1.5  # CUDA context, NCCL and allocator slack on every GPU a step uses
VLLM_WORKSPACE_GB = 1.5  # vLLM's activation peak and CUDA graphs, taken out of its share before the KV cache
VLLM_MAX_SEQS = 256  # vLLM's default max_num_seqs: requests decoded at once
# DeepSpeed's defaults (the config sets none of them): ZeRO-3 gathers up to 1e9 parameters at once and reduces
# gradients in buckets of 5e8 elements; ZeRO-2 with overlap_comm keeps 4.5 x (allgather + reduce bucket).
ZERO3_LIVE_PARAMS, ZERO_BUCKET = 1e9, 5e8
LAYER_ACTIVATION_BYTES = 34  # bytes per token and hidden unit of one transformer layer's activations in bf16
LOGIT_BYTES = 10  # per token and vocabulary entry: bf16 logits, their fp32 copy and its log-softmax


@dataclass
class Memory:
    """One GPU's estimate: named parts in GB, what it must fit in, and whether it does."""

    parts: dict[str, float]
    capacity_gb: float | None = None  # the GPU's memory, or vLLM's share of it
    ok: bool = True
    why: str = ""  # what does not fit, with the numbers
    notes: dict[str, float] = field(default_factory=dict)  # e.g. KV cache tokens, host memory per node

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def text(self) -> str:
        parts = " + ".join(f"{v:.1f} {k}" for k, v in self.parts.items() if v >= 0.05)
        tokens = f", {self.notes['kv_tokens'] / 1000:.1f}k tokens" if "kv_tokens" in self.notes else ""
        return f"{self.total:.1f} GB ({parts}{tokens})"


def dtype_bytes(dtype: str, default: int = 2) -> int:
    return DTYPE_BYTES.get(dtype, default)


def kv_bytes_per_gpu(shape: ModelShape, tp: int) -> float:
    """KV cache bytes per token on one GPU of a tensor-parallel engine (KV heads split, or copied when fewer)."""
    return shape.kv_bytes_per_token() * max(1, shape.kv_heads // tp) / shape.kv_heads


def vllm(shape: ModelShape, v: VLLMConfig, gpu_gb: float) -> Memory:
    """A vLLM engine's GPU: `gpu_memory_utilization` of it, weights split over the TP ranks, the workspace,
    and the KV cache in what is left, which must hold one `max_model_len` sequence for vLLM to start."""
    tp = v.tensor_parallel_size
    share = v.gpu_memory_utilization * gpu_gb
    weights = shape.params * dtype_bytes(v.dtype) / tp / GB
    kv = share - weights - VLLM_WORKSPACE_GB
    tokens = max(0.0, kv) * GB / kv_bytes_per_gpu(shape, tp)
    mem = Memory({"weights": weights, "workspace": VLLM_WORKSPACE_GB, "KV cache": max(0.0, kv)}, gpu_gb,
                 notes={"kv_tokens": tokens, "vllm_share_gb": share})
    if shape.heads % tp or (shape.kv_heads % tp and tp % shape.kv_heads):
        mem.ok, mem.why = False, f"tensor_parallel_size {tp} does not divide {shape.heads} attention heads"
    elif v.max_model_len > shape.max_positions > 0:
        mem.ok, mem.why = False, f"max_model_len {v.max_model_len} > the model's {shape.max_positions} positions"
    elif tokens < v.max_model_len:
        mem.ok = False
        mem.why = (f"{weights:.1f} GB of weights a GPU leave {max(0.0, kv):.1f} GB of the {share:.1f} GB vLLM takes "
                   f"({v.gpu_memory_utilization:g} x {gpu_gb:g} GB) for the KV cache: {tokens:.0f} tokens, fewer than "
                   f"max_model_len {v.max_model_len}")
    return mem


def activations(shape: ModelShape, seqs: int, tokens: int, checkpointing: bool) -> float:
    """A bound on training activations (GB): with gradient checkpointing, every layer's input plus one layer
    recomputed; without, every layer's; plus the logits."""
    layer = LAYER_ACTIVATION_BYTES * seqs * tokens * shape.hidden
    kept = shape.layers * seqs * tokens * shape.hidden * 2 + layer if checkpointing else shape.layers * layer
    return (kept + seqs * tokens * shape.vocab * LOGIT_BYTES) / GB


def train(shape: ModelShape, t: TrainConfig, tokens: int) -> Memory:
    """One Ray Train worker's GPU in a DPO stage: the policy under DeepSpeed ZeRO (bf16 weights and gradients,
    fp32 master weights and Adam state: 16 bytes a parameter, partitioned over the workers by stage 2 / 3,
    in host memory with offload), the reference model, the activations of a micro-batch (chosen and rejected
    of `batch_size` pairs, `tokens` long), ZeRO's buffers. LoRA: the frozen fp32 weights and small adapters."""
    p, n, zero, off = shape.params, t.num_workers, t.deepspeed.zero_stage, t.deepspeed.offload
    if t.lora.enabled:
        parts = {"weights (fp32, frozen)": 4 * p / (n if zero == 3 else 1) / GB}
    elif zero == 0:  # DDP: fp32 weights, gradients and Adam state on every GPU
        parts = {"weights, grads, Adam (fp32)": 16 * p / GB}
    else:
        parts = {"bf16 weights": 0.0 if zero == 3 and off else 2 * p / (n if zero == 3 else 1) / GB,
                 "bf16 grads": 0.0 if off else 2 * p / n / GB,
                 "fp32 master + Adam": 0.0 if off else 12 * p / n / GB}
    parts["reference"] = 0.0 if (zero == 3 and off) else 2 * p / (n if zero == 3 else 1) / GB
    parts["activations"] = activations(shape, 2 * t.batch_size, tokens, t.gradient_checkpointing)
    if zero == 3:
        parts["ZeRO-3 buffers"] = 2 * (min(ZERO3_LIVE_PARAMS, p) + ZERO_BUCKET) / GB
    elif zero == 2:
        parts["ZeRO-2 buffers"] = 4.5 * 2 * 2 * ZERO_BUCKET / GB
    parts["runtime"] = RUNTIME_GB
    host = 0.0
    if off and not t.lora.enabled:  # fp32 master, Adam and fp32 grads (+ bf16 weights and reference under ZeRO-3)
        host = (16 + (4 if zero == 3 else 0)) * p / n / GB
    return Memory(parts, notes={"host_gb_per_worker": host})


def inference(shape: ModelShape, dtype: str, seqs: int, tokens: int, grad: bool = False) -> Memory:
    """A model loaded in a task or actor (hf generation, RAIN, multiple choice, GCG, RLAIF's labeller):
    weights, the KV cache of `seqs` sequences of `tokens`, their logits in bf16, and the activations of one
    layer (all layers when a gradient flows back to the input, as in GCG)."""
    acts = LAYER_ACTIVATION_BYTES * seqs * tokens * shape.hidden * (shape.layers if grad else 1)
    return Memory({"weights": shape.params * dtype_bytes(dtype) / GB,
                   "KV cache": shape.kv_bytes_per_token() * seqs * tokens / GB,
                   "logits": seqs * tokens * shape.vocab * 2 / GB, "activations": acts / GB, "runtime": RUNTIME_GB})


def fit(mem: Memory, gpu_gb: float) -> Memory:
    """`mem` checked against a GPU of `gpu_gb` (vLLM estimates check themselves)."""
    if mem.capacity_gb is None:
        mem = Memory(dict(mem.parts), gpu_gb, mem.total <= gpu_gb, "", dict(mem.notes))
        if not mem.ok:
            mem.why = f"needs {mem.text()} of a {gpu_gb:g} GB GPU"
    return mem
