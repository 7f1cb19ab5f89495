"""Typed run configuration: dataclasses loaded from YAML, with dotted command-line overrides.

Every number the pipeline uses lives here, so a recipe (configs/*.yaml) is the whole story of
a run and its hash tells whether a finished stage can be reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config key is unknown, mistyped or impossible; the message names the key."""


@dataclass
class ModelsConfig:
    policy: str = "bundled:smollm2-135m-instruct"
    # Where bundled models are unpacked once (GGUF de-quantized, zips extracted).
    cache_dir: str = "~/.cache/udasa-ray"


@dataclass
class DataConfig:
    # A file (Alpaca JSON, JSONL, Parquet, CSV), "bundled:prompts", or "hf:<dataset name>".
    source: str = "bundled:prompts"
    hf_split: str = "train"
    max_prompt_chars: int = 4000
    # Keep only the first `limit` valid prompts (None = all); small runs and tests.
    limit: int | None = None
    # Prompts set aside (a seeded draw) for the held-out check of base vs aligned; never trained on.
    heldout_prompts: int = 0
    seed: int = 0


@dataclass
class VLLMConfig:
    tensor_parallel_size: int = 1
    replicas: int = 1
    batch_size: int = 64
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 4096
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"
    enable_prefix_caching: bool = True


@dataclass
class GenerationConfig:
    backend: Literal["hf", "vllm"] = "hf"
    # independent: N seeded samples of the prompt; listwise: one request for N distinct
    # responses (the paper's prompt), parsed into N (max_new_tokens then covers all N).
    mode: Literal["independent", "listwise"] = "independent"
    n: int = 5
    temperature: float = 0.8
    top_p: float = 0.9
    max_new_tokens: int = 128
    seed: int = 0
    # "chat": the tokenizer's chat template; "alpaca": for base models without one.
    prompt_template: Literal["chat", "alpaca"] = "chat"
    system_prompt: str | None = None
    # hf backend: requests (prompt x sample) per forward batch, actor pool size, threads.
    batch_size: int = 40
    num_actors: int = 1
    cpus_per_actor: float = 2.0
    # Custom Ray resources each hf actor asks for, e.g. a node type's label, so that an autoscaling
    # cluster starts (and later removes) the nodes that carry it.
    actor_resources: dict[str, float] = field(default_factory=dict)
    # "auto": bfloat16 where the hardware runs it natively, else float32 (models.pick_dtype).
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass
class SemanticConfig:
    model: str = "bundled:all-minilm-l6-v2"
    batch_size: int = 64


@dataclass
class FactualConfig:
    # aegis_onnx: bundled contradiction model; hf_nli: a 3-way NLI model by name; policy_judge:
    # models.policy answering yes/no/maybe. paper: premise = prompt; cross_response: the others.
    backend: Literal["aegis_onnx", "hf_nli", "policy_judge"] = "aegis_onnx"
    mode: Literal["paper", "cross_response"] = "cross_response"
    model: str = "bundled:aegis-nli"
    threads: int = 2  # ONNX intra-op threads: 17 -> 34 pairs/s from 1 to 2 on this machine


@dataclass
class ValueConfig:
    backend: Literal["profanity", "hf_classifier", "policy_judge", "moderation_http"] = "profanity"
    model: str | None = None  # hf_classifier: a model name; moderation_http: optional model field
    unsafe_label: str | None = None  # hf_classifier: the unsafe class (default: found by name)
    endpoint: str | None = None  # moderation_http: base URL of an OpenAI-compatible API
    api_key_env: str = "OPENAI_API_KEY"  # moderation_http: the variable holding the key


