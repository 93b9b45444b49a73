"""The RQ worker process: one per GPU, running jobs in-process with a heartbeat lease.

`LeasedWorker` is RQ's `SimpleWorker` (no fork per job: the dataset and the CUDA
context stay warm between jobs, and killing the process kills its job) plus a
heartbeat thread that renews the job's lease every ``lease_s / 3`` seconds.
When the process dies, the lease runs out after ``lease_s`` and the next
maintenance pass (any worker's or the API's) fails or re-queues the job.

A Redis outage does not end the process: the job rides it out (`peng4nn_worker.outage`), RQ's
bookkeeping after a job that fails on a lost connection is left to the lease rule, and when
RQ's own loop gives up on Redis, `run_worker` waits for Redis and starts the loop again.
Workers run only the product's own task (`peng4nn_store.queue`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from redis import Redis
from rq import SimpleWorker
from rq.worker import WorkerStatus

from peng4nn.devices import check_device
from peng4nn_store.liveness import worker_ttl_s
from peng4nn_store.maintenance import prune_indexes
from peng4nn_store.queue import SERIALIZER, TrustedJob, make_queue
from peng4nn_store.settings import DEFAULT_WORKER_LEASE_S, Settings
from peng4nn_worker import tasks
from peng4nn_worker.outage import OUTAGE_ERRORS, wait_for_redis

log = logging.getLogger("peng4nn.worker")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
"""A worker whose loop ends more than MAX_RESTARTS times within RESTART_WINDOW_S exits with code 1
(something other than an outage is wrong; its supervisor decides what next)."""


class LeasedWorker(SimpleWorker):
    """SimpleWorker whose running job holds a short, renewed lease instead of job_timeout + 60 s.

    With a ``beat_file`` every heartbeat that reached Redis also touches that file: the container's
    health check of this process reads its age (`peng4nn_worker.health`)."""

    lease_s: int = DEFAULT_WORKER_LEASE_S
    job_ttl_s: int = 7 * 24 * 3600
    beat_file: Path | None = None

    def heartbeat(self, timeout: int | None = None, pipeline=None):
        super().heartbeat(timeout, pipeline)
        if pipeline is None:  # in a pipeline it is sent later, by maintain_heartbeats
            self._beat_locally()

    def maintain_heartbeats(self, job, execution):
        super().maintain_heartbeats(job, execution)
        self._beat_locally()

    def _beat_locally(self) -> None:
        if self.beat_file is not None:
            self.beat_file.touch()

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return self.lease_s

    def execute_job(self, job, queue):
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(target=self._renew_lease, args=(job, execution, done), daemon=True,
                                name=f"lease-{job.id}")
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        except OUTAGE_ERRORS:
            # RQ could not record the job's end (Redis went away): its lease lapses and the maintenance
            # pass settles it; the job's own record was written (or refused) by the task itself.
            log.warning("job %s ended while Redis was unreachable; the lease rule settles it", job.id, exc_info=True)
        finally:
            done.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _renew_lease(self, job, execution, done: threading.Event) -> None:
        while not done.wait(max(self.lease_s / 3.0, 0.2)):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception:  # a missed beat is retried; only a dead process lets the lease lapse
                log.warning("heartbeat for job %s failed", job.id, exc_info=True)

    def request_stop(self, signum, frame):
        """Warm shutdown: the running job stops at its next iteration boundary and is re-queued."""
        tasks.request_shutdown()
        super().request_stop(signum, frame)

    def run_maintenance_tasks(self):
        super().run_maintenance_tasks()
        prune_indexes(self.connection, self.job_ttl_s)


def make_worker(settings: Settings, *, name: str | None = None, connection: Redis | None = None) -> LeasedWorker:
    connection = connection or Redis.from_url(settings.redis_url)
    queue = make_queue(settings.queue_name, connection)
    worker = LeasedWorker(
        [queue], connection=connection, name=name, job_class=TrustedJob, serializer=SERIALIZER,
        default_result_ttl=settings.result_ttl_s,
        maintenance_interval=max(1, int(settings.maintenance_interval_s)),
        job_monitoring_interval=max(1, settings.worker_lease_s // 3),
        worker_ttl=worker_ttl_s(settings.worker_lease_s),
    )
    worker.lease_s = settings.worker_lease_s
    worker.job_ttl_s = settings.job_ttl_s
    worker.beat_file = Path(settings.worker_heartbeat_file) if settings.worker_heartbeat_file else None
    return worker


def run_worker(settings: Settings, *, device: str | None = None, burst: bool = False, name: str | None = None,
               preload: bool = True) -> int:
    """Serve jobs until stopped (or until the queue is empty with ``burst``); returns an exit code."""
    check_device(device)
    tasks.configure(device)
    worker = make_worker(settings, name=name)
    worker.connection.ping()  # fail fast (before importing torch) when Redis is unreachable
    if preload:
        import peng4nn.train  # noqa: F401  - pay torch's import once, not in the first job
    log.info("worker %s listening on %s (device %s)", worker.name, settings.queue_name, device or "default")
    restarts: list[float] = []
    while True:
        try:
            worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
        except OUTAGE_ERRORS as exc:  # RQ's teardown could not reach Redis either
            log.warning("worker %s: %s", worker.name, exc)
        if burst or worker._stop_requested or tasks.shutting_down():
            return 0
        # RQ leaves its loop on any Redis error outside its dequeue; wait for Redis and start again.
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(restarts) > MAX_RESTARTS:
            log.error("worker %s left its loop %d times in %.0f s; exiting", worker.name, len(restarts),
                      RESTART_WINDOW_S)
            return 1
        log.warning("worker %s left its loop (Redis unreachable?); reconnecting", worker.name)
        if not wait_for_redis(worker.connection.ping, tasks.shutdown_event()):
            return 0
        _retire(worker)
        worker = make_worker(settings, name=name)


def _retire(worker: LeasedWorker) -> None:
    """Mark a worker whose loop ended on an error dead, so its name can be registered again."""
    try:
        worker.unsubscribe()
        worker.register_death()
    except Exception:  # best effort: at worst the old entry lingers until its key expires
        log.warning("could not retire worker %s", worker.name, exc_info=True)
