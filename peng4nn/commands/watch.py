"""`peng4nn watch JOB_ID` / `peng4nn watch --search ID`: a live view of a job, or of a whole search, on a service.

A job: its events as they stream in (the SDK reconnects, resuming where it was), one line each.
A search: a table of its jobs ranked by the engine's estimate, redrawn in place on a terminal
(one line per change otherwise), until every job has ended.
"""

from __future__ import annotations

import argparse
import sys
import time

#: Seconds between two looks at a search (a search has no single event stream).
DEFAULT_INTERVAL_S = 1.0


def add_parser(subparsers) -> None:
    from peng4nn.commands._service import add_service_options

    p = subparsers.add_parser(
        "watch", help="live view of a job or a search on a PEng4NN service",
        description="Follow a job's iterations and the engine's decisions until it ends, or (--search) every job "
                    "of a search, ranked by the engine's estimate. Exit code 1 if a watched job failed.",
    )
    p.add_argument("job_id", metavar="JOB_ID", nargs="?", help="the job to follow")
    p.add_argument("--search", default=None, metavar="SEARCH", help="follow every job of this search instead")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                   help=f"seconds between two looks at a search (default {DEFAULT_INTERVAL_S:g})")
    add_service_options(p, json_help="print events (a job) or snapshots (a search) as JSON lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError
    from peng4nn.commands._service import client_for, run_service_command

    if (args.job_id is None) == (args.search is None):
        raise CliError("give either a JOB_ID or --search SEARCH_ID")
    if not args.interval > 0:
        raise CliError(f"--interval must be positive; got {args.interval:g}")

    def body(args):
        with client_for(args) as client:
            if args.search is not None:
                return watch_search(client, args.search, args.json, args.interval)
            return watch_job(client, args.job_id, args.json)

    return run_service_command(body, args)


def watch_job(client, job_id: str, as_json: bool = False) -> int:
    from peng4nn.commands._service import fmt, print_json, service_errors
    from peng4nn.jobs import EVENT_ITERATION, EVENT_RESULT, EVENT_STATUS, JobStatus

    final = None
    with service_errors(f"job {job_id}"):
        job = client.get(job_id)
        if not as_json:
            print(f"job {job.id}: {job.dataset}, policy {job.policy}"
                  + (f", search {job.search}" if job.search else "")
                  + (f", label {job.label!r}" if job.label else ""), flush=True)
        for event in client.stream(job_id):
            if as_json:
                print_json({"id": event.id, "event": event.event, "data": event.data})
            data = event.typed
            if event.event == EVENT_RESULT:
                final = data
            if as_json:
                continue
            if event.event == EVENT_STATUS:
                print(f"  {data.status.value}" + (f": {data.reason}" if data.reason else ""), flush=True)
            elif event.event == EVENT_ITERATION:
                interval = f"  [{fmt(data.interval[0])}, {fmt(data.interval[1])}]" if data.interval else ""
                stop = f"  STOP ({data.reason})" if data.stop else ""
                print(f"  epoch {data.epoch:5.1f}  val_acc {fmt(data.val_acc):>6}  prediction "
                      f"{fmt(data.prediction):>6}{interval}{stop}", flush=True)
    if final is None:  # the stream ended without a result event (the job had ended long ago): read it
        with service_errors(f"job {job_id}"):
            final = client.result(job_id)
    if not as_json:
        result = final.result
        if result is not None:
            value = result.estimate if result.estimate is not None else result.best_val_acc
            what = "estimate" if result.estimate is not None else "best accuracy reached"
            interval = f" [{fmt(result.interval[0])}, {fmt(result.interval[1])}]" if result.interval else ""
            print(f"{final.status.value}: {what} {fmt(value)}%{interval} after {fmt(result.epochs_trained, 1)} "
                  f"epochs", flush=True)
        else:
            print(f"{final.status.value}" + (f": {final.error}" if final.error else ""), flush=True)
    return 1 if final.status is JobStatus.FAILED else 0


def watch_search(client, search: str, as_json: bool = False, interval: float = DEFAULT_INTERVAL_S) -> int:
    from peng4nn.commands._service import ServiceCliError, job_estimate, job_row, print_json, service_errors, table
    from peng4nn.commands.list_jobs import jobs_of
    from peng4nn.jobs import JobStatus

    live = sys.stdout.isatty() and not as_json
    shown: dict[str, tuple] = {}
    drawn = 0
    while True:
        with service_errors(f"search {search}"):
            jobs, _ = jobs_of(client, None, search, limit=1_000_000)
        if not jobs:
            raise ServiceCliError(f"search {search}: no jobs (the search name is per API token)")
        ranked = sorted(jobs, key=lambda j: -(job_estimate(j)[0] if job_estimate(j)[0] is not None else -1.0))
        rows = {j.id: job_row(j) for j in ranked}
        ended = sum(j.status.is_terminal for j in jobs)
        summary = f"search {search}: {len(jobs)} jobs, {ended} ended, " \
                  f"{sum(j.status is JobStatus.RUNNING for j in jobs)} running"
        if as_json:
            if rows != shown:
                print_json({"search": search, "jobs": [j.model_dump(mode="json") for j in ranked]})
        elif live:
            text = table(list(rows.values())) + "\n" + summary
            sys.stdout.write((f"\x1b[{drawn}F\x1b[J" if drawn else "") + text + "\n")
            sys.stdout.flush()
            drawn = text.count("\n") + 1
        else:
            for job_id, row in rows.items():
                if shown.get(job_id) != row:
                    print("  ".join(row), flush=True)
        shown = rows
        if ended == len(jobs):
            if not as_json and not live:
                print(summary, flush=True)
            return 1 if any(j.status is JobStatus.FAILED for j in jobs) else 0
        time.sleep(interval)
