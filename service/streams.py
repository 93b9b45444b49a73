"""Reading job event streams for SSE clients, in one of two ways behind one interface.

``direct`` (the default): one blocking XREAD per open stream. ``hub``: one reader
task per API process blocks on every watched stream at once (plus a private
wake-up stream, so a new subscriber is picked up at once) and hands entries to
per-client queues; a subscriber joining a stream the hub already watches
fetches the gap itself (XRANGE from its cursor up to the hub's), so no event is
lost or repeated. The hub saves connections but re-reads every watched key
after each event; the benchmark (docs/BENCHMARKS.md) measured it slower, so it
is kept only as the compared alternative (``PENG4NN_SSE_FANOUT=hub``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from worker.events import key

log = logging.getLogger("peng4nn.service")

BLOCK_MS = 2000
"""Longest single XREAD wait (redis-py's default socket timeout is 5 s)."""

READ_COUNT = 1000
"""Most entries per stream per XREAD."""


class HubClosed(Exception):
    """The hub stopped (shutdown or Redis failure): the stream ends and the client resumes."""


@dataclass(eq=False)
class Subscription:
    stream: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    async def get(self, timeout: float) -> list[tuple[str, dict]] | None:
        """Next batch of ``(id, fields)`` entries, or None after ``timeout`` s of silence."""
        try:
            if self.queue.empty():
                async with asyncio.timeout(timeout):
                    item = await self.queue.get()
            else:
                item = self.queue.get_nowait()
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            raise item
        return item


class DirectSubscription:
    """The default (``PENG4NN_SSE_FANOUT=direct``): each client's stream is read by its own blocking XREAD.

    Measured against the hub (bench/bench_service.py, docs/BENCHMARKS.md) it delivers with lower
    latency and less CPU: Redis wakes exactly the reader whose stream grew, while the hub re-issues
    an XREAD over every watched key after each event. It holds one Redis connection per open
    stream, so an API process serves at most PENG4NN_REDIS_MAX_CONNECTIONS streams.
    """

    def __init__(self, redis: Redis, stream: str, cursor: str):
        self.redis, self.stream, self.cursor = redis, stream, cursor

    async def get(self, timeout: float) -> list[tuple[str, dict]] | None:
        """Next entries after the cursor, or None after ``timeout`` s (in reads of at most BLOCK_MS)."""
        deadline = time.monotonic() + timeout
        while True:
            left_ms = (deadline - time.monotonic()) * 1000
            if left_ms <= 0:
                return None
            reply = await self.redis.xread({self.stream: self.cursor}, count=READ_COUNT,
                                           block=max(1, int(min(left_ms, BLOCK_MS))))
            if reply:
                entries = reply[0][1]
                self.cursor = entries[-1][0]
                return entries


class StreamHub:
    """Owns the reader task; `subscribe` / `unsubscribe` from request handlers."""

    def __init__(self, redis: Redis, fanout: str = "hub"):
        self.redis = redis
        self.fanout = fanout
        self.wake_key = key("hub", uuid.uuid4().hex)
        self._cursors: dict[str, str] = {}
        self._subscribers: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task | None = None
        self._wake_cursor = "0-0"

    async def subscribe(self, stream: str, cursor: str) -> tuple[Subscription, list[tuple[str, dict]]]:
        """Watch ``stream`` after ``cursor``; returns the subscription and the backlog to send first."""
        if self.fanout == "direct":
            return DirectSubscription(self.redis, stream, cursor), []
        sub = Subscription(stream)
        watched = stream in self._cursors
        hub_cursor = self._cursors.get(stream, cursor)
        self._subscribers.setdefault(stream, set()).add(sub)
        backlog: list[tuple[str, dict]] = []
        if watched and _id(cursor) < _id(hub_cursor):
            # The hub is past this client's cursor: fetch the gap (cursor, hub_cursor] ourselves.
            backlog = await self.redis.xrange(stream, min=f"({cursor}", max=hub_cursor)
        elif not watched:
            self._cursors[stream] = cursor
            await self._wake()
        self._ensure_running()
        return sub, backlog

    def unsubscribe(self, sub: Subscription | DirectSubscription) -> None:
        subs = self._subscribers.get(sub.stream)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subscribers[sub.stream]
            self._cursors.pop(sub.stream, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self._fail(HubClosed("the API is shutting down"))
        try:
            await self.redis.delete(self.wake_key)
        except RedisError:
            pass

    # ------------------------------------------------------------------ internals

    async def _wake(self) -> None:
        if self._task is not None:
            await self.redis.xadd(self.wake_key, {"w": "1"}, maxlen=10, approximate=True)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="stream-hub")

    async def _run(self) -> None:
        while self._cursors:
            try:
                reply = await self.redis.xread({**self._cursors, self.wake_key: self._wake_cursor},
                                               count=READ_COUNT, block=BLOCK_MS)
            except RedisError as exc:
                log.warning("stream hub: %s; ending open streams (clients resume)", exc)
                self._fail(HubClosed(str(exc)))
                return
            for stream, entries in reply or ():
                if stream == self.wake_key:
                    self._wake_cursor = entries[-1][0]
                    continue
                if stream not in self._cursors:
                    continue  # everyone left meanwhile
                self._cursors[stream] = entries[-1][0]
                for sub in self._subscribers.get(stream, ()):
                    sub.queue.put_nowait(entries)

    def _fail(self, exc: Exception) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.queue.put_nowait(exc)
        self._subscribers.clear()
        self._cursors.clear()


def _id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)
