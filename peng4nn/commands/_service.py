"""What the service's command-line client (`submit`, `jobs`, `watch`, `cancel`) shares: options, errors, rendering.

The commands use the SDK (`peng4nn.client.Client`): the URL comes from ``--url`` or ``$PENG4NN_URL``, the
bearer token only from ``$PENG4NN_API_TOKEN`` (a token on the command line would show in ``ps`` and the
shell history). Exit codes: 0 done; 1 the service said no or could not be reached (one line on stderr);
2 bad input (with the file and line, or the field path the service named).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from peng4nn.cli import CliError

EXIT_SERVICE = 1

#: Retries of a command give up after this many seconds (a person is waiting; the SDK's own default is 30).
DEFAULT_DEADLINE_S = 10.0


class ServiceCliError(Exception):
    """The service refused or could not be reached: one line on stderr, exit 1."""


def add_service_options(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    parser.add_argument("--url", default=None, help="the service (default: $PENG4NN_URL, else http://127.0.0.1:8000); "
                                                    "the token is read from $PENG4NN_API_TOKEN")
    parser.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="SECONDS",
                        help=f"give up retrying an unreachable or busy service after this long "
                             f"(default {DEFAULT_DEADLINE_S:g})")
    parser.add_argument("--json", action="store_true", help=json_help)


def client_for(args: argparse.Namespace):
    from peng4nn.backoff import Backoff
    from peng4nn.client import Client

    if args.deadline < 0:
        raise CliError(f"--deadline cannot be negative; got {args.deadline:g}")
    return Client(args.url, backoff=Backoff(deadline_s=args.deadline))


@contextmanager
def service_errors(what: str) -> Iterator[None]:
    """SDK errors as the CLI reports them: 422 is bad input (exit 2), the rest exit 1."""
    from peng4nn.client import ApiError, ValidationError

    try:
        yield
    except ValidationError as exc:
        fields = "; ".join(f"{_loc(e.get('loc', []))}: {e.get('msg')}" for e in exc.errors[:5]) or exc.detail
        raise CliError(f"{what}: {fields}") from None
    except ApiError as exc:
        raise ServiceCliError(f"{what}: {exc.detail}" + (f" ({exc.code})" if exc.code else "")) from None


def run_service_command(body, args: argparse.Namespace) -> int:
    """Run ``body(args)``; a `ServiceCliError` is one line on stderr and exit 1."""
    try:
        return body(args)
    except ServiceCliError as exc:
        print(f"peng4nn {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_SERVICE


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str), flush=True)


def _loc(loc: list) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# -- rendering -------------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def job_estimate(job) -> tuple[float | None, list[float] | None, str]:
    """What the engine says about a job now: (estimate or latest prediction, interval, which it is)."""
    if job.result is not None and job.result.estimate is not None:
        return job.result.estimate, job.result.interval, "estimate"
    if job.result is not None and job.result.best_val_acc is not None:
        return job.result.best_val_acc, None, "reached"
    if job.latest is not None and job.latest.prediction is not None:
        return job.latest.prediction, job.latest.interval, "predicted"
    return None, None, ""


JOB_COLUMNS = ("ID", "STATUS", "EPOCH", "VAL_ACC", "ESTIMATE", "INTERVAL", "SEARCH", "LABEL")


def job_row(job) -> tuple[str, ...]:
    value, interval, kind = job_estimate(job)
    epoch = job.latest.epoch if job.latest is not None else None
    acc = job.latest.val_acc if job.latest is not None else None
    shown = f"{fmt(value)}{'' if kind in ('estimate', '') else ' ' + kind[0]}"  # p = predicted, r = reached
    return (job.id, job.status.value, fmt(epoch, 1), fmt(acc), shown,
            f"{fmt(interval[0])}-{fmt(interval[1])}" if interval else "-", job.search or "-", job.label or "-")


def table(rows: list[tuple[str, ...]], columns: tuple[str, ...] = JOB_COLUMNS) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)
