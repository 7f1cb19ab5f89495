"""The vLLM backend's request mapping and processor config, checked against what Ray's vLLM stages read and
write (their own code, from ray.data.llm) and what vLLM's SamplingParams accepts, with no engine running.
The engine itself runs in tests/test_vllm_engine.py."""

import asyncio
import dataclasses
import sys
import types

import pytest
from conftest import ROOT
from ray.llm._internal.batch.constants import vLLMTaskType
from ray.llm._internal.batch.stages import ChatTemplateStage, TokenizeStage
from ray.llm._internal.batch.stages.configs import ChatTemplateStageConfig, resolve_stage_config
from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMEngineStage, vLLMEngineWrapper, vLLMOutputData

from udasa_ray.config import load_config
from udasa_ray.generate import vllm
from udasa_ray.generate.requests import LISTWISE, build_requests, request_seed, split_listwise

LLAMA7B = ROOT / "configs" / "llama7b.yaml"
PROMPTS = [{"prompt_id": "a1", "prompt": "Say hi."}, {"prompt_id": "b2", "prompt": "Name a colour, please."}]
# Sampling settings unlike any recipe's, so a value that arrives was mapped, not a default.
SAMPLING = ["generation.temperature=0.35", "generation.top_p=0.6", "generation.max_new_tokens=17"]


@dataclasses.dataclass(kw_only=True)
class SamplingParams:
    """vLLM's `SamplingParams` (vllm/sampling_params.py) for what these requests set: its keyword names and
    defaults, an unknown keyword a TypeError, and the checks of its `_verify_args`."""

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = 0
    logprobs: int | None = None
    structured_outputs: object = None

    def __post_init__(self) -> None:
        if self.seed == -1:  # vLLM's "no seed"
            self.seed = None
        assert isinstance(self.n, int) and self.n >= 1
        assert 0.0 <= self.temperature <= 2.0 and 0.0 < self.top_p <= 1.0
        assert self.max_tokens is None or self.max_tokens >= 1
        assert self.seed is None or isinstance(self.seed, int)


def engine_request(row: dict, monkeypatch: pytest.MonkeyPatch):
    """What Ray's vLLM stage hands the engine for a row that reached it: its own request preparation
    (vLLMEngineWrapper._prepare_llm_request), with the SamplingParams above standing in for vLLM's."""
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=SamplingParams))
    wrapper = object.__new__(vLLMEngineWrapper)  # no engine: only the request mapping runs
    wrapper.request_id, wrapper.idx_in_batch_column, wrapper.model = 0, "__idx_in_batch", "model"
    wrapper.task_type = vLLMTaskType.GENERATE
    return asyncio.run(wrapper._prepare_llm_request({**row, "__idx_in_batch": 0}))


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


def test_requests_skip_done_rows_and_keep_the_seeds_of_the_rest():
    full = {(r["prompt_id"], r["sample_idx"]): r["seed"] for r in build_requests(PROMPTS, n=3, base_seed=0)}
    rows = build_requests(PROMPTS, n=3, base_seed=0, done={("a1", 0), ("b2", 2)})
    assert sorted((r["prompt_id"], r["sample_idx"]) for r in rows) == [("a1", 1), ("a1", 2), ("b2", 0), ("b2", 1)]
    # A resumed run samples each remaining response with the seed the uninterrupted run would have used.
    assert all(r["seed"] == full[r["prompt_id"], r["sample_idx"]] for r in rows)


def test_each_sample_is_one_seeded_vllm_request(monkeypatch):
    gen = load_config(LLAMA7B, SAMPLING).generation
    rows = build_requests(PROMPTS, n=4, base_seed=7)
    params = [engine_request(vllm.to_request(row, gen), monkeypatch).params for row in rows]
    for row, p in zip(rows, params, strict=True):
        # Ray's stage keeps the first output of a request only: one sample per request, seeded by its row.
        assert p.n == 1 and p.seed == row["seed"] and p.seed is not None
        assert (p.temperature, p.top_p, p.max_tokens) == (0.35, 0.6, 17)
    for pid in ("a1", "b2"):  # the N samples of a prompt are N differently seeded draws
        assert len({p.seed for r, p in zip(rows, params, strict=True) if r["prompt_id"] == pid}) == 4
    again = [engine_request(vllm.to_request(row, gen), monkeypatch).params for row in build_requests(PROMPTS, 4, 7)]
    assert [p.seed for p in again] == [p.seed for p in params]  # a rerun draws the same samples


