"""clusters/: launcher configs valid for Ray's own schema, KubeRay manifests with what the operator needs, and
node types that the stage resources of configs/llama7b.yaml and configs/llama30b.yaml fit. Starts no Ray, no network."""

from __future__ import annotations

import json
import math
import re
import shlex
from functools import partial
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import ray.util
import yaml
from conftest import ROOT
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import _default_utilization_scorer, get_nodes_for
from ray.autoscaler._private.util import prepare_config, validate_config

from udasa_ray.config import Config, load_config
from udasa_ray.plan import asks, make_plan
from udasa_ray.plan.cluster import NodeType, from_file
from udasa_ray.score import step as score_step

CLUSTERS = ROOT / "clusters"
LAUNCHERS = sorted(CLUSTERS.glob("*.yaml"))
KUBERAY = CLUSTERS / "kuberay"
CLUSTER_FILES = [*LAUNCHERS, KUBERAY / "raycluster.yaml"]
# The recipes as run: LLaMA-7B, LLaMA-30B, and 30B writing the data a 7B policy learns from (an overlay).
LLAMA_CONFIGS = [(ROOT / "configs" / "llama7b.yaml",), (ROOT / "configs" / "llama30b.yaml",),
                 (ROOT / "configs" / "llama7b.yaml", ROOT / "configs" / "llama30b-data-7b-policy.yaml")]
LLAMA_IDS = ["+".join(p.stem for p in c) for c in LLAMA_CONFIGS]
SHARED = "/mnt/cluster_storage"  # the shared volume of every node; the LLaMA configs keep caches there
TORCH_PIN = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
# vCPUs and GPUs of the machine types in the launcher files: a node type must declare what its machine has.
MACHINES = {
    "m6i.2xlarge": (8, 0), "m6i.8xlarge": (32, 0), "g5.12xlarge": (48, 4), "p4de.24xlarge": (96, 8),
    "n2-standard-8": (8, 0), "n2-standard-32": (32, 0), "g2-standard-48": (48, 4), "a2-ultragpu-8g": (96, 8),
}


def load(path: Path) -> Any:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert len(docs) == 1, f"{path}: one YAML document expected"
    return docs[0]


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CLUSTERS)) for p in paths]


def node_types(path: Path) -> list[NodeType]:
    """The worker types of a launcher file or of a RayCluster manifest, with the resources Ray sees (the plan's
    reading: Ray's own KubeRay conversion for manifests)."""
    return list(from_file(path).types)


def vllm_bundles(cfg: Config) -> tuple[list[dict[str, float]], int]:
    """The resources one vLLM engine replica holds (its placement group's bundles, or its actor's) and how many
    replicas run at once, as Ray's own vLLM stage reserves them for the processor config the code builds."""
    ask = asks.generation_ask(cfg.generation, "model", cpu=False)
    return list(ask.bundles), ask.units


def demands(cfg: Config) -> dict[str, tuple[float, int, int]]:
    """Stage -> (CPUs, GPUs) of one unit that must sit on one node, and how many units run at once: what the
    code asks Ray for."""
    out = {}
    for stage, ask in (("vllm", asks.generation_ask(cfg.generation, "model", cpu=False)),
                       ("scoring", asks.scoring_ask(cfg)), ("train", asks.train_ask(cfg))):
        unit = ask.demand()[0]
        assert all(u == unit for u in ask.demand()), f"{stage}: units of different sizes"
        out[stage] = (unit.get("CPU", 0), int(unit.get("GPU", 0)), len(ask.demand()))
    return out


