import pytest

from udasa_ray.train.schedule import lr_at, phases, stage_peak, stage_steps


def test_paper_shape_stage_1():
    lrs = [lr_at(s, 3000, 3e-6, 500, 300) for s in range(3000)]
    assert lrs[0] == pytest.approx(3e-6 / 500) and lrs[499] == pytest.approx(3e-6)
    assert all(a < b for a, b in zip(lrs[:499], lrs[1:500], strict=True))  # warm-up rises
    assert set(lrs[500:2700]) == {3e-6}  # constant
    assert all(a > b for a, b in zip(lrs[2700:], lrs[2701:], strict=False))  # decay falls
    assert 0 < lrs[-1] < 3e-6 / 100
    assert max(lrs) == pytest.approx(3e-6)


def test_later_stages_peak_higher():
    assert stage_peak(1, 3e-6, 5e-6) == 3e-6 and stage_peak(2, 3e-6, 5e-6) == stage_peak(3, 3e-6, 5e-6) == 5e-6


def test_short_stages_keep_the_shape():
    assert phases(10, 500, 300) == (6, 4)
    lrs = [lr_at(s, 10, 5e-6, 500, 300) for s in range(10)]
    assert lrs[5] == pytest.approx(5e-6) and lrs[0] < lrs[5] and lrs[-1] < lrs[5]
    assert phases(1, 500, 300) == (0, 1) and lr_at(0, 1, 5e-6, 500, 300) == pytest.approx(2.5e-6)
    assert phases(100, 0, 0) == (0, 0) and {lr_at(s, 100, 1e-6, 0, 0) for s in range(100)} == {1e-6}


def test_stage_steps():
    assert stage_steps(n_pairs=100, batch_per_step=8, max_steps=3000) == 13  # one epoch
    assert stage_steps(n_pairs=10**6, batch_per_step=8, max_steps=3000) == 3000  # capped
    assert stage_steps(n_pairs=3, batch_per_step=8, max_steps=3000) == 1
