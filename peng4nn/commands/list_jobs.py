"""`peng4nn jobs`: your jobs on a PEng4NN service, newest first, with what the engine says about each."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from peng4nn.commands._service import add_service_options

    p = subparsers.add_parser(
        "jobs", help="list jobs on a PEng4NN service",
        description="List your jobs, newest first: status, latest epoch and accuracy, the engine's estimate "
                    "(its latest prediction while running, marked p; the best accuracy reached when it did not "
                    "converge, marked r) and interval.",
    )
    p.add_argument("--status", default=None, help="only jobs in this status (queued, running, converged, ...)")
    p.add_argument("--search", "--search-id", dest="search", default=None,
                   help="only jobs of this search (--search-id: its deprecated old name)")
    p.add_argument("--limit", type=int, default=50, help="at most this many jobs (default 50)")
    add_service_options(p, json_help="print the jobs as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.commands._service import run_service_command

    return run_service_command(_list, args)


def _list(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError
    from peng4nn.commands._service import client_for, job_row, print_json, service_errors, table
    from peng4nn.jobs import JobStatus

    if args.limit < 1:
        raise CliError(f"--limit must be at least 1; got {args.limit}")
    if args.status is not None and args.status not in {s.value for s in JobStatus}:
        raise CliError(f"--status must be one of {', '.join(s.value for s in JobStatus)}; got {args.status!r}")
    with client_for(args) as client, service_errors("listing jobs"):
        jobs, total = jobs_of(client, args.status, args.search, args.limit)
    if args.json:
        print_json({"data": [j.model_dump(mode="json") for j in jobs], "count": total})
    else:
        print(table([job_row(j) for j in jobs]))
        print(f"{len(jobs)} of {total} job(s)")
    return 0


def jobs_of(client, status: str | None, search: str | None, limit: int, page: int = 500):
    """Up to ``limit`` jobs (of one search, when given: the API lists by owner, so filter page by page)."""
    if search is None:
        listed = client.list(status=status, limit=min(limit, page))
        return listed.data, listed.count
    found, offset = [], 0
    while True:
        listed = client.list(status=status, offset=offset, limit=page)
        found += [j for j in listed.data if j.search == search]
        offset += len(listed.data)
        if not listed.data or offset >= listed.count:
            return found[:limit], len(found)
