"""The node types a plan places steps on: from a Ray cluster launcher file, a KubeRay RayCluster or RayJob,
the launcher's bootstrap config on a running head, the command line (`--gpus-per-node N --gpu-memory GB`),
or the local machine. Resources are what Ray's autoscaler reads from the same files; each GPU type's
memory and speed come from its machine type (launcher) or the `udasa-ray/gpu` annotation of a KubeRay
group's pods."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from udasa_ray.config import ConfigError


@dataclass(frozen=True)
class GPU:
    """One GPU model: memory in GB (1e9 bytes, the nominal size), memory bandwidth in bytes/s and dense bf16
    FLOP/s, from the vendors' data sheets."""

    name: str
    memory_gb: float
    bandwidth: float
    flops: float


GPUS = {g.name: g for g in [
    GPU("A100-80GB", 80, 2.039e12, 312e12), GPU("A100-40GB", 40, 1.555e12, 312e12),
    GPU("H100-80GB", 80, 3.35e12, 989e12), GPU("H200", 141, 4.8e12, 989e12),
    GPU("A10G", 24, 0.6e12, 70e12), GPU("L4", 24, 0.3e12, 121e12),
]}
# Machine type -> (GPU model, host memory in GB) of the launcher files' types (AWS, GCP).
MACHINES = {
    "p4de.24xlarge": ("A100-80GB", 1237), "p4d.24xlarge": ("A100-40GB", 1237), "p5.48xlarge": ("H100-80GB", 2199),
    "g5.12xlarge": ("A10G", 206), "g5.48xlarge": ("A10G", 825), "a2-ultragpu-8g": ("A100-80GB", 1360),
    "a2-highgpu-8g": ("A100-40GB", 680), "a3-highgpu-8g": ("H100-80GB", 1872), "g2-standard-48": ("L4", 192),
    "m6i.2xlarge": (None, 34), "m6i.8xlarge": (None, 137), "n2-standard-8": (None, 32), "n2-standard-32": (None, 128),
}
GPU_ANNOTATION = "udasa-ray/gpu"  # on a KubeRay worker group's pod template: a key of GPUS
BOOTSTRAP = Path("~/ray_bootstrap_config.yaml")  # the launcher's config on a running head node


@dataclass(frozen=True)
class NodeType:
    name: str
    resources: dict[str, float]  # what Ray sees on one node: CPU, GPU and custom resources
    max_nodes: float  # math.inf: as many as needed
    gpu: GPU | None = None
    host_memory_gb: float | None = None

    @property
    def gpus(self) -> int:
        return int(self.resources.get("GPU", 0))


@dataclass(frozen=True)
class Cluster:
    name: str
    types: tuple[NodeType, ...]
    max_workers: float = math.inf  # the launcher's cap on worker nodes, all types together
    autoscaling: bool = True
    notes: tuple[str, ...] = field(default=())

    def autoscaler_types(self) -> dict[str, dict[str, Any]]:
        """The node types in the form Ray's autoscaler bin-packs over (`available_node_types`)."""
        big = 10_000  # for types without a limit
        return {t.name: {"resources": dict(t.resources), "min_workers": 0,
                         "max_workers": big if math.isinf(t.max_nodes) else int(t.max_nodes)} for t in self.types}


