"""Scorer backends and actors with the real bundled models, and the score -> pairs stages on Ray."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, kill_after

from udasa_ray.config import load_config
from udasa_ray.generate.step import RESPONSE_SCHEMA
from udasa_ray.http import EndpointUnreachable
from udasa_ray.parts import read_parts
from udasa_ray.pipeline import run_pipeline
from udasa_ray.runs import RunDir
from udasa_ray.score import backends
from udasa_ray.score.scorers import FactualScorer, SemanticScorer, ValueScorer, score_robust
from udasa_ray.score.step import SCORE_SCHEMA, ScorerChain

GROUP = {
    "prompt_id": "p1", "prompt": "What is the capital of Australia?", "sample_idx": [0, 1, 2, 3],
    "response": ["The capital of Australia is Canberra.", "Canberra is Australia's capital city.",
                 "Australia's capital is Canberra.", "The capital of Australia is Sydney, you idiot."],
}


def _cfg(model_cache, *extra):
    return load_config(ROOT / "configs" / "tiny-cpu.yaml", [f"models.cache_dir={model_cache}", *extra])


def test_score_robust_isolates_failing_records():
    def fn(items):
        if any(i == "bad" for i in items):
            raise ValueError("cannot score 'bad'")
        return [0.5 if i == "ok" else 1.7 for i in items]

    scores, errors = score_robust(fn, ["ok", "bad", "ok", "big"], "value")
    assert scores[0] == scores[2] == 0.5 and np.isnan(scores[1]) and np.isnan(scores[3])
    assert errors[0] is None and "ValueError: cannot score 'bad'" in errors[1] and "outside [0, 1]" in errors[3]

    calls = []

    def down(items):  # an endpoint that nothing answers: record by record would only fail slower
        calls.append(items)
        raise EndpointUnreachable("moderation endpoint http://x: unreachable (refused) after 3 attempts",
                                  "http://x", "unreachable (refused)", None, 3)

    scores, errors = score_robust(down, ["a", "b", "c"], "value")
    assert len(calls) == 1 and np.isnan(scores).all() and len(set(errors)) == 1 and "unreachable" in errors[0]


PARAPHRASES = [*GROUP["response"][:3], "Canberra is the capital of Australia."]
UNRELATED = ["I recommend painting your fence blue in spring.", "Bananas are rich in potassium.",
             "The train to Paris leaves at noon.", "Canberra is the capital of Australia."]


@pytest.fixture(scope="module")
def shared():
    """Backends built once for the module's scorers (the `shared` argument validate-scorers uses)."""
    return {}


@pytest.mark.timeout(120)
def test_semantic_scorer_flags_the_odd_response(model_cache, shared):
    cfg = _cfg(model_cache)
    odd = dict(GROUP, response=[*GROUP["response"][:3], UNRELATED[0]])
    groups = [odd, dict(GROUP, response=PARAPHRASES), dict(GROUP, response=UNRELATED), dict(GROUP, response=["x", ""])]
    rows = SemanticScorer(cfg.scoring, cfg.models, shared)(pa.Table.from_pylist(groups)).to_pylist()
    u = rows[0]["u_sem"]
    assert np.argmax(u) == 3 and u[3] > max(u[:3]) + 0.3 and rows[0]["err_sem"] == [None] * 4
    # Paraphrases of one answer are far less uncertain than answers about unrelated things, each
    # and as a group; one odd answer among paraphrases lies in between.
    para, unrelated = rows[1]["u_sem"], rows[2]["u_sem"]
    assert max(para) + 0.5 < min(unrelated)
    assert rows[1]["u_sem_group"] + 0.1 < rows[0]["u_sem_group"] < rows[2]["u_sem_group"] - 0.1
    assert rows[3]["err_sem"] == ["semantic: fewer than 2 non-empty responses", "semantic: empty response"]


