import pytest

from udasa_ray.train.data import dpo_rows, eval_split
from udasa_ray.train.schedule import EarlyStop, lr_at, phases, shared_budget, stage_peak, stage_steps


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


def test_a_shared_budget_follows_the_stages_pairs_and_sums_to_the_total():
    assert shared_budget(60, [300, 300, 400]) == [18, 18, 24]
    assert shared_budget(60, [1000]) == [60]
    assert shared_budget(10, [1, 1, 1]) in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert shared_budget(3, [1, 1, 98]) == [1, 1, 1]  # every stage at least one step
    assert shared_budget(5, [7, 122, 871]) == [1, 1, 3]
    for total, sizes in ((42, [129, 351, 520]), (7, [5, 0, 2]), (100, [1, 2, 3, 4])):
        assert sum(shared_budget(total, sizes)) == total and min(shared_budget(total, sizes)) >= 1
    with pytest.raises(ValueError, match="cannot give each of 3 stages"):
        shared_budget(2, [1, 1, 1])


def test_early_stop_on_stale_loss():
    stop = EarlyStop(patience=2, saturation=0.99)
    assert stop.update(0.69, 0.5) is None  # baseline
    assert stop.update(0.60, 0.6) is None  # improved
    assert stop.update(0.61, 0.6) is None  # 1 stale
    assert stop.update(0.59, 0.6) is None  # improved again: the count restarts
    assert stop.update(0.59, 0.7) is None
    assert "not improved on 0.5900 for 2" in stop.update(0.70, 0.7)


def test_early_stop_on_saturated_rewards():
    stop = EarlyStop(patience=5, saturation=0.95)
    assert stop.update(0.5, 0.94) is None
    assert "accuracy 0.960 >= 0.95" in stop.update(0.4, 0.96)
    assert EarlyStop(1, 0.9).update(0.5, None) is None  # no accuracy logged: loss rule only


def test_eval_split_is_stable_and_sized():
    ids = [f"p{i}" for i in range(64)]
    held = eval_split(ids, 0.1, seed=0)
    assert len(held) == 6 and held <= set(ids)
    assert eval_split(list(reversed(ids)), 0.1, seed=0) == held  # order does not matter
    assert eval_split(ids, 0.1, seed=1) != held
    assert eval_split(ids, 0.0, 0) == set() and eval_split(["a"], 0.5, 0) == set()
    assert len(eval_split(["a", "b"], 0.01, 0)) == 1  # at least one, never all
    assert len(eval_split(["a", "b"], 0.99, 0)) == 1


def test_dpo_rows_follow_the_generation_frame():
    pair = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "No."}
    chat = dpo_rows([pair], "chat", "Be kind.")[0]
    assert chat["prompt"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Name a colour."}]
    assert chat["chosen"] == [{"role": "assistant", "content": "Blue."}]
    assert chat["rejected"] == [{"role": "assistant", "content": "No."}]
    alpaca = dpo_rows([pair], "alpaca", None)[0]
    assert alpaca["prompt"].endswith("### Instruction:\nName a colour.\n\n### Response:\n")
    assert (alpaca["chosen"], alpaca["rejected"]) == ("Blue.", "No.")


def test_budget_subset_keeps_what_the_step_cap_trains():
    from udasa_ray.train.data import budget_subset

    pairs = [{"prompt_id": f"p{i}", "i": i} for i in range(50)]
    sub = budget_subset(pairs, 12, seed=3)
    assert len(sub) == 12 and [p["i"] for p in sub] == sorted(p["i"] for p in sub)  # input order kept
    assert sub == budget_subset(list(reversed(pairs)), 12, seed=3)[::-1]  # chosen by id, not position
    assert sub != budget_subset(pairs, 12, seed=4) and sub[:5] != pairs[:5]
    assert budget_subset(pairs, 50, 3) is pairs and budget_subset(pairs, 80, 3) is pairs
