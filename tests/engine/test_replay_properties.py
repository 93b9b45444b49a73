"""No curve file makes replay print a traceback, whatever its length, scale or shape.

Property-based (hypothesis): files of 1 to 180 points per model, accuracies as percent or fractions, near-zero
starts, flat, collapsing and jumping curves, step-schedule lr columns, optional columns empty or filled, rows at
epoch 0, and every policy. Each run either answers (exit 0, one JSON document) or refuses with one line (exit 2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peng4nn.cli import main
from peng4nn.policies import POLICY_NAMES

pytestmark = pytest.mark.timeout(240)

SHAPES = ("learner", "flat", "collapse", "jump", "near_zero", "noise")


@st.composite
def curve_files(draw):
    n_models = draw(st.integers(1, 14))
    n_points = draw(st.sampled_from([1, 2, 3, 5, 12, 40, 160, 181]))
    step = draw(st.sampled_from([0.5, 1.0, 2.0]))
    fractions = draw(st.booleans())
    zero = draw(st.booleans())
    columns = draw(st.sampled_from(["", ",lr", ",val_loss,train_loss", ",val_loss,train_loss,lr"]))
    empty_losses = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    lines = ["model_id,epoch,val_acc" + columns]
    for m in range(n_models):
        shape = SHAPES[rng.integers(len(SHAPES))]
        x = np.arange(n_points)
        final = rng.uniform(0, 100)
        if shape == "learner":
            acc = final - (final - rng.uniform(0, final + 1e-9)) * np.exp(-rng.uniform(0.01, 3) * x)
        elif shape == "flat":
            acc = np.full(n_points, rng.uniform(0, 30))
        elif shape == "collapse":
            acc = np.where(x < n_points // 2, final, rng.uniform(0, 10))
        elif shape == "jump":
            acc = np.where(x % 7 == 3, 100.0, 0.0)
        elif shape == "near_zero":
            acc = np.minimum(0.01 * x ** 1.5, 100)
        else:
            acc = rng.uniform(0, 100, n_points)
        acc = np.clip(acc + rng.normal(0, rng.uniform(0, 3), n_points), 0, 100)
        if fractions:
            acc = acc / 100
        first = 0 if zero else 1
        for i, a in enumerate(acc):
            row = f"net{m},{(i + first) * step:g},{a:.5g}"
            if "val_loss" in columns:
                row += ",," if empty_losses else f",{rng.uniform(0, 5):.4g},{rng.uniform(0, 5):.4g}"
            if "lr" in columns:
                row += f",{0.1 * 0.1 ** (i * 3 // max(n_points, 1)):.4g}"
            lines.append(row)
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=curve_files(), policy=st.sampled_from(POLICY_NAMES), e_max=st.sampled_from([None, 20, 150]))
def test_replay_answers_or_refuses_in_one_line(tmp_path, capsys, text, policy, e_max):
    path = tmp_path / "curves.csv"
    path.write_text(text)
    argv = ["replay", str(path), "--policy", policy, "--json"]
    if e_max is not None:
        argv += ["--e-max", str(e_max)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if code == 0:
        doc = json.loads(out)
        assert doc["summary"]["n_models"] == len(doc["models"])
    else:
        assert code == 2 and out == "" and err.count("\n") == 1, err
