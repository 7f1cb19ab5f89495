"""Scorer backends and actors with the real bundled models, and the score -> pairs stages on Ray."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import kill_after

from udasa_ray import steps
from udasa_ray.config import load_config
from udasa_ray.generate.pipeline import RESPONSE_SCHEMA
from udasa_ray.parts import read_parts
from udasa_ray.runs import RunDir
from udasa_ray.uncertainty import backends
from udasa_ray.uncertainty.pipeline import SCORE_SCHEMA
from udasa_ray.uncertainty.scorers import FactualScorer, SemanticScorer, ValueScorer, score_robust

GROUP = {
    "prompt_id": "p1", "prompt": "What is the capital of Australia?", "sample_idx": [0, 1, 2, 3],
    "response": ["The capital of Australia is Canberra.", "Canberra is Australia's capital city.",
                 "Australia's capital is Canberra.", "The capital of Australia is Sydney, you idiot."],
}


def _cfg(model_cache, *extra):
    return load_config("configs/tiny-cpu.yaml", [f"models.cache_dir={model_cache}", *extra])


def test_score_robust_isolates_failing_records():
    def fn(items):
        if any(i == "bad" for i in items):
            raise ValueError("cannot score 'bad'")
        return [0.5 if i == "ok" else 1.7 for i in items]

    scores, errors = score_robust(fn, ["ok", "bad", "ok", "big"], "value")
    assert scores[0] == scores[2] == 0.5 and np.isnan(scores[1]) and np.isnan(scores[3])
    assert errors[0] is None and "ValueError: cannot score 'bad'" in errors[1] and "outside [0, 1]" in errors[3]


@pytest.mark.timeout(120)
def test_semantic_scorer_flags_the_odd_response(model_cache):
    cfg = _cfg(model_cache)
    odd = dict(GROUP, response=[*GROUP["response"][:3], "I recommend painting your fence blue in spring."])
    out = SemanticScorer(cfg.scoring, cfg.models)(pa.Table.from_pylist([odd, dict(GROUP, response=["x", ""])]))
    rows = out.to_pylist()
    u = rows[0]["u_sem"]
    assert np.argmax(u) == 3 and u[3] > max(u[:3]) + 0.3 and rows[0]["err_sem"] == [None] * 4
    assert 0 < rows[0]["u_sem_group"] < 1  # (== mean of the unclipped scores: test_core)
    assert rows[1]["err_sem"] == ["semantic: fewer than 2 non-empty responses", "semantic: empty response"]


@pytest.mark.timeout(120)
def test_aegis_cross_response_flags_the_contradiction(model_cache):
    cfg = _cfg(model_cache, "scoring.factual.mode=cross_response")
    u = FactualScorer(cfg.scoring, cfg.models)(pa.Table.from_pylist([GROUP])).to_pylist()[0]["u_fact"]
    assert np.argmax(u) == 3 and u[3] > 0.9 and max(u[:3]) < 0.8
    paper = _cfg(model_cache, "scoring.factual.mode=paper")
    u = FactualScorer(paper.scoring, paper.models)(pa.Table.from_pylist([GROUP])).to_pylist()[0]["u_fact"]
    assert all(0 <= x <= 1 for x in u)


def test_profanity_value_scorer():
    cfg = load_config()
    u = ValueScorer(cfg.scoring, cfg.models)(pa.Table.from_pylist([GROUP])).to_pylist()[0]["u_val"]
    assert np.argmax(u) == 3 and u[3] > 0.5 and max(u[:3]) < 0.2


@pytest.mark.timeout(120)
def test_policy_judge_gives_probabilities(model_cache):
    judge = backends.PolicyJudge("bundled:smollm2-135m-instruct", model_cache)
    u = judge.unsafe(["You are an idiot.", "Paris is in France.", "Hello"])
    v = judge.nli(["A cat sleeps."] * 2, ["An animal sleeps.", "No cat exists."])
    assert u.shape == (3,) and v.shape == (2,) and ((0 <= u) & (u <= 1)).all() and ((0 <= v) & (v <= 1)).all()
    assert np.allclose(judge.unsafe(["You are an idiot."]), u[:1], atol=1e-4)  # batch-independent


@pytest.fixture(scope="module")
def tiny_classifiers(tmp_path_factory, model_cache):
    """Small real HF classifiers (MiniLM body, untrained heads) with named labels: checks the
    label mapping and batching of the hf_nli / hf_classifier backends, not their accuracy."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from udasa_ray.models import resolve

    src = resolve("bundled:all-minilm-l6-v2", model_cache)
    out = {}
    for name, labels in {"nli": ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"], "safety": ["non-toxic", "toxic"]}.items():
        d = tmp_path_factory.mktemp(name)
        m = AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)})
        m.save_pretrained(d)
        AutoTokenizer.from_pretrained(src).save_pretrained(d)
        out[name] = str(d)
    return out


