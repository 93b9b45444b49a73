"""Learning-rate schedules: the rates the trainer applies, the drops estimators read, bad input named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from peng4nn.schedule import LRSchedule, TabulatedSchedule, drop_epochs, parse_schedule, schedule_from_rates


def test_a_step_schedule_drops_after_each_milestone():
    s = LRSchedule(kind="step", milestones=(5, 10), gamma=0.2)
    # The point at epoch e was trained towards e: the drop at milestone 5 shows from the point after it.
    assert [s.factor_at(e) for e in (1, 5, 5.5, 10, 10.5, 20)] == pytest.approx([1, 1, 0.2, 0.2, 0.04, 0.04])
    assert drop_epochs(s.bound(20), E=0.5, e_max=20) == [5.0, 10.0]
    assert drop_epochs(s.bound(20), E=1.0, e_max=20, after=6) == [10.0]


def test_cosine_anneals_to_its_floor_and_warm_up_ramps_in():
    s = LRSchedule(kind="cosine", warmup_epochs=2, min_factor=0.1)
    assert s.factor_at(1, e_max=20) == pytest.approx(0.5)
    assert s.factor_at(2, e_max=20) == pytest.approx(1.0)
    assert s.factor_at(11, e_max=20) == pytest.approx(0.55)
    assert s.factor_at(20, e_max=20) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="total_epochs or the run's e_max"):
        s.factor_at(5)


def test_a_tabulated_schedule_reads_the_rate_of_each_point():
    t = TabulatedSchedule([1, 2, 3], [0.1, 0.1, 0.01])
    assert [t.rate_at(e) for e in (0.5, 2, 2.5, 3, 9)] == [0.1, 0.1, 0.01, 0.01, 0.01]
    assert drop_epochs(t, E=1, e_max=4) == [2]
    assert schedule_from_rates([1, 2], [None, None]) is None


@pytest.mark.parametrize("text, kind, milestones, gamma, warmup", [
    ("step:5,10,15:0.2", "step", (5.0, 10.0, 15.0), 0.2, 0.0),
    ("step:30", "step", (30.0,), 0.1, 0.0),
    ("cosine+warmup=2", "cosine", (), 0.1, 2.0),
    ("constant", "constant", (), 0.1, 0.0),
    ('{"kind": "step", "milestones": [3], "gamma": 0.5}', "step", (3.0,), 0.5, 0.0),
])
def test_the_command_line_forms(text, kind, milestones, gamma, warmup):
    s = parse_schedule(text)
    assert (s.kind, s.milestones, s.gamma, s.warmup_epochs) == (kind, milestones, gamma, warmup)


@pytest.mark.parametrize("text, message", [
    ("step:", "needs its milestones"),
    ("step:5,x", "milestone must be a number; got 'x'"),
    ("step:10,5", "milestones must be strictly increasing; milestones[1] = 5.0 follows 10.0"),
    ("step:-1", "milestones[0] must be a positive finite epoch"),
    ("step:5:1.5", "gamma"),
    ("cosine:2", "min_factor"),
    ("exponential", "kind"),
    ("constant:3", "takes no parameters"),
    ("step:5+tail=3", "+warmup=EPOCHS"),
    ("step:nan", "milestone must be finite"),
    ("{not json", "invalid JSON"),
])
def test_schedules_that_make_no_sense_are_named(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        parse_schedule(text)


def test_milestones_beyond_the_run_are_an_error_not_a_no_op():
    s = LRSchedule(kind="step", milestones=(5, 25))
    with pytest.raises(ValueError, match=r"milestones\[1\] = 25.0 is not before e_max \(20"):
        s.bound(20)
    with pytest.raises(ValueError, match="warmup_epochs must be below e_max"):
        LRSchedule(warmup_epochs=30).bound(20)
    with pytest.raises(ValidationError, match="milestones only apply to kind 'step'"):
        LRSchedule(kind="cosine", milestones=(3,))
