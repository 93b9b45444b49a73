"""Observation sessions in Redis, and the per-model policy that answers each posted point.

A session is a hash (owner, settings, creation time) and a list of points, each stored
with the decision the engine made after it. Redis is the truth; the decision itself is
always made by the library's `StoppingPolicy.observe()`, never re-derived here.

Keeping that policy between posts is what makes a post cheap: a fresh policy replaying a
40-point curve makes 40 fits (a few ms even batched), a kept one makes one. So each API process keeps
the policies of recently used sessions (`PolicyCache`) together with how many stored
points they have consumed. A post is committed by one Lua script that appends the points
only if the list still has that many; otherwise another process (or a restart) wrote in
between, and the policy is rebuilt by replaying the stored points through a fresh one.
Within a process, posts to one session are serialised by a lock, across processes by
that compare-and-append, so concurrent posts never lose, duplicate or reorder points.

Everything runs on the event loop (``redis.asyncio``, the fit inline): a fit is under a
millisecond of pure CPU that holds the GIL, so a worker thread would not run it any sooner
and would add hand-offs between that thread and the loop. Long posts and replays yield to
the loop every few fits.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Sequence

from redis.asyncio import Redis

from peng4nn import defaults
from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, EstimatorSettings
from peng4nn.curve import PrefixFitCache
from peng4nn.network_info import NetworkInfo
from peng4nn.policies import DEFAULT_LONE_POLICY, PolicyConfigError, StoppingPolicy, make_policy
from peng4nn.schedule import LRSchedule
from peng4nn.spec import SpecError, check_schedule_fits
from peng4nn_service.curve_schemas import CurveCreate, CurvePointPublic, CurvePublic, DecisionPublic, ObservationPoint
from peng4nn_service.errors import InvalidInput, NotFound, StateConflict
from peng4nn_service.quotas import admit_session
from peng4nn_store import searches
from peng4nn_store.encoding import clean_json, dumps
from peng4nn_store.keys import networks_key, points_key, session_key, sessions_quota_key
from peng4nn_store.settings import DEFAULT_CURVE_CACHE_POINTS, Settings

FITS_PER_SLICE = 4
"""Fits made before yielding to the event loop, so a long post or replay never stalls other requests."""

LOCK_STRIPES = 256
"""In-process locks; a session's posts always take the same one."""

COMMIT_ATTEMPTS = 5
"""Posts retried after another process wrote to the same session in between."""

FIT_BACKEND = defaults.BACKEND
"""The API decides with the exact fast back-end (no queue hop)."""


CURVE_ID_PATTERN = r"^[0-9a-f]{24}$"
"""Session ids are 12 random bytes in hex; anything else never reaches a Redis key."""


# Append the points iff the session exists and holds exactly ARGV[1] points; refresh both TTLs.
# Returns the new length, -1 when the session is gone, or -2 - n when it holds n points.
_COMMIT_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('LLEN', KEYS[2])
if n ~= tonumber(ARGV[1]) then return -2 - n end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return n + #ARGV - 2
"""


class CurveNotFound(NotFound):
    code = "curve_not_found"

    def __init__(self, curve_id: str):
        super().__init__(f"curve session {curve_id!r} does not exist (or has expired)")


class EpochConflict(StateConflict):
    code = "epoch_not_increasing"


@dataclass
class _Entry:
    """A session's policy and the number of stored points it has consumed."""

    policy: StoppingPolicy
    n_points: int
    owner: str
    #: The search whose population the policy ranks against (population-aware policies only).
    search: str | None = None
    #: The network was already added to its search (final decision, or deleted).
    finished: bool = False


class PolicyCache:
    """Least-recently-used policies of one process, by session id, bounded in entries and in points."""

    def __init__(self, size: int, max_points: int = DEFAULT_CURVE_CACHE_POINTS):
        self.size = size
        self.max_points = max_points
        self.points = 0
        """Points the cached policies hold now (their memory grows with it)."""
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._held: dict[str, int] = {}

    def get(self, curve_id: str) -> _Entry | None:
        entry = self._entries.get(curve_id)
        if entry is not None:
            self._entries.move_to_end(curve_id)
        return entry

    def put(self, curve_id: str, entry: _Entry) -> None:
        if self.size == 0:
            return
        self.drop(curve_id)
        self._entries[curve_id] = entry
        self._held[curve_id] = entry.n_points
        self.points += entry.n_points
        while self._entries and (len(self._entries) > self.size or self.points > self.max_points):
            oldest, _ = self._entries.popitem(last=False)
            self.points -= self._held.pop(oldest)

    def drop(self, curve_id: str) -> None:
        if self._entries.pop(curve_id, None) is not None:
            self.points -= self._held.pop(curve_id)

    def __len__(self) -> int:
        return len(self._entries)