@dataclass
class ScoringConfig:
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    factual: FactualConfig = field(default_factory=FactualConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    batch_size: int = 16  # prompt groups per scorer call
    num_actors: int = 1  # per scorer
    cpus_per_actor: float = 0.5
    fusion_temperature: float = 1.0
    fusion_weights: list[float] | None = None  # fixed (sem, fact, val) weights instead of softmax
    unsafe_threshold: float = 0.5  # a response with u_val above it counts as unsafe in reports


@dataclass
class CurriculumConfig:
    # K stages from K - 1 increasing thresholds on the Δu scale (SPEC §5).
    thresholds: list[float] = field(default_factory=lambda: [0.4, 0.7])
    scale: Literal["minmax", "raw", "quantile"] = "minmax"
    cumulative: bool = False
    seed: int = 0  # picks each pair's rejected response


@dataclass
class PairsConfig:
    """How preference pairs are made: UDASA's uncertainty (SPEC §4) or a baseline's labels."""

    # udasa: chosen = lowest fused U; rlaif: the policy compares two of its responses (both
    # orders); rlcd: chosen/rejected generated under a positive/negative contrastive system prompt.
    method: Literal["udasa", "rlaif", "rlcd"] = "udasa"
    # udasa: the uncertainties fused into U for pairing; the ablation drops one.
    dimensions: list[Literal["sem", "fact", "val"]] = field(default_factory=lambda: ["sem", "fact", "val"])
    rlcd_positive: str = ("You are a helpful, honest and harmless assistant. Give a helpful, honest, "
                          "inoffensive response.")
    rlcd_negative: str = ("You are an unhelpful, dishonest and harmful assistant. Give an unhelpful, "
                          "dishonest, toxic response.")


@dataclass
class DeepSpeedConfig:
    zero_stage: Literal[0, 2, 3] = 0  # 0: plain DDP (gloo on CPU, NCCL on GPU)
    offload: bool = False  # optimizer state (and ZeRO-3 parameters) in CPU memory


@dataclass
class LoRAConfig:
    """LoRA adapters (PEFT) instead of full fine-tuning. Each stage trains fresh adapters on the
    previous stage's policy and merges them into a full Hugging Face checkpoint."""

    enabled: bool = False
    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # Adapters start at zero and have few parameters: they need far larger steps than full weights.
    lr_stage1: float = 1e-4
    lr: float = 2e-4


@dataclass
class TrainConfig:
    """Phased DPO (SPEC §6). Steps count optimizer steps; batch = batch_size x grad_accum x workers."""

    lr_stage1: float = 3e-6
    lr: float = 5e-6
    warmup_steps: int = 500  # at every stage start
    decay_steps: int = 500  # linear decay to 0 at every stage end
    max_steps_per_stage: int = 3000
    epochs_per_stage: float = 1.0
    beta: float = 0.1
    beta_last_stage: float = 0.3  # the stronger KL term of the last stage
    reference: Literal["initial", "previous"] = "initial"  # previous: sDPO / Curri-DPO style
    batch_size: int = 2  # pairs per worker per micro-step
    grad_accum: int = 1
    max_length: int = 512  # prompt + response tokens
    precompute_ref: bool = True  # reference log-probs once per stage, not every step
    eval_fraction: float = 0.1  # pairs held out (from every stage) for early stopping
    eval_steps: int = 50
    patience: int = 3  # evaluations without a lower eval loss before a stage stops
    reward_saturation: float = 0.98  # stop a stage once eval reward accuracy reaches it
    num_workers: int = 1
    cpus_per_worker: float = 2.0
    use_gpu: bool = False
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # bfloat16: mixed precision
    gradient_checkpointing: bool = False  # trade compute for activation memory (7B/30B)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # its own learning rates replace lr_stage1 / lr
    # LD-DPO (TRL's ld_alpha): weight of the tokens past the shorter response's length in the log-probs;
    # None = plain DPO, < 1 keeps DPO from preferring an answer for being shorter or longer.
    ld_alpha: float | None = None
    # Where ranks share dataset and reference log-prob caches; "" = <run>/train/work.
    # Multi-node runs need it (and the run directory) on shared storage.
    work_dir: str = ""
    seed: int = 0


@dataclass
class JudgeConfig:
    """Who rates harmlessness, helpfulness and truthfulness of generations."""

    # offline: the project's scorers and classifiers; llm: an OpenAI-compatible chat endpoint.
    backend: Literal["offline", "llm"] = "offline"
    base_url: str | None = None  # e.g. http://judge-head:8000/v1 (a vLLM or `transformers serve` server)
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never logged)
    few_shot: bool = True  # two worked examples before each item: small judges keep the format
    max_tokens: int = 16
    temperature: float = 0.0
    retries: int = 2  # extra attempts after a malformed reply or a transient HTTP error
    timeout_s: float = 120.0
    concurrency: int = 4


