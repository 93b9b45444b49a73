"""Job records and their event streams in Redis: the one write path for job state.

Every job has a hash (its current state) and a Redis Stream (its history:
``status``, ``iteration`` and ``result`` events). Both are changed only by the
two Lua scripts below, which append the events and update the hash in one
atomic step, so the status endpoint (hash) and the SSE endpoint (stream)
always agree, and a status change is applied only from the states it allows
(compare-and-set: a cancelled job can never be set running, a terminal job
takes no more events).

Keys come from `peng4nn_store.keys` (the Lua gets the index keys' template from there). Used by
the API and the workers alike: it imports redis, never torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from redis import Redis

from peng4nn.jobs import EVENT_RESULT, EVENT_STATUS, TERMINAL_STATUSES, JobStatus
from peng4nn_store.encoding import clean_json, dumps, hash_field, now, text
from peng4nn_store.keys import ALL_OWNERS, STATS_KEY, index_key_template, record_key, stream_key

_CREATE_LUA = """
-- KEYS: record, stream, stats; ARGV[1]: JSON {id, owner, fields, event, ttl, index}
-- op.index: the index keys' template (owner, status) from peng4nn_store.keys
local op = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
for k, v in pairs(op.fields) do redis.call('HSET', KEYS[1], k, v) end
local id = redis.call('XADD', KEYS[2], '*', 'type', op.event[1], 'data', op.event[2])
redis.call('HSET', KEYS[1], 'last_event_id', id)
local created = tonumber(op.fields.created_at)
redis.call('ZADD', string.format(op.index, op.owner, 'all'), created, op.id)
redis.call('ZADD', string.format(op.index, op.owner, op.fields.status), created, op.id)
redis.call('ZADD', string.format(op.index, op.all_owners, op.fields.status), created, op.id)
redis.call('HINCRBY', KEYS[3], 'jobs_created', 1)
redis.call('EXPIRE', KEYS[1], op.ttl)
redis.call('EXPIRE', KEYS[2], op.ttl)
return id
"""

_APPLY_LUA = """
-- KEYS: record, stream, stats
-- ARGV[1]: JSON {id, expect[], status?, set{}, incr{}, events[[type, data]], ttl, index}
local op = cjson.decode(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, ''} end
local ok = (#op.expect == 0)
for _, s in ipairs(op.expect) do if s == current then ok = true end end
if not ok then return {0, current} end
local last = ''
for _, ev in ipairs(op.events) do
  last = redis.call('XADD', KEYS[2], '*', 'type', ev[1], 'data', ev[2])
  redis.call('HINCRBY', KEYS[3], 'events_' .. ev[1], 1)
end
if last ~= '' then redis.call('HSET', KEYS[1], 'last_event_id', last) end
for k, v in pairs(op.set) do redis.call('HSET', KEYS[1], k, v) end
for k, v in pairs(op.incr) do redis.call('HINCRBY', KEYS[1], k, v) end
local new = op.status
if type(new) == 'string' and new ~= current then
  redis.call('HSET', KEYS[1], 'status', new)
  local created = redis.call('HGET', KEYS[1], 'created_at')
  local owner = redis.call('HGET', KEYS[1], 'owner')
  for _, scope in ipairs({owner, op.all_owners}) do
    redis.call('ZREM', string.format(op.index, scope, current), op.id)
    redis.call('ZADD', string.format(op.index, scope, new), created, op.id)
  end
end
redis.call('EXPIRE', KEYS[1], op.ttl)
redis.call('EXPIRE', KEYS[2], op.ttl)
return {1, last}
"""


@dataclass(frozen=True)
class Applied:
    """Outcome of a compare-and-set write: ``ok`` False means the job was in ``status``."""

    ok: bool
    status: str | None
    """The status the job was in when the write was refused (None if it does not exist)."""
    event_id: str | None = None


def status_event(status: JobStatus, reason: str | None = None, attempt: int = 0) -> tuple[str, str]:
    from datetime import datetime, timezone

    at = datetime.now(timezone.utc).isoformat()
    return (EVENT_STATUS, dumps({"status": status.value, "at": at, "reason": reason, "attempt": attempt}))


class JobStore:
    """Reads and writes job records and streams on a sync Redis client (decoded or bytes)."""

    def __init__(self, redis: Redis, ttl_s: int):
        self.redis = redis
        self.ttl_s = int(ttl_s)
        self._create = redis.register_script(_CREATE_LUA)
        self._apply = redis.register_script(_APPLY_LUA)

    # ------------------------------------------------------------------ writes

    def create(self, job_id: str, owner: str, fields: dict[str, Any], pipeline=None) -> Any:
        """Create a queued job (hash, first status event, indexes); with ``pipeline`` only queue it there."""
        fields = {k: hash_field(v) for k, v in fields.items() if v is not None}
        fields.update(status=JobStatus.QUEUED.value, owner=owner)
        op = {"id": job_id, "owner": owner, "fields": fields, "event": list(status_event(JobStatus.QUEUED)),
              "ttl": self.ttl_s, "index": index_key_template(), "all_owners": ALL_OWNERS}
        keys = [record_key(job_id), stream_key(job_id), STATS_KEY]
        if pipeline is None:
            return self._create(keys=keys, args=[dumps(op)])
        # EVAL, not EVALSHA: inside MULTI a missing script would fail alone and leave the rest
        # applied; EVAL needs no SCRIPT EXISTS round trip either (Redis caches it by digest).
        return pipeline.eval(_CREATE_LUA, len(keys), *keys, dumps(op))

    def apply(
        self,
        job_id: str,
        *,
        expect: Iterable[JobStatus] = (),
        status: JobStatus | None = None,
        set_fields: dict[str, Any] | None = None,
        incr: dict[str, int] | None = None,
        events: list[tuple[str, str]] = (),
    ) -> Applied:
        """Append ``events`` and update the record atomically, if the job is in one of ``expect``.

        An empty ``expect`` means "any non-terminal status": terminal jobs never change.
        """
        expect = [s.value for s in expect] or [s.value for s in JobStatus if s not in TERMINAL_STATUSES]
        op = {
            "id": job_id,
            "expect": expect,
            "status": status.value if status else False,
            "set": {k: hash_field(v) for k, v in (set_fields or {}).items() if v is not None},
            "incr": incr or {},
            "events": [list(e) for e in events],
            "ttl": self.ttl_s,
            "index": index_key_template(),
            "all_owners": ALL_OWNERS,
        }
        ok, value = self._apply(keys=[record_key(job_id), stream_key(job_id), STATS_KEY], args=[dumps(op)])
        value = text(value)
        if ok:
            return Applied(True, None, value or None)
        return Applied(False, value or None)

    def transition(self, job_id: str, status: JobStatus, *, expect: Iterable[JobStatus] = (),
                   reason: str | None = None, set_fields: dict[str, Any] | None = None,
                   incr: dict[str, int] | None = None, attempt: int = 0,
                   extra_events: list[tuple[str, str]] = ()) -> Applied:
        """Move the job to ``status`` with its ``status`` event (plus ``extra_events`` after it)."""
        fields = {"updated_at": now(), **(set_fields or {})}
        return self.apply(job_id, expect=expect, status=status, set_fields=fields, incr=incr,
                          events=[status_event(status, reason, attempt), *extra_events])

    def finish(self, job_id: str, status: JobStatus, *, result: dict | None = None, error: str | None = None,
               expect: Iterable[JobStatus] = ()) -> Applied:
        """Terminal write: the ``status`` event, then the final ``result`` event; the stream ends there."""
        assert status in TERMINAL_STATUSES, status
        result = clean_json(result) if result is not None else None
        payload = dumps({"status": status.value, "result": result, "error": error})
        fields = {"ended_at": now(), "error": error, "result": dumps(result) if result is not None else None}
        return self.transition(job_id, status, expect=expect, reason=error, set_fields=fields,
                               extra_events=[(EVENT_RESULT, payload)])

    # ------------------------------------------------------------------ reads

    def get(self, job_id: str) -> dict[str, str] | None:
        data = self.redis.hgetall(record_key(job_id))
        return {text(k): text(v) for k, v in data.items()} or None

    def status(self, job_id: str) -> str | None:
        return text(self.redis.hget(record_key(job_id), "status"))

    def cancel_requested(self, job_id: str) -> bool:
        return self.redis.hget(record_key(job_id), "cancel_requested") == (b"1" if _is_bytes(self.redis) else "1")

    def events(self, job_id: str, after: str = "0-0", count: int | None = None) -> list[tuple[str, str, Any]]:
        """Events strictly after ``after`` as ``(id, type, data)``."""
        entries = self.redis.xrange(stream_key(job_id), min=f"({after}" if after != "0-0" else "-", count=count)
        return [parse_entry(eid, fields) for eid, fields in entries]


def parse_entry(entry_id: Any, fields: dict) -> tuple[str, str, Any]:
    """A raw stream entry -> ``(id, type, data)`` with ``data`` decoded from JSON."""
    fields = {text(k): text(v) for k, v in fields.items()}
    return text(entry_id), fields.get("type", ""), json.loads(fields.get("data") or "null")


def _is_bytes(redis: Redis) -> bool:
    return not redis.connection_pool.connection_kwargs.get("decode_responses", False)