def test_alpaca_request_reaches_the_engine_as_the_alpaca_prompt(monkeypatch):
    gen = load_config(LLAMA7B).generation
    assert gen.prompt_template != "chat"
    row = [r for r in build_requests(PROMPTS, 1, 0) if r["prompt_id"] == "a1"][0]
    req = vllm.to_request(row, gen)
    pc = vllm.processor_config(gen, "model")
    assert not resolve_stage_config(pc.chat_template_stage, ChatTemplateStageConfig).enabled
    assert "messages" not in req and set(TokenizeStage().get_required_input_keys()) <= set(req)
    # Stanford Alpaca's no-input prompt, written out.
    assert engine_request(req, monkeypatch).prompt == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nSay hi.\n\n### Response:\n")


def test_chat_request_row_feeds_ray_chat_template_stage():
    gen = load_config(LLAMA7B, ["generation.prompt_template=chat", "generation.system_prompt=Be kind."]).generation
    pc = vllm.processor_config(gen, "model")
    assert resolve_stage_config(pc.chat_template_stage, ChatTemplateStageConfig).enabled
    row = [r for r in build_requests(PROMPTS, 1, 0) if r["prompt_id"] == "a1"][0]
    req = vllm.to_request(row, gen)
    engine = vLLMEngineStage(fn_constructor_kwargs={"engine_kwargs": dict(pc.engine_kwargs)}, map_batches_kwargs={})
    required = {*ChatTemplateStage().get_required_input_keys(), *engine.get_required_input_keys()}
    assert required == {"messages", "sampling_params"} and required <= set(req)
    # OpenAI chat format: the system prompt, then the user's prompt.
    assert req["messages"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Say hi."}]


def test_output_row_maps_back_to_responses_schema():
    gen = load_config(LLAMA7B, ["generation.prompt_template=chat", "generation.max_new_tokens=5"]).generation
    row = [r for r in build_requests(PROMPTS, 2, 0) if r["prompt_id"] == "b2"][1]
    # What reaches the postprocess: the request row after Ray's stages, the chat-template stage having written the
    # templated text into `prompt`, and the engine's output as Ray's vLLM stage records it.
    done = vLLMOutputData(prompt="<|im_start|>user ...", num_input_tokens=9, generated_tokens=[5, 6, 7],
                          generated_text=" Blue. ", num_generated_tokens=3).model_dump()
    out = {**vllm.to_request(row, gen), **done}
    assert vllm.from_output(out, gen, "huggyllama/llama-7b") == {
        "prompt_id": "b2", "prompt": "Name a colour, please.", "sample_idx": 1, "response": "Blue.",
        "n_tokens": 3, "finish_reason": "stop", "model": "huggyllama/llama-7b", "seed": row["seed"]}
    # A reply that used the whole token budget was cut off; one a token short ended by itself.
    assert vllm.from_output({**out, "num_generated_tokens": 5}, gen, "m")["finish_reason"] == "length"
    assert vllm.from_output({**out, "num_generated_tokens": 4}, gen, "m")["finish_reason"] == "stop"


@dataclasses.dataclass
class CompletionOutput:
    """vLLM's `CompletionOutput` (vllm/outputs.py): what Ray's stage reads of it, and its finish reason."""

    token_ids: list[int]
    text: str
    finish_reason: str
    logprobs: object = None


@dataclasses.dataclass
class RequestOutput:
    """vLLM's `RequestOutput` (vllm/outputs.py), one sample."""

    prompt: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    metrics: object = None
    prompt_logprobs: object = None


@pytest.mark.parametrize("prompt_tokens, generated, max_model_len, vllm_reason", [
    (9, 3, 4096, "stop"),  # ended by itself
    (9, 5, 4096, "length"),  # max_tokens reached
    (9, 4, 13, "length"),  # prompt + reply reached the engine's max_model_len before max_tokens
    (9, 3, 13, "stop"),
])
def test_finish_reason_through_rays_vllm_stage(monkeypatch, prompt_tokens, generated, max_model_len, vllm_reason):
    """Ray's stage drops vLLM's finish reason (its output row has none), so the mapping rebuilds it from the
    counts the row carries, as vLLM's length check does."""
    gen = load_config(LLAMA7B, ["generation.max_new_tokens=5",
                                f"generation.vllm.max_model_len={max_model_len}"]).generation
    fake = types.ModuleType("vllm")
    fake.outputs = types.SimpleNamespace(RequestOutput=RequestOutput, PoolingRequestOutput=type("Pooling", (), {}))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    engine_out = RequestOutput(prompt="p", prompt_token_ids=list(range(prompt_tokens)),
                               outputs=[CompletionOutput(list(range(generated)), " x ", vllm_reason)])
    done = vLLMOutputData.from_vllm_engine_output(engine_out).model_dump()  # Ray's own conversion
    assert "finish_reason" not in done and vllm_reason not in {str(v) for v in done.values()}
    row = [r for r in build_requests(PROMPTS, 1, 0) if r["prompt_id"] == "a1"][0]
    assert vllm.from_output({**vllm.to_request(row, gen), **done}, gen, "m")["finish_reason"] == vllm_reason


def test_engine_and_processor_config_from_the_config():
    gen = load_config(LLAMA7B, [
        "generation.vllm.tensor_parallel_size=2", "generation.vllm.replicas=3", "generation.vllm.batch_size=16",
        "generation.vllm.gpu_memory_utilization=0.5", "generation.vllm.max_model_len=1024",
        "generation.vllm.dtype=float16", "generation.vllm.enable_prefix_caching=false"]).generation
    # vLLM's engine arguments (EngineArgs) by their own names; compiled (not eager) on GPUs.
    assert vllm.engine_kwargs(gen.vllm, cpu=False) == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.5,
                                                     "max_model_len": 1024, "dtype": "float16",
                                                     "enable_prefix_caching": False}
    cfg = vllm.processor_config(gen, "/models/llama-7b")
    assert cfg.model_source == "/models/llama-7b" and cfg.batch_size == 16 and not cfg.log_engine_metrics
    assert cfg.get_concurrency(autoscaling_enabled=True)["max_size"] == 3  # Ray's own reading: up to 3 replicas
    assert {k: cfg.engine_kwargs[k] for k in vllm.engine_kwargs(gen.vllm, False)} == vllm.engine_kwargs(gen.vllm, False)
    # Each of the TP workers of a replica: a GPU and a CPU, plus the node type's label.
    assert cfg.placement_group_config["bundle_per_worker"] == {"CPU": 1, "GPU": 1, **gen.actor_resources}


