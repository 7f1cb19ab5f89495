"""The `vllm` backend: `ray.data.llm` processors on GPUs.

Ray Data's vLLM stage keeps only the first sample of a request, so the N samples are N request
rows with distinct seeds (see requests.py); vLLM's prefix cache shares their common prompt.
Ray's chat-template stage writes the templated text into `prompt`, so the user's prompt
travels as `user_prompt`.
The row mappings are plain functions so they are tested without vLLM or a GPU.
"""

from __future__ import annotations

from typing import Any

from udasa_ray.config import GenerationConfig
from udasa_ray.generate.requests import ALPACA_TEMPLATE, chat_messages


def engine_kwargs(gen: GenerationConfig) -> dict[str, Any]:
    v = gen.vllm
    return {
        "tensor_parallel_size": v.tensor_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "max_model_len": v.max_model_len,
        "dtype": v.dtype,
        "enable_prefix_caching": v.enable_prefix_caching,
    }


def to_request(row: dict[str, Any], gen: GenerationConfig) -> dict[str, Any]:
    """A request row -> what the vLLM processor reads: chat messages and per-row sampling params."""
    out = {**row, "user_prompt": row["prompt"]}
    if gen.prompt_template == "chat":
        out["messages"] = chat_messages(row["query"], gen.system_prompt)
    else:  # no chat-template stage: vLLM tokenizes `prompt` as it is
        out["prompt"] = ALPACA_TEMPLATE.format(prompt=row["query"])
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


def from_output(row: dict[str, Any], gen: GenerationConfig, model: str) -> dict[str, Any]:
    """The processor's output row -> a `responses` row (vLLM's stage drops finish_reason)."""
    n = int(row["num_generated_tokens"])
    return {
        "prompt_id": row["prompt_id"],
        "prompt": row["user_prompt"],
        "sample_idx": int(row["sample_idx"]),
        "response": row["generated_text"].strip(),
        "n_tokens": n,
        "finish_reason": "length" if n >= gen.max_new_tokens else "stop",
        "model": model,
        "seed": int(row["seed"]),
    }


def processor_config(gen: GenerationConfig, model_source: str):
    from ray.data.llm import vLLMEngineProcessorConfig

    return vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs=engine_kwargs(gen),
        concurrency=gen.vllm.replicas,
        batch_size=gen.vllm.batch_size,
        chat_template_stage=gen.prompt_template == "chat",
    )


def build(gen: GenerationConfig, model_source: str, model_name: str):
    """The Ray Data processor: request rows in, `responses` rows out."""
    from ray.data.llm import build_processor

    return build_processor(
        processor_config(gen, model_source),
        preprocess=lambda row: to_request(row, gen),
        postprocess=lambda row: from_output(row, gen, model_name),
    )
