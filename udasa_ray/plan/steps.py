"""The steps a job runs, each with what it asks Ray for, a GPU memory estimate and a wall-time estimate
on a node type. The order and the steps a method needs are the pipeline's own (pipeline.py, jobs/methods.py):
align runs generate, score, pairs, the training stages and the held-out check; the methods jobs make
responses and scores once, then train and evaluate each method; a sweep trains its trials."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from udasa_ray.config import Config
from udasa_ray.plan import asks, estimate, memory
from udasa_ray.plan.asks import Ask
from udasa_ray.plan.cluster import NodeType
from udasa_ray.plan.estimate import MC_CHOICES, MC_TOKENS, PROMPT_TOKENS
from udasa_ray.plan.memory import Memory
from udasa_ray.plan.models import ModelShape, model_shape

INFERENCE_ONLY = ("vanilla", "rain")  # methods that evaluate the base policy (jobs/methods.py)
GCG_TOKENS, GCG_BATCH = 128, 64  # a behaviour with its suffix and target; candidates per forward (gcg.py)
RAIN_QUESTION_TOKENS = 256  # RAIN's self-evaluation: the question with the prompt and the partial answer
SELF_EVAL_BATCH = 16  # selfeval.label_probs's batch


@dataclass
class Step:
    """One step of a job as the plan sees it: its Ray ask and, on a node type, its estimates."""

    name: str
    what: str  # the model and how it runs
    ask: Ask
    memory: Callable[[NodeType], Memory | None] = lambda node: None  # one GPU's estimate on a node type
    seconds: Callable[[NodeType], float | None] = lambda node: None  # wall time on a node type
    cpu_llm: ModelShape | None = None  # a causal LM this step holds on CPUs
    methods: tuple[str, ...] = ()
    pinned: bool = True  # a config field can steer it to a node type (else a misfit elsewhere only warns)


def _shape(cfg: Config, name: str) -> ModelShape | None:
    return model_shape(name, cfg.models.cache_dir)


def _on_gpu(node: NodeType) -> bool:
    return node.gpu is not None and not math.isnan(node.gpu.flops)


def generation(name: str, cfg: Config, model: str, requests: int, new_tokens: int, cpu: bool) -> Step:
    """A generation sub-run of `requests` requests of up to `new_tokens` tokens with `model`."""
    gen, shape = cfg.generation, _shape(cfg, model)
    ask = asks.generation_ask(gen, model, cpu)
    if gen.backend == "hf":
        def cpu_seconds(node: NodeType) -> float | None:
            return None if shape is None else (2 * shape.params * requests * new_tokens
                                               / (gen.num_actors * gen.cpus_per_actor * estimate.CPU_FLOPS))
        return Step(name, f"{model}, hf actors", ask, seconds=cpu_seconds,
                    cpu_llm=shape if shape and shape.decoder else None)
    v = gen.vllm

    def vllm_memory(node: NodeType) -> Memory | None:
        return None if shape is None or node.gpu is None else memory.vllm(shape, v, node.gpu.memory_gb)

    def vllm_seconds(node: NodeType) -> float | None:
        mem = vllm_memory(node)
        if mem is None or not _on_gpu(node) or not mem.ok:
            return None
        rate = estimate.vllm_rate(shape, v.tensor_parallel_size, node.gpu, mem.notes["kv_tokens"],
                                  PROMPT_TOKENS + new_tokens)
        prefill = estimate.prefill_s(shape, requests * PROMPT_TOKENS, v.tensor_parallel_size * v.replicas, node.gpu)
        return requests * new_tokens / (rate * v.replicas) + prefill

    return Step(name, f"{model}, vLLM TP {v.tensor_parallel_size} x {v.replicas}", ask, vllm_memory, vllm_seconds)


def scoring(name: str, cfg: Config, responses: int) -> Step:
    """The scorer actors on CPUs over `responses` responses of a prompt's n: each runs the three scorers in turn
    on all its CPUs."""
    s, n, new = cfg.scoring, cfg.generation.n, cfg.generation.max_new_tokens
    prompts = responses / n
    pairs = prompts * (n * (n - 1) if s.factual.mode == "cross_response" else n)
    nli_tokens = 2 * new if s.factual.mode == "cross_response" else new + PROMPT_TOKENS
    work = [(s.semantic.model, responses * new)]
    if s.factual.backend == "hf_nli":
        work.append((s.factual.model, pairs * nli_tokens))
    if s.value.backend == "hf_classifier":
        work.append((s.value.model, responses * new))
    policy = _shape(cfg, cfg.models.policy) if "policy_judge" in (s.factual.backend, s.value.backend) else None

    def seconds(node: NodeType) -> float | None:
        shapes = [(_shape(cfg, m), t) for m, t in work]
        if len(shapes) < 3 or any(sh is None for sh, _ in shapes):
            return None  # a bundled or rule-based scorer: not estimated
        from udasa_ray.score.step import scorer_asks

        cpus = s.num_actors * scorer_asks(s)["num_cpus"]
        return sum(estimate.cpu_forward_s(sh, t, cpus) for sh, t in shapes)

    what = ", ".join(x for x in (s.semantic.model, s.factual.model if s.factual.backend != "aegis_onnx" else "aegis",
                                 s.value.model or s.value.backend) if x)
    return Step(name, f"{what}; {s.num_actors} scorer actors", asks.scoring_ask(cfg), seconds=seconds,
                cpu_llm=policy if policy and policy.decoder else None)


def _task(name: str, what: str, cfg: Config, ask: Ask, model: str, dtype: str, phases: list[tuple[int, int, bool]],
          seconds: Callable[[ModelShape, NodeType], float]) -> Step:
    """A Ray task holding `model` (on a GPU when `ask` has one): its memory is the largest of its `phases`
    (sequences, tokens, gradient to the input)."""
    shape = _shape(cfg, model)
    gpu = ask.gpus > 0

    def mem(node: NodeType) -> Memory | None:
        if shape is None or not gpu:
            return None
        return max((memory.inference(shape, dtype, s, t, g) for s, t, g in phases), key=lambda m: m.total)

    return Step(name, what, ask, mem, lambda node: seconds(shape, node) if shape and gpu and _on_gpu(node) else None,
                cpu_llm=None if gpu or shape is None or not shape.decoder else shape)


def _gpu_dtype(dtype: str) -> str:
    return "bfloat16" if dtype == "auto" else dtype


def rlaif(cfg: Config, prompts: int) -> Step:
    """RLAIF's labeller: the policy judges two answers of each prompt in both orders (pairs/step.py's task)."""
    ask = asks.task_ask(cfg.generation.cpus_per_actor, 1 if cfg.train.use_gpu else 0)
    questions = 2 * prompts
    return _task("pairs: RLAIF labels", f"{cfg.models.policy}, one task", cfg, ask, cfg.models.policy,
                 _gpu_dtype(cfg.generation.dtype), [(SELF_EVAL_BATCH, RAIN_QUESTION_TOKENS * 2, False)],
                 lambda sh, node: estimate.prefill_s(sh, questions * RAIN_QUESTION_TOKENS * 2, 1, node.gpu,
                                                     estimate.HF_EFFICIENCY))


def stage_pairs(cfg: Config, prompts: int) -> list[int]:
    """Training pairs of each curriculum stage: one pair a prompt less the eval split, split evenly (the real
    split follows Δu, known only once the pairs are made)."""
    k = len(cfg.curriculum.thresholds) + 1
    total = int(prompts * (1 - cfg.train.eval_fraction))
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def training(cfg: Config, prompts: int, name: str = "train stage", ask: Ask | None = None) -> list[Step]:
    """One row per curriculum stage: the stage's Ray Train workers."""
    from udasa_ray.train.schedule import stage_steps

    t, shape = cfg.train, _shape(cfg, cfg.models.policy)
    ask = ask or asks.train_ask(cfg)
    batch = t.batch_size * t.grad_accum * t.num_workers
    length = min(t.max_length, PROMPT_TOKENS + cfg.generation.max_new_tokens)
    gpu = t.use_gpu

    def mem(node: NodeType) -> Memory | None:
        return memory.train(shape, t, t.max_length) if shape is not None and gpu else None

    steps = []
    for k, pairs in enumerate(stage_pairs(cfg, prompts), 1):
        n_steps = stage_steps(pairs, batch, t.max_steps_per_stage, t.epochs_per_stage)

        def seconds(node: NodeType, n_steps: int = n_steps, pairs: int = pairs) -> float | None:
            if shape is None or (gpu and not _on_gpu(node)):
                return None
            g = node.gpu if gpu else None
            step = estimate.train_step_s(shape, batch, length, t.num_workers, g, t.cpus_per_worker,
                                         t.gradient_checkpointing, t.deepspeed.offload)
            ref = estimate.train_step_s(shape, pairs, length, t.num_workers, g, t.cpus_per_worker, False, False) / 3
            return n_steps * step + (ref if t.precompute_ref else 0)

        steps.append(Step(f"{name} {k}", f"{cfg.models.policy}, {n_steps} steps x {batch} pairs, "
                          f"ZeRO-{t.deepspeed.zero_stage}" + (" offload" if t.deepspeed.offload else ""),
                          ask, mem, seconds, None if gpu or shape is None else shape, pinned=False))
    return steps


