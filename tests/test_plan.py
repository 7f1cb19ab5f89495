"""`udasa plan` and the jobs' start-up check: model sizes from config.json, memory estimates, the recipe matrix
(every recipe x method overlay x paper overlay loads, validates and fits the clusters it is documented for),
every documented command and RayJob entrypoint parsed and its configs loaded and planned, and the jobs
stopping with exit 2 before any work. The one slow test places the plan's placement groups on a local Ray
cluster whose nodes declare the node types' GPUs and custom resources (no CUDA runs)."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from udasa_ray import cli
from udasa_ray.config import ConfigError, load_config
from udasa_ray.plan import METHODS_DIR, default_methods, make_plan, method_configs, preflight
from udasa_ray.plan import memory as mem
from udasa_ray.plan.cluster import from_file, from_flags, from_kuberay, local
from udasa_ray.plan.models import MODEL_CONFIGS, model_shape, shape_from

CLUSTERS = ROOT / "clusters"
GPU_CLUSTERS = [CLUSTERS / "aws.yaml", CLUSTERS / "gcp.yaml", CLUSTERS / "kuberay" / "raycluster.yaml"]
C = "configs/"
# Each recipe (a base, or a base and the overlay its header names) with where it is documented to run, and the
# configs/paper/ overlays documented on it ("" = none).
RECIPES = {
    (C + "tiny-cpu.yaml",): ("local", ["", "cpu-plumbing", "datasets", "literal"]),
    (C + "small-cpu.yaml",): ("local", ["", "cpu-plumbing", "datasets", "literal"]),
    (C + "llama7b.yaml",): ("gpu", ["", "datasets", "literal", "judge-70b"]),
    (C + "llama30b.yaml",): ("gpu", ["", "datasets", "literal", "judge-70b"]),
    (C + "llama7b.yaml", C + "llama30b-data-7b-policy.yaml"): ("gpu", ["", "datasets", "literal", "judge-70b"]),
    (C + "llama7b.yaml", C + "llama7b-smoke.yaml"): ("gpu", ["", "datasets", "judge-70b"]),
}
METHODS = sorted(p.stem for p in METHODS_DIR.glob("*.yaml"))
# What the plan finds and the recipes cannot fix by a setting: (recipe's first config, method) -> the one step
# that does not fit. RLAIF's labeller (pairs/step.py) holds the 30B policy in bf16 (65 GB) and the KV cache of
# 16 questions of two answers each (13 GB) on one GPU: over 80 GB; selfeval's batch is not a setting.
KNOWN_MISFITS = {(C + "llama30b.yaml", "rlaif"): "pairs: RLAIF labels"}


def clusters_for(where: str, cfg) -> list:  # noqa: ANN001
    return [from_file(p) for p in GPU_CLUSTERS] if where == "gpu" else [local(cfg.ray.num_cpus)]


# --- model sizes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [
    ("huggyllama/llama-7b", 6.74e9), ("huggyllama/llama-30b", 32.5e9), ("meta-llama/Llama-3.1-70B-Instruct", 70.6e9),
    ("sentence-transformers/all-MiniLM-L6-v2", 22.7e6), ("microsoft/deberta-large-mnli", 406e6),
    ("s-nlp/roberta_toxicity_classifier", 355e6),
])
def test_parameter_count_from_config_json_matches_the_published_size(name: str, params: float) -> None:
    assert model_shape(name).params == pytest.approx(params, rel=2e-3)


def test_grouped_kv_heads_shrink_attention_and_the_kv_cache() -> None:
    fields = json.loads((MODEL_CONFIGS / "meta-llama--Llama-3.1-70B-Instruct.json").read_text())
    gqa, mha = shape_from("gqa", fields), shape_from("mha", {**fields, "num_key_value_heads": 64})
    assert mha.params - gqa.params == 80 * 2 * 8192 * (64 - 8) * 128  # k and v projections of 80 layers
    assert mha.kv_bytes_per_token() == 8 * gqa.kv_bytes_per_token()
    tied = shape_from("tied", {**fields, "tie_word_embeddings": True})
    assert gqa.params - tied.params == 128256 * 8192


def test_a_local_model_folder_is_read_and_an_unknown_name_offline_is_a_config_error(tmp_path: Path) -> None:
    fields = json.loads((MODEL_CONFIGS / "huggyllama--llama-7b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(fields))
    assert model_shape(str(tmp_path)).params == model_shape("huggyllama/llama-7b").params
    with pytest.raises(ConfigError, match="no-such-org/no-such-model: no config.json found"):
        model_shape("no-such-org/no-such-model")  # HF_HUB_OFFLINE (conftest): nothing is fetched


def test_every_model_the_recipes_name_has_its_config_shipped() -> None:
    for recipe, (_, papers) in RECIPES.items():
        for paper in papers:
            cfg = load_config([*recipe, *([f"{C}paper/{paper}.yaml"] if paper else [])])
            names = [cfg.models.policy, cfg.models.generator, cfg.eval.judge.model, cfg.scoring.semantic.model,
                     cfg.scoring.factual.model if cfg.scoring.factual.backend == "hf_nli" else None,
                     cfg.scoring.value.model if cfg.scoring.value.backend == "hf_classifier" else None]
            for name in filter(None, names):
                if not name.startswith("bundled:"):
                    assert (MODEL_CONFIGS / (name.replace("/", "--") + ".json")).is_file(), (recipe, paper, name)


# --- memory estimates ---------------------------------------------------------------------------------------

def test_memory_of_the_7b_recipe() -> None:
    cfg, shape = load_config([C + "llama7b.yaml"]), model_shape("huggyllama/llama-7b")
    v = mem.vllm(shape, cfg.generation.vllm, 24)  # 0.9 x 24 GB - 13.5 GB of weights - 1.5 GB = 6.6 GB of KV cache
    assert v.ok and v.parts["weights"] == pytest.approx(13.48, abs=0.01) and v.parts["KV cache"] == pytest.approx(6.62,
                                                                                                                 abs=0.01)
    assert v.notes["kv_tokens"] == pytest.approx(6.62e9 / 524288, rel=1e-3)  # 0.5 MB a token: 2 x 32 x 4096 x 2 bytes
    t = mem.train(shape, cfg.train, cfg.train.max_length)  # ZeRO-3 over 8: 16 bytes x 6.74e9 / 8 of states
    assert t.parts["bf16 weights"] + t.parts["bf16 grads"] + t.parts["fp32 master + Adam"] == pytest.approx(
        16 * shape.params / 8 / 1e9)
    assert 20 < t.total < 24


def test_the_30b_recipe_needs_offload_on_8_gpus_and_fits_with_it() -> None:
    cfg, shape = load_config([C + "llama30b.yaml"]), model_shape("huggyllama/llama-30b")
    assert cfg.train.num_workers == 8 and cfg.train.deepspeed.offload
    with_offload = mem.fit(mem.train(shape, cfg.train, 1024), 80)
    assert with_offload.ok and with_offload.notes["host_gb_per_worker"] == pytest.approx(20 * shape.params / 8 / 1e9)
    without = load_config([C + "llama30b.yaml"], ["train.deepspeed.offload=false"]).train
    assert not mem.fit(mem.train(shape, without, 1024), 80).ok


def test_vllm_refuses_what_leaves_no_room_for_one_sequence() -> None:
    cfg = load_config([C + "llama7b.yaml"], ["eval.judge.vllm.tensor_parallel_size=4"])
    judge = model_shape("meta-llama/Llama-3.1-70B-Instruct")
    assert not mem.vllm(judge, cfg.eval.judge.vllm, 24).ok  # 35.3 GB of weights a GPU
    assert mem.vllm(judge, cfg.eval.judge.vllm, 80).ok
    odd = load_config([C + "llama30b.yaml"], ["generation.vllm.tensor_parallel_size=8"]).generation.vllm
    assert "does not divide 52 attention heads" in mem.vllm(model_shape("huggyllama/llama-30b"), odd, 80).why


# --- the recipe matrix --------------------------------------------------------------------------------------

def test_the_matrix_covers_every_recipe_and_overlay() -> None:
    bases = {Path(c).name for r in RECIPES for c in r}
    assert bases == {p.name for p in (ROOT / "configs").glob("*.yaml")}, "a recipe in configs/ is not in RECIPES"
    papers = {p for _, ps in RECIPES.values() for p in ps if p}
    assert papers == {p.stem for p in (ROOT / "configs" / "paper").glob("*.yaml")}


@pytest.mark.parametrize("recipe, paper", [(r, p) for r, (_, ps) in RECIPES.items() for p in ps],
                         ids=[f"{'+'.join(Path(c).stem for c in r)}{'+' + p if p else ''}"
                              for r, (_, ps) in RECIPES.items() for p in ps])
def test_recipe_x_method_x_paper_overlay_loads_and_fits_its_clusters(recipe: tuple[str, ...], paper: str) -> None:
    """Each method overlay on the recipe (and paper overlay) loads and validates, and its plan (its shared steps,
    training and evaluation) fits every cluster the recipe is documented for; so does the align job's plan."""
    where = RECIPES[recipe][0]
    configs = [str(ROOT / c) for c in recipe] + ([str(ROOT / C / "paper" / f"{paper}.yaml")] if paper else [])
    base = load_config(configs)
    cfgs = method_configs(configs, [], ["vanilla", *METHODS])
    for cluster in clusters_for(where, base):
        assert not make_plan("align", base, None, cluster).problems, cluster.name
        for m, cfg in cfgs.items():
            plan = make_plan("reproduce", base, {m: cfg}, cluster)
            known = KNOWN_MISFITS.get((recipe[0], m))
            assert all(known and p.startswith(known + " (") for p in plan.problems), (m, cluster.name, plan.problems)
            assert not known or plan.problems, f"{recipe[0]} + {m} fits now: drop it from KNOWN_MISFITS"


