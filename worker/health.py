"""``python -m peng4nn_worker.health``: a container's health check of its own worker process.

Healthy while the worker's heartbeat file (``PENG4NN_WORKER_HEARTBEAT_FILE``, touched at every
heartbeat that reached Redis) is younger than the age at which the API stops counting the worker
as alive (`peng4nn_store.liveness.worker_ttl_s`). A frozen or dead worker, or one cut off from
Redis, goes unhealthy; a Redis ping from the container would not tell (docs/ARCHITECTURE.md).
Exit code 0 healthy, 1 not, with one line saying why.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from peng4nn_store.liveness import worker_ttl_s
from peng4nn_store.settings import get_settings


def check(beat_file: str | None, lease_s: int, now: float | None = None) -> str | None:
    """Why the worker is unhealthy, or None when it is healthy."""
    if not beat_file:
        return "PENG4NN_WORKER_HEARTBEAT_FILE is not set: the worker keeps no heartbeat file to check"
    path = Path(beat_file)
    if not path.exists():
        return f"no heartbeat yet: {path} does not exist (starting, or never reached Redis)"
    age = (time.time() if now is None else now) - path.stat().st_mtime
    limit = worker_ttl_s(lease_s)
    if age > limit:
        return f"last heartbeat {age:.0f} s ago (more than {limit} s): the worker is stuck, dead or cut off from Redis"
    return None


def main() -> int:
    settings = get_settings()
    problem = check(settings.worker_heartbeat_file, settings.worker_lease_s)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