class CurveSessions:
    """Create, observe, read and delete sessions on an asyncio Redis client with decoded responses.

    One instance per event loop (per app): its locks and cache are not thread-safe.
    """

    def __init__(self, redis: Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.cache = PolicyCache(settings.curve_cache_size, settings.curve_cache_points)
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        self._commit = redis.register_script(_COMMIT_LUA)
        self.populations = searches.Populations()
        self.replays = 0
        """Policies rebuilt from Redis (cache misses and conflicts): a health signal for the benchmark."""

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.settings.curve_ttl_s * 1000))

    # ------------------------------------------------------------------ create / read / delete

    async def create(self, owner: str, body: CurveCreate) -> str:
        """A new empty session; the settings are validated by building its policy once."""
        estimator = body.estimator or EstimatorSettings()
        try:
            check_schedule_fits(body.schedule, estimator.e_max, ("body", "schedule"))
        except SpecError as exc:
            raise InvalidInput(str(exc), errors=exc.errors) from None
        meta = {"estimator": estimator.model_dump(mode="json"), "num_classes": body.num_classes, "label": body.label,
                "policy": body.policy, "policy_params": body.policy_params, "search": body.search,
                "schedule": _dumped(body.schedule), "network": _dumped(body.network)}
        curve_id = secrets.token_hex(12)
        # Admitted before the policy is built: a refused session must not draw a role in its search.
        await admit_session(self.redis, owner, self.settings.quota_sessions, self.settings.curve_ttl_s, curve_id)
        try:
            policy, search = await self._new_policy(meta, estimator, owner)
        except InvalidInput:
            await self.redis.zrem(sessions_quota_key(owner), curve_id)
            raise
        # A search's role for this network (a reference trains to e_max) is drawn once, when it starts.
        role = getattr(policy, "role", None)
        if role is not None:
            meta["reference"] = role.reference
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(session_key(curve_id),
                      mapping={"owner": owner, "meta": dumps(meta), "created_at": repr(time.time())})
            pipe.pexpire(session_key(curve_id), self.ttl_ms)
            await pipe.execute()
        self.cache.put(curve_id, _Entry(policy, 0, owner, search))
        return curve_id

    async def get(self, curve_id: str, owner: str) -> CurvePublic:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(session_key(curve_id))
            pipe.lrange(points_key(curve_id), 0, -1)
            pipe.pttl(session_key(curve_id))
            record, raw_points, ttl_ms = await pipe.execute()
        meta = self._meta(curve_id, record, owner)
        points = [_point_public(json.loads(raw)) for raw in raw_points]
        final = next((p.decision for p in points if p.decision.stop), None)
        return CurvePublic(
            id=curve_id,
            label=meta["label"],
            num_classes=meta["num_classes"],
            estimator=EstimatorSettings(**meta["estimator"]),
            policy=meta.get("policy", DEFAULT_LONE_POLICY),
            policy_params=meta.get("policy_params") or {},
            search=meta.get("search"),
            schedule=meta.get("schedule"),
            network=meta.get("network"),
            created_at=float(record["created_at"]),
            expires_in_s=ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else None,
            n_points=len(points),
            points=points,
            latest=points[-1].decision if points else None,
            final=final,
        )

    async def delete(self, curve_id: str, owner: str) -> None:
        """Forget a session; a network of a search that had not stopped joins its search first (as replay does)."""
        record = await self.redis.hgetall(session_key(curve_id))
        meta = self._meta(curve_id, record, owner)
        if _search_of(meta, owner) and record.get("finished") != "1":
            async with self._locks[hash(curve_id) % LOCK_STRIPES]:
                entry = self.cache.get(curve_id) or await self._load(curve_id, owner)
                await self._finish_in_search(curve_id, entry)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(session_key(curve_id), points_key(curve_id))
            pipe.zrem(sessions_quota_key(owner), curve_id)
            await pipe.execute()
        self.cache.drop(curve_id)

    # ------------------------------------------------------------------ observe

    async def observe(self, curve_id: str, owner: str, points: Sequence[ObservationPoint]) -> tuple[dict, int]:
        """Append ``points`` in order; answer the decision after the last (JSON form) and the point count.

        All or nothing: a point that breaks the epoch order (409) or that the policy refuses
        (422) leaves the session as it was.
        """
        async with self._locks[hash(curve_id) % LOCK_STRIPES]:
            for _ in range(COMMIT_ATTEMPTS):
                entry = self.cache.get(curve_id) or await self._load(curve_id, owner)
                if entry.owner != owner:
                    raise CurveNotFound(curve_id)
                self._check_order(entry, points)
                try:
                    n_networks = await self._sync_search(entry)
                    decisions = await self._feed(entry, points)
                    answers = [clean_json(d.to_dict()) for d in decisions]
                    records = [_record(p, d, n_networks) for p, d in zip(points, answers)]
                    result = await self._commit(
                        keys=[session_key(curve_id), points_key(curve_id)],
                        args=[entry.n_points, self.ttl_ms, *records],
                    )
                except BaseException:
                    self.cache.drop(curve_id)  # its policy may hold points that were not stored
                    raise
                if result == -1:
                    self.cache.drop(curve_id)
                    raise CurveNotFound(curve_id)
                if result < -1:  # another process appended first: rebuild from what is stored
                    self.cache.drop(curve_id)
                    continue
                entry.n_points = int(result)
                self.cache.put(curve_id, entry)
                if entry.search is not None and not entry.finished and answers[-1]["stop"]:
                    await self._finish_in_search(curve_id, entry)
                return answers[-1], entry.n_points
        raise StateConflict(f"curve session {curve_id!r} changed under {COMMIT_ATTEMPTS} attempts in a row; retry")

    def _check_order(self, entry: _Entry, points: Sequence[ObservationPoint]) -> None:
        if entry.n_points + len(points) > self.settings.curve_max_points:
            raise StateConflict(
                f"a curve session holds at most {self.settings.curve_max_points} points; "
                f"it has {entry.n_points} and {len(points)} were posted"
            )
        last = entry.policy.history.last_epoch
        for i, point in enumerate(points):
            if last is not None and point.epoch <= last + EPOCH_TOLERANCE:
                where = "the session's last epoch" if i == 0 else f"points[{i - 1}].epoch"
                raise EpochConflict(
                    f"points[{i}].epoch must be greater than {where} ({last!r}); got {point.epoch!r}. "
                    "Nothing was recorded."
                )
            last = point.epoch

    async def _feed(self, entry: _Entry, points: Sequence[ObservationPoint]) -> list[Decision]:
        """Run the policy on the new points; a point it refuses is a 422 naming the point."""
        decisions = []
        history = entry.policy.history
        known = ([*history.epochs(), *(p.epoch for p in points)], [*history.accuracies(), *(p.val_acc for p in points)])
        with _prefix_fits(entry.policy, *known, len(points)):
            for i, p in enumerate(points):
                if i and i % FITS_PER_SLICE == 0:
                    await asyncio.sleep(0)
                try:
                    decisions.append(entry.policy.observe(p.epoch, p.val_acc, p.val_loss, p.train_loss, p.lr))
                except (ValueError, ArithmeticError) as exc:  # the engine refused these numbers: this post's 422
                    field = str(exc).split(" ", 1)[0]
                    loc = ["body", "points", i] + ([field] if field in ObservationPoint.model_fields else [])
                    raise InvalidInput(f"body.points[{i}]: {exc}. Nothing was recorded.",
                                       errors=[{"loc": loc, "msg": str(exc)}]) from None
        return decisions

    async def _load(self, curve_id: str, owner: str) -> _Entry:
        """Rebuild a session's policy by replaying its stored points through a fresh one."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(session_key(curve_id))
            pipe.lrange(points_key(curve_id), 0, -1)
            record, raw_points = await pipe.execute()
        meta = self._meta(curve_id, record, owner)
        rows = [json.loads(raw) for raw in raw_points]
        counts = [row.get("n") for row in rows]
        policy, search = await self._new_policy(meta, meta["estimator"], record["owner"], counts)
        stored = [row["p"] for row in rows]
        with _prefix_fits(policy, [p[0] for p in stored], [p[1] for p in stored], len(stored)):
            for i, point in enumerate(stored):
                if i and i % FITS_PER_SLICE == 0:
                    await asyncio.sleep(0)
                if search is not None and rows[i].get("n") is not None:  # the search as it was at this point
                    await searches.sync_async(self.redis, search, policy.population, upto=rows[i]["n"])
                policy.observe(*point)
        self.replays += 1
        entry = _Entry(policy, len(raw_points), record["owner"], search, record.get("finished") == "1")
        self.cache.put(curve_id, entry)
        return entry

    def _meta(self, curve_id: str, record: dict[str, str], owner: str) -> dict[str, Any]:
        """The session's settings; a missing session and another owner's look the same (404)."""
        if not record or record.get("owner") != owner:
            raise CurveNotFound(curve_id)
        return json.loads(record["meta"])

    async def _new_policy(self, meta: dict[str, Any], estimator: EstimatorSettings | dict, owner: str,
                          stored_networks: Sequence[int | None] = ()) -> tuple[StoppingPolicy, str | None]:
        """The session's policy, and its search when the policy ranks against one.

        A population-aware policy gets the process's population of its search, brought up to date;
        a rebuilt one whose points were decided against fewer finished networks gets a population of
        its own, advanced point by point as the original was (`stored_networks`: the count per point).
        """
        name, params, search = meta.get("policy", DEFAULT_LONE_POLICY), meta.get("policy_params") or {}, _search_of(meta, owner)
        if searches.is_search_policy(name):
            await searches.warm_up()
        try:
            if search is None:
                return _with_inputs(make_policy(name, estimator=estimator, num_classes=meta["num_classes"],
                                                backend=FIT_BACKEND, **params), meta), None
            stored = await self.redis.llen(networks_key(search))
            population = self.populations.get(search, name, estimator, meta["num_classes"], params, stored)
        except (PolicyConfigError, TypeError, ValueError) as exc:
            field = "policy" if "'policy' parameter" in str(exc) else "policy_params"
            raise InvalidInput(f"body.{field}: {exc}", errors=[{"loc": ["body", field], "msg": str(exc)}]) from None
        await searches.sync_async(self.redis, search, population)
        if any(n != population.n_finished for n in stored_networks if n is not None):
            population = searches.new_population(name, estimator, meta["num_classes"], params)
        return _with_inputs(population(reference=meta.get("reference")), meta), search

    async def _sync_search(self, entry: _Entry) -> int | None:
        """Learn the search's networks finished since the last post; the count the decisions are made with."""
        if entry.search is None:
            return None
        population = entry.policy.population
        await searches.sync_async(self.redis, entry.search, population)
        return population.n_finished

    async def _finish_in_search(self, curve_id: str, entry: _Entry) -> None:
        """`policy.finish()` for a service: the network joins its search's list in Redis (once)."""
        entry.finished = True
        network = entry.policy.outcome()
        if network is not None and await self.redis.hsetnx(session_key(curve_id), "finished", "1"):
            await searches.append_async(self.redis, entry.search, network, self.settings.curve_ttl_s)