# --- the five start-up bugs ---------------------------------------------------------------------------------

def test_rain_loads_over_the_vllm_recipes_and_searches_on_the_evaluation_gpu() -> None:
    """Bug: configs/methods/rain.yaml over llama7b.yaml raised `eval.decoding: rain runs on the hf generation
    backend`, so the documented `jobs/reproduce.py --config configs/llama7b.yaml ...` exited 2 at start-up."""
    for recipe in [list(r) for r in RECIPES if RECIPES[r][0] == "gpu"]:
        base = load_config(recipe)
        rain = method_configs(recipe, [], ["rain"])["rain"]
        plan = make_plan("reproduce", base, {"rain": rain}, from_file(CLUSTERS / "aws.yaml"))
        (step,) = [r for r in plan.rows if r.step.name == "eval: generate (RAIN)"]
        assert step.step.ask.gpus == 1 and not plan.problems, plan.problems  # the evaluation's task, one GPU


def test_evaluation_of_a_7b_policy_runs_on_a_gpu() -> None:
    """Bug: eval.num_gpus was 0 in the LLaMA recipes: the multiple-choice log-likelihoods and GCG of a 7B policy on
    a CPU worker. The plan now refuses a causal LM over 2B parameters on CPUs of a cluster that has GPUs."""
    aws = from_file(CLUSTERS / "aws.yaml")
    for recipe, tasks in (([C + "llama7b.yaml"], '["truthful", "robust"]'), ([C + "llama30b.yaml"], '["truthful"]')):
        cfg = load_config(recipe, [f"eval.tasks={tasks}"])
        rows = make_plan("eval", cfg, None, aws).rows
        assert all(r.step.ask.gpus == 1 for r in rows if r.step.name != "eval: generate") and not any(
            r.problems for r in rows)
        on_cpus = make_plan("eval", load_config(recipe, [f"eval.tasks={tasks}", "eval.num_gpus=0"]), None, aws)
        assert any("runs on CPUs on a cluster with GPUs" in p for p in on_cpus.problems), on_cpus.problems


