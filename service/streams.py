"""Reading a job's event stream for one SSE client: one blocking XREAD per open stream.

Redis wakes exactly the reader whose stream grew. A shared per-process reader (one XREAD over
every watched stream, handing entries to per-client queues) was built and measured slower (it
re-reads every watched key after each event; docs/BENCHMARKS.md) and was removed. Each open
stream holds one connection of the streams' own pool (`PENG4NN_STREAM_POOL_SIZE`).
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

BLOCK_MS = 2000
"""Longest single XREAD wait (redis-py's default socket timeout is 5 s)."""

READ_COUNT = 1000
"""Most entries per XREAD."""


class StreamReader:
    """The entries of one stream after a cursor, as they arrive."""

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
