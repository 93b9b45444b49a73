"""A search's population in Redis, shared by every worker and API process.

The `adaptive` policy ranks a network against the other networks of its search
(peng4nn/adaptive.py). A population is a pure function of its finished networks in
arrival order, so Redis keeps only that: one list per search of `FinishedNetwork`s
(JSON), appended when a job ends or an observation session reaches its final decision
(or is deleted before one). Each process keeps the populations it has built
(`Populations`) and brings one up to date by reading only the entries it has not seen
(LRANGE from its count) before deciding. Networks that finish one after another
therefore get exactly the decisions `peng4nn replay` gives for the same curves in the
same order; networks running at the same time see whatever had finished.

Jobs and observation sessions (both name it ``search``) share one namespace per owner
(API token): a search may mix both, and two tokens' searches of the same name never meet
(`scoped`). The list expires like the records that feed it, refreshed on every append.
Usable from the API (``redis.asyncio``) and the workers (blocking redis-py).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from peng4nn.adaptive import AdaptivePopulation, FinishedNetwork
from peng4nn.analyzer import EstimatorSettings
from peng4nn.policies import SEARCH_POLICIES, make_policy_factory
from peng4nn_store.encoding import dumps
from peng4nn_store.keys import networks_key

DEFAULT_POPULATIONS = 256
"""Populations one process keeps (least recently used dropped, rebuilt from Redis when needed)."""

SEARCH_MAX_LENGTH = 128
"""Longest search id or label accepted (it is part of a Redis key)."""


def scoped(owner: str, search: str) -> str:
    """A search as the service names it: the caller's name within its owner's (owners hold no ':')."""
    return f"{owner}:{search}"


def is_search_policy(name: str) -> bool:
    """Whether the policy learns from the other networks of its search."""
    return name in SEARCH_POLICIES


def decode(raw: str | bytes) -> FinishedNetwork:
    return FinishedNetwork.from_dict(json.loads(raw))


def new_population(name: str, estimator: EstimatorSettings | dict | None, num_classes: int | None,
                   params: dict[str, Any]) -> AdaptivePopulation:
    """An empty population for one search (bad names or parameters raise `PolicyConfigError`)."""
    return make_policy_factory(name, estimator=estimator, num_classes=num_classes, **params)


class Populations:
    """Populations of one process by (search, policy settings); not thread-safe (one per loop or worker)."""

    def __init__(self, size: int = DEFAULT_POPULATIONS):
        self.size = size
        self._entries: OrderedDict[tuple, AdaptivePopulation] = OrderedDict()

    def get(self, search: str, name: str, estimator: EstimatorSettings | dict | None, num_classes: int | None,
            params: dict[str, Any], stored: int | None = None) -> AdaptivePopulation:
        """The process's population for this search and settings (empty when new: sync it before use).

        `stored`: the length of the search's list now; a population that knows more networks than that
        was built from a list that has since expired (a search name used again) and starts over."""
        if isinstance(estimator, EstimatorSettings):
            estimator = estimator.model_dump(mode="json")
        fingerprint = (search, name, dumps(estimator or {}), num_classes, dumps(sorted(params.items())))
        population = self._entries.get(fingerprint)
        if population is None or (stored is not None and population.n_finished > stored):
            population = new_population(name, estimator, num_classes, params)
            self._entries[fingerprint] = population
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(fingerprint)
        return population


# ---------------------------------------------------------------------------- blocking (workers)


def source(redis, search: str) -> Callable[[int], list[FinishedNetwork]]:
    """`AdaptivePopulation.source` for a worker: the search's networks after the first n."""

    def after(n: int) -> list[FinishedNetwork]:
        return [decode(raw) for raw in redis.lrange(networks_key(search), n, -1)]

    return after


def append(redis, search: str, network: FinishedNetwork, ttl_s: float) -> int:
    """Add a finished network to its search; returns how many the search now has."""
    with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(networks_key(search), dumps(network.to_dict()))
        pipe.pexpire(networks_key(search), max(1, int(ttl_s * 1000)))
        n, _ = pipe.execute()
    return int(n)


# ---------------------------------------------------------------------------- asyncio (API)

_warm = False


async def warm_up() -> None:
    """Import what the adaptive policy's first decision imports (scipy.stats, ~0.8 s) in a thread, once
    per process: made on the event loop, that first decision stalled every other request."""
    global _warm
    if not _warm:
        await asyncio.to_thread(importlib.import_module, "scipy.stats")
        _warm = True



async def sync_async(redis, search: str, population: AdaptivePopulation, upto: int | None = None) -> None:
    """Bring the population up to the search's latest finished network (or its first `upto`)."""
    if upto is not None and population.n_finished >= upto:
        return
    start = population.n_finished
    stop = -1 if upto is None else upto - 1
    for i, raw in enumerate(await redis.lrange(networks_key(search), start, stop)):
        if i:
            await asyncio.sleep(0)  # a cold process learning a long search must not stall other requests
        if start + i == population.n_finished:  # else another session's sync added it meanwhile
            population.add(decode(raw))


async def append_async(redis, search: str, network: FinishedNetwork, ttl_s: float) -> int:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(networks_key(search), dumps(network.to_dict()))
        pipe.pexpire(networks_key(search), max(1, int(ttl_s * 1000)))
        n, _ = await pipe.execute()
    return int(n)