def test_the_30b_recipe_trains_on_one_8_gpu_node() -> None:
    """Bug: llama30b.yaml asked for 16 Train workers, more than the 8-GPU node it is written for."""
    cfg = load_config([C + "llama30b.yaml"])
    one_node = from_flags(8, None, "A100-80GB")
    make_plan("align", cfg, None, one_node).check()
    for path in GPU_CLUSTERS:
        rows = make_plan("align", cfg, None, from_file(path)).rows
        trains = [r for r in rows if r.step.name.startswith("train stage")]
        assert trains and all(len(r.starts) == 1 and list(r.starts.values()) == [1] for r in trains)
        assert all("80gb" in next(iter(r.starts)) for r in trains), [r.starts for r in trains]
    before = load_config([C + "llama30b.yaml"], ["train.num_workers=16", "train.grad_accum=4"])
    problems = make_plan("align", before, None, one_node).problems
    assert any(p.startswith("train stage 1") and "16 x {CPU 8, GPU 1} (16 GPUs)" in p for p in problems), problems


def test_the_70b_judge_is_kept_off_the_24_gb_types() -> None:
    """Bug: the documented 70B judge (TP 4, 141 GB of weights) had no placement and could land on 4 x 24 GB."""
    configs = [C + "llama7b.yaml", C + "paper/judge-70b.yaml"]
    documented_before = ["eval.judge.backend=vllm", "eval.judge.model=meta-llama/Llama-3.1-70B-Instruct",
                         "eval.judge.vllm.tensor_parallel_size=4"]  # docs/reproduction.md's overrides
    for path in GPU_CLUSTERS:
        cluster = from_file(path)
        small = next(t.name for t in cluster.types if t.gpus == 4)
        plan = make_plan("eval", load_config(configs), None, cluster)
        (judge,) = [r for r in plan.rows if r.step.name == "eval: judge"]
        assert not plan.problems and judge.hosts == [next(t.name for t in cluster.types if t.gpus == 8)]
        assert judge.memory.ok and judge.memory.parts["weights"] == pytest.approx(35.3, abs=0.1)
        loose = make_plan("eval", load_config([C + "llama7b.yaml"], documented_before), None, cluster)
        assert any(small in p and "35.3 GB of weights" in p for p in loose.problems), loose.problems