def prompt_count(cfg: Config) -> int | None:
    """Training prompts: the source's records less the held-out draw, at most data.limit."""
    n = estimate.rows(cfg.data.source)
    if n is None:
        return cfg.data.limit
    return min(cfg.data.limit or n, n - cfg.data.heldout_prompts)


def pipeline(cfg: Config, cpu: bool, through: str = "check", shared: bool = True, method: str = "") -> list[Step]:
    """The steps run_pipeline runs for `cfg` (pipeline.py's order, less what its pairing method skips)."""
    from udasa_ray.generate.step import with_generator
    from udasa_ray.pipeline import NOT_NEEDED, ORDER

    prompts = prompt_count(cfg) or 0
    skip = NOT_NEEDED[cfg.pairs.method]
    wanted = [s for s in ORDER[: ORDER.index(through) + 1] if s not in skip]
    gen_cfg, n = with_generator(cfg), cfg.generation.n
    listwise = cfg.generation.mode == "listwise"
    out = []
    if shared and "generate" in wanted:
        out.append(generation("generate", gen_cfg, gen_cfg.models.policy, prompts * (1 if listwise else n),
                              cfg.generation.max_new_tokens, cpu))
    if shared and "score" in wanted:
        out.append(scoring("score", cfg, prompts * n))
    if cfg.pairs.method == "rlaif":
        out.append(rlaif(cfg, prompts))
    if cfg.pairs.method == "rlcd":
        out.append(generation("pairs: RLCD answers", gen_cfg, gen_cfg.models.policy, 2 * prompts,
                              cfg.generation.max_new_tokens, cpu))
    out += training(cfg, prompts)
    if "check" in wanted and cfg.data.heldout_prompts:
        held = cfg.data.heldout_prompts
        out.append(generation("check: generate", cfg, cfg.models.policy, 2 * held * (1 if listwise else n),
                              cfg.generation.max_new_tokens, cpu))
        out.append(scoring("check: score", cfg, 2 * held * n))
    return [dataclasses.replace(s, methods=(method,) if method else ()) for s in out]