def hosts(types: list[NodeType], cpus: float, gpus: int, count: int) -> list[str]:
    """The types that hold `count` units within their max nodes: GPU units on GPU types, CPU-only on CPU types."""
    assert count >= 1
    per_node = lambda t: min(t.resources.get("CPU", 0) // cpus if cpus else math.inf,  # noqa: E731
                             t.gpus // gpus if gpus else math.inf)
    return [t.name for t in types if (t.gpus > 0) == (gpus > 0) and per_node(t) * t.max_nodes >= count]


def test_cluster_files_exist() -> None:
    assert [p.name for p in LAUNCHERS] == ["aws.yaml", "gcp.yaml"]
    assert all((KUBERAY / f).is_file() for f in ("raycluster.yaml", "rayjob.yaml", "storage.yaml"))
    assert (CLUSTERS / "README.md").is_file()


@pytest.mark.parametrize("path", LAUNCHERS, ids=ids(LAUNCHERS))
def test_launcher_is_valid_for_ray(path: Path) -> None:
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cluster = load(path)
    jsonschema.validate(cluster, schema)
    validate_config(prepare_config(load(path)))  # what `ray up` runs: the schema plus Ray's own checks
    assert cluster["idle_timeout_minutes"] > 0
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head takes no tasks or actors"
    workers = {k: t for k, t in types.items() if k != cluster["head_node_type"]}
    assert cluster["max_workers"] >= sum(t["max_workers"] for t in workers.values())
    docker = cluster["docker"]
    assert f":{ray.__version__}-" in docker["head_image"] and not docker["head_image"].endswith("-gpu")
    for name, t in workers.items():
        assert t["min_workers"] == 0 and t["max_workers"] >= 1, name
        machine = t["node_config"].get("InstanceType") or t["node_config"]["machineType"]
        assert (t["resources"]["CPU"], t["resources"].get("GPU", 0)) == MACHINES[machine], f"{name}: {machine}"
        image = t.get("docker", {}).get("worker_image", docker["image"])
        assert f":{ray.__version__}-" in image and image.endswith("-gpu") == ("GPU" in t["resources"]), name
        assert "worker_setup_commands" not in t, f"{name}: would replace the common setup"
    assert any(t["resources"].get("GPU", 0) >= 8 for t in workers.values()), "no 8-GPU type for training"


@pytest.mark.parametrize("path", LAUNCHERS, ids=ids(LAUNCHERS))
def test_launcher_installs_the_project_with_its_gpu_extra(path: Path) -> None:
    cluster = load(path)
    assert cluster["file_mounts"] == {"~/udasa-ray": "."}  # `ray up` runs from the repository root
    setup = " && ".join(cluster["setup_commands"])
    assert f"pip install -q {TORCH_PIN}" in setup
    assert re.search(r'pip install -q -e "\$HOME/udasa-ray\[gpu\]"', setup)
    assert f"-v {SHARED}:{SHARED}" in cluster["docker"]["run_options"]
    assert any(SHARED in c and "mount" in c for c in cluster["initialization_commands"])
    provider = cluster["provider"]
    if provider["type"] == "aws":
        assert provider["region"] == "us-west-2" and provider["cache_stopped_nodes"] is False
    else:
        assert provider["type"] == "gcp" and "project_id" in provider and provider["availability_zone"]


@pytest.mark.parametrize("spec", [load(KUBERAY / "raycluster.yaml")["spec"],
                                  load(KUBERAY / "rayjob.yaml")["spec"]["rayClusterSpec"]],
                         ids=["raycluster", "rayjob"])
def test_kuberay_cluster_spec(spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2" and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert {"name": "RAY_enable_autoscaler_v2", "value": "1"} in head["template"]["spec"]["containers"][0]["env"]
    claim = load(KUBERAY / "storage.yaml")["metadata"]["name"]
    groups = spec["workerGroupSpecs"]
    assert groups
    for pod in [head["template"]["spec"], *(g["template"]["spec"] for g in groups)]:
        volumes = {v["name"]: v for v in pod["volumes"]}
        container = pod["containers"][0]
        shared = [m for m in container["volumeMounts"] if m["mountPath"] == SHARED]
        assert len(shared) == 1 and volumes[shared[0]["name"]]["persistentVolumeClaim"]["claimName"] == claim
        assert f":{ray.__version__}-py311" in container["image"]
    for g in groups:
        pod = g["template"]["spec"]
        assert g["minReplicas"] == 0 and g["maxReplicas"] >= 1 and g["replicas"] <= g["maxReplicas"], g["groupName"]
        assert pod["restartPolicy"] == "Never", g["groupName"]
        container = pod["containers"][0]
        gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        assert container["image"].endswith("-gpu") == (gpus > 0), g["groupName"]
    assert any(int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 8
               for g in groups), "no 8-GPU group for training"
    assert any("nvidia.com/gpu" not in g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in groups)


def test_rayjob_runs_align_on_the_raycluster_spec() -> None:
    cluster, job = load(KUBERAY / "raycluster.yaml"), load(KUBERAY / "rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["rayClusterSpec"] == cluster["spec"], "rayjob.yaml's cluster differs from raycluster.yaml"
    python, script, *args = shlex.split(spec["entrypoint"])
    assert (python, script) == ("python", "jobs/align.py") and (ROOT / script).is_file()
    opts = dict(zip(args[::2], args[1::2], strict=True))
    assert (ROOT / opts["--config"]).is_file() and opts["--config"].startswith("configs/")
    assert opts["--run-dir"].startswith(SHARED + "/")
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"]
    assert runtime_env["pip"]["packages"] == [TORCH_PIN, "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}[gpu]"]


def test_shared_volume_is_read_write_many() -> None:
    pvc = load(KUBERAY / "storage.yaml")
    assert (pvc["apiVersion"], pvc["kind"]) == ("v1", "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "Train workers on several nodes share the work dir"


@pytest.mark.parametrize("cluster", CLUSTER_FILES, ids=ids(CLUSTER_FILES))
@pytest.mark.parametrize("config", LLAMA_CONFIGS, ids=LLAMA_IDS)
def test_llama_config_fits_the_node_types(config: tuple[Path, ...], cluster: Path) -> None:
    cfg = load_config(config)
    assert cfg.generation.backend == "vllm" and cfg.train.use_gpu
    assert cfg.models.cache_dir.startswith(SHARED) and cfg.train.work_dir.startswith(SHARED)
    types = node_types(cluster)
    for stage, (cpus, gpus, count) in demands(cfg).items():
        assert hosts(types, cpus, gpus, count), f"{stage}: {count} x ({cpus} CPUs, {gpus} GPUs) fit no node type"
    make_plan("align", cfg, None, from_file(cluster)).check()  # the same, with memory, through the plan


@pytest.mark.parametrize("path", LAUNCHERS, ids=ids(LAUNCHERS))
@pytest.mark.parametrize("config", LLAMA_CONFIGS, ids=LLAMA_IDS)
def test_autoscaler_starts_the_8_gpu_type_for_training(config: tuple[Path, ...], path: Path) -> None:
    """Nothing pins Train workers to a GPU model: Ray's bin packing must choose the 8 x 80 GB type for them."""
    cluster, workers = load(path), list(asks.train_ask(load_config(config)).bundles)
    types = cluster["available_node_types"]
    scorer = partial(_default_utilization_scorer, node_availability_summary=NodeAvailabilitySummary({}))
    added, left = get_nodes_for(types, {}, cluster["head_node_type"], cluster["max_workers"], workers, scorer)
    assert not left and added and all(types[k]["resources"].get("GPU", 0) == 8 for k in added), added
    assert added == {next(k for k, t in types.items() if t["resources"].get("GPU") == 8): 1}, "one node trains"


@pytest.mark.parametrize("override, stage", [
    ("train.cpus_per_worker=200", "train"),  # more CPUs than any GPU node has
    ("train.num_workers=64", "train"),  # 64 GPUs: more than the GPU types' max nodes hold
    ("generation.vllm.tensor_parallel_size=16", "vllm"),  # tensor parallelism beyond one node's GPUs
    ("scoring.cpus_per_actor=64", "scoring"),  # an actor of 3 x 64 CPUs: bigger than any node
    ("scoring.num_actors=20", "scoring"),  # 20 actors x 3 x 5 CPUs: more than the CPU nodes hold
])
def test_fit_check_rejects_what_does_not_fit(override: str, stage: str) -> None:
    cfg = load_config(LLAMA_CONFIGS[0], [override])
    cpus, gpus, count = demands(cfg)[stage]
    step = {"vllm": "generate", "scoring": "score", "train": "train stage 1"}[stage]
    for cluster in CLUSTER_FILES:
        assert not hosts(node_types(cluster), cpus, gpus, count), f"{override} fits {cluster.name}"
        plan = make_plan("align", cfg, None, from_file(cluster))  # CPU actors may spill onto GPU nodes: a warning
        assert any(p.startswith(f"{step} (") for p in plan.problems + plan.warnings), (override, plan.problems)


@pytest.mark.parametrize("config", LLAMA_CONFIGS, ids=LLAMA_IDS)
@pytest.mark.parametrize("tp", [1, 2])
def test_vllm_engine_asks_for_the_actor_resources(config: tuple[Path, ...], tp: int) -> None:
    """`generation.actor_resources` steers the vLLM replicas as it steers the hf actors: on every GPU worker of an
    engine (the placement group's bundles with TP > 1, the engine actor itself with TP = 1), as Ray's stage asks."""
    steer = "generation.actor_resources={accelerator_type:A10G: 0.001, gen_node: 1}"
    cfg = load_config(config, [steer, f"generation.vllm.tensor_parallel_size={tp}"])
    bundles, replicas = vllm_bundles(cfg)
    assert len(bundles) == tp and int(sum(b["GPU"] for b in bundles)) == tp
    assert all(b["accelerator_type:A10G"] == 0.001 and b["gen_node"] == 1 for b in bundles), bundles
    # Without actor_resources, Ray's default placement: no custom resources, the same CPUs and GPUs.
    plain, plain_replicas = vllm_bundles(load_config(config, [f"generation.vllm.tensor_parallel_size={tp}"]))
    assert all(set(b) <= {"CPU", "GPU"} for b in plain), plain
    assert [{k: b[k] for k in ("CPU", "GPU")} for b in bundles] == plain and replicas == plain_replicas


@pytest.mark.parametrize("config", LLAMA_CONFIGS, ids=LLAMA_IDS)
def test_scorer_actors_ask_for_the_scoring_actor_resources(config: tuple[Path, ...]) -> None:
    """`scoring.actor_resources` (per scorer) puts the scorer actors, three scorers each, on the node type that
    carries the label; an actor asks for three scorers' CPUs."""
    cfg = load_config(config, ["scoring.actor_resources={score_node: 1}"])
    labelled = asks.actor_resources(score_step.scorer_pool(cfg))
    plain = asks.actor_resources(score_step.scorer_pool(load_config(config)))
    assert labelled == {"CPU": 3 * cfg.scoring.cpus_per_actor, "score_node": 3}, labelled
    assert plain == {"CPU": labelled["CPU"]}, plain
    ask = asks.scoring_ask(cfg)
    assert ask.bundles == (labelled,) * cfg.scoring.num_actors, ask


def test_reproduce_rayjob_runs_on_the_raycluster() -> None:
    """The reproduce RayJob selects raycluster.yaml's cluster (no spec of its own to drift), runs
    jobs/reproduce.py on configs that load, writes to the shared volume and installs what rayjob.yaml does."""
    cluster, job = load(KUBERAY / "raycluster.yaml"), load(KUBERAY / "rayjob-reproduce.yaml")
    spec = job["spec"]
    assert job["kind"] == "RayJob" and "rayClusterSpec" not in spec
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    python, script, *args = shlex.split(spec["entrypoint"])
    assert (python, script) == ("python", "jobs/reproduce.py") and (ROOT / script).is_file()
    configs = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    cfg = load_config([ROOT / c for c in configs])
    assert cfg.eval.harmless_source.startswith("hf:") and cfg.generation.backend == "vllm"
    assert args[args.index("--out") + 1].startswith(SHARED + "/")
    align_env = load(KUBERAY / "rayjob.yaml")["spec"]["runtimeEnvYAML"]
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == yaml.safe_load(align_env)