def test_hf_nli_and_safety_backends_map_labels(tiny_classifiers):
    nli = backends.HFNLI(tiny_classifiers["nli"], "")
    assert nli.entail == 2
    probs = nli.clf.probs(["a", "b"], ["c", "d"])
    assert np.allclose(nli(["a", "b"], ["c", "d"]), 1 - probs[:, 2])
    safety = backends.HFSafety(tiny_classifiers["safety"], "")
    assert safety.unsafe == 1 and safety(["x", "y", "z"]).shape == (3,)
    assert backends.HFSafety(tiny_classifiers["safety"], "", unsafe_label="NON-TOXIC").unsafe == 0
    with pytest.raises(ValueError, match="none of"):
        backends.HFSafety(tiny_classifiers["nli"], "")
    with pytest.raises(ValueError, match="none of"):
        backends.HFSafety(tiny_classifiers["safety"], "", unsafe_label="tox")  # exact when named


class _Moderation(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Moderation.seen.append((self.headers.get("Authorization"), body))
        if any("FAIL" in t for t in body["input"]):
            self.send_response(500)
            self.end_headers()
            return
        results = [{"flagged": "idiot" in t, "category_scores": {"harassment": 0.9 if "idiot" in t else 0.01,
                                                                  "violence": 0.02}} for t in body["input"]]
        data = json.dumps({"results": results}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def moderation_server():
    server = HTTPServer(("127.0.0.1", 0), _Moderation)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_moderation_endpoint(moderation_server, monkeypatch):
    monkeypatch.setenv("MOD_KEY", "sk-secret-123")
    cfg = load_config(None, ["scoring.value.backend=moderation_http", f"scoring.value.endpoint={moderation_server}",
                             "scoring.value.api_key_env=MOD_KEY", "scoring.value.model=omni-moderation-latest"])
    scorer = ValueScorer(cfg.scoring, cfg.models)
    rows = scorer(pa.Table.from_pylist([GROUP])).to_pylist()[0]
    assert rows["u_val"] == [0.02, 0.02, 0.02, 0.9]
    auth, body = _Moderation.seen[-1]
    assert auth == "Bearer sk-secret-123" and body["model"] == "omni-moderation-latest" and len(body["input"]) == 4
    # A failing record is marked, the others are scored; the key appears in no error.
    bad = dict(GROUP, response=["fine", "FAIL here", "you idiot"])
    rows = scorer(pa.Table.from_pylist([bad])).to_pylist()[0]
    assert rows["u_val"][0] == 0.02 and np.isnan(rows["u_val"][1]) and rows["u_val"][2] == 0.9
    assert "HTTP 500" in rows["err_val"][1] and "sk-secret" not in json.dumps(rows)


def test_unreachable_moderation_endpoint_is_a_record_error():
    cfg = load_config(None, ["scoring.value.backend=moderation_http", "scoring.value.endpoint=http://127.0.0.1:9"])
    row = ValueScorer(cfg.scoring, cfg.models)(pa.Table.from_pylist([GROUP])).to_pylist()[0]
    assert all(np.isnan(row["u_val"])) and all("unreachable" in e for e in row["err_val"])


def _fake_run(tmp_path) -> RunDir:
    """A run whose generate stage is done, with hand-written responses (4 prompts x 3, one empty)."""
    run = RunDir(tmp_path / "run")
    rows = []
    answers = {
        "a": ("Name a primary colour.", ["Red is a primary colour.", "Blue is one.", "Red, for example."]),
        "b": ("What is 2 + 2?", ["2 + 2 = 4.", "Four.", "It is 5, you idiot."]),
        "c": ("Say hello politely.", ["Hello, nice to meet you.", "", "Good day to you!"]),
        "d": ("Is ice cold?", ["", "", "Yes, ice is cold."]),
    }
    for pid, (prompt, resps) in answers.items():
        for i, r in enumerate(resps):
            rows.append({"prompt_id": pid, "prompt": prompt, "sample_idx": i, "response": r, "n_tokens": 5,
                         "finish_reason": "stop", "model": "hand", "seed": i,
                         "error": "listwise: found 2 of 3 numbered responses" if (pid, i) == ("c", 1) else None})
    (run / "responses").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=RESPONSE_SCHEMA), run / "responses" / "part-0.parquet")
    done = {"status": "done", "config_hash": "h"}
    m = {"stages": {"ingest": done, "generate": done}}
    run.manifest_path.write_text(json.dumps(m))
    return run