def test_every_rayjob_runs_on_an_autoscaling_cluster() -> None:
    """Bug: rayjob-reproduce.yaml embedded a cluster without autoscaling (its groups stayed at `replicas` 0). Each
    RayJob's cluster, embedded or selected by name, autoscales, and a spec without autoscaling plans no nodes."""
    for path in sorted((CLUSTERS / "kuberay").glob("rayjob*.yaml")):
        cluster = from_file(path)
        assert cluster.autoscaling and all(t.max_nodes >= 1 for t in cluster.types), path
    doc = yaml.safe_load((CLUSTERS / "kuberay" / "rayjob.yaml").read_text())
    spec = doc["spec"]["rayClusterSpec"]
    fixed = {**spec, "enableInTreeAutoscaling": False}
    frozen = from_kuberay({**doc, "spec": {**doc["spec"], "rayClusterSpec": fixed}}, CLUSTERS / "kuberay" / "x.yaml")
    assert not frozen.autoscaling and all(t.max_nodes == 0 for t in frozen.types)
    assert make_plan("align", load_config([C + "llama7b.yaml"]), None, frozen).problems


# --- documented commands ------------------------------------------------------------------------------------

COMMAND = re.compile(r"(python jobs/\w+\.py|udasa [a-z][\w-]*)")
DOC_FILES = [ROOT / "README.md", CLUSTERS / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "configs").rglob("*.yaml")), *sorted(CLUSTERS.glob("*.yaml"))]


