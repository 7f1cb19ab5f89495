"""Wall-time estimates from sizes and hardware data sheets: a roofline (memory bandwidth or FLOPs, whichever
binds) times an efficiency. Every assumption is a named constant here; none is a measurement. The work a
step does comes from the config (prompts, samples, max tokens, steps) and the data set's size."""

from __future__ import annotations

from importlib import resources

from udasa_ray.plan.cluster import GPU
from udasa_ray.plan.models import ModelShape

PROMPT_TOKENS = 96  # an instruction with its Alpaca or chat framing
JUDGE_PROMPT_TOKENS = 700  # the judge's rubric, two worked examples and the item with its answer
MC_CHOICES, MC_TOKENS = 12, 80  # TruthfulQA's MC1 + MC2 choices of a question, question included
DECODE_EFFICIENCY = 0.5  # of the vLLM decode roofline
HF_EFFICIENCY = 0.3  # of the roofline for transformers' own decode loop and forwards (RAIN, GCG, MC)
TRAIN_MFU = 0.35  # DPO training: model FLOPs utilisation in bf16
PCIE_BYTES_PER_S = 12e9  # per GPU, host <-> device, for ZeRO offload
CPU_ADAM_PARAMS_PER_S = 0.1e9  # DeepSpeed's CPU Adam, per CPU of a worker
CPU_FLOPS = 30e9  # per CPU (vCPU) of a scorer or CPU worker, fp32 inference
# Rows of the data sets the recipes name (the first split the loaders read); bundled sets are counted.
HF_ROWS = {"hf:tatsu-lab/alpaca": 52002, "hf:Anthropic/hh-rlhf#harmless-base": 2312,
           "hf:Anthropic/hh-rlhf#helpful-base": 2354, "hf:truthfulqa/truthful_qa": 817, "hf:stanfordnlp/imdb": 25000,
           "hf:walledai/AdvBench": 520}


def rows(source: str) -> int | None:
    """How many records a data source has: bundled sets counted, the recipes' hub sets from HF_ROWS."""
    if source.startswith("bundled:"):
        f = resources.files("udasa_ray.data").joinpath(source.removeprefix("bundled:") + ".jsonl")
        return sum(1 for line in f.read_text().splitlines() if line.strip()) if f.is_file() else None
    return HF_ROWS.get(source)


def vllm_rate(shape: ModelShape, tp: int, gpu: GPU, kv_tokens: float, context: int, max_seqs: int = 256) -> float:
    """Output tokens/s of one engine replica: a decode step reads the weights and the batch's KV cache and
    does 2 x params FLOPs a sequence; the batch is what the KV cache holds, up to max_num_seqs."""
    batch = max(1, min(max_seqs, int(kv_tokens // max(1, context))))
    kv_per_token = shape.kv_bytes_per_token() / tp
    bytes_step = shape.params * 2 / tp + batch * (context / 2) * kv_per_token
    flops_step = 2 * shape.params * batch / tp
    step = max(bytes_step / gpu.bandwidth, flops_step / gpu.flops) / DECODE_EFFICIENCY
    return batch / step


def prefill_s(shape: ModelShape, tokens: float, gpus: int, gpu: GPU, efficiency: float = DECODE_EFFICIENCY) -> float:
    """Seconds to read `tokens` prompt tokens (2 x params FLOPs a token) on `gpus` GPUs."""
    return 2 * shape.params * tokens / (gpus * gpu.flops * efficiency)


def hf_decode_s(shape: ModelShape, steps: float, gpu: GPU) -> float:
    """Seconds for transformers to take `steps` decode steps (the weights read at every one)."""
    return steps * shape.params * 2 / (gpu.bandwidth * DECODE_EFFICIENCY)


def train_step_s(shape: ModelShape, pairs: int, length: int, workers: int, gpu: GPU | None, cpus: float,
                 checkpointing: bool, offload: bool) -> float:
    """One optimizer step over `pairs` pairs (chosen + rejected, `length` tokens each): 6 x params FLOPs a token
    (8 with recomputation), at TRAIN_MFU; with offload, the weights and gradients over PCIe and CPU Adam."""
    flops = (8 if checkpointing else 6) * shape.params * pairs * 2 * length
    if gpu is None:
        return flops / (workers * cpus * CPU_FLOPS * TRAIN_MFU)
    seconds = flops / (workers * gpu.flops * TRAIN_MFU)
    if offload:
        passes = 3 if checkpointing else 2  # forward, backward (and the recomputation) fetch the weights
        seconds += (2 + 2 * passes) * shape.params / workers / PCIE_BYTES_PER_S
        seconds += shape.params / workers / (CPU_ADAM_PARAMS_PER_S * cpus)
    return seconds


def cpu_forward_s(shape: ModelShape, tokens: float, cpus: float) -> float:
    """Seconds for an encoder (a scorer) to read `tokens` tokens on `cpus` CPUs."""
    return 2 * shape.params * tokens / (cpus * CPU_FLOPS)