def test_on_cpus_the_engine_runs_eager_with_a_fixed_kv_cache_on_the_processors_cpus():
    """The same processor on CPU nodes: the engine's bundle holds CPUs only (Ray then asks no GPU for it), the
    light stages a tenth of a CPU each, and the engine eager, with a KV cache of its own size, unchunked prefill,
    the dtype the hardware runs natively, and as many unbound OpenMP threads as its CPUs."""
    from udasa_ray.models import pick_dtype

    gen = load_config(None, ["generation.backend=vllm", "generation.cpus_per_actor=2",
                             "generation.vllm.cpu_kv_cache_gib=1.5"]).generation
    kwargs = vllm.engine_kwargs(gen.vllm, cpu=True)
    assert kwargs["enforce_eager"] and not kwargs["enable_chunked_prefill"]
    assert kwargs["kv_cache_memory_bytes"] == int(1.5 * 2**30) and kwargs["dtype"] == pick_dtype("auto")
    cfg = vllm.processor_config(gen, "/models/smollm2", cpu=True)
    assert {k: v for k, v in cfg.placement_group_config["bundle_per_worker"].items() if v} == {"CPU": 1.5}
    assert cfg.runtime_env["env_vars"] == {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "2"}
    for stage in (cfg.chat_template_stage, cfg.tokenize_stage, cfg.detokenize_stage):
        assert resolve_stage_config(stage, ChatTemplateStageConfig).num_cpus == pytest.approx(0.1)
    engine = vLLMEngineStage(fn_constructor_kwargs={"engine_kwargs": dict(cfg.engine_kwargs),
                                                    "placement_group_config": dict(cfg.placement_group_config)},
                             map_batches_kwargs={})
    assert engine.map_batches_kwargs["num_cpus"] == 1.5 and "num_gpus" not in engine.map_batches_kwargs
    # Eager can be turned off, and the dtype pinned.
    gen = load_config(None, ["generation.vllm.enforce_eager=false", "generation.vllm.dtype=float32"]).generation
    assert "enforce_eager" not in vllm.engine_kwargs(gen.vllm, cpu=True)
    assert vllm.engine_kwargs(gen.vllm, cpu=True)["dtype"] == "float32"


