"""The pure formulas: fusion, semantic uncertainty, pairs, curriculum split (no Ray, no torch)."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from udasa_ray.pairs.build import build_pairs
from udasa_ray.pairs.split import assign_stages, scale_delta, stage_members, stage_names
from udasa_ray.score.fusion import fuse, fusion_weights
from udasa_ray.score.semantic import semantic_uncertainty


def test_fusion_equal_inputs_give_that_value():
    assert fuse([0.1, 0.1, 0.1]) == pytest.approx(0.1, abs=1e-12)
    assert fuse([0.0, 0.0, 0.0]) == 0.0


@pytest.mark.parametrize("u, expected", [((0.7, 0.2, 0.1), 0.406), ((0.2, 0.8, 0.1), 0.469), ((0.1, 0.2, 0.7), 0.406)])
def test_fusion_matches_eq_5_6_on_table_3_rows(u, expected):
    assert fuse(u) == pytest.approx(expected, abs=1e-3)  # Eq. 5-6 give 0.40652


def test_fusion_symmetric_bounded_and_leaning_to_the_largest():
    rng = np.random.default_rng(0)
    for u in rng.random((200, 3)):
        values = [fuse(p) for p in itertools.permutations(u)]
        assert max(values) - min(values) < 1e-12
        assert u.min() - 1e-12 <= values[0] <= u.max() + 1e-12
        assert values[0] >= u.mean() - 1e-12  # softmax weights favour the larger u
    batch = rng.random((50, 3))
    assert np.allclose(fuse(batch), [fuse(u) for u in batch])


def test_fusion_temperature_and_fixed_weights():
    u = [0.9, 0.1, 0.1]
    assert fuse(u, temperature=0.01) == pytest.approx(0.9, abs=1e-3)  # T -> 0: max
    assert fuse(u, temperature=1e6) == pytest.approx(np.mean(u), abs=1e-4)  # T -> inf: mean
    assert fuse(u, weights=[1, 1, 2]) == pytest.approx((0.9 + 0.1 + 0.2) / 4)
    assert fusion_weights(np.array([[0.5, 0.5, 0.5]])).tolist() == [[1 / 3] * 3]


def test_semantic_per_response_and_group():
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    per, group = semantic_uncertainty(e)
    # cos: r0-r1 = 1, r0-r2 = r1-r2 = 0 -> per-response 1 - mean of the other two.
    assert per.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert group == pytest.approx(1 - (1 + 0 + 0) / 3)
    rng = np.random.default_rng(1)
    x = rng.random((5, 8))  # positive vectors: similarities in [0, 1], so no clipping
    per, group = semantic_uncertainty(x)
    assert per.mean() == pytest.approx(group)
    assert semantic_uncertainty(np.ones((4, 3)))[0] == pytest.approx([0, 0, 0, 0])
    assert ((0 <= semantic_uncertainty(rng.normal(size=(6, 4)))[0]) <= 1).all()  # clipped
    with pytest.raises(ValueError, match=">= 2 responses"):
        semantic_uncertainty(x[:1])


def _rows(pid, Us, errors=()):
    return [{"prompt_id": pid, "prompt": f"p{pid}", "sample_idx": i, "response": f"{pid}-r{i}", "U": u,
             "u_sem": u, "u_fact": u, "u_val": u, "error": "boom" if i in errors else None}
            for i, u in enumerate(Us)]


def _pairs(rows, seed=0):
    pairs, stats = build_pairs(pa.Table.from_pylist(rows), seed)
    return pairs.to_pylist(), stats


def test_pairs_choose_lowest_U_and_a_seeded_random_other():
    rows = _rows("a", [0.5, 0.2, 0.9, 0.4, 0.6]) + _rows("b", [0.3, float("nan"), 0.1, 0.25], errors=(2,))
    rows += _rows("c", [0.3, 0.2], errors=(0,))
    pairs, stats = _pairs(rows, seed=0)
    assert stats == {"groups": 3, "pairs": 2, "groups_without_pair": 1}
    a, b = pairs
    assert a["chosen_idx"] == 1 and a["rejected_idx"] != 1 and a["delta_u"] == pytest.approx(a["U_rejected"] - 0.2)
    assert a["delta_u"] >= 0 and a["chosen"] == "a-r1"
    # In b, the NaN and the errored response are not candidates: the lowest valid U wins.
    assert (b["chosen_idx"], b["rejected_idx"], b["n_valid"]) == (3, 0, 2)
    # Deterministic for a seed; another seed changes some rejected picks across many groups.
    many = [r for g in range(40) for r in _rows(f"g{g}", [0.1, 0.5, 0.6, 0.7, 0.8])]
    p0, p0b, p1 = _pairs(many, 0)[0], _pairs(many[::-1], 0)[0], _pairs(many, 1)[0]
    assert [p["rejected_idx"] for p in p0] == [p["rejected_idx"] for p in p0b]
    assert [p["rejected_idx"] for p in p0] != [p["rejected_idx"] for p in p1]
    assert {p["rejected_idx"] for p in p0} == {1, 2, 3, 4}  # uniform over the others


def test_group_with_nan_U_counts_only_valid():
    pairs, stats = _pairs(_rows("b", [0.3, float("nan"), 0.1], errors=(2,)))
    assert stats["groups_without_pair"] == 1 and not pairs


def test_scales():
    d = [0.0, 0.1, 0.1, 0.4]
    assert scale_delta(d, "raw").tolist() == d
    assert scale_delta(d, "minmax").tolist() == pytest.approx([0, 0.25, 0.25, 1])
    assert scale_delta(d, "quantile").tolist() == pytest.approx([0, 0.5, 0.5, 1])
    assert scale_delta([0.2, 0.2], "minmax").tolist() == [0, 0]
    with pytest.raises(ValueError):
        scale_delta(d, "log")


def test_three_stage_boundaries_follow_the_paper():
    s = [0.8, 0.7, 0.55, 0.4, 0.39, 0.0, 1.0]
    assert assign_stages(s, [0.4, 0.7]).tolist() == [1, 2, 2, 2, 3, 3, 1]
    assert stage_names(3) == ["conservative", "moderate", "exploratory"]


def test_one_two_and_four_stages():
    s = np.array([0.9, 0.6, 0.5, 0.2, 0.1])
    assert assign_stages(s, []).tolist() == [1] * 5
    assert assign_stages(s, [0.6]).tolist() == [1, 2, 2, 2, 2]
    assert assign_stages(s, [0.2, 0.5, 0.8]).tolist() == [1, 2, 2, 3, 4]
    assert len(stage_names(4)) == 4 and stage_names(1) == ["all"]


def test_disjoint_and_cumulative_members():
    stages = np.array([1, 3, 2, 1, 3])
    assert [m.tolist() for m in stage_members(stages, 3, cumulative=False)] == [[0, 3], [2], [1, 4]]
    assert [m.tolist() for m in stage_members(stages, 3, cumulative=True)] == [[0, 3], [0, 2, 3], [0, 1, 2, 3, 4]]


def test_pure_modules_import_neither_ray_nor_torch():
    import subprocess

    code = ("import sys, udasa_ray.score.fusion, udasa_ray.score.semantic, udasa_ray.pairs.build, "
            "udasa_ray.pairs.split; print(sorted({'ray', 'torch'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_tracking_metrics_from_a_run_directory(tmp_path):
    """Finished steps' numeric stats (nested keys dotted, names both backends accept) and the held-out and
    evaluation summaries; not unfinished steps, flags, text, lists or NaN."""
    import json

    from udasa_ray.tracking import artifact_metrics

    steps = {"generate": {"status": "done", "stats": {"responses": 8, "tokens_per_s": 12.5, "resumed": True}},
             "score": {"status": "done", "stats": {"mean": {"U": 0.25, "u_sem": float("nan")}, "source": "x"}},
             "train_stage_1": {"status": "running", "stats": {"steps": 3}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"steps": steps}))
    (tmp_path / "heldout").mkdir()
    (tmp_path / "heldout" / "summary.json").write_text(json.dumps({"prompts": 2, "U (Δ)": -0.1, "ci": [0, 1]}))
    assert artifact_metrics(tmp_path) == {"generate/responses": 8.0, "generate/tokens_per_s": 12.5,
                                          "score/mean.U": 0.25, "heldout/prompts": 2.0, "heldout/U ___": -0.1}


def test_the_default_split_keeps_every_stage_a_share_and_min_max_is_warned_about(tmp_path, capsys):
    """On a right-skewed Δu (one clear pair, the rest close), min-max ties the scale to the largest pair and leaves
    the first stage one pair of 40, with a warning; the default (Δu's rank) cuts 0.4 / 0.7 into 30% / 30% / 40%."""
    import json

    import pyarrow as pa

    from udasa_ray.config import load_config
    from udasa_ray.pairs.step import make_pairs
    from udasa_ray.parts import write_part
    from udasa_ray.runs import RunDir
    from udasa_ray.score.step import SCORE_SCHEMA

    run = RunDir(tmp_path)
    (run / "scores").mkdir()
    rows = []
    for i in range(40):
        gap = 0.9 if i == 0 else 0.01 + 0.001 * i  # Δu of each prompt's pair
        for s, u in enumerate((0.05, 0.05 + gap)):
            rows.append({"prompt_id": f"p{i:02d}", "prompt": "q", "sample_idx": s, "response": f"answer {s}",
                         "u_sem": u, "u_fact": u, "u_val": u, "U": u, "error": None})
    write_part(pa.Table.from_pylist(rows, schema=SCORE_SCHEMA), run / "scores")
    stats = make_pairs(load_config(None), run)
    assert load_config(None).curriculum.scale == "quantile" and stats["stage_sizes"] == [12, 12, 16]
    assert "warning" not in capsys.readouterr().out
    lo, hi = stats["stage_delta_u"][0]
    assert hi == pytest.approx(0.9) and lo >= max(d[1] for d in stats["stage_delta_u"][1:])
    stats = make_pairs(load_config(None, ["curriculum.scale=minmax"]), run)
    assert stats["stage_sizes"][0] == 1
    assert "stage 1 (conservative) holds 1 of 40 pairs (2.5%) on the minmax scale" in capsys.readouterr().out
    # The anti-curriculum: the same stages, listed (and so trained) hard to easy.
    stats = make_pairs(load_config(None, ["curriculum.order=hard_first"]), run)
    summary = json.loads((run / "stages" / "summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == [3, 2, 1] and stats["stage_sizes"] == [16, 12, 12]
    assert summary["order"] == "hard_first"


def test_warm_up_is_the_slowest_first_batch_per_row_over_the_median_of_the_later_ones():
    from udasa_ray.ray_utils import warm_up

    # One actor: 30 s for 160 rows against later 10 and 12 s for 160 and 5 s for a last batch of 80 (median 1/16 s).
    assert warm_up([30, 10, 12, 5], [160, 160, 160, 80], 1) == {"actor_batch_seconds": [30, 10, 12, 5],
                                                                 "first_batch_ratio": 3.0}
    assert warm_up([30, 20, 10, 12, 10], [1] * 5, 2)["first_batch_ratio"] == 3.0  # each actor's first batch warms up
    assert warm_up([3, 1], [1, 1], 1)["first_batch_ratio"] is None  # nothing steady to compare with
    assert warm_up([None, 1.0, 1.0], [1, 1, 1], 1) == {} == warm_up([], [], 1)  # a backend without its own times


@pytest.mark.parametrize("flags, unit", [
    ("fpu avx2 avx512f avx512_bf16", "AVX512-BF16"), ("avx2 amx_bf16", "AVX512-BF16"),
    ("avx2 avx512f avx512bw", "AVX512"), ("sse4_2 avx2", "AVX2"), ("sse4_2", "no AVX2")])
def test_cpu_kind_names_the_widest_vector_unit_and_auto_dtype_follows_it(monkeypatch, flags, unit):
    from udasa_ray import models

    info = {"model name": "Some CPU", "flags": flags}
    monkeypatch.setattr(models, "_cpuinfo", lambda field: info.get(field, ""))
    assert models.cpu_kind().startswith("Some CPU, ") and models.cpu_kind().endswith(f" cores, {unit}")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert models.pick_dtype("auto") == ("bfloat16" if unit == "AVX512-BF16" else "float32")


def test_read_ahead_reads_each_weight_file_and_passes_hub_names_through(tmp_path, monkeypatch):
    import builtins

    from udasa_ray.models import read_ahead

    (tmp_path / "model.safetensors").write_bytes(b"w" * (40 << 20))  # more than one 16 MiB read
    (tmp_path / "pytorch_model.bin").write_bytes(b"b")
    (tmp_path / "config.json").write_text("{}")
    opened, real_open = [], builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(Path(f).name) or real_open(f, *a, **k))
    assert read_ahead(str(tmp_path)) == str(tmp_path) and sorted(opened) == ["model.safetensors", "pytorch_model.bin"]
    assert read_ahead("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"  # a hub id: nothing local to read