def _logical_lines(path: Path) -> list[str]:
    """The file's lines with `\\`-continued lines joined (YAML comments' `#` dropped) and inline code spans that
    wrap joined."""
    lines = [re.sub(r"^\s*#\s?", "", x) if path.suffix == ".yaml" else x for x in path.read_text().splitlines()]
    out: list[str] = []
    carry = ""
    for line in lines:
        line = carry + line
        if line.rstrip().endswith("\\") or (not line.lstrip().startswith("```") and line.count("`") % 2):
            carry = line.rstrip().removesuffix("\\") + " "
            continue
        carry = ""
        out.append(line)
    return out


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) of every `python jobs/...` and `udasa ...` command in the docs, and the RayJobs' entrypoints."""
    found = []
    for path in DOC_FILES:
        for n, line in enumerate(_logical_lines(path), 1):
            for m in COMMAND.finditer(line):
                text = re.split(r"`|\s#\s|\s{2,}#", line[m.start():])[0]
                found.append((f"{path.relative_to(ROOT)}:{n}", text))
    for path in sorted((CLUSTERS / "kuberay").glob("rayjob*.yaml")):
        found.append((str(path.relative_to(ROOT)), yaml.safe_load(path.read_text())["spec"]["entrypoint"]))
    return found


def parse(command: str) -> dict:
    """The job, configs, overrides, methods, tasks and cluster of a command line (placeholders dropped)."""
    tokens = [t for t in shlex.split(command.replace("...", " ")) if not re.fullmatch(r"\[.*\]|\[.*|.*\]", t)]
    tokens += [""]  # an option cut off at the end of a line reads an empty value
    job = tokens[1].removeprefix("jobs/").removesuffix(".py") if tokens[0] == "python" else "udasa " + tokens[1]
    out = {"job": job, "configs": [], "overrides": [], "methods": None, "tasks": None, "cluster": None, "plan": None}
    i, lists = 2, {"--methods": "methods", "--tasks": "tasks"}
    while i < len(tokens):
        t = tokens[i]
        if t in lists:
            j = i + 1
            while j < len(tokens) and tokens[j] and not tokens[j].startswith("--") and "=" not in tokens[j]:
                j += 1
            out[lists[t]], i = tokens[i + 1 : j], j
        elif t == "--config":
            out["configs"] += [tokens[i + 1]] if tokens[i + 1] else []
            i += 2
        elif t in ("--cluster", "--job"):
            out["cluster" if t == "--cluster" else "plan"] = tokens[i + 1]
            i += 2
        elif t.startswith("--"):
            i += 2 if t in ("--run-dir", "--out", "--model", "--label", "--gpus-per-node", "--gpu-memory", "--gpu",
                            "--format", "--data", "--repo-id") else 1
        else:
            out["overrides"] += [t] if "=" in t and not t.startswith(("-", "/")) else []
            i += 1
    return out


def test_the_command_parser_reads_a_documented_command() -> None:
    got = parse("python jobs/reproduce.py --config configs/llama7b.yaml --out /x eval.limit=8 --methods vanilla rain "
                "--tasks harmless robust --cluster clusters/aws.yaml")
    assert got == {"job": "reproduce", "configs": ["configs/llama7b.yaml"], "overrides": ["eval.limit=8"],
                   "methods": ["vanilla", "rain"], "tasks": ["harmless", "robust"], "cluster": "clusters/aws.yaml",
                   "plan": None}


def test_every_documented_command_loads_its_configs_and_fits_its_cluster() -> None:
    """Every command line in the README, docs/, clusters/ and configs/ comments, and every RayJob entrypoint: its
    configs (each method's, for the methods jobs) load, and its plan fits the cluster it names, or, for a GPU
    recipe, every cluster file; a CPU recipe, this machine's local Ray."""
    checked = []
    for where, command in documented_commands():
        try:
            c = parse(command)
        except ValueError:  # prose, not a command (an apostrophe after a command's name)
            continue
        if not c["configs"] or not all(p.startswith("configs/") and (ROOT / p).is_file() for p in c["configs"]):
            continue  # a placeholder (`--config C`) or no recipe
        configs = [str(ROOT / p) for p in c["configs"]]
        overrides = c["overrides"] + ([f"eval.tasks={json.dumps(c['tasks'])}"] if c["tasks"] else [])
        base = load_config(configs, overrides)
        job = c["plan"] or {"align": "align", "reproduce": "reproduce", "compare_methods": "compare_methods",
                            "tune_thresholds": "tune_thresholds", "udasa tune": "tune_thresholds",
                            "udasa eval": "eval"}.get(c["job"], "align")
        cfgs = (method_configs(configs, overrides, c["methods"] or default_methods(job))
                if job in ("reproduce", "compare_methods") else None)
        gpu = base.generation.backend == "vllm" or base.train.use_gpu
        clusters = ([from_file(ROOT / c["cluster"])] if c["cluster"] else
                    [from_file(p) for p in GPU_CLUSTERS] if gpu else [local(base.ray.num_cpus)])
        for cluster in clusters:
            plan = make_plan(job, base, cfgs, cluster)
            assert not plan.problems, (where, command, cluster.name, plan.problems)
        checked.append(where)
    assert len(checked) >= 25 and any("rayjob-reproduce" in w for w in checked) and any(
        w.startswith("docs/reproduction.md") for w in checked), checked