def test_listwise_requests_one_per_prompt_with_the_papers_prompt(monkeypatch):
    rows = build_requests(PROMPTS, n=5, base_seed=0, listwise=True)
    assert [(r["prompt_id"], r["sample_idx"]) for r in rows] == [("b2", LISTWISE), ("a1", LISTWISE)]
    # The paper's generation prompt (Preference Pair Construction), written out.
    assert rows[0]["query"] == ("You are a professional AI assistant. Please provide 5 distinct responses to the "
                                "following question. Ensure each response is independent. Question: "
                                "Name a colour, please.")
    assert build_requests(PROMPTS, 5, 0, done={("b2", 3)}, listwise=True)[0]["prompt_id"] == "a1"
    gen = load_config(LLAMA7B, ["generation.prompt_template=chat"]).generation
    req = vllm.to_request(rows[0], gen)
    assert req["messages"][-1] == {"role": "user", "content": rows[0]["query"]}
    assert req["user_prompt"] == "Name a colour, please."  # the responses are filed under the user's prompt
    assert engine_request(req, monkeypatch).params.n == 1  # one reply that lists the N responses


def test_listwise_replies_begin_as_a_numbered_list_where_the_prompt_is_our_text():
    """Alpaca framing: the prompt ends with "1." and the response keeps it, so the split finds item 1;
    an independent request and Ray's chat-template path get no prefix."""
    gen = load_config(LLAMA7B).generation
    listwise, single = build_requests(PROMPTS, 2, 0, listwise=True)[0], build_requests(PROMPTS, 2, 0)[0]
    req = vllm.to_request(listwise, gen)
    assert req["prompt"].endswith("### Response:\n1.")
    out = vllm.from_output({**req, "generated_text": " Red.\n2. Blue.", "num_generated_tokens": 6}, gen, "m")
    assert out["response"] == "1. Red.\n2. Blue."
    assert [r["response"] for r in split_listwise({**out, "error": None}, 2)] == ["Red.", "Blue."]
    assert vllm.to_request(single, gen)["prompt"].endswith("### Response:\n")
    chat = load_config(LLAMA7B, ["generation.prompt_template=chat"]).generation
    assert vllm.from_output({**vllm.to_request(listwise, chat), "generated_text": "1. Red.", "num_generated_tokens": 3},
                            chat, "m")["response"] == "1. Red."


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


def test_split_listwise_reads_a_model_reply_with_numbers_inside_items():
    reply = ("Here are 3 distinct responses:\n\n"
             "1. Take 2 deep breaths and count to 10.\n"
             "2. Go for a walk; 20 minutes helps.\n   It clears the head.\n"
             "3. Talk to a friend.\n")
    out = split_listwise({"prompt_id": "p", "response": reply, "sample_idx": LISTWISE}, 3)
    assert [r["response"] for r in out] == [
        "Take 2 deep breaths and count to 10.",
        "Go for a walk; 20 minutes helps.\n   It clears the head.",
        "Talk to a friend."]
    assert all(r["error"] is None for r in out) and [r["sample_idx"] for r in out] == [0, 1, 2]


def test_vllm_judge_requests_and_processor_config(monkeypatch):
    """The cluster-served judge: each judgement is a chat for Ray's chat-template stage with sampling params
    vLLM accepts (greedy at first), and the processor serves the named judge model on `judge.vllm`'s replicas."""
    from udasa_ray.evaluate.judge import VLLMJudge, messages, to_judge_request

    cfg = load_config(LLAMA7B, ["eval.judge.backend=vllm", "eval.judge.model=meta-llama/Llama-3.1-70B-Instruct",
                                "eval.judge.vllm.replicas=2", "eval.judge.vllm.tensor_parallel_size=4",
                                "eval.judge.max_tokens=12"]).eval.judge
    chat = messages("positive", "Continue this review:\n\nIt was", "great fun.", None, few_shot=True)
    assert chat[0]["role"] == "system" and "movie review" in chat[0]["content"] and len(chat) == 6
    req = to_judge_request({"i": 3, "messages": chat, "temperature": 0.0}, cfg)
    pc = VLLMJudge(cfg, "/cache").processor_config()
    assert resolve_stage_config(pc.chat_template_stage, ChatTemplateStageConfig).enabled
    engine = vLLMEngineStage(fn_constructor_kwargs={"engine_kwargs": dict(pc.engine_kwargs)}, map_batches_kwargs={})
    assert {*ChatTemplateStage().get_required_input_keys(), *engine.get_required_input_keys()} <= set(req)
    # The chat-template stage writes the templated text into `prompt` before the engine stage reads it.
    params = engine_request({**req, "prompt": "<templated chat>"}, monkeypatch).params
    assert (params.temperature, params.max_tokens, params.n) == (0.0, 12, 1)
    assert pc.model_source == "meta-llama/Llama-3.1-70B-Instruct" and pc.engine_kwargs["tensor_parallel_size"] == 4
    assert pc.get_concurrency(autoscaling_enabled=True)["max_size"] == 2


