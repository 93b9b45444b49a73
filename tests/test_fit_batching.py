"""Observation posts fitted together (service.fit_batching) decide exactly as policies fitting alone."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from peng4nn.policies import make_policy
from service.curve_schemas import ObservationPoint
from service.fit_batching import FitBatcher, prefitted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_replay import synthetic_curves  # noqa: E402


def curves(n: int):
    return [list(zip(epochs, acc)) for _, epochs, acc, _, _ in synthetic_curves(n, seed=5)]


def test_concurrent_posts_are_fitted_in_batches_with_the_same_decisions():
    pool = curves(12)
    alone = []
    for curve in pool:
        policy = make_policy("paper")
        alone.append([policy.observe(e, a).to_dict() for e, a in curve])

    batcher = FitBatcher()
    policies = [make_policy("paper") for _ in pool]

    async def session(policy, curve):
        out = []
        for e, a in curve:
            points = [ObservationPoint(epoch=e, val_acc=a)]
            async with prefitted(batcher, policy, points):
                used = policy.fit_cache
                out.append(policy.observe(e, a).to_dict())
            assert policy.fit_cache is None  # the one-fit cache never outlives its post
            if len(policy.history.points) >= policy.settings.c_min:
                assert used is not None and used.lookup(policy.history.epochs(), policy.history.accuracies())
        return out

    async def main():
        return await asyncio.gather(*(session(p, c) for p, c in zip(policies, pool)))

    batched = asyncio.run(main())
    assert batched == alone  # every decision, every fitted parameter, bit for bit
    assert batcher.fits > 0 and batcher.batches <= batcher.fits / 6  # 12 concurrent sessions share fits


@pytest.mark.parametrize("case", ["stale epoch", "several points", "too few points"])
def test_posts_that_would_not_fit_alone_are_not_queued(case):
    policy = make_policy("paper")
    for e, a in [(0.5, 10.0), (1.0, 20.0), (1.5, 25.0)][: 1 if case == "too few points" else 3]:
        policy.observe(e, a)
    points = {"stale epoch": [ObservationPoint(epoch=1.0, val_acc=30.0)],
              "several points": [ObservationPoint(epoch=2.0, val_acc=30.0), ObservationPoint(epoch=2.5, val_acc=31.0)],
              "too few points": [ObservationPoint(epoch=1.0, val_acc=30.0)]}[case]
    batcher = FitBatcher()

    async def main():
        async with prefitted(batcher, policy, points):
            assert policy.fit_cache is None

    asyncio.run(main())
    assert batcher.fits == 0
