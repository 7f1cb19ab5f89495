"""`udasa plan`: every step a job will run, what it asks Ray for, whether the cluster's node types can place
it (Ray's own autoscaler bin packing), a GPU memory estimate per GPU and a wall-time estimate; and the same
checks before a job starts on a cluster (`preflight`), so that what does not fit stops it at start-up with
exit status 2 instead of hours into a run.

models.py sizes the models from their config.json, cluster.py reads the node types, asks.py computes each
step's Ray resources with the code that requests them, memory.py and estimate.py the estimates, steps.py
lists a job's steps.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from udasa_ray.config import Config, ConfigError, load_config
from udasa_ray.plan import steps as job_steps
from udasa_ray.plan.cluster import Cluster, NodeType, bootstrap, from_file
from udasa_ray.plan.memory import Memory, fit
from udasa_ray.plan.steps import Step

METHODS_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "methods"
JOBS = ("align", "reproduce", "compare_methods", "tune_thresholds", "eval")
COMPARE_METHODS = ["vanilla", "one-shot", "three-stage", "rlaif", "rlcd"]  # jobs/compare_methods.py's default
CPU_LLM_PARAMS = 2e9  # a causal LM larger than this on CPUs, on a cluster with GPUs, is a mistake


def default_methods(job: str) -> list[str]:
    from udasa_ray.report import paper

    return paper.methods() if job == "reproduce" else list(COMPARE_METHODS)


def method_configs(configs: list[str], overrides: list[str], methods: list[str]) -> dict[str, Config]:
    """Each method's config: the recipe plus its overlay from configs/methods/ (vanilla: the recipe)."""
    return {m: load_config(configs, overrides) if m == "vanilla"
            else load_config([*configs, METHODS_DIR / f"{m}.yaml"], overrides) for m in methods}


@dataclass
class Row:
    """A step on a cluster: the node types Ray's autoscaler starts for it on an empty cluster, the types
    that can hold one of its units, its memory estimate there, its time."""

    step: Step
    starts: dict[str, int]
    hosts: list[str]
    memory: Memory | None
    seconds: float | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def gpu_hours(self) -> float | None:
        gpus = self.step.ask.gpus * self.step.ask.units
        return None if self.seconds is None else gpus * self.seconds / 3600


def shape_text(shape: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k} {v:g}" for k, v in shape.items()) + "}"


def ask_text(step: Step) -> str:
    """E.g. `4 x {CPU 1, GPU 1}`, `2 x (4 x {CPU 1, GPU 1}, one node)`, `8 x {CPU 8, GPU 1}`."""
    a = step.ask
    distinct = list({shape_text(b): None for b in a.bundles})
    inner = distinct[0] if len(distinct) == 1 else " + ".join(distinct)
    if a.strategy == "STRICT_PACK" and len(a.bundles) > 1:
        return f"{a.units} x ({len(a.bundles)} x {inner}, one node)"
    count = a.units * len(a.bundles)
    return f"{count} x {inner}" if len(distinct) == 1 else f"{a.units} x ({inner})"


def _fits(shape: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(k, 0) >= v for k, v in shape.items())


