"""The plateau schedule (ReduceLROnPlateau plus the stop rule) against DeCLIP's official semantics, as its
train.py and earlystop.py (snapshot 09d4293) run them: EarlyStopping(patience, delta=-0.001) counts the
validations whose score is below best + 0.001; at ``patience`` the lr is divided by 10 (stop once below
1e-6) and a NEW EarlyStopping(delta=-0.002) takes over, its reference the next score."""
import math
import random

import pytest
import torch

from declip_plugin.engine.trainer import PlateauSchedule


def _official(scores, patience, lr=1e-3, min_lr=1e-6, sign=1.0):
    """The official loop written out: [(lr after the epoch, stopped)] per score."""
    best, counter, delta, out = None, 0, 0.001, []
    for score in scores:
        s = sign * score
        if best is None:
            best, counter = s, 0
        elif s < best + delta:
            counter += 1
        else:
            best, counter = s, 0
        stop = False
        if counter >= patience:
            lr /= 10.0
            if lr < min_lr:
                stop = True
            best, counter, delta = None, 0, 0.002  # a new EarlyStopping(delta=-0.002)
        out.append((lr, stop))
        if stop:
            break
    return out


def _ours(scores, patience, higher_is_better=True):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = PlateauSchedule(opt, patience=patience, higher_is_better=higher_is_better)
    out = []
    for score in scores:
        _, stop = sched.step(score)
        out.append((opt.param_groups[0]["lr"], stop))
        if stop:
            break
    return out


def _same(a, b):
    return len(a) == len(b) and all(math.isclose(x[0], y[0], rel_tol=1e-9) and x[1] == y[1] for x, y in zip(a, b))


def test_hand_worked_sequence_drops_then_widens_delta_then_stops():
    # patience 2: .5 ref; .5005 and .5009 are not +0.001 -> drop to 1e-4; .51 is the new reference;
    # .5115 is +0.0015 (an improvement before the drop, not after: delta is 0.002 now); .5119 -> drop to 1e-5
    scores = [0.5, 0.5005, 0.5009, 0.51, 0.5115, 0.5119]
    lrs = [lr for lr, _ in _ours(scores, patience=2)]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5])
    # the same delta kept at 0.001 throughout (the old rule) would not have dropped at the sixth epoch
    assert _ours([0.5, 0.5, 0.5, 0.6, 0.6019, 0.6019], patience=2)[-1][0] == pytest.approx(1e-5)
    # the stop: drops at every second flat epoch until the lr falls below 1e-6 (1e-3 -> 1e-7: 4 drops)
    flat = _ours([0.5] * 20, patience=2)
    assert flat[-1] == (pytest.approx(1e-7), True) and len(flat) == 4 * 3  # reference + 2 flat epochs per drop


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_follow_the_official_loop(seed):
    """Steps below 0.001, between 0.001 and 0.002 (an improvement only before the first drop), above 0.002,
    none, and down. Continuous draws: a gain of exactly 0.001 (where the official ``<`` and torch's strict
    ``>`` part) does not occur, as it does not in real validation scores."""
    rng = random.Random(seed)
    scores, level = [], 0.5
    for _ in range(60):
        low, high = rng.choice([(0.0, 0.0), (0.0001, 0.0009), (0.0011, 0.0019), (0.0021, 0.01), (-0.004, -0.0001)])
        level += rng.uniform(low, high)
        scores.append(level)
    patience = rng.choice([1, 2, 3, 5])
    assert _same(_ours(scores, patience), _official(scores, patience))


def test_lower_is_better_mirrors_higher_is_better():
    scores = [0.3, 0.2995, 0.2991, 0.29, 0.2885, 0.2881]
    assert _same(_ours(scores, 2, higher_is_better=False), _official(scores, 2, sign=-1.0))
    assert _ours(scores, 2, higher_is_better=False)[2][0] == pytest.approx(1e-4)


def test_a_missing_score_counts_as_no_improvement():
    assert [lr for lr, _ in _ours([0.5, None, float("nan")], patience=2)] == pytest.approx([1e-3, 1e-3, 1e-4])


def test_resume_continues_the_same_schedule():
    scores = [0.5, 0.5005, 0.5009, 0.51, 0.5115, 0.5119, 0.52, 0.52]
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    first = PlateauSchedule(opt, patience=2)
    for s in scores[:4]:
        first.step(s)
    state = first.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=opt.param_groups[0]["lr"])
    second = PlateauSchedule(opt2, patience=2)
    second.load_state_dict(state)
    for s in scores[4:]:
        assert second.step(s) == first.step(s)
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_best_checkpoint_rule_keeps_the_whole_runs_best():
    """ckpt_best.pth follows the best score of the run (+ delta), not the schedule's fresh reference."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = PlateauSchedule(opt, patience=1)
    assert [sched.step(s)[0] for s in (0.6, 0.5, 0.55, 0.62)] == [True, False, False, True]


def test_a_factor_that_does_not_lower_the_lr_is_refused():
    from declip_plugin.errors import ConfigError

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with pytest.raises(ConfigError, match=r"early_stopping: key 'lr_factor' must be greater than 0 and less than 1, "
                                          r"got 1"):
        PlateauSchedule(opt, lr_factor=1)
