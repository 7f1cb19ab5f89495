import json

import numpy as np
import pytest
from conftest import ROOT

from udasa_ray.cli import main
from udasa_ray.score.auroc import KINDS, auroc, load_items


def test_auroc():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    # bad 0.3 < good 0.6, 0.3 > 0.1, 0.6 ties 0.6, 0.6 > 0.1
    assert auroc([0.3, 0.6, 0.6, 0.1], [1, 1, 0, 0]) == pytest.approx((0 + 1 + 0.5 + 1) / 4)
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(0)
    assert abs(auroc(rng.random(2000), rng.integers(0, 2, 2000)) - 0.5) < 0.05


def test_bundled_validation_set():
    items = load_items()
    assert len(items) >= 60 and len({it["id"] for it in items}) == len(items)
    for kind in KINDS:
        labels = [it["label"] for it in items if it["dimension"] == kind]
        assert labels.count(0) >= 5 and labels.count(1) >= 5, kind
    assert all(len(it["others"]) == 4 and it["response"] and it["prompt"] for it in items)


@pytest.mark.timeout(300)
def test_validate_scorers_cli(tmp_path, model_cache, capsys):
    # Two items per kind from the bundled set: one good, one bad.
    items = load_items()
    picked = [next(it for it in items if it["dimension"] == k and it["label"] == y) for k in KINDS for y in (0, 1)]
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(it) for it in picked))
    out = tmp_path / "table.md"
    assert main(["validate-scorers", "--data", str(data), "--out", str(out), f"models.cache_dir={model_cache}"]) == 0
    table = out.read_text()
    assert table.strip() in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and "scorer" not in line]
    names = [r.split(" | ")[0][2:] for r in rows]
    assert names == ["semantic / bundled:all-minilm-l6-v2", "factual / aegis_onnx / paper",
                     "factual / policy_judge / paper", "factual / aegis_onnx / cross_response",
                     "factual / policy_judge / cross_response", "value / profanity", "value / policy_judge",
                     "fused U (aegis_onnx cross_response, profanity)"]
    for r in rows:
        values = [float(v) for v in r.strip(" |").split(" | ")[1:]]
        assert len(values) == 5 and all(0 <= v <= 1 for v in values)


@pytest.mark.timeout(300)
def test_validation_scores_what_the_score_stage_computes(model_cache, monkeypatch):
    """Each item's u in the table is its response's u from the score stage's own scorers, run as
    `udasa score` runs them on a group of the response and its four others."""
    import pyarrow as pa

    from udasa_ray.config import load_config
    from udasa_ray.score.backends import AegisNLI

    # The int8 NLI model's scores move a little with the pairs in the same run (AegisNLI.CHUNK), and
    # validation asks for fewer pairs than the stage computes: one pair a run makes both exact.
    monkeypatch.setattr(AegisNLI, "CHUNK", 1)
    from udasa_ray.score.auroc import scorers
    from udasa_ray.score.scorers import SCORERS

    cfg = load_config(ROOT / "configs" / "tiny-cpu.yaml", [f"models.cache_dir={model_cache}"])
    items = [it for it in load_items() if it["dimension"] in ("factual", "value")][::5]
    runs = scorers(cfg)
    batch = pa.Table.from_pylist([{"prompt_id": it["id"], "prompt": it["prompt"],
                                   "response": [it["response"], *it["others"]]} for it in items])
    names = ["semantic / bundled:all-minilm-l6-v2", "factual / aegis_onnx / cross_response", "value / profanity"]
    for scorer_cls, name in zip(SCORERS, names, strict=True):
        stage = scorer_cls(cfg.scoring, cfg.models)(batch).to_pylist()
        assert runs[name](items) == pytest.approx([row[f"u_{scorer_cls.dim}"][0] for row in stage], abs=1e-6), name