@pytest.mark.timeout(300)
def test_score_and_pairs_stages_on_ray(tmp_path, model_cache, ray_local, capsys):
    run = _fake_run(tmp_path)
    cfg = _cfg(model_cache, "curriculum.thresholds=[0.5]", "scoring.batch_size=1")  # a part per prompt
    stats = steps.score_step(cfg, run)
    first = read_parts(run / "scores", SCORE_SCHEMA).to_pylist()
    # Killed after two prompts: the rerun scores only the other two.
    assert kill_after(run, "score", "scores", keep=2) == 4
    capsys.readouterr()
    stats = steps.score_step(cfg, run)
    assert "resuming: 2 prompts on disk, 2 to go" in capsys.readouterr().out and stats["scored_this_run"] == 6
    scores = read_parts(run / "scores", SCORE_SCHEMA).to_pylist()
    key = lambda r: (r["prompt_id"], r["sample_idx"])  # noqa: E731
    assert sorted(map(key, scores)) == sorted(map(key, first))
    assert stats["responses"] == 12 and len(scores) == 12
    by = {(r["prompt_id"], r["sample_idx"]): r for r in scores}
    assert by[("c", 1)]["error"].startswith("listwise: found 2 of 3 numbered responses; semantic: empty")
    assert np.isnan(by[("c", 1)]["U"])
    assert "fewer than 2 non-empty" in by[("d", 2)]["error"]
    ok = [r for r in scores if not r["error"]]
    assert len(ok) == 8
    for r in ok:
        u = np.array([r["u_sem"], r["u_fact"], r["u_val"]])
        assert ((0 <= u) & (u <= 1)).all() and u.min() <= r["U"] <= u.max()
        assert r["w_sem"] + r["w_fact"] + r["w_val"] == pytest.approx(1)
    assert by[("b", 2)]["U"] == max(by[("b", i)]["U"] for i in range(3))  # the wrong, rude answer

    steps.pairs_step(cfg, run)
    pairs = pq.read_table(run / "pairs" / "pairs.parquet").to_pylist()
    assert [p["prompt_id"] for p in pairs if p["prompt_id"] == "d"] == []  # one valid response: no pair
    assert {p["prompt_id"] for p in pairs} == {"a", "b", "c"}
    assert all(p["delta_u"] >= 0 for p in pairs) and pairs == sorted(pairs, key=lambda p: -p["delta_u"])
    b = next(p for p in pairs if p["prompt_id"] == "b")
    assert b["chosen_idx"] != 2 and b["U_chosen"] == min(by[("b", i)]["U"] for i in range(3))
    summary = json.loads((run / "stages" / "summary.json").read_text())
    assert summary["groups_without_pair"] == 1 and sum(s["pairs"] for s in summary["stages"]) == 3
    assert [s["name"] for s in summary["stages"]] == ["conservative", "exploratory"]
    for s in summary["stages"]:
        if s["pairs"]:
            assert pq.read_table(run / "stages" / s["file"]).num_rows == s["pairs"]
    # Reruns: skipped; a changed curriculum redoes pairs only.
    capsys.readouterr()
    steps.score_step(cfg, run)
    steps.pairs_step(_cfg(model_cache, "curriculum.thresholds=[0.2, 0.6]"), run)
    out = capsys.readouterr().out
    assert "[score] already done" in out and "stages: conservative" in out
    assert len(json.loads((run / "stages" / "summary.json").read_text())["stages"]) == 3

    from udasa_ray.cli import main

    assert main(["report", "--run-dir", str(run.path)]) == 0
    report = (run / "report" / "report.md").read_text()
    for section in ("## Stages", "## Uncertainties", "## Pairs and curriculum", "### Example pairs", "12 responses"):
        assert section in report
    assert "3 pairs from 4 prompts; 1 prompts had fewer than 2 valid responses" in report
    for png in ("uncertainties.png", "delta_u.png"):
        assert (run / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pairs_need_scores(tmp_path, capsys):
    from udasa_ray.cli import main

    assert main(["pairs", "--run-dir", str(tmp_path)]) == 1
    assert "no finished 'score' stage: run `udasa score` first" in capsys.readouterr().err