def eval_items(cfg: Config) -> dict[str, int]:
    """Items per evaluation task: the source's records, at most eval.limit (unknown sources: eval.limit or 0)."""
    e = cfg.eval
    out = {}
    for task in e.tasks:
        n = estimate.rows(getattr(e, f"{task}_source"))
        out[task] = min(n, e.limit or n) if n is not None else (e.limit or 0)
    return out


def evaluation(cfg: Config, model: str, cpu: bool, method: str = "") -> list[Step]:
    """`evaluate_model` of `model`: its answers (vLLM or hf; RAIN in the evaluation's task), the offline
    judgements with TruthfulQA's multiple choice, GCG's suffixes (robust), and the vllm judge."""
    e, items = cfg.eval, eval_items(cfg)
    robust = items.get("robust", 0)
    answers = (sum(items.values()) + 2 * robust) * e.samples  # a behaviour: direct, white-box and transfer
    task_ask = asks.task_ask(e.num_cpus, e.num_gpus)
    gpu_dtype = _gpu_dtype(cfg.generation.dtype)
    out = []
    if e.decoding == "rain":
        r = cfg.generation.rain
        segments = math.ceil(e.max_new_tokens / r.segment_tokens)

        def rain_s(sh: ModelShape, node: NodeType) -> float:
            searches = answers * segments * r.max_searches
            decode = estimate.hf_decode_s(sh, searches * r.depth * r.segment_tokens, node.gpu)
            judge = estimate.prefill_s(sh, searches * r.candidates * RAIN_QUESTION_TOKENS, 1, node.gpu,
                                       estimate.HF_EFFICIENCY)
            return decode + judge

        out.append(_task("eval: generate (RAIN)", f"{model}, RAIN search in one task", cfg, task_ask, model, gpu_dtype,
                         [(r.candidates, PROMPT_TOKENS + e.max_new_tokens, False),
                          (SELF_EVAL_BATCH, RAIN_QUESTION_TOKENS, False)], rain_s))
    else:
        out.append(generation("eval: generate", cfg, model, answers, e.max_new_tokens, cpu))
    if "truthful" in items:
        mc = items["truthful"] * MC_CHOICES * MC_TOKENS
        out.append(_task("eval: judgements + multiple choice", f"{model}, offline judges, one task", cfg, task_ask,
                         model, "bfloat16", [(MC_CHOICES, MC_TOKENS, False)],
                         lambda sh, node: estimate.prefill_s(sh, mc, 1, node.gpu, estimate.HF_EFFICIENCY)))
    if robust:
        g = e.gcg
        per_model = robust * g.steps * (g.search_width * GCG_TOKENS + 3 * GCG_TOKENS)

        def gcg_s(sh: ModelShape, node: NodeType) -> float:
            return estimate.prefill_s(sh, per_model, 1, node.gpu, estimate.HF_EFFICIENCY)

        out.append(_task("eval: GCG suffixes", f"{model}, {g.steps} steps x {g.search_width} candidates", cfg, task_ask,
                         model, gpu_dtype, [(GCG_BATCH, GCG_TOKENS, False), (1, GCG_TOKENS, True)], gcg_s))
    if e.judge.backend == "vllm":
        metrics = {"harmless": 1, "helpful": 1, "truthful": 2, "sentiment": 1}
        out.append(judge(cfg, sum(n * metrics.get(t, 0) for t, n in items.items()) * e.samples, cpu))
    return [dataclasses.replace(s, methods=(method,) if method else ()) for s in out]