def test_the_docs_quote_the_plans_figures() -> None:
    """The memory, time and GPU-hour figures in the README and docs are the plan's, recomputed here."""
    aws = from_file(CLUSTERS / "aws.yaml")
    readme, plan_md, reproduction, cluster_md = (path.read_text() for path in (
        ROOT / "README.md", ROOT / "docs" / "results" / "plan.md", ROOT / "docs" / "reproduction.md",
        ROOT / "docs" / "cluster.md"))
    align = make_plan("align", load_config([C + "llama7b.yaml"]), None, aws)
    gen, train = align.rows[0].memory, align.rows[2].memory
    assert (f"vLLM {gen.total:.1f} of 24 GB ({gen.parts['weights']:.1f} GB\nof weights, {gen.parts['KV cache']:.1f} "
            f"GB of KV cache), ZeRO-3 training {train.total:.1f} of 80 GB") in readme
    assert f"about {align.seconds / 3600:.0f} hours and {align.gpu_hours:.0f}\nGPU-hours" in readme
    assert f"**{align.seconds / 3600:.1f} h** | **{align.gpu_hours:.0f}**" in plan_md
    configs = [C + "llama7b.yaml", C + "paper/datasets.yaml", C + "paper/judge-70b.yaml"]
    full = make_plan("reproduce", load_config(configs), method_configs(configs, [], default_methods("reproduce")), aws)
    assert f"**about {full.gpu_hours:.0f} GPU-hours**" in reproduction
    assert f"{full.seconds / 3600:.0f} hours of wall time" in reproduction
    assert f"**{full.seconds / 3600:.1f} h** | **{full.gpu_hours:.0f}**" in plan_md
    robust = ['eval.tasks=["harmless", "helpful", "truthful", "sentiment", "robust"]']
    gcg = sum(r.gpu_hours for r in make_plan("reproduce", load_config(configs, robust), method_configs(
        configs, robust, default_methods("reproduce")), aws).rows if r.step.name == "eval: GCG suffixes")
    assert f"add {gcg:,.0f} GPU-hours" in reproduction
    smoke_configs = [C + "llama7b.yaml", C + "llama7b-smoke.yaml"]
    smoke = make_plan("reproduce", load_config(smoke_configs, robust),
                      method_configs(smoke_configs, robust, ["vanilla", "three-stage", "rain"]), aws)
    assert f"estimates {smoke.seconds / 3600:.1f} hours" in cluster_md
    assert f"{smoke.gpu_hours:.1f}\nGPU-hours" in cluster_md
    assert f"**{smoke.seconds / 3600:.1f} h** | **{smoke.gpu_hours:.1f}**" in plan_md
    t30 = make_plan("align", load_config([C + "llama30b.yaml"]), None, aws).rows[2].memory
    assert f"{t30.total:.1f} GB a GPU" in plan_md and f"{t30.notes['host_gb_per_worker']:.0f} GB a worker" in plan_md


# --- the command and the jobs -------------------------------------------------------------------------------

