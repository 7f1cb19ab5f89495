"""Value checks a type cannot express: one rule table per config section, one loop that raises a
ConfigError naming the key. What a sweep needs of other sections is checked when one starts
(tune/sweep.py), not for every run."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from udasa_ray.config.loader import ConfigError
from udasa_ray.config.schema import VLLM_LIGHT_CPUS, Config
from udasa_ray.evaluate.registry import is_objective, objective_choices

# TRL 1.16's DPO loss types (DPOConfig.loss_type; tests/test_train.py checks them against TRL's trainer).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def _loss_lists(t) -> list[list[str]]:  # noqa: ANN001
    """The loss-type lists training uses: one per stage if given, else loss_type for all."""
    return t.stage_loss_types if t.stage_loss_types is not None else [t.loss_type]


def _losses_ok(t) -> bool:  # noqa: ANN001
    return all(x and set(x) <= set(DPO_LOSSES) and len(set(x)) == len(x) for x in [t.loss_type, *_loss_lists(t)])


def _weights_ok(t) -> bool:  # noqa: ANN001
    return t.loss_weights is None or (min(t.loss_weights) >= 0
                                      and all(len(x) == len(t.loss_weights) for x in _loss_lists(t)))


def _increasing(xs: list[float]) -> bool:
    return all(a < b for a, b in zip(xs, xs[1:], strict=False))


# section -> [(key within the section, holds, requirement)]: `holds` gets the section's object.
Rule = tuple[str, Callable[[Any], bool], str]
RULES: dict[str, list[Rule]] = {
    "data": [
        ("max_prompt_chars", lambda d: d.max_prompt_chars >= 1, ">= 1"),
        ("limit", lambda d: d.limit is None or d.limit >= 1, ">= 1 or null"),
        ("heldout_prompts", lambda d: d.heldout_prompts >= 0, ">= 0"),
    ],
    "generation": [
        ("n", lambda g: g.n >= 2, ">= 2 to compare responses"),
        ("temperature", lambda g: g.temperature > 0, "> 0"),
        ("top_p", lambda g: 0 < g.top_p <= 1, "in (0, 1]"),
        ("max_new_tokens", lambda g: g.max_new_tokens >= 1, ">= 1"),
        ("batch_size", lambda g: g.batch_size >= 1, ">= 1"),
        ("num_actors", lambda g: g.num_actors >= 1, ">= 1"),
        ("cpus_per_actor", lambda g: g.cpus_per_actor > 0, "> 0"),
        ("vllm.tensor_parallel_size", lambda g: g.vllm.tensor_parallel_size >= 1, ">= 1"),
        ("vllm.replicas", lambda g: g.vllm.replicas >= 1, ">= 1"),
        ("vllm.gpu_memory_utilization", lambda g: 0 < g.vllm.gpu_memory_utilization <= 1, "in (0, 1]"),
        ("vllm.cpu_kv_cache_gib", lambda g: g.vllm.cpu_kv_cache_gib > 0, "> 0"),
        ("cpus_per_actor", lambda g: g.backend != "vllm" or g.cpus_per_actor > VLLM_LIGHT_CPUS,
         f"> {VLLM_LIGHT_CPUS} with the vllm backend (its light stages take that much of it)"),
        ("decoding", lambda g: g.decoding == "sample" or (g.backend == "hf" and g.mode == "independent"),
         "sample with the vllm backend or listwise mode (RAIN runs on hf, one answer a request)"),
        ("rain.segment_tokens", lambda g: g.rain.segment_tokens >= 1, ">= 1"),
        ("rain.candidates", lambda g: g.rain.candidates >= 1, ">= 1"),
        ("rain.depth", lambda g: g.rain.depth >= 1, ">= 1"),
        ("rain.min_searches", lambda g: 1 <= g.rain.min_searches <= g.rain.max_searches,
         ">= 1 and <= rain.max_searches"),
        ("rain.value_threshold", lambda g: 0 <= g.rain.value_threshold <= 1, "in [0, 1]"),
        ("rain.exploration", lambda g: g.rain.exploration >= 0, ">= 0"),
        ("rain.question", lambda g: "{prompt}" in g.rain.question and "{response}" in g.rain.question,
         "a text containing {prompt} and {response}"),
        ("rain.labels", lambda g: len(g.rain.labels) >= 2 and len(set(g.rain.labels)) == len(g.rain.labels),
         "two or more distinct words, the good answer first"),
    ],
    "scoring": [
        ("batch_size", lambda s: s.batch_size >= 1, ">= 1"),
        ("num_actors", lambda s: s.num_actors >= 1, ">= 1"),
        ("cpus_per_actor", lambda s: s.cpus_per_actor > 0, "> 0"),
        ("fusion_temperature", lambda s: s.fusion_temperature > 0, "> 0"),
        ("max_error_rate", lambda s: 0 <= s.max_error_rate <= 1, "in [0, 1]"),
        ("fusion_weights", lambda s: s.fusion_weights is None or (
            len(s.fusion_weights) == 3 and min(s.fusion_weights) >= 0 and sum(s.fusion_weights) > 0),
         "three non-negative weights (sem, fact, val), not all 0, or null"),
        ("factual.model", lambda s: s.factual.backend != "hf_nli" or not s.factual.model.startswith("bundled:"),
         "a Hugging Face NLI model name or path for the hf_nli backend"),
        ("value.model", lambda s: s.value.backend != "hf_classifier" or bool(s.value.model),
         "a model name or path for the hf_classifier backend"),
        ("value.endpoint", lambda s: s.value.backend != "moderation_http" or bool(s.value.endpoint),
         "the endpoint's base URL for the moderation_http backend"),
    ],
    "pairs": [
        ("dimensions", lambda p: bool(p.dimensions) and len(set(p.dimensions)) == len(p.dimensions),
         "one or more distinct of sem, fact, val"),
    ],
    "curriculum": [
        ("thresholds", lambda c: _increasing(c.thresholds), "increasing (τ1 < τ2 < ...)"),
        ("thresholds", lambda c: len(c.thresholds) <= 3, "at most 3 values (4 stages)"),
    ],
    "train": [
        ("lr_stage1", lambda t: t.lr_stage1 > 0, "> 0"),
        ("lr", lambda t: t.lr > 0, "> 0"),
        ("warmup_steps", lambda t: t.warmup_steps >= 0, ">= 0"),
        ("decay_steps", lambda t: t.decay_steps >= 0, ">= 0"),
        ("max_steps_per_stage", lambda t: t.max_steps_per_stage >= 1, ">= 1"),
        ("epochs_per_stage", lambda t: t.epochs_per_stage > 0, "> 0"),
        ("total_steps", lambda t: t.total_steps >= 0, ">= 0 (0: each stage its own)"),
        ("beta", lambda t: t.beta > 0, "> 0"),
        ("beta_last_stage", lambda t: t.beta_last_stage > 0, "> 0"),
        ("batch_size", lambda t: t.batch_size >= 1, ">= 1"),
        ("grad_accum", lambda t: t.grad_accum >= 1, ">= 1"),
        ("max_length", lambda t: t.max_length >= 16, ">= 16"),
        ("eval_fraction", lambda t: 0 <= t.eval_fraction < 1, "in [0, 1)"),
        ("eval_steps", lambda t: t.eval_steps >= 1, ">= 1"),
        ("patience", lambda t: t.patience >= 1, ">= 1"),
        ("reward_saturation", lambda t: 0 < t.reward_saturation <= 1, "in (0, 1]"),
        ("num_workers", lambda t: t.num_workers >= 1, ">= 1"),
        ("cpus_per_worker", lambda t: t.cpus_per_worker > 0, "> 0"),
        ("max_failures", lambda t: t.max_failures >= -1, ">= 0, or -1 for no limit"),
        ("ld_alpha", lambda t: t.ld_alpha is None or 0 <= t.ld_alpha <= 1, "in [0, 1] or null"),
        ("loss_type", _losses_ok, f"one or more distinct of {', '.join(DPO_LOSSES)} (also each of stage_loss_types)"),
        ("loss_weights", _weights_ok, "null, or one non-negative weight per loss type (of every stage's list)"),
        ("label_smoothing", lambda t: 0 <= t.label_smoothing < 0.5, "in [0, 0.5)"),
        ("label_smoothing", lambda t: t.label_smoothing > 0 or not any("exo_pair" in x for x in _loss_lists(t)),
         "> 0 for the exo_pair loss"),
        # LoRA's fields matter only when it is on.
        ("lora.r", lambda t: not t.lora.enabled or t.lora.r >= 1, ">= 1"),
        ("lora.alpha", lambda t: not t.lora.enabled or t.lora.alpha > 0, "> 0"),
        ("lora.dropout", lambda t: not t.lora.enabled or 0 <= t.lora.dropout < 1, "in [0, 1)"),
        ("lora.target_modules", lambda t: not t.lora.enabled or bool(t.lora.target_modules), "at least one module"),
        ("lora.lr_stage1", lambda t: not t.lora.enabled or t.lora.lr_stage1 > 0, "> 0"),
        ("lora.lr", lambda t: not t.lora.enabled or t.lora.lr > 0, "> 0"),
    ],
    "eval": [
        ("tasks", lambda e: bool(e.tasks) and len(set(e.tasks)) == len(e.tasks), "distinct task names"),
        ("samples", lambda e: e.samples >= 1, ">= 1"),
        ("limit", lambda e: e.limit is None or e.limit >= 1, ">= 1 or null"),
        ("temperature", lambda e: e.temperature > 0, "> 0"),
        ("top_p", lambda e: 0 < e.top_p <= 1, "in (0, 1]"),
        ("sentiment_prompt", lambda e: "{opening}" in e.sentiment_prompt, "a text containing {opening}"),
        ("bootstrap", lambda e: e.bootstrap >= 100, "at least 100 resamples"),
        ("judge.base_url", lambda e: e.judge.backend != "llm" or bool(e.judge.base_url),
         "the endpoint's base URL for the llm judge"),
        ("judge.model", lambda e: e.judge.backend == "offline" or bool(e.judge.model),
         "a model name for the llm or vllm judge"),
        ("judge.retries", lambda e: e.judge.retries >= 0, ">= 0"),
        ("judge.concurrency", lambda e: e.judge.concurrency >= 1, ">= 1"),
        ("gcg.steps", lambda e: e.gcg.steps >= 1, ">= 1"),
        ("gcg.search_width", lambda e: e.gcg.search_width >= 1, ">= 1"),
        ("gcg.topk", lambda e: e.gcg.topk >= 1, ">= 1"),
        ("gcg.suffix_tokens", lambda e: e.gcg.suffix_tokens >= 1, ">= 1"),
    ],
    "tune": [
        ("objective", lambda tn: is_objective(tn.objective), objective_choices()),
        ("stages", lambda tn: bool(tn.stages) and all(1 <= k <= 4 for k in tn.stages), "numbers in 1..4"),
        ("tau1", lambda tn: bool(tn.tau1) and all(0 <= x <= 1 for x in tn.tau1), "values in [0, 1]"),
        ("tau2", lambda tn: bool(tn.tau2) and all(0 <= x <= 1 for x in tn.tau2), "values in [0, 1]"),
        ("tau1", lambda tn: tn.search == "grid" or (len(tn.tau1) == 2 and len(tn.tau2) == 2
                                                     and tn.tau1[0] + tn.min_gap <= tn.tau2[1]),
         "[low, high] ranges for optuna (tau1 and tau2) that leave room for tau1 + min_gap <= tau2"),
        ("num_samples", lambda tn: tn.num_samples >= 1, ">= 1"),
        ("max_concurrent_trials", lambda tn: tn.max_concurrent_trials >= 1, ">= 1"),
        ("grace_period", lambda tn: tn.grace_period >= 1, ">= 1"),
        ("trial_cpus", lambda tn: tn.trial_cpus > 0, "> 0 (Ray rejects 0)"),
    ],
}


def validate(cfg: Config) -> None:
    """Raise ConfigError for the first rule a value breaks: `section.key: must be ..., got ...`."""
    for section, rules in RULES.items():
        obj = getattr(cfg, section)
        for key, holds, requirement in rules:
            if not holds(obj):
                value = operator.attrgetter(key)(obj)
                raise ConfigError(f"{section}.{key}: must be {requirement}, got {value!r}")
    stages = len(cfg.curriculum.thresholds) + 1
    if cfg.train.stage_loss_types is not None and len(cfg.train.stage_loss_types) != stages:
        raise ConfigError(f"train.stage_loss_types: must have one list per curriculum stage ({stages}), got "
                          f"{len(cfg.train.stage_loss_types)}")
    if cfg.eval.decoding == "rain" and cfg.generation.backend != "hf":
        raise ConfigError(f"eval.decoding: rain runs on the hf generation backend, got generation.backend="
                          f"{cfg.generation.backend!r}")