def _load(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--cluster {path}: no such file") from None


def _gpu(name: str | None, where: str, gpu_memory: float | None) -> GPU | None:
    if name is None:
        return None
    if name not in GPUS:
        if gpu_memory is None:
            raise ConfigError(f"{where}: unknown GPU {name!r} (known: {', '.join(GPUS)}); pass --gpu-memory GB")
        return GPU(name, gpu_memory, math.nan, math.nan)
    g = GPUS[name]
    return GPU(g.name, gpu_memory, g.bandwidth, g.flops) if gpu_memory else g


def from_launcher(doc: dict[str, Any], name: str, gpu_memory: float | None = None) -> Cluster:
    """A `ray up` config: its worker types with the resources they declare and their machine's GPUs."""
    types = []
    for tname, t in doc["available_node_types"].items():
        if tname == doc["head_node_type"]:
            continue
        machine = t.get("node_config", {}).get("InstanceType") or t.get("node_config", {}).get("machineType")
        model, host = MACHINES.get(machine, (None, None))
        if t["resources"].get("GPU") and model is None and gpu_memory is None:
            raise ConfigError(f"{name}: node type {tname}: the plan does not know machine type {machine!r}; pass "
                              "--gpu-memory GB")
        gpu = _gpu(model or ("GPU" if t["resources"].get("GPU") else None), f"{name}: {tname}", gpu_memory)
        types.append(NodeType(tname, dict(t["resources"]), t.get("max_workers", doc.get("max_workers", 0)), gpu, host))
    return Cluster(name, tuple(types), doc.get("max_workers", math.inf))


def _kuberay_spec(doc: dict[str, Any], path: Path) -> tuple[dict[str, Any], str]:
    """The RayCluster spec of a RayCluster or RayJob file; a RayJob that selects a running cluster by name
    (clusterSelector) gets the RayCluster file of that name beside it."""
    if doc["kind"] == "RayCluster":
        return doc["spec"], doc["metadata"]["name"]
    spec = doc["spec"]
    if "rayClusterSpec" in spec:
        return spec["rayClusterSpec"], doc["metadata"]["name"]
    wanted = spec.get("clusterSelector", {}).get("ray.io/cluster")
    for other in sorted(path.parent.glob("*.yaml")):
        d = yaml.safe_load(other.read_text())
        if isinstance(d, dict) and d.get("kind") == "RayCluster" and d["metadata"]["name"] == wanted:
            return d["spec"], wanted
    raise ConfigError(f"{path}: selects RayCluster {wanted!r}, and no file beside it defines one")


def from_kuberay(doc: dict[str, Any], path: Path, gpu_memory: float | None = None) -> Cluster:
    """A RayCluster (or a RayJob's) worker groups, with the resources KubeRay's autoscaler derives from them
    (Ray's own conversion); without in-tree autoscaling a group has its `replicas` nodes, no more."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    spec, name = _kuberay_spec(doc, path)
    derived = _derive_autoscaling_config_from_ray_cr({"metadata": {"name": name, "namespace": "default"}, "spec": spec})
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    types = []
    for g in spec["workerGroupSpecs"]:
        t = derived["available_node_types"][g["groupName"]]
        resources = {k: float(v) for k, v in t["resources"].items() if k != "memory"}
        annotation = g["template"].get("metadata", {}).get("annotations", {}).get(GPU_ANNOTATION)
        if resources.get("GPU") and annotation is None and gpu_memory is None:
            raise ConfigError(f"{path}: worker group {g['groupName']} has GPUs but no {GPU_ANNOTATION} annotation; "
                              "pass --gpu-memory GB")
        gpu = _gpu(annotation or ("GPU" if resources.get("GPU") else None), f"{path}: {g['groupName']}", gpu_memory)
        nodes = t["max_workers"] if autoscaling else g.get("replicas", 0) * g.get("numOfHosts", 1)
        types.append(NodeType(g["groupName"], resources, nodes, gpu, t["resources"].get("memory", 0) / 1e9 or None))
    notes = () if autoscaling else ("no in-tree autoscaling: each group has its `replicas` nodes",)
    return Cluster(str(path), tuple(types), derived["max_workers"] if autoscaling else math.inf, autoscaling, notes)


def from_file(path: str | Path, gpu_memory: float | None = None) -> Cluster:
    """A launcher YAML or a KubeRay manifest."""
    path = Path(path)
    doc = _load(path)
    if isinstance(doc, dict) and "available_node_types" in doc:
        return from_launcher(doc, str(path), gpu_memory)
    if isinstance(doc, dict) and doc.get("kind") in ("RayCluster", "RayJob"):
        return from_kuberay(doc, path, gpu_memory)
    raise ConfigError(f"--cluster {path}: neither a Ray cluster launcher config nor a KubeRay RayCluster/RayJob")


def from_flags(gpus_per_node: int, gpu_memory: float | None, gpu: str | None = None, cpus_per_node: float | None = None,
               nodes: float = 1) -> Cluster:
    """`--gpus-per-node N --gpu-memory GB` (or `--gpu NAME`): `nodes` nodes of N GPUs, 12 CPUs a GPU unless given."""
    if gpu is None and gpu_memory is None:
        raise ConfigError("--gpus-per-node needs --gpu-memory GB or --gpu NAME")
    model = _gpu(gpu or "GPU", "--gpu", gpu_memory)
    cpus = cpus_per_node if cpus_per_node is not None else 12 * gpus_per_node
    node = NodeType("node", {"CPU": cpus, "GPU": gpus_per_node}, nodes, model if gpus_per_node else None)
    return Cluster(f"{nodes:g} x {gpus_per_node} x {model.name} ({model.memory_gb:g} GB)", (node,), nodes)


def local(num_cpus: int | None) -> Cluster:
    """The embedded default: one node of `ray.num_cpus` CPUs (this machine's if unset), no GPU."""
    cpus = num_cpus or os.cpu_count() or 1
    return Cluster(f"local ({cpus} CPUs)", (NodeType("local", {"CPU": float(cpus)}, 1),), 1)


def bootstrap() -> Cluster | None:
    """The launcher config that `ray up` leaves on the head node, where a submitted job's driver runs."""
    path = BOOTSTRAP.expanduser()
    return from_launcher(_load(path), str(path)) if path.is_file() else None
