"""Which RQ jobs a PEng4NN process will run: the product's own task, nothing else.

Anyone who can write to Redis can put a job on the queue. RQ's defaults would then run any
importable function with any pickled arguments (`Queue("peng4nn").enqueue("os.system", ...)`
ran as root). Two rules close that:

* every queue and worker of ours uses RQ's JSON serializer, so a job's data can name a function
  and plain JSON arguments but can never carry a pickled object (unpickling runs code);
* `TrustedJob` resolves a job's function and callbacks only when their dotted path is in
  `ALLOWED_FUNCTIONS`, refuses bound methods (an ``instance``), and sends no webhooks. A foreign
  job fails with `ForeignJobError` before anything of it is imported; the worker goes on.

The API (enqueueing, and RQ's registry cleanup, which calls failure callbacks) and the workers
all build their queues with `make_queue`, so the same rule holds wherever RQ resolves a job.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

log = logging.getLogger("peng4nn.worker")

RUN_JOB = "peng4nn_worker.tasks.run_job"
"""Dotted path of the worker entry point (the API enqueues it by name and never imports it, nor torch)."""

ON_FAILURE = "peng4nn_worker.tasks.on_job_failure"
"""RQ failure callback: records timeouts and abandoned (worker died) jobs on the job's stream."""

ALLOWED_FUNCTIONS = frozenset({RUN_JOB, ON_FAILURE})
"""Every dotted path a PEng4NN process lets RQ import and call."""

SERIALIZER = JSONSerializer
"""RQ serializer of every queue and worker: JSON cannot name a class to instantiate (pickle can)."""


class ForeignJobError(Exception):
    """A job names a function or callback that is not the product's own: refused, nothing imported."""


def _check(path: str | None, what: str, job_id: str) -> None:
    if path is not None and path not in ALLOWED_FUNCTIONS:
        log.warning("refused job %s: %s %r is not one of %s", job_id, what, path, sorted(ALLOWED_FUNCTIONS))
        raise ForeignJobError(f"job {job_id}: {what} {path!r} is not a PEng4NN task; refused")


class TrustedJob(Job):
    """An RQ job that resolves only allow-listed functions and callbacks."""

    @property
    def func(self):
        _check(self.func_name, "function", self.id)
        if self.instance is not None:
            raise ForeignJobError(f"job {self.id}: calls a method of an object; refused")
        return super().func

    @property
    def success_callback(self):
        _check(self._success_callback_name or None, "success callback", self.id)
        return super().success_callback

    @property
    def failure_callback(self):
        _check(self._failure_callback_name or None, "failure callback", self.id)
        return super().failure_callback

    @property
    def stopped_callback(self):
        _check(self._stopped_callback_name or None, "stopped callback", self.id)
        return super().stopped_callback

    def send_webhooks(self, status, *, exc_string=None) -> None:
        """Never: our jobs register none, and a URL planted in Redis must not make a worker send requests."""


def make_queue(name: str, connection: Redis) -> Queue:
    """The product's queue on a bytes (not decoded) connection, as the API and every worker build it."""
    return Queue(name, connection=connection, job_class=TrustedJob, serializer=SERIALIZER)