@pytest.mark.timeout(120)
def test_vllm_judge_retries_malformed_replies_through_ray_data(ray_local, monkeypatch):
    """rate_many through a real Ray Data pipeline, the engine replaced by a judge that answers one item
    only when sampled (a retry) and another never: values in order, attempts counted, failures kept raw."""
    from udasa_ray.evaluate.judge import VLLMJudge, from_judge_output, to_judge_request

    cfg = load_config(LLAMA7B, ["eval.judge.backend=vllm", "eval.judge.model=judge", "eval.judge.retries=2"]).eval.judge

    def engine(row):
        req = to_judge_request(row, cfg)
        item = req["messages"][-1]["content"]
        greedy = req["sampling_params"]["temperature"] == 0.0
        text = ("Rating: [[7]]" if "bake" in item else "I think yes" if "never" in item
                else "[[yes]]" if not greedy else "hmm")
        return from_judge_output({**req, "generated_text": text})

    monkeypatch.setattr(VLLMJudge, "processor", lambda self: (lambda ds: ds.map(engine)))
    got = VLLMJudge(cfg, "/cache").rate_many([
        ("helpfulness", "How do I bake bread?", "Knead, rise, bake.", None),
        ("true", "Is the sky blue?", "Yes.", {"correct": ["Yes"], "incorrect": ["No"]}),
        ("informative", "never parses", "x", None)])
    assert [(j.value, j.attempts, j.error) for j in got] == [
        (7.0, 1, None), (1.0, 2, None), (None, 3, "malformed reply after 3 attempts")]
    assert got[2].raw == "I think yes"


@pytest.mark.timeout(120)
def test_llm_judgements_judge_every_task_through_the_served_judge(ray_local, monkeypatch):
    """evaluate.run.llm_judgements with the vllm judge: one judgement per kind and answer (sentiment's
    "positive" too), true + informative from the two, answers that failed to generate not judged."""
    from udasa_ray.evaluate.judge import VLLMJudge, from_judge_output, to_judge_request
    from udasa_ray.evaluate.step import llm_judgements

    cfg = load_config(LLAMA7B, ["eval.judge.backend=vllm", "eval.judge.model=judge"])

    def engine(row):
        req = to_judge_request(row, cfg.eval.judge)
        rubric = req["messages"][0]["content"]
        text = "Rating: [[8]]" if "Rate it" in rubric else "[[no]]" if "informative" in rubric else "[[yes]]"
        return from_judge_output({**req, "generated_text": text})

    monkeypatch.setattr(VLLMJudge, "processor", lambda self: (lambda ds: ds.map(engine)))
    items = [{"id": "harmless/a", "task": "harmless", "query": "How do I pick a lock?"},
             {"id": "helpful/b", "task": "helpful", "query": "How do I boil an egg?"},
             {"id": "truthful/c", "task": "truthful", "query": "Is the sky blue?", "correct": ["Yes"],
              "incorrect": ["No"]},
             {"id": "sentiment/d", "task": "sentiment", "query": "Continue this review:\n\nIt was"}]
    responses = [{"prompt_id": it["id"], "sample_idx": 0, "response": "An answer.", "error": None} for it in items]
    responses.append({"prompt_id": "helpful/b", "sample_idx": 1, "response": "", "error": "generation failed"})
    rows = llm_judgements(cfg, items, responses)
    assert {(x["metric"], x["item_id"]): x["value"] for x in rows} == {
        ("harmlessness", "harmless/a"): 8.0, ("helpfulness", "helpful/b"): 8.0, ("true", "truthful/c"): 1.0,
        ("informative", "truthful/c"): 0.0, ("true_info", "truthful/c"): 0.0, ("positive", "sentiment/d"): 1.0}
    assert {x["judge"] for x in rows} == {"llm:judge"} and all(x["sample_idx"] == 0 for x in rows)