@contextmanager
def _prefix_fits(policy: StoppingPolicy, epochs: list[float], accuracies: list[float], new_points: int):
    """While feeding several known points, let the policy fit them in batches.

    The fast back-end fits many prefixes of one curve at the cost of a few fits, with the
    same parameters as one fit each (`peng4nn.curve.PrefixFitCache`): replaying a stored
    40-point curve gets ~5x cheaper. The policy still only sees the points fed so far.
    """
    if new_points < 2 or not policy.accepts_known_fits(len(epochs)):
        yield
        return
    with policy.known_fits(PrefixFitCache(epochs, accuracies, FIT_BACKEND)):
        yield


def _with_inputs(policy: StoppingPolicy, meta: dict[str, Any]) -> StoppingPolicy:
    """The session's schedule (bound to its estimator's e_max) and network metadata, before the first point."""
    if meta.get("schedule") is not None:
        policy.schedule = LRSchedule.model_validate(meta["schedule"]).bound(meta["estimator"]["e_max"])
    if meta.get("network") is not None:
        policy.network = NetworkInfo.model_validate(meta["network"])
    return policy


def _dumped(model: Any) -> dict | None:
    return None if model is None else model.model_dump(mode="json", exclude_defaults=True)


def _record(point: ObservationPoint, decision: dict, n_networks: int | None = None) -> str:
    """One stored point: its values (the rate last: points stored before it existed have four), the
    decision made after it and, in a search, how many finished networks that decision knew (so a
    rebuilt policy decides again exactly as it did)."""
    row = {"p": [point.epoch, point.val_acc, point.val_loss, point.train_loss, point.lr], "d": decision}
    if n_networks is not None:
        row["n"] = n_networks
    return dumps(row)


def _search_of(meta: dict[str, Any], owner: str) -> str | None:
    """The session's search (within its owner's) when its policy learns from one (other policies ignore it)."""
    search = meta.get("search")
    if not search or not searches.is_search_policy(meta.get("policy", DEFAULT_LONE_POLICY)):
        return None
    return searches.scoped(owner, search)


def _point_public(stored: dict) -> CurvePointPublic:
    epoch, val_acc, val_loss, train_loss, lr = (*stored["p"], None)[:5]
    return CurvePointPublic(epoch=epoch, val_acc=val_acc, val_loss=val_loss, train_loss=train_loss, lr=lr,
                            decision=DecisionPublic.model_validate(stored["d"]))