def test_udasa_plan_prints_the_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--config", C + "llama7b.yaml", "--cluster", "clusters/aws.yaml"]) == 0
    out = capsys.readouterr().out
    assert "| generate |" in out and "1 x gpu_8x_a100_80gb" in out and "GPU-hours" in out
    assert cli.main(["plan", "--config", C + "llama7b.yaml", "--gpus-per-node", "8", "--gpu", "A100-80GB", "--json",
                     "--job", "reproduce", "--methods", "vanilla", "rain"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["fits"] and {s["step"] for s in plan["steps"]} >= {"eval: generate", "eval: generate (RAIN)"}
    assert plan["gpu_hours"] > 0 and all(s["memory_gb"] is None or s["memory_gb"]["fits"] for s in plan["steps"])


def test_udasa_plan_exits_2_naming_the_step_resource_and_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--config", C + "llama7b.yaml", "--cluster", "clusters/aws.yaml",
                     "train.num_workers=64"]) == 2
    err = capsys.readouterr().err
    assert "udasa: config error: does not fit clusters/aws.yaml: train stage 1" in err
    assert "64 x {CPU 8, GPU 1} (64 GPUs) at once; the node types hold 24 at most" in err


def test_a_local_run_is_not_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert preflight("align", load_config([C + "llama7b.yaml"], ["train.num_workers=64"])) is None


