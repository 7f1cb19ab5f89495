"""The `vllm` backend: `ray.data.llm` processors on GPUs.

Ray Data's vLLM stage keeps only the first sample of a request, so the N samples are N request
rows with distinct seeds (see requests.py); vLLM's prefix cache shares their common prompt.
Ray's chat-template stage writes the templated text into `prompt`, so the user's prompt
travels as `user_prompt`.
The row mappings are plain functions so they are tested without vLLM or a GPU.
"""

from __future__ import annotations

from typing import Any

from udasa_ray.config import GenerationConfig, VLLMConfig
from udasa_ray.generate.requests import alpaca_prompt, chat_messages, reply_prefix


def engine_kwargs(v: VLLMConfig) -> dict[str, Any]:
    return {
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "max_model_len": v.max_model_len,
        "dtype": v.dtype,
        "enable_prefix_caching": v.enable_prefix_caching,
    }


def _prefix(row: dict[str, Any], gen: GenerationConfig) -> str:
    """The reply's start (requests.reply_prefix) where the prompt is our text; Ray's chat-template stage
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


# Ray's vLLM stage's own bundle for one engine worker (one per GPU of a replica) when no placement group is given.
ENGINE_BUNDLE = {"CPU": 1, "GPU": 1}


def placement_group_config(gen: GenerationConfig) -> dict[str, Any] | None:
    """`generation.actor_resources` (custom Ray resources, e.g. `accelerator_type:A10G`) on every engine worker.

    Ray 2.60's processor config has no free-form resources field: `accelerator_type` takes one GPU type only, and
    `placement_group_config` is what places the engine. Its `bundle_per_worker` is copied tensor_parallel x
    pipeline_parallel times: the bundles of each replica's placement group with the Ray executor (TP > 1), the
    engine actor's own `num_gpus`/`num_cpus`/`resources` with the single-process one (TP = 1).
    None (Ray's default placement) when no resources are asked for.
    """
    if not gen.actor_resources:
        return None
    return {"bundle_per_worker": {**ENGINE_BUNDLE, **gen.actor_resources}, "strategy": "PACK"}


def processor_config(gen: GenerationConfig, model_source: str):
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs=engine_kwargs(gen.vllm),
        concurrency=gen.vllm.replicas,
        batch_size=gen.vllm.batch_size,
        chat_template_stage=gen.prompt_template == "chat",
        placement_group_config=placement_group_config(gen),
    )


def build(gen: GenerationConfig, model_source: str, model_name: str):
    """The Ray Data processor: request rows in, `responses` rows out."""
    from ray.data.llm import build_processor

    return build_processor(
        processor_config(gen, model_source),
        preprocess=lambda row: to_request(row, gen),
        postprocess=lambda row: from_output(row, gen, model_name),
    )
