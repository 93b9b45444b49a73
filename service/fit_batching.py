"""Fit the points that concurrent observation posts bring in one batch (`peng4nn.curve.fit_many`).

Each post to an observe session makes one fit (a few dozen numpy calls on ~20 points: mostly
per-call overhead), so fitting the curves of all posts that arrive together costs little more
than fitting one: 16 curves ~5x less per fit. A post whose session's policy
is in this process's cache and takes fits made elsewhere (`StoppingPolicy.accepts_known_fits`:
the paper rule on the fast back-end, one new point in order) queues its curve here; the queue is fitted in the next event-loop turn, after
every request read in the same turn has queued its own, so nothing waits on a timer.
The policy then finds its fit through `StoppingPolicy.known_fits`, which answers only for exactly
the points it asks about: if anything changed meanwhile, the policy fits by itself as
before. The decision is therefore always the policy's own, with identical parameters.

A curve that makes the batch fit raise never fails the others: the batch is fitted again
curve by curve, and only the offending post's policy meets the error (it then fits alone, and
that request alone is refused).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import numpy as np

from peng4nn.analyzer import EPOCH_TOLERANCE, StoppingPolicy
from peng4nn.curve import FitResult, fit_many

MAX_BATCH = 64
"""Curves fitted per event-loop turn; more wait for the next turn (bounds the time one turn blocks)."""

MAX_POINTS = 64
"""Longer curves are fitted alone: padding a batch to their length would cost more than it saves."""


class FitBatcher:
    """Collects (epochs, accuracies) from the handlers of one event loop and fits them together."""

    def __init__(self) -> None:
        self._pending: list[tuple[np.ndarray, np.ndarray, asyncio.Future]] = []
        self._scheduled = False
        self.batches = 0
        self.fits = 0
        self.isolated = 0
        """Batches that raised and were fitted curve by curve instead."""

    async def fit(self, epochs: np.ndarray, accuracies: np.ndarray) -> FitResult:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((epochs, accuracies, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        chunk, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if self._pending:
            loop.call_soon(self._flush, loop)
        else:
            self._scheduled = False
        live = [item for item in chunk if not item[2].done()]  # a client that went away is skipped
        if not live:
            return
        try:
            fits = fit_many([(e, a) for e, a, _ in live])
        except Exception:  # one curve broke the batch: fit each alone, so only its own post sees the error
            self.isolated += 1
            for item in live:
                _fit_alone(*item)
            return
        self.batches += 1
        self.fits += len(live)
        for (_, _, future), fit in zip(live, fits):
            future.set_result(fit)


def _fit_alone(epochs: np.ndarray, accuracies: np.ndarray, future: asyncio.Future) -> None:
    try:
        [fit] = fit_many([(epochs, accuracies)])
    except Exception as exc:
        future.set_exception(exc)
    else:
        future.set_result(fit)


class KnownFit:
    """Fits for `StoppingPolicy.known_fits`: one fit, returned only for exactly those points."""

    backend = "fast"

    def __init__(self, epochs: np.ndarray, accuracies: np.ndarray, fit: FitResult):
        self.epochs, self.accuracies, self.fit = epochs, accuracies, fit

    def lookup(self, epochs, accuracies) -> FitResult | None:
        if len(epochs) == len(self.epochs) and np.array_equal(epochs, self.epochs) \
                and np.array_equal(accuracies, self.accuracies):
            return self.fit
        return None


@asynccontextmanager
async def prefitted(batcher: FitBatcher, policy: StoppingPolicy | None, points: Sequence) -> AsyncIterator[None]:
    """Within this block, ``policy`` finds the fit of its history plus ``points`` made in a batch.

    Does nothing (the policy fits alone, as without it) unless this is one in-order point for a
    policy that takes fits made elsewhere (`StoppingPolicy.accepts_known_fits`).
    """
    if not _batchable(policy, points):
        yield
        return
    history = policy.history
    epochs = np.append(history.epochs(), float(points[0].epoch))
    accuracies = np.append(history.accuracies(), float(points[0].val_acc))
    try:
        fit = await batcher.fit(epochs, accuracies)
    except Exception:  # this curve cannot be fitted in a batch: the policy decides alone (and answers for it)
        yield
        return
    with policy.known_fits(KnownFit(epochs, accuracies, fit)):  # a no-op if another post installed fits meanwhile
        yield


def _batchable(policy: StoppingPolicy | None, points: Sequence) -> bool:
    if policy is None or len(points) != 1:
        return False
    history = policy.history
    n = len(history.points) + 1
    if n > MAX_POINTS or not policy.accepts_known_fits(n):
        return False
    last = history.last_epoch
    return last is None or points[0].epoch > last + EPOCH_TOLERANCE  # else a 409 follows: no fit needed