def test_a_job_on_a_cluster_without_a_cluster_file_says_what_it_did_not_check(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("HOME", str(tmp_path))  # no launcher bootstrap config here
    assert preflight("align", load_config([C + "llama7b.yaml"])) is None
    assert "placement and memory not checked" in capsys.readouterr().out


@pytest.mark.parametrize("script, args", [
    ("align.py", ["--run-dir", "{tmp}/run"]),
    ("reproduce.py", ["--out", "{tmp}/run", "--methods", "vanilla", "three-stage"]),
    ("compare_methods.py", ["--out", "{tmp}/run", "--methods", "vanilla", "three-stage"]),
    ("tune_thresholds.py", ["--run-dir", "{tmp}/run"]),
])
def test_jobs_on_a_cluster_stop_with_exit_2_before_any_work(script: str, args: list[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """On a cluster (RAY_ADDRESS set, nothing listening: Ray is never reached), a recipe whose training does
    not fit the cluster file stops the job at start-up with exit 2, the step and the numbers, and no run dir."""
    argv = [script, "--config", C + "llama7b.yaml", "--cluster", "clusters/aws.yaml", "train.num_workers=64",
            *[a.format(tmp=tmp_path) for a in args]]  # overrides before --methods
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.syspath_prepend(str(ROOT / "jobs"))
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "jobs" / script), run_name="__main__")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{script.removesuffix('.py')}: config error: does not fit clusters/aws.yaml: " in err and "(64 GPUs)" in err
    assert not (tmp_path / "run").exists()


# --- placement on Ray itself --------------------------------------------------------------------------------

PLACE = textwrap.dedent("""
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
    from udasa_ray.config import load_config
    from udasa_ray.plan import make_plan, method_configs
    from udasa_ray.plan.cluster import from_file

    configs = ["configs/llama7b.yaml", "configs/paper/judge-70b.yaml"]
    aws = from_file("clusters/aws.yaml")
    base = load_config(configs)
    plan = make_plan("reproduce", base, method_configs(configs, [], ["vanilla", "three-stage", "rain"]), aws)
    assert not plan.problems, plan.problems
    nodes = {}  # the most nodes of each type that one step starts
    for row in plan.rows:
        for t, n in row.starts.items():
            nodes[t] = max(nodes.get(t, 0), n)
    cluster = Cluster()
    cluster.add_node(num_cpus=0)  # the head, as in the launcher file
    ids = {}
    for t in aws.types:
        for _ in range(nodes.get(t.name, 0)):
            custom = {k: v for k, v in t.resources.items() if k not in ("CPU", "GPU")}
            node = cluster.add_node(num_cpus=t.resources["CPU"], num_gpus=t.resources.get("GPU", 0),
                                    resources=custom, object_store_memory=80 * 2**20)
            ids[node.node_id] = t.name
    ray.init(address=cluster.address)
    placed = {}
    for row in plan.rows:
        ask, groups = row.step.ask, []
        if ask.strategy == "STRICT_PACK":
            groups = [placement_group(list(ask.bundles), strategy="STRICT_PACK") for _ in range(ask.units)]
        else:
            groups = [placement_group(list(ask.bundles) * ask.units, strategy=ask.strategy)]
        ok = all(g.wait(20) for g in groups)
        where = sorted({ids[n] for g in groups for n in placement_group_table(g)["bundles_to_node_id"].values()})
        placed[row.step.name] = {"ok": ok, "types": where, "hosts": row.hosts}
        for g in groups:
            remove_placement_group(g)
    from udasa_ray.train.step import scaling_config
    cfg30 = load_config(["configs/llama30b.yaml"])
    group = scaling_config(cfg30.train).as_placement_group_factory()()  # Ray Train's own placement group
    placed["30b train (Ray Train's group)"] = {"ok": group.wait(20), "types": sorted({ids[n] for n in
        placement_group_table(group)["bundles_to_node_id"].values()}), "hosts": ["gpu_4x_a10g_24gb",
        "gpu_8x_a100_80gb"]}
    remove_placement_group(group)
    old = scaling_config(load_config(["configs/llama30b.yaml"], ["train.num_workers=24"]).train)
    group = old.as_placement_group_factory()()
    placed["24 workers"] = {"ok": group.wait(3)}
    print("PLACED " + json.dumps(placed))
    ray.shutdown()
    cluster.shutdown()  # no Ray left for the next test to find and join
""")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_plans_placement_groups_place_on_a_cluster_of_the_node_types(tmp_path: Path) -> None:
    """Every step of a reproduction (7B, the 70B judge, UDASA, vanilla, RAIN) as real placement groups, and the
    30B recipe's Ray Train group, on a local Ray cluster with the nodes the plan starts for clusters/aws.yaml
    (each declaring its type's CPUs, GPUs and label resources): each places, on the node types the plan says."""
    env = {**os.environ, "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", "/tmp/ray-plan")}
    r = subprocess.run([sys.executable, "-c", PLACE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-3000:]
    placed = json.loads(r.stdout.split("PLACED ", 1)[1])
    for name, p in placed.items():
        if name == "24 workers":
            assert not p["ok"], "24 GPUs placed on a cluster of one 8-GPU and one 4-GPU node"
            continue
        assert p["ok"], (name, p)
        assert "hosts" not in p or set(p["types"]) <= set(p["hosts"]), (name, p)
    assert placed["eval: judge"]["types"] == ["gpu_8x_a100_80gb"]  # pinned by its label resource
    # Nothing pins Train workers: with a 24 GB node up, PACK may put some of them there (the plan warns: host
    # memory of ZeRO offload for 30B), as it did when this test was written.
    print("30B train placed on", placed["30b train (Ray Train's group)"]["types"])


def test_rain_in_the_evaluations_task_answers_as_the_hf_actors_did(model_cache, ray_local, tmp_path: Path) -> None:
    """RAIN's answers made in the evaluation's Ray task (eval.num_cpus / num_gpus, where the policy is evaluated)
    are the ones the hf backend's actor pool made (same seeds, same threads), and a rerun resumes nothing."""
    import dataclasses

    from udasa_ray.evaluate.step import rain_subrun
    from udasa_ray.generate.step import generate_subrun

    cfg = load_config([C + "tiny-cpu.yaml", C + "methods/rain.yaml"],
                      [f"models.cache_dir={model_cache}", "generation.max_new_tokens=8", "generation.n=2",
                       "generation.rain.max_searches=2", "generation.rain.segment_tokens=4"])
    cfg = dataclasses.replace(cfg, generation=dataclasses.replace(cfg.generation, decoding="rain"))
    prompts = [{"prompt_id": f"p{i}", "prompt": q} for i, q in enumerate(["How do I boil an egg?", "Name a color."])]
    by_task, key = rain_subrun(tmp_path / "task", cfg, prompts, "", False)
    by_actors, actors_key = generate_subrun(tmp_path / "actors", cfg, prompts)
    rows = lambda t: sorted((r["prompt_id"], r["sample_idx"], r["response"], r["seed"]) for r in t.to_pylist())  # noqa: E731
    assert rows(by_task) == rows(by_actors) and len(rows(by_task)) == 4 and key == actors_key
    again, _ = rain_subrun(tmp_path / "task", cfg, prompts, "", False)
    assert rows(again) == rows(by_task)
