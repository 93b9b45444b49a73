"""`peng4nn submit ARCH.json ...`: queue networks on a PEng4NN service (optionally watching them train)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    from peng4nn.commands._service import add_service_options

    p = subparsers.add_parser(
        "submit", help="queue architectures on a PEng4NN service",
        description="Queue each ARCH.json (a peng4nn.arch/v1 document) as a job on the service and print its id. "
                    "Each submission carries an Idempotency-Key, so a retry after a lost answer never queues a "
                    "network twice.",
    )
    p.add_argument("arch", metavar="ARCH.json", nargs="+", help="architecture + training spec (see docs/SPEC.md)")
    p.add_argument("--dataset", default="digits", help="dataset name on the service (default digits)")
    p.add_argument("--policy", default=None, help="stopping policy (default: adaptive with --search, else paper)")
    p.add_argument("--policy-params", dest="policy_params", default=None, metavar="JSON",
                   help='policy parameters as a JSON object, e.g. \'{"top": 10}\'')
    p.add_argument("--estimator", default=None, metavar="JSON", help='estimator settings, e.g. \'{"e_max": 10}\'')
    p.add_argument("--search", "--search-id", dest="search", default=None,
                   help="the search these networks belong to (--search-id: its deprecated old name)")
    p.add_argument("--label", default=None, help="free text shown back with the job")
    p.add_argument("--seed", type=int, default=None, help="overrides the spec's training seed")
    p.add_argument("--shadow", action="store_true", help="train to e_max anyway, recording where it would stop")
    p.add_argument("--idempotency-key", dest="idempotency_key", default=None,
                   help="the key of this submission (one ARCH.json only; default: a fresh one per network)")
    p.add_argument("--watch", action="store_true", help="then watch the job (or, with --search, the search)")
    add_service_options(p, json_help="print each accepted job as a JSON line")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.commands._service import run_service_command

    return run_service_command(_submit, args)


def _submit(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError, json_object_option
    from peng4nn.commands._service import client_for, print_json, service_errors
    from peng4nn.commands.estimate import read_spec_file

    if args.idempotency_key is not None and len(args.arch) > 1:
        raise CliError("--idempotency-key names one submission; got several ARCH.json files")
    options = {
        "policy": args.policy, "search": args.search, "label": args.label, "seed": args.seed,
        "shadow": args.shadow or None,
        "policy_params": json_object_option(args.policy_params, "--policy-params") if args.policy_params else None,
        "estimator": json_object_option(args.estimator, "--estimator") if args.estimator else None,
    }
    specs = [(path, read_spec_file(path)) for path in args.arch]  # every file checked before anything is queued
    accepted = []
    with client_for(args) as client:
        for path, spec in specs:
            with service_errors(path):
                job = client.submit(spec, args.dataset, idempotency_key=args.idempotency_key, **options)
            accepted.append(job)
            if args.json:
                print_json(job.model_dump(mode="json") | {"file": path})
            else:
                print(f"{job.id}  {job.status.value}  {path}  ({job.params:,} parameters)", flush=True)
        if not args.watch:
            return 0
        from peng4nn.commands.watch import watch_job, watch_search

        if args.search is not None and len(accepted) > 1:
            return watch_search(client, args.search, args.json)
        return max(watch_job(client, job.id, args.json) for job in accepted)