@dataclass
class EvalConfig:
    """`udasa eval`: the paper's four tasks (SPEC §7). A source is "bundled:eval/<task>" (small sets
    written for this project), a local file (JSON/JSONL/Parquet/CSV) or "hf:DATASET[:CONFIG][#DATA_DIR]"."""

    tasks: list[Literal["harmless", "helpful", "truthful", "sentiment"]] = field(
        default_factory=lambda: ["harmless", "helpful", "truthful", "sentiment"])
    harmless_source: str = "bundled:eval/harmless"  # e.g. hf:Anthropic/hh-rlhf#harmless-base
    helpful_source: str = "bundled:eval/helpful"  # e.g. hf:Anthropic/hh-rlhf#helpful-base
    truthful_source: str = "bundled:eval/truthful"  # e.g. hf:truthfulqa/truthful_qa (generation + multiple_choice)
    sentiment_source: str = "bundled:eval/sentiment"  # e.g. hf:stanfordnlp/imdb (review openings)
    hf_split: str | None = None  # None: each task's usual split (test / validation)
    limit: int | None = None  # items per task
    samples: int = 2  # responses per prompt
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 96
    seed: int = 1234
    opening_words: int = 8  # IMDB review opening length
    sentiment_prompt: str = "Continue this movie review in a positive tone:\n\n{opening}"
    sentiment_classifier: str = "vader"  # or a Hugging Face sentiment model name
    informative_threshold: float = 0.3  # SBERT cosine to the question below which an answer is off-topic
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    bootstrap: int = 2000  # resamples (of prompts) for the 95% intervals
    num_cpus: float = 2.0  # the scoring task: classifiers and multiple-choice log-likelihoods
    num_gpus: float = 0.0


@dataclass
class TuneConfig:
    """`udasa tune`: Ray Tune over τ1 < τ2 and the number of stages, on a run's scored pairs."""

    search: Literal["grid", "optuna"] = "grid"
    # grid: the values tried; optuna: [low, high] of each threshold's range.
    tau1: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5])
    tau2: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.8])
    stages: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    min_gap: float = 0.05  # optuna: τ2 >= τ1 + min_gap
    num_samples: int = 8  # optuna: trials
    # pair_accuracy: held-out pairs' reward accuracy of the final policy (from training's evals);
    # heldout_U: mean fused U of its answers to the held-out prompts (lower is better);
    # eval:<metric>: an evaluation-task metric, e.g. eval:harmlessness.
    objective: str = "pair_accuracy"
    asha: bool = True  # stop trials whose stage metric trails, after `grace_period` stages
    grace_period: int = 1
    max_concurrent_trials: int = 1
    trial_cpus: float = 0.05  # the trial function itself; its Train workers ask for their own
    worker_cpus: float | None = None  # Train workers' CPUs in trials (None: train.cpus_per_worker)
    seed: int = 0


@dataclass
class RayConfig:
    # None: join RAY_ADDRESS if set, else start a local Ray.
    address: str | None = None
    num_cpus: int | None = None


PLACEMENT_ONLY = [("generation", "actor_resources")]