def _per_node(shape: dict[str, float], resources: dict[str, float]) -> int:
    return int(min(resources.get(k, 0) // v for k, v in shape.items() if v)) if shape else 0


def place(step: Step, cluster: Cluster) -> tuple[dict[str, int], list[dict[str, float]]]:
    """The nodes Ray's autoscaler would start for the step's demand on an empty cluster, and what is left
    unplaced (Ray's own bin packing over the node types, within their max nodes)."""
    from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
    from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for

    scorer = functools.partial(_default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({}))
    log = logging.getLogger("ray.autoscaler._private.resource_demand_scheduler")
    level, log.level = log.level, logging.ERROR  # its warning for a demand that fits nowhere: we say it ourselves
    try:
        cap = 10**6 if math.isinf(cluster.max_workers) else int(cluster.max_workers)
        added, left = get_nodes_for(cluster.autoscaler_types(), {}, "", cap, step.ask.demand(), scorer)
    finally:
        log.level = level
    return dict(added), left


def _misfit(step: Step, cluster: Cluster) -> str:
    """Why a step's demand does not fit: the unit no node type holds, or the count the types hold at most."""
    shapes = list({shape_text(s): s for s in step.ask.demand()}.values())
    for shape in shapes:
        holders = [t for t in cluster.types if _fits(shape, t.resources)]
        if not holders:
            biggest = max(cluster.types, key=lambda t: (t.resources.get("GPU", 0), t.resources.get("CPU", 0)))
            return (f"no node type holds one {shape_text(shape)} on one node (the largest: {biggest.name} "
                    f"{shape_text(biggest.resources)})")
    shape = max(shapes, key=lambda s: (s.get("GPU", 0), s.get("CPU", 0)))  # the units that bind
    need = sum(s == shape for s in step.ask.demand())
    held = {t.name: _per_node(shape, t.resources) * t.max_nodes for t in cluster.types if _fits(shape, t.resources)}
    detail = ", ".join(f"{n}: {h:g}" for n, h in held.items())
    key = "GPU" if shape.get("GPU") else "CPU"
    cap = "" if math.isinf(cluster.max_workers) else f" and the cluster's max_workers {cluster.max_workers:g}"
    return (f"{need} x {shape_text(shape)} ({need * shape.get(key, 0):g} {key}s) at once; the node types hold "
            f"{sum(held.values()):g} at most ({detail}, within their max nodes{cap})")


def _gpu_types(step: Step, cluster: Cluster, hosts: list[str]) -> list[NodeType]:
    return [t for t in cluster.types if t.name in hosts and t.gpu is not None and step.ask.gpus]


def evaluate(step: Step, cluster: Cluster) -> Row:
    """Place `step` on `cluster`, check its memory on every GPU type that can hold it, estimate its time."""
    starts, left = place(step, cluster)
    hosts = [t.name for t in cluster.types if any(_fits(s, t.resources) for s in step.ask.demand())]
    row = Row(step, starts, hosts, None, None)
    where = f"{step.name} ({step.what})"
    if left:
        row.problems.append(f"{where}: asks {ask_text(step)}: {_misfit(step, cluster)}")
    if step.cpu_llm is not None and step.cpu_llm.params > CPU_LLM_PARAMS and any(t.gpu for t in cluster.types):
        row.problems.append(f"{where}: a {step.cpu_llm.params / 1e9:.1f}B-parameter model runs on CPUs on a cluster "
                            "with GPUs (give the step a GPU: eval.num_gpus, train.use_gpu, the vllm backend)")
    spilled = [t for t in cluster.types if t.name in starts and t.gpus] if not step.ask.gpus else []
    if spilled and any(not t.gpus for t in cluster.types):
        row.warnings.append(f"{where}: asks no GPU but spills onto GPU nodes ({', '.join(t.name for t in spilled)}): "
                            "the CPU node types do not hold it all")
    chosen = next((t for t in cluster.types if t.name in starts), None)
    for t in _gpu_types(step, cluster, hosts):
        mem = step.memory(t)
        if mem is None:
            continue
        mem = fit(mem, t.gpu.memory_gb)
        if t is chosen or (chosen is None and row.memory is None):
            row.memory = mem
        msg = f"{where}: on {t.name} ({t.gpu.name}, {t.gpu.memory_gb:g} GB a GPU): {mem.why}"
        if not mem.ok and t is chosen:
            row.problems.append(msg)
        elif not mem.ok:
            hint = " (steer it to a type that holds it)" if step.pinned else " (nothing steers it: if such nodes run)"
            (row.problems if step.pinned else row.warnings).append(msg.replace(": on ", ": can land on ", 1) + hint)
        _host_check(row, mem, t, t is chosen)
    if chosen is not None and not row.problems:
        row.seconds = step.seconds(chosen)
    return row


def _host_check(row: Row, mem: Memory, node: NodeType, chosen: bool) -> None:
    """Host memory of ZeRO offload: every worker on the node keeps its partition of the states there."""
    per_worker = mem.notes.get("host_gb_per_worker", 0)
    if not per_worker or node.host_memory_gb is None:
        return
    workers = min(len(row.step.ask.bundles), node.gpus)
    need = per_worker * workers
    mem.notes["host_gb_per_node"] = need
    if need > node.host_memory_gb:
        msg = (f"{row.step.name}: on {node.name}: ZeRO offload keeps {need:.0f} GB in host memory ({workers} workers "
               f"x {per_worker:.0f} GB), more than its {node.host_memory_gb:g} GB")
        (row.problems if chosen else row.warnings).append(msg)


@dataclass
class Plan:
    job: str
    configs: list[str]
    cluster: Cluster
    rows: list[Row]

    @property
    def problems(self) -> list[str]:
        return [p for r in self.rows for p in r.problems]

    @property
    def warnings(self) -> list[str]:
        return list(dict.fromkeys(w for r in self.rows for w in r.warnings))

    @property
    def seconds(self) -> float | None:
        known = [r.seconds for r in self.rows]
        return None if any(s is None for s in known) else sum(known)

    @property
    def gpu_hours(self) -> float | None:
        known = [r.gpu_hours for r in self.rows]
        return None if any(h is None for h in known) else sum(known)

    def check(self) -> None:
        """Raise ConfigError (exit 2) naming the first step that does not fit, and how many more do not."""
        if problems := self.problems:
            more = f" (and {len(problems) - 1} more: `udasa plan` lists them)" if len(problems) > 1 else ""
            raise ConfigError(f"does not fit {self.cluster.name}: {problems[0]}{more}")

    def table(self) -> str:
        return render(self)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "configs": self.configs, "cluster": self.cluster.name,
                "fits": not self.problems, "problems": self.problems, "warnings": self.warnings,
                "seconds": self.seconds, "gpu_hours": self.gpu_hours,
                "steps": [_row_json(r) for r in self.rows]}


def _row_json(r: Row) -> dict[str, Any]:
    s = r.step
    return {"step": s.name, "methods": list(s.methods), "what": s.what,
            "bundles": [dict(b) for b in s.ask.bundles], "strategy": s.ask.strategy, "units": s.ask.units,
            "gpus": s.ask.gpus * s.ask.units, "starts": r.starts, "hosts": r.hosts,
            "memory_gb": None if r.memory is None else {"parts": r.memory.parts, "total": r.memory.total,
                                                        "capacity": r.memory.capacity_gb, "fits": r.memory.ok,
                                                        **r.memory.notes},
            "seconds": r.seconds, "gpu_hours": r.gpu_hours, "problems": r.problems, "warnings": r.warnings}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def hours(h: float) -> str:
    return f"{h:.1f}" if h < 10 else f"{h:.0f}"


def _merged(rows: list[Row]) -> list[tuple[Row, int, list[str]]]:
    """Rows that differ only in their method, once each with how many and which methods."""
    out: dict[tuple, tuple[Row, int, list[str]]] = {}
    for r in rows:
        key = (r.step.name, r.step.what, ask_text(r.step), r.memory.text() if r.memory else "", r.seconds,
               tuple(r.problems))
        row, n, methods = out.get(key, (r, 0, []))
        out[key] = (row, n + 1, methods + list(r.step.methods))
    return list(out.values())


def render(plan: Plan) -> str:
    """The plan as a Markdown table with its totals, problems and warnings."""
    lines = [f"plan: {plan.job} of {' + '.join(plan.configs)} on {plan.cluster.name}", "",
             "| step | runs | asks Ray for | autoscaler starts | GPU memory per GPU (est.) | time (est.) | GPU-h |",
             "|---|---|---|---|---|---|---|"]
    for r, n, methods in _merged(plan.rows):
        runs = f"{n} methods" if n > 1 else (methods[0] if methods else "")
        starts = ", ".join(f"{c} x {t}" for t, c in r.starts.items()) or "—"
        mem = "—" if r.memory is None else r.memory.text() + (f" of {r.memory.capacity_gb:g}" if r.memory.capacity_gb
                                                               else "")
        gpu_h = "—" if r.gpu_hours is None else f"{n * r.gpu_hours:.1f}"
        lines.append(f"| {r.step.name} | {runs} | {ask_text(r.step)} ({r.step.what}) | {starts} | {mem} | "
                     f"{duration(None if r.seconds is None else n * r.seconds)} | {gpu_h} |")
    lines += ["", f"total: {duration(plan.seconds)} of wall time, "
              + (f"{hours(plan.gpu_hours)} GPU-hours" if plan.gpu_hours is not None else "GPU-hours not estimated")
              + " (estimates: udasa_ray/plan/estimate.py lists the assumptions)"]
    lines += [f"does not fit: {p}" for p in plan.problems] + [f"warning: {w}" for w in plan.warnings]
    lines += [f"note: {n}" for n in plan.cluster.notes]
    return "\n".join(lines)


def make_plan(job: str, base: Config, cfgs: dict[str, Config] | None, cluster: Cluster,
              configs: list[str] = ()) -> Plan:
    """The plan of `job` (one of JOBS) for the recipe `base` (and each method's config) on `cluster`."""
    cpu = not any(t.gpus for t in cluster.types)  # vLLM engines then run on CPU nodes (generate/vllm.py)
    if job in ("reproduce", "compare_methods"):
        listed = job_steps.methods(base, cfgs or {"vanilla": base}, cpu)
    elif job == "tune_thresholds":
        listed = job_steps.tune(base, cpu)
    elif job == "eval":
        listed = job_steps.evaluation(base, base.models.policy, cpu)
    else:
        listed = job_steps.align(base, cpu)
    return Plan(job, list(configs) or ["(defaults)"], cluster, [evaluate(s, cluster) for s in listed])


def preflight(job: str, base: Config, cfgs: dict[str, Config] | None = None, cluster: str | None = None,
              configs: list[str] = ()) -> Plan | None:
    """The plan's checks before a job does any work, when it joins a cluster (or names one with --cluster):
    raises ConfigError (exit 2) naming the step, the resource and the numbers that do not fit. The cluster is
    the file named, else the launcher's bootstrap config on the head node. A local Ray (the embedded
    default) starts as it always has: nothing is checked."""
    from udasa_ray.ray_utils import local_ray

    if cluster is None and local_ray(base.ray):
        return None
    described = from_file(cluster) if cluster else bootstrap()
    if described is None:
        print(f"[plan] {job}: no cluster file (--cluster) and no launcher config on this node: placement and memory "
              "not checked before the start (`udasa plan --cluster ...` checks them)")
        return None
    plan = make_plan(job, base, cfgs, described, configs)
    plan.check()
    print(f"[plan] {job} fits {described.name}: {len(plan.rows)} steps, about {duration(plan.seconds)}"
          + (f", {hours(plan.gpu_hours)} GPU-hours" if plan.gpu_hours is not None else "") + " (estimates)")
    for w in plan.warnings:
        print(f"[plan] warning: {w}")
    return plan
