"""Observation posts fitted together (peng4nn_service.fit_batching) decide exactly as policies fitting alone."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from peng4nn.curve import fit_many
from peng4nn.policies import make_policy
from peng4nn.synthetic_curves import POPULATIONS, generate_population
from peng4nn_service.curve_schemas import ObservationPoint
from peng4nn_service.fit_batching import FitBatcher, prefitted


def curves(n: int):
    """``n`` synthetic 40-point curves of the mixed population (learners, never-learners, bloomers, noisy)."""
    return [list(zip(c.epochs, c.val_acc)) for c in generate_population(replace(POPULATIONS["mixed"], n_models=n),
                                                                         seed=5)]


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


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_curve_that_breaks_the_batch_fails_only_its_own_fit():
    """Numbers no request can send any more (validation refuses them) still must not fail the others."""
    good = [(np.array([0.5, 1.0, 1.5, 2.0]), np.array([20.0, 35.0, 44.0, 50.0 + k])) for k in range(6)]
    poison = (np.array([5e-324, 165.0, 166.0, 167.0]), np.array([10.0, 60.0, 61.0, 62.0]))  # rescaled: inf
    batcher = FitBatcher()

    async def main():
        return await asyncio.gather(*(batcher.fit(e, a) for e, a in [*good[:3], poison, *good[3:]]),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[3], Exception)
    alone = fit_many(good)
    assert [r for i, r in enumerate(results) if i != 3] == alone
    assert batcher.isolated == 1