def judge(cfg: Config, requests: int, cpu: bool) -> Step:
    """The vllm judge's engines over `requests` judgements (one per answer and metric; retries not counted)."""
    jc = cfg.eval.judge
    shape = _shape(cfg, jc.model)
    v = jc.vllm

    def mem(node: NodeType) -> Memory | None:
        return None if shape is None or node.gpu is None else memory.vllm(shape, v, node.gpu.memory_gb)

    def seconds(node: NodeType) -> float | None:
        m = mem(node)
        if m is None or not m.ok or not _on_gpu(node):
            return None
        rate = estimate.vllm_rate(shape, v.tensor_parallel_size, node.gpu, m.notes["kv_tokens"],
                                  estimate.JUDGE_PROMPT_TOKENS + jc.max_tokens)
        prefill = estimate.prefill_s(shape, requests * estimate.JUDGE_PROMPT_TOKENS,
                                     v.tensor_parallel_size * v.replicas, node.gpu)
        return requests * jc.max_tokens / (rate * v.replicas) + prefill

    return Step("eval: judge", f"{jc.model}, vLLM TP {v.tensor_parallel_size} x {v.replicas}",
                asks.judge_ask(jc, cfg.models.cache_dir, cfg.eval.num_cpus, cpu), mem, seconds)


def align(cfg: Config, cpu: bool) -> list[Step]:
    return pipeline(cfg, cpu)


def methods(base: Config, cfgs: dict[str, Config], cpu: bool) -> list[Step]:
    """jobs/methods.py's run_methods: the shared run's steps, then each method's training and evaluation."""
    trained = {m: c for m, c in cfgs.items() if m not in INFERENCE_ONLY}
    kinds = {c.pairs.method for c in trained.values()}
    shared = {"generate", "score"} if "udasa" in kinds else {"generate"} if "rlaif" in kinds else set()
    out = [s for s in pipeline(base, cpu, "score") if s.name in shared]
    for m, c in cfgs.items():
        if m in trained:
            out += pipeline(c, cpu, "train", shared=False, method=m)
        out += evaluation(c, c.models.policy, cpu, m)
    return out


def tune(cfg: Config, cpu: bool) -> list[Step]:
    """jobs/tune_thresholds.py: responses and scores, then the sweep's trials, `max_concurrent_trials` at once,
    each training its stages with `tune.worker_cpus` CPUs a worker."""
    from udasa_ray.tune.space import grid_points

    tn = cfg.tune
    trials = len(grid_points(tn.tau1, tn.tau2, tn.stages)) if tn.search == "grid" else tn.num_samples
    worker = dataclasses.replace(cfg.train, cpus_per_worker=tn.worker_cpus or cfg.train.cpus_per_worker)
    one = asks.train_ask(dataclasses.replace(cfg, train=worker))
    ask = Ask(({"CPU": tn.trial_cpus}, *one.bundles), "PACK", tn.max_concurrent_trials)
    rounds = math.ceil(trials / tn.max_concurrent_trials)
    stages = training(dataclasses.replace(cfg, train=worker), prompt_count(cfg) or 0, f"tune: {trials} trials, stage",
                      ask)
    for s in stages:  # every trial trains the stage; `max_concurrent_trials` of them at a time
        s.seconds = lambda node, f=s.seconds: None if f(node) is None else rounds * f(node)
    return [s for s in pipeline(cfg, cpu, "score") if s.name in ("generate", "score")] + stages
