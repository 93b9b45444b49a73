"""Every Redis key PEng4NN writes, built here and nowhere else.

The API and the workers meet only in Redis, so the key layout is their contract. Each key is
``KEY_PREFIX:part:...``; a Lua script that must address a key it only learns inside the script
(an owner or a status read from a record) gets a template made by the same builder
(`index_key_template`), never a key spelled out in Lua.
"""

from __future__ import annotations

KEY_PREFIX = "peng4nn"
"""Every Redis key of ours starts with this."""

ALL_OWNERS = "*"
"""Owner scope of the global status indexes (owners are hex digests or "public")."""


def key(*parts: str) -> str:
    """The Redis key for ``parts``: ``key("job", id)`` -> ``"peng4nn:job:<id>"``."""
    return ":".join((KEY_PREFIX, *parts))


# ---------------------------------------------------------------------------------------------- jobs

def record_key(job_id: str) -> str:
    """Hash of a job's current state."""
    return key("job", job_id)


def stream_key(job_id: str) -> str:
    """Redis Stream of a job's events (status, iteration, result)."""
    return key("job", job_id, "events")


def index_key(owner: str, status: str | None = None) -> str:
    """Sorted set of job ids by creation time: one owner's jobs (or every owner's: `ALL_OWNERS`), all or of
    one status."""
    return key("index", owner, status or "all")


def index_key_template() -> str:
    """`index_key` with ``%s`` for owner and status, for the job store's Lua (``string.format``)."""
    return index_key("%s", "%s")


STATS_KEY = key("stats")
"""Hash of global counters (jobs created, events appended by type)."""


def idempotency_key(owner: str, key_digest: str) -> str:
    """An owner's claim on one ``Idempotency-Key`` (by its digest) of ``POST /v1/jobs``."""
    return key("idempotency", owner, key_digest)


# ---------------------------------------------------------------------------------------------- quotas

def reservations_key(owner: str) -> str:
    """Sorted set of a token's in-flight submissions (member ``<name>:<n>``, score = expiry in ms)."""
    return key("quota", owner, "reserved")


def sessions_quota_key(owner: str) -> str:
    """Sorted set of a token's observation sessions (score = creation time in ms)."""
    return key("quota", owner, "sessions")


# ---------------------------------------------------------------------------------------------- observe mode

def session_key(curve_id: str) -> str:
    """Hash of an observation session: owner, settings, creation time, whether it joined its search."""
    return key("curve", curve_id)


def points_key(curve_id: str) -> str:
    """List of an observation session's points, each stored with the decision made after it."""
    return key("curve", curve_id, "points")


# ---------------------------------------------------------------------------------------------- searches

def networks_key(search: str) -> str:
    """List of a (scoped) search's finished networks, oldest first."""
    return key("search", search, "networks")
