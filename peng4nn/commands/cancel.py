"""`peng4nn cancel JOB_ID ...`: cancel jobs on a PEng4NN service."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from peng4nn.commands._service import add_service_options

    p = subparsers.add_parser(
        "cancel", help="cancel jobs on a PEng4NN service",
        description="Cancel each job: a queued job never runs; a running one stops at its next iteration "
                    "(shown as cancel requested until it has).",
    )
    p.add_argument("job_id", metavar="JOB_ID", nargs="+")
    add_service_options(p, json_help="print each job after the request as a JSON line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.commands._service import run_service_command

    return run_service_command(_cancel, args)


def _cancel(args: argparse.Namespace) -> int:
    from peng4nn.commands._service import ServiceCliError, client_for, print_json, service_errors

    failed = []
    with client_for(args) as client:
        for job_id in args.job_id:
            try:
                with service_errors(f"job {job_id}"):
                    job = client.cancel(job_id)
            except ServiceCliError as exc:  # go on with the others; the exit code says one failed
                failed.append(str(exc))
                continue
            if args.json:
                print_json(job.model_dump(mode="json"))
            else:
                state = "cancel requested" if job.cancel_requested and not job.status.is_terminal else job.status.value
                print(f"{job.id}  {state}", flush=True)
    if failed:
        raise ServiceCliError("; ".join(failed))
    return 0
