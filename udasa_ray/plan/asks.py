"""What each step asks Ray for, computed by the code that makes the request: Ray Data's defaults for an
actor pool, Ray's own vLLM stage for an engine replica's placement group, Ray Train's placement group
factory for a stage's workers. A unit is what one actor, replica or worker group holds; `units` run at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from unittest import mock

from udasa_ray.config import Config, GenerationConfig, JudgeConfig


@dataclass(frozen=True)
class Ask:
    bundles: tuple[dict[str, float], ...]  # one unit's bundles
    strategy: str  # STRICT_PACK: a unit's bundles on one node; PACK: packed where they fit, else spread
    units: int  # units that run at once

    @property
    def gpus(self) -> int:
        """GPUs of one unit."""
        return int(sum(b.get("GPU", 0) for b in self.bundles))

    def demand(self) -> list[dict[str, float]]:
        """The resource shapes Ray's autoscaler bin-packs: a one-node unit as one shape, else its bundles."""
        if self.strategy == "STRICT_PACK":
            merged: dict[str, float] = {}
            for b in self.bundles:
                for k, v in b.items():
                    merged[k] = merged.get(k, 0) + v
            return [merged] * self.units
        return [dict(b) for b in self.bundles] * self.units


def _clean(resources: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items() if v}


def actor_resources(map_batches_kwargs: dict[str, Any]) -> dict[str, float]:
    """What one Ray Data actor of a `map_batches` call holds, with Ray Data's defaults (1 CPU unless set)."""
    from ray.data._internal.execution.operators.map_operator import _canonicalize_ray_remote_args

    log = logging.getLogger("ray.data._internal.execution.operators.map_operator")
    level, log.level = log.level, logging.ERROR  # its note that CPUs with GPUs are experimental for map tasks
    try:
        args = _canonicalize_ray_remote_args({k: v for k, v in map_batches_kwargs.items()
                                              if k in ("num_cpus", "num_gpus")})
    finally:
        log.level = level
    return _clean({**(map_batches_kwargs.get("resources") or {}), "CPU": args["num_cpus"],
                   "GPU": args.get("num_gpus", 0)})


def vllm_ask(processor_config) -> Ask:  # noqa: ANN001 (ray.data.llm's config, imported by the caller)
    """An engine replica's bundles as Ray's vLLM stage reserves them for this processor config (what
    build_processor does with it), and its replicas; a replica sits on one node."""
    import ray.util
    from ray.llm._internal.batch.stages import vLLMEngineStage

    pc = processor_config
    stage = vLLMEngineStage(fn_constructor_kwargs={"engine_kwargs": dict(pc.engine_kwargs),
                                                   "placement_group_config": pc.placement_group_config},
                            map_batches_kwargs={"accelerator_type": pc.accelerator_type})
    kwargs = stage.map_batches_kwargs
    if "ray_remote_args_fn" in kwargs:  # tensor parallel: each replica's actor makes a placement group
        made: dict[str, Any] = {}
        with mock.patch.object(ray.util, "placement_group", lambda bundles, strategy="PACK", **_: made.update(
                bundles=bundles, strategy=strategy)):
            kwargs["ray_remote_args_fn"]()
        bundles = tuple(_clean(b) for b in made["bundles"])
    else:  # one GPU: the engine actor itself
        bundles = (actor_resources(kwargs),)
    return Ask(bundles, "STRICT_PACK", pc.get_concurrency(autoscaling_enabled=True)["max_size"])


def generation_ask(gen: GenerationConfig, model: str, cpu: bool) -> Ask:
    """The generate step's engines (vllm; on CPU nodes where the cluster has no GPU) or actor pool (hf), as
    generate/step.py builds them."""
    if gen.backend == "vllm":
        from udasa_ray.generate import vllm

        return vllm_ask(vllm.processor_config(gen, model, cpu))
    return Ask((_clean({"CPU": gen.cpus_per_actor, **gen.actor_resources}),), "PACK", gen.num_actors)


def judge_ask(jc: JudgeConfig, cache_dir: str, cpus: float, cpu: bool) -> Ask:
    """The vllm judge's engines (evaluate/judge.py's processor config; `cpus`: eval.num_cpus)."""
    from udasa_ray.evaluate.judge import VLLMJudge

    return vllm_ask(VLLMJudge(jc, cache_dir, cpus).processor_config(cpu))


def scoring_ask(cfg: Config) -> Ask:
    """The scorer actors, all up at once (each runs the three scorers)."""
    from udasa_ray.score import step as score_step

    pool = score_step.scorer_pool(cfg)
    return Ask((actor_resources(pool),) * pool["compute"].max_size, "PACK", 1)


def train_ask(cfg: Config) -> Ask:
    """A stage's Ray Train workers: the placement group Ray Train reserves (the trainer itself takes none)."""
    from udasa_ray.train.step import scaling_config

    group = scaling_config(cfg.train).as_placement_group_factory()
    return Ask(tuple(_clean(b) for b in group.bundles if _clean(b)), group.strategy, 1)


def task_ask(num_cpus: float, num_gpus: float, resources: dict[str, float] | None = None) -> Ask:
    """One Ray task (ray_utils.run_task, the evaluation's tasks)."""
    return Ask((_clean({"CPU": num_cpus, "GPU": num_gpus, **(resources or {})}),), "PACK", 1)