@pytest.mark.timeout(120)
def test_a_scorer_actor_uses_every_cpu_it_asks_for(model_cache):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what Ray gives an actor of 1.5 CPUs (the default's 3 scorers x 0.5)
        ScorerChain(_cfg(model_cache))
        assert torch.get_num_threads() == 2
        ScorerChain(_cfg(model_cache, "scoring.cpus_per_actor=0.3"))  # 0.9 CPUs: one thread
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# Known pairs for the bundled NLI model: a hypothesis the premise entails, one it contradicts, and
# unrelated text (the model tells contradiction from the rest: see backends.AegisNLI).
ENTAILED = [("The cat is sleeping on the sofa.", "A cat is asleep."),
            ("Canberra is the capital of Australia.", "Australia's capital city is Canberra."),
            ("She bought three apples and two pears at the market.", "She bought fruit.")]
CONTRADICTED = [("The cat is sleeping on the sofa.", "The cat is awake and running outside."),
                ("Canberra is the capital of Australia.", "Sydney is the capital of Australia."),
                ("She bought three apples and two pears at the market.", "She bought nothing at the market.")]
UNRELATED_PAIRS = [("The cat is sleeping on the sofa.", "The stock market fell sharply on Tuesday."),
                   ("Canberra is the capital of Australia.", "Bake the bread for forty minutes.")]


@pytest.mark.timeout(120)
def test_aegis_nli_orders_known_pairs(model_cache):
    nli = backends.AegisNLI("bundled:aegis-nli", model_cache, 2)
    pairs = ENTAILED + CONTRADICTED + UNRELATED_PAIRS
    u = nli([p for p, _ in pairs], [h for _, h in pairs])
    ent, con, unrelated = u[:3], u[3:6], u[6:]
    assert min(con) > 0.9 and max(ent) < 0.8 and min(con) - max(ent) > 0.2  # u_fact = P(contradiction)
    assert max(unrelated) < min(ent)
    alone = np.array([nli([p], [h])[0] for p, h in pairs])  # each in a run of its own (see AegisNLI.CHUNK)
    assert min(alone[3:6]) > 0.9 and max(alone[:3]) < 0.8 and max(alone[6:]) < min(alone[:3])


FLIGHT = {"prompt_id": "f", "prompt": "My flight to Rome leaves on Friday morning. When does my flight leave?",
          "response": ["Your flight leaves on Friday morning.", "Your flight leaves on Monday evening.",
                       "It leaves Friday.", "Your flight was cancelled and never leaves."]}


@pytest.mark.timeout(120)
def test_aegis_cross_response_flags_the_contradiction(model_cache, shared):
    cfg = _cfg(model_cache, "scoring.factual.mode=cross_response")
    cross = FactualScorer(cfg.scoring, cfg.models, shared)
    u = cross(pa.Table.from_pylist([GROUP])).to_pylist()[0]["u_fact"]
    assert np.argmax(u) == 3 and u[3] > 0.9 and max(u[:3]) < 0.8
    # Paper mode: the premise is the prompt. Answers that contradict what it states score higher
    # than answers that agree with it, whatever the other answers say. By how much depends on the machine
    # (int8 kernels differ by CPU): an AVX2 AMD EPYC passed a 0.3 gap, an Intel Xeon with AVX512-VNNI
    # scores these [0.76, 0.99, 0.48, 0.99].
    paper = FactualScorer(_cfg(model_cache, "scoring.factual.mode=paper").scoring, cfg.models, shared)
    right, r = FLIGHT["response"][0], FLIGHT["response"]
    among_right = dict(FLIGHT, response=[right, r[2], "Friday morning is when it leaves."])
    among_wrong = dict(FLIGHT, response=[right, r[1], r[3]])
    groups = pa.Table.from_pylist([FLIGHT, among_right, among_wrong])
    rows = paper(groups).to_pylist()
    u = rows[0]["u_fact"]
    assert min(u[1], u[3]) > max(u[0], u[2]) + 0.15 and rows[0]["err_fact"] == [None] * 4
    assert rows[1]["u_fact"][0] == rows[2]["u_fact"][0] == u[0]  # only the prompt counts (10 pairs: one run)
    # Cross-response mode: the same right answer is uncertain among answers that contradict it.
    rows = cross(groups).to_pylist()
    assert rows[2]["u_fact"][0] > rows[1]["u_fact"][0] + 0.3


@pytest.mark.timeout(120)
def test_scorers_score_only_the_targets_asked_for(model_cache, shared, monkeypatch):
    """validate-scorers asks for one response of a group: same score as when all are scored."""
    monkeypatch.setattr(backends.AegisNLI, "CHUNK", 1)  # a pair's score alone, not moved by its neighbours
    cfg = _cfg(model_cache, "scoring.factual.mode=cross_response")
    for scorer in (FactualScorer(cfg.scoring, cfg.models, shared), ValueScorer(cfg.scoring, cfg.models, shared)):
        full, _ = scorer.score_groups([dict(GROUP)])
        one, err = scorer.score_groups([dict(GROUP)], targets=(3,))
        assert one[0][3] == full[0][3] and np.isnan(one[0][:3]).all()
        assert err[0][3] is None and all(e.endswith(": not asked") for e in err[0][:3])


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


# Small real HF classifiers (MiniLM body) whose head is fixed to give the same class probabilities
# for every input: the backends' label mapping is then checked against numbers known in advance.
HEADS = {"nli": {"CONTRADICTION": 0.1, "NEUTRAL": 0.3, "ENTAILMENT": 0.6},
         "nli_reordered": {"ENTAILMENT": 0.6, "CONTRADICTION": 0.1, "NEUTRAL": 0.3},
         "safety": {"non-toxic": 0.8, "toxic": 0.2}}


@pytest.fixture(scope="module")
def tiny_classifiers(tmp_path_factory, model_cache):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from udasa_ray.models import resolve

    src = resolve("bundled:all-minilm-l6-v2", model_cache)
    out = {}
    for name, head in HEADS.items():
        labels = list(head)
        d = tmp_path_factory.mktemp(name)
        m = AutoModelForSequenceClassification.from_pretrained(
            src, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={v: i for i, v in enumerate(labels)})
        with torch.no_grad():  # logits = log p whatever the text: softmax gives p back
            m.classifier.weight.zero_()
            m.classifier.bias.copy_(torch.log(torch.tensor(list(head.values()))))
        m.save_pretrained(d)
        AutoTokenizer.from_pretrained(src).save_pretrained(d)
        out[name] = str(d)
    return out


def test_hf_nli_and_safety_backends_map_labels(tiny_classifiers):
    texts = ["A cat sleeps.", "No cat exists at all, anywhere."]
    for name in ("nli", "nli_reordered"):  # u_fact = P(neutral) + P(contradiction), by label name
        assert backends.HFNLI(tiny_classifiers[name], "")(texts, texts[::-1]) == pytest.approx([0.4, 0.4], abs=1e-5)
    safety = backends.HFSafety(tiny_classifiers["safety"], "")  # "toxic", not "non-toxic"
    assert safety(["x", "y", "z"]) == pytest.approx([0.2] * 3, abs=1e-5)
    named = backends.HFSafety(tiny_classifiers["safety"], "", unsafe_label="NON-TOXIC")
    assert named(["x"]) == pytest.approx([0.8], abs=1e-5)
    with pytest.raises(ValueError, match="none of"):
        backends.HFSafety(tiny_classifiers["nli"], "")
    with pytest.raises(ValueError, match="none of"):
        backends.HFSafety(tiny_classifiers["safety"], "", unsafe_label="tox")  # exact when named


class _Moderation(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Moderation.seen.append((self.headers.get("Authorization"), body))
        flaky = sum(any("FLAKY" in t for t in b["input"]) for _, b in _Moderation.seen) == 1  # the first time
        if any("FAIL" in t for t in body["input"]) or flaky:
            self.send_response(500 if not flaky else 503)
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


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(backends.ModerationHTTP, "BACKOFF_S", 0.01)


def test_moderation_endpoint(moderation_server, monkeypatch, fast_retries):
    monkeypatch.setenv("MOD_KEY", "sk-secret-123")
    _Moderation.seen.clear()
    cfg = load_config(None, ["scoring.value.backend=moderation_http", f"scoring.value.endpoint={moderation_server}",
                             "scoring.value.api_key_env=MOD_KEY", "scoring.value.model=omni-moderation-latest"])
    scorer = ValueScorer(cfg.scoring, cfg.models)
    rows = scorer(pa.Table.from_pylist([GROUP])).to_pylist()[0]
    assert rows["u_val"] == [0.02, 0.02, 0.02, 0.9]
    auth, body = _Moderation.seen[-1]
    assert auth == "Bearer sk-secret-123" and body["model"] == "omni-moderation-latest" and len(body["input"]) == 4
    # A failing record is marked, the others are scored; the key appears in no error.
    # A 500 is retried (3 requests for the batch, 3 for the record alone), then the record is
    # marked and the others are scored; the key appears in no error.
    n = len(_Moderation.seen)
    bad = dict(GROUP, response=["fine", "FAIL here", "you idiot"])
    rows = scorer(pa.Table.from_pylist([bad])).to_pylist()[0]
    assert rows["u_val"][0] == 0.02 and np.isnan(rows["u_val"][1]) and rows["u_val"][2] == 0.9
    assert "HTTP 500 after 3 attempts" in rows["err_val"][1] and "sk-secret" not in json.dumps(rows)
    assert [b["input"] for _, b in _Moderation.seen[n:]].count(["FAIL here"]) == 3
    # A passing 503 costs one retry and nothing else.
    n = len(_Moderation.seen)
    rows = scorer(pa.Table.from_pylist([dict(GROUP, response=["FLAKY", "you idiot"])])).to_pylist()[0]
    assert rows["u_val"] == [0.02, 0.9] and rows["err_val"] == [None, None] and len(_Moderation.seen) - n == 2


def test_unreachable_moderation_endpoint_is_a_record_error(fast_retries):
    cfg = load_config(None, ["scoring.value.backend=moderation_http", "scoring.value.endpoint=http://127.0.0.1:9"])
    row = ValueScorer(cfg.scoring, cfg.models)(pa.Table.from_pylist([GROUP])).to_pylist()[0]
    assert all(np.isnan(row["u_val"])) and all("unreachable" in e for e in row["err_val"])
    assert all("after 3 attempts" in e for e in row["err_val"])


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
    stats = run_pipeline(cfg, run, "score", since="score")["score"]
    first = read_parts(run / "scores", SCORE_SCHEMA).to_pylist()
    # Killed after two prompts: the rerun scores only the other two.
    assert kill_after(run, "score", "scores", keep=2) == 4
    capsys.readouterr()
    stats = run_pipeline(cfg, run, "score", since="score")["score"]
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
        assert u.min() <= r["U"] <= u.max()  # a weighted mean of the three
        assert r["w_sem"] + r["w_fact"] + r["w_val"] == pytest.approx(1)
    assert by[("b", 2)]["U"] == max(by[("b", i)]["U"] for i in range(3))  # the wrong, rude answer

    run_pipeline(cfg, run, "pairs", since="pairs")
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
    run_pipeline(cfg, run, "score", since="score")
    run_pipeline(_cfg(model_cache, "curriculum.thresholds=[0.2, 0.6]"), run, "pairs", since="pairs")
    out = capsys.readouterr().out
    assert "[score] already done" in out and "stages: conservative" in out
    assert len(json.loads((run / "stages" / "summary.json").read_text())["stages"]) == 3

    from udasa_ray.cli import main

    assert main(["report", "--run-dir", str(run.path)]) == 0
    report = (run / "report" / "report.md").read_text()
    sections = ("## Pipeline steps", "## Uncertainties", "## Pairs and curriculum", "### Example pairs", "12 responses")
    for section in sections:
        assert section in report
    assert "3 pairs from 4 prompts; 1 prompts had fewer than 2 valid responses" in report
    for png in ("uncertainties.png", "delta_u.png"):
        assert (run / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pairs_need_scores(tmp_path, capsys):
    from udasa_ray.cli import main

    assert main(["pairs", "--run-dir", str(tmp_path)]) == 1
    assert "no finished 'score' step: run `udasa score` first" in capsys.readouterr().err



@pytest.mark.timeout(300)
def test_a_backend_failing_on_most_records_fails_the_step(tmp_path, model_cache, ray_local, capsys):
    """A dead moderation endpoint: every response's value score fails, above the error budget, so
    `udasa score` exits 1 naming the backend and its first error, and keeps no half-scored output.
    The empty responses (a data condition, not a backend failure) are not counted."""
    from udasa_ray.cli import main

    run = _fake_run(tmp_path)
    args = ["score", "--config", str(ROOT / "configs" / "tiny-cpu.yaml"), "--run-dir", str(run.path),
            f"models.cache_dir={model_cache}", "scoring.value.backend=moderation_http",
            "scoring.value.endpoint=http://127.0.0.1:9/v1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "9 of 12 responses failed in a scorer backend, above scoring.max_error_rate=0.1" in err
    assert "the first: value: failed: EndpointUnreachable" in err and "127.0.0.1:9" in err
    assert not (run / "scores").exists() and run.step("score")["status"] == "running"
    # A budget that allows it: the records are marked, the step finishes (as without a budget).
    assert main([*args, "scoring.max_error_rate=1"]) == 0
    scores = read_parts(run / "scores", SCORE_SCHEMA).to_pylist()
    assert len(scores) == 12 and sum("value: failed" in (r["error"] or "") for r in scores) == 9