@dataclass
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """Hash of the named sections: a stage reruns only when what it reads changed. Fields that
        only say where work runs (PLACEMENT_ONLY) are left out: a run moved to another cluster keeps
        its finished stages."""
        d = self.to_dict()
        for section, key in PLACEMENT_ONLY:
            d[section].pop(key)
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to `tp` (int -> float only), or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(key, value, a)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(repr, typing.get_args(tp)))
            raise ConfigError(f"{key}: must be one of {choices}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping with string keys, got {value!r}")
        _, item_tp = typing.get_args(tp)
        return {k: _check_type(f"{key}.{k}", v, item_tp) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _type_name(tp: Any) -> str:
    return " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(tp))


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _check_type(prefix + k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'generation.n=5' -> {'generation': {'n': 5}}; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"{text}: an override is key=value, e.g. generation.n=5")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    out: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        if not part:
            raise ConfigError(f"{key}: empty part in dotted key")
        out = {part: out}
    return out


def validate(cfg: Config) -> None:
    """Reject values that type-check but make no sense."""
    g = cfg.generation
    rules: list[tuple[bool, str]] = [
        (g.n >= 2, f"generation.n: must be >= 2 to compare responses, got {g.n}"),
        (g.temperature > 0, f"generation.temperature: must be > 0, got {g.temperature}"),
        (0 < g.top_p <= 1, f"generation.top_p: must be in (0, 1], got {g.top_p}"),
        (g.max_new_tokens >= 1, f"generation.max_new_tokens: must be >= 1, got {g.max_new_tokens}"),
        (g.batch_size >= 1, f"generation.batch_size: must be >= 1, got {g.batch_size}"),
        (g.num_actors >= 1, f"generation.num_actors: must be >= 1, got {g.num_actors}"),
        (g.cpus_per_actor > 0, f"generation.cpus_per_actor: must be > 0, got {g.cpus_per_actor}"),
        (g.vllm.tensor_parallel_size >= 1, "generation.vllm.tensor_parallel_size: must be >= 1"),
        (g.vllm.replicas >= 1, "generation.vllm.replicas: must be >= 1"),
        (0 < g.vllm.gpu_memory_utilization <= 1, "generation.vllm.gpu_memory_utilization: must be in (0, 1]"),
        (cfg.data.max_prompt_chars >= 1, "data.max_prompt_chars: must be >= 1"),
        (cfg.data.limit is None or cfg.data.limit >= 1, f"data.limit: must be >= 1, got {cfg.data.limit}"),
        (cfg.train.lr_stage1 > 0, f"train.lr_stage1: must be > 0, got {cfg.train.lr_stage1}"),
        (cfg.train.lr > 0, f"train.lr: must be > 0, got {cfg.train.lr}"),
        (cfg.train.warmup_steps >= 0, f"train.warmup_steps: must be >= 0, got {cfg.train.warmup_steps}"),
        (cfg.train.max_steps_per_stage >= 1, "train.max_steps_per_stage: must be >= 1"),
        (cfg.train.beta > 0, f"train.beta: must be > 0, got {cfg.train.beta}"),
        (cfg.train.beta_last_stage > 0, "train.beta_last_stage: must be > 0"),
        (cfg.train.decay_steps >= 0, "train.decay_steps: must be >= 0"),
        (cfg.train.epochs_per_stage > 0, "train.epochs_per_stage: must be > 0"),
        (cfg.train.batch_size >= 1 and cfg.train.grad_accum >= 1, "train.batch_size, train.grad_accum: must be >= 1"),
        (cfg.train.max_length >= 16, "train.max_length: must be >= 16"),
        (0 <= cfg.train.eval_fraction < 1, "train.eval_fraction: must be in [0, 1)"),
        (cfg.train.eval_steps >= 1 and cfg.train.patience >= 1, "train.eval_steps, train.patience: must be >= 1"),
        (0 < cfg.train.reward_saturation <= 1, "train.reward_saturation: must be in (0, 1]"),
        (cfg.train.num_workers >= 1, "train.num_workers: must be >= 1"),
        (cfg.train.cpus_per_worker > 0, "train.cpus_per_worker: must be > 0"),
        (cfg.data.heldout_prompts >= 0, "data.heldout_prompts: must be >= 0"),
        (cfg.train.ld_alpha is None or 0 <= cfg.train.ld_alpha <= 1, "train.ld_alpha: must be in [0, 1] or null"),
    ]
    lora = cfg.train.lora
    if lora.enabled:
        rules += [
            (lora.r >= 1, f"train.lora.r: must be >= 1, got {lora.r}"),
            (lora.alpha > 0, f"train.lora.alpha: must be > 0, got {lora.alpha}"),
            (0 <= lora.dropout < 1, f"train.lora.dropout: must be in [0, 1), got {lora.dropout}"),
            (bool(lora.target_modules), "train.lora.target_modules: name at least one module"),
            (lora.lr_stage1 > 0 and lora.lr > 0, "train.lora.lr_stage1, train.lora.lr: must be > 0"),
        ]
    for ok, msg in rules:
        if not ok:
            raise ConfigError(msg)
    s = cfg.scoring
    rules = [
        (s.batch_size >= 1, "scoring.batch_size: must be >= 1"),
        (s.num_actors >= 1, "scoring.num_actors: must be >= 1"),
        (s.cpus_per_actor > 0, "scoring.cpus_per_actor: must be > 0"),
        (s.fusion_temperature > 0, f"scoring.fusion_temperature: must be > 0, got {s.fusion_temperature}"),
        (s.fusion_weights is None or (len(s.fusion_weights) == 3 and min(s.fusion_weights) >= 0
                                      and sum(s.fusion_weights) > 0),
         f"scoring.fusion_weights: three non-negative weights (sem, fact, val), got {s.fusion_weights}"),
        (s.factual.backend != "hf_nli" or not s.factual.model.startswith("bundled:"),
         "scoring.factual.model: hf_nli needs a Hugging Face NLI model name or path"),
        (s.value.backend != "hf_classifier" or bool(s.value.model),
         "scoring.value.model: hf_classifier needs a model name or path"),
        (s.value.backend != "moderation_http" or bool(s.value.endpoint),
         "scoring.value.endpoint: moderation_http needs the endpoint's base URL"),
    ]
    for ok, msg in rules:
        if not ok:
            raise ConfigError(msg)
    th = cfg.curriculum.thresholds
    for i, (a, b) in enumerate(zip(th, th[1:], strict=False)):
        if not a < b:
            raise ConfigError(
                f"curriculum.thresholds: must increase (τ{i + 1} < τ{i + 2}), got {th}"
            )
    if len(th) > 3:
        raise ConfigError(f"curriculum.thresholds: at most 3 (4 stages), got {len(th)}")
    dims = cfg.pairs.dimensions
    if not dims or len(set(dims)) != len(dims):
        raise ConfigError(f"pairs.dimensions: one or more distinct of sem, fact, val, got {dims}")
    e = cfg.eval
    rules = [
        (bool(e.tasks) and len(set(e.tasks)) == len(e.tasks), f"eval.tasks: distinct task names, got {e.tasks}"),
        (e.samples >= 1, f"eval.samples: must be >= 1, got {e.samples}"),
        (e.limit is None or e.limit >= 1, f"eval.limit: must be >= 1, got {e.limit}"),
        (e.temperature > 0 and 0 < e.top_p <= 1, "eval.temperature must be > 0 and eval.top_p in (0, 1]"),
        ("{opening}" in e.sentiment_prompt, "eval.sentiment_prompt: must contain {opening}"),
        (e.bootstrap >= 100, f"eval.bootstrap: at least 100 resamples, got {e.bootstrap}"),
        (e.judge.backend != "llm" or bool(e.judge.base_url and e.judge.model),
         "eval.judge: the llm backend needs base_url and model"),
        (e.judge.retries >= 0 and e.judge.concurrency >= 1, "eval.judge: retries >= 0, concurrency >= 1"),
    ]
    for ok, msg in rules:
        if not ok:
            raise ConfigError(msg)
    tn = cfg.tune
    metric = tn.objective.removeprefix("eval:")
    rules = [
        (tn.objective in ("pair_accuracy", "heldout_U")
         or (tn.objective.startswith("eval:") and metric in EVAL_METRICS),
         f"tune.objective: pair_accuracy, heldout_U or eval:<{'|'.join(EVAL_METRICS)}>, got {tn.objective!r}"),
        (bool(tn.stages) and all(1 <= k <= 4 for k in tn.stages), f"tune.stages: numbers in 1..4, got {tn.stages}"),
        (bool(tn.tau1) and bool(tn.tau2) and all(0 <= x <= 1 for x in tn.tau1 + tn.tau2),
         "tune.tau1, tune.tau2: values in [0, 1]"),
        (tn.search == "grid" or (len(tn.tau1) == 2 and len(tn.tau2) == 2 and tn.tau1[0] + tn.min_gap <= tn.tau2[1]),
         "tune.tau1, tune.tau2: optuna takes [low, high] ranges that leave room for tau1 + min_gap <= tau2"),
        (tn.num_samples >= 1 and tn.max_concurrent_trials >= 1 and tn.grace_period >= 1,
         "tune.num_samples, max_concurrent_trials, grace_period: must be >= 1"),
        (tn.trial_cpus > 0, "tune.trial_cpus: must be > 0 (Ray rejects 0)"),
    ]
    for ok, msg in rules:
        if not ok:
            raise ConfigError(msg)


def validate_sweep(cfg: Config) -> None:
    """What a sweep needs of the other sections (checked when one starts, not for every run)."""
    tn = cfg.tune
    if tn.objective == "heldout_U" and cfg.data.heldout_prompts == 0:
        raise ConfigError("tune.objective heldout_U needs held-out prompts: data.heldout_prompts > 0")
    if (tn.objective == "pair_accuracy" or tn.asha) and cfg.train.eval_fraction == 0:
        raise ConfigError(f"tune: {'ASHA' if tn.asha else 'the pair_accuracy objective'} needs held-out pairs: "
                          "train.eval_fraction > 0")


# The metrics `udasa eval` reports (evaluate/run.py keeps their order and scales).
EVAL_METRICS = ("harmlessness", "unsafe", "refusal", "helpfulness", "true", "informative", "true_info", "mc1",
                "mc2", "positive")


def from_dict(data: dict[str, Any]) -> Config:
    """A config from its dict form (Config.to_dict, or merged YAML), type-checked and validated."""
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def load_config(path: str | Path | list[str | Path] | None = None, overrides: list[str] = ()) -> Config:
    """Load YAML recipes (or the defaults), apply dotted overrides, type-check and validate.

    Several files merge left to right: a recipe, then overlays such as configs/methods/rlaif.yaml.
    """
    data: dict[str, Any] = {}
    for p in [] if path is None else [path] if isinstance(path, str | Path) else path:
        try:
            layer = yaml.safe_load(Path(p).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        data = _merge(data, layer)
    for o in overrides:
        data = _merge(data, parse_override(o))
    return from_dict(data)
