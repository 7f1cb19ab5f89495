"""The vLLM backend's request mapping, checked without vLLM or a GPU."""

import sys

from udasa_ray.config import load_config
from udasa_ray.generate import vllm
from udasa_ray.generate.requests import ALPACA_TEMPLATE, LISTWISE, build_requests, request_seed, split_listwise

PROMPTS = [{"prompt_id": "a1", "prompt": "Say hi."}, {"prompt_id": "b2", "prompt": "Name a colour, please."}]


def test_requests_repeat_each_prompt_n_times_with_distinct_seeds():
    rows = build_requests(PROMPTS, n=5, base_seed=0)
    assert len(rows) == 10
    for pid in ("a1", "b2"):
        mine = [r for r in rows if r["prompt_id"] == pid]
        assert sorted(r["sample_idx"] for r in mine) == list(range(5))
        assert len({r["seed"] for r in mine}) == 5
    assert rows[0]["prompt_id"] == "b2"  # longest prompt first
    assert build_requests(PROMPTS, 5, 0) == rows and build_requests(PROMPTS, 5, 1) != rows
    assert request_seed(0, "a1", 3) == request_seed(0, "a1", 3) < 2**31


def test_requests_skip_done_rows():
    rows = build_requests(PROMPTS, n=3, base_seed=0, done={("a1", 0), ("b2", 2)})
    assert len(rows) == 4 and ("a1", 0) not in {(r["prompt_id"], r["sample_idx"]) for r in rows}


def test_chat_request_row():
    overrides = ["generation.prompt_template=chat", "generation.system_prompt=Be kind."]
    gen = load_config("configs/llama7b.yaml", overrides).generation
    row = build_requests(PROMPTS, 2, 0)[0]
    req = vllm.to_request(row, gen)
    assert req["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": row["prompt"]}]
    assert req["user_prompt"] == row["prompt"]
    assert req["sampling_params"] == {"n": 1, "temperature": 0.8, "top_p": 0.9, "max_tokens": 256, "seed": row["seed"]}


def test_alpaca_request_row_for_base_models():
    gen = load_config("configs/llama7b.yaml").generation
    row = build_requests(PROMPTS, 2, 0)[0]
    req = vllm.to_request(row, gen)
    assert "messages" not in req and req["prompt"] == ALPACA_TEMPLATE.format(prompt=row["prompt"])


def test_output_row_maps_back_to_responses_schema():
    gen = load_config("configs/llama7b.yaml").generation
    row = vllm.to_request(build_requests(PROMPTS, 2, 0)[0], gen)
    # What Ray's stages leave in a row: the templated prompt and the engine's output.
    out = {**row, "prompt": "<templated>", "generated_text": " Blue. ", "num_generated_tokens": 3}
    resp = vllm.from_output(out, gen, "huggyllama/llama-7b")
    assert resp == {"prompt_id": "b2", "prompt": "Name a colour, please.", "sample_idx": 0, "response": "Blue.",
                    "n_tokens": 3, "finish_reason": "stop", "model": "huggyllama/llama-7b", "seed": row["seed"]}
    assert vllm.from_output({**out, "num_generated_tokens": 256}, gen, "m")["finish_reason"] == "length"


def test_engine_and_processor_config_from_recipe():
    gen = load_config("configs/llama30b.yaml").generation
    assert vllm.engine_kwargs(gen) == {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.9,
                                       "max_model_len": 2048, "dtype": "bfloat16", "enable_prefix_caching": True}
    cfg = vllm.processor_config(gen, "huggyllama/llama-30b")
    assert cfg.model_source == "huggyllama/llama-30b" and cfg.batch_size == 64 and cfg.concurrency == 2
    assert cfg.engine_kwargs["tensor_parallel_size"] == 4
    assert "vllm" not in sys.modules  # the GPU dependency stays lazy


def test_listwise_requests_one_per_prompt_with_the_papers_prompt():
    rows = build_requests(PROMPTS, n=5, base_seed=0, listwise=True)
    assert [r["sample_idx"] for r in rows] == [LISTWISE, LISTWISE]
    assert rows[0]["query"].startswith("You are a professional AI assistant. Please provide 5 distinct responses")
    assert rows[0]["query"].endswith("Question: " + rows[0]["prompt"]) and rows[0]["prompt"] == PROMPTS[1]["prompt"]
    assert build_requests(PROMPTS, 5, 0, done={("b2", 3)}, listwise=True)[0]["prompt_id"] == "a1"
    gen = load_config("configs/llama7b.yaml", ["generation.prompt_template=chat"]).generation
    assert vllm.to_request(rows[0], gen)["messages"][-1]["content"] == rows[0]["query"]


def test_split_listwise():
    text = "Sure!\n1. Red.\n2) Blue, like the sky in 2024.\n**Response 3:** Green.\n4. extra"
    out = split_listwise({"prompt_id": "a", "response": text, "sample_idx": LISTWISE}, 3)
    assert [(r["sample_idx"], r["response"], r["error"]) for r in out] == [
        (0, "Red.", None), (1, "Blue, like the sky in 2024.", None), (2, "Green.", None)]
    short = split_listwise({"prompt_id": "a", "response": "1. Red.\nThat is all.", "sample_idx": LISTWISE}, 3)
    assert [r["response"] for r in short] == ["Red.\nThat is all.", "", ""]
    assert [r["error"] for r in short] == [None] + ["listwise: found 1 of 3 numbered responses"] * 2
    none = split_listwise({"prompt_id": "a", "response": "I cannot list them.", "sample_idx": LISTWISE}, 2)
    assert all(r["error"] == "listwise: found 0 of 2 numbered responses" and r["response"] == "" for r in none)
