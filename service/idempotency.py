"""``Idempotency-Key`` on ``POST /v1/jobs``: a client that retries a submission gets the job the first one created.

A client that timed out cannot tell whether its job was queued; without a key its retry would
queue (and train) the network twice. With one, the first request that passes validation claims
the key in the same Redis transaction that creates and enqueues the job (WATCH on the key, so two
racing requests cannot both create one), and the claim remembers a fingerprint of the body:
the same key with the same body answers the same job, with another body 409. A request that
fails validation claims nothing. Keys are scoped per owner (API token) and expire after
``PENG4NN_IDEMPOTENCY_TTL_S``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from redis import Redis

from peng4nn.jobs import JobAccepted, JobCreate
from peng4nn_service.errors import IdempotencyKeyReused, StateConflict
from peng4nn_store import keys
from peng4nn_store.job_store import JobStore

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
"""1-255 visible ASCII characters (a UUID is the usual choice)."""

_VALID_KEY = re.compile(KEY_PATTERN)


def valid_key(value: str) -> bool:
    """Whether a header value is a key the route accepts (else the route answers 422 naming the header)."""
    return _VALID_KEY.fullmatch(value) is not None


def response_headers(accepted: JobAccepted, replayed: bool) -> dict[str, str]:
    headers = {"Location": accepted.links.self}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


class AlreadyClaimed(Exception):
    """Another request holds this key: answer with its job (or 409)."""


@dataclass(frozen=True)
class Claim:
    """One request's claim on a key: where it is stored and what body it stands for."""

    redis_key: str
    fingerprint: str
    ttl_s: int

    @property
    def reservation_name(self) -> str:
        """Names this key's quota reservation: racing retries of one key hold one place between them."""
        return "idem-" + self.redis_key.rsplit(":", 1)[-1][:32]

    def value(self, job_id: str) -> str:
        return json.dumps({"fingerprint": self.fingerprint, "job_id": job_id})


def claim_for(owner: str, idempotency_key: str, body: JobCreate, ttl_s: int) -> Claim:
    """The claim of this request (the key is hashed: Redis keys stay short whatever the client sends)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    fingerprint = hashlib.sha256(body.model_dump_json(by_alias=True).encode()).hexdigest()
    return Claim(keys.idempotency_key(owner, digest), fingerprint, int(ttl_s))


def replay(redis: Redis, store: JobStore, claim: Claim) -> JobAccepted:
    """The job an earlier request with this key created, as it is now; 409 if that request had another body."""
    raw = redis.get(claim.redis_key)
    if raw is None:
        raise StateConflict("a request with this Idempotency-Key was being processed and vanished; retry it")
    stored = json.loads(raw)
    if stored["fingerprint"] != claim.fingerprint:
        raise IdempotencyKeyReused("this Idempotency-Key was used for a different request body; "
                                   "use a new key for a new job")
    record = store.get(stored["job_id"])
    if record is None:
        raise StateConflict(f"the job this Idempotency-Key created ({stored['job_id']!r}) has expired; "
                            "use a new key to submit again")
    from peng4nn_service.jobs import to_public

    job = to_public(stored["job_id"], record)
    return JobAccepted(id=job.id, status=job.status, created_at=job.created_at, params=job.params or 0,
                       flops=job.flops or 0, links=job.links)
