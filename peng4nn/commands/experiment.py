"""`peng4nn experiment`: train N random CNNs to e_max, record their curves, then replay every policy and report."""

from __future__ import annotations

import argparse
import sys

from peng4nn import defaults


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment",
        help="reproduce the paper's experiment: train random CNNs, record curves, report",
        description=(
            "Draw N networks from the paper's generator, train each in shadow mode to e_max validating every E "
            "epochs, append each full curve to DIR/curves.csv (re-running resumes), then replay every policy and "
            "write DIR/results.json, DIR/report.md and figures."
        ),
    )
    p.add_argument("--dataset", required=True, help="dataset name (digits, mnist-5k, ...) or an .npz path")
    p.add_argument("--models", type=int, required=True, help="networks to draw and train")
    p.add_argument("--e-max", dest="e_max", type=float, default=defaults.E_MAX,
                   help=f"epochs every model trains (default {defaults.E_MAX:g})")
    p.add_argument("--E", type=float, default=defaults.E, help=f"epochs between validations (default {defaults.E:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator (default 0)")
    p.add_argument("--preset", default="cpu", help="generator ranges: cpu (small nets, default) or paper")
    p.add_argument("--ranges", default=None,
                   help='JSON overrides of the preset, e.g. \'{"filters": [2, 16], "limits": {"max_flops": 600000}}\'')
    p.add_argument("--val-fraction", dest="val_fraction", type=float, default=None,
                   help="validation share carved from the training split (default: the dataset's)")
    p.add_argument("--lr-schedule", dest="lr_schedule", default=None,
                   help="learning-rate schedule of every network: step:8,14:0.1, cosine, cosine+warmup=1 or JSON "
                        "(default: constant)")
    p.add_argument("--workers", type=int, default=1, help="parallel training processes (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", required=True, help="output directory (re-use it to resume)")
    p.add_argument("--no-report", dest="report", action="store_false", help="only train and record curves")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError, json_object_option
    from peng4nn.datasets import UnknownDatasetError, dataset_info
    from peng4nn.experiment import ExperimentConfig, ExperimentError, run_experiment

    ranges = json_object_option(args.ranges, "--ranges") if args.ranges else {}
    schedule = None
    if args.lr_schedule is not None:
        from peng4nn.schedule import parse_schedule

        try:
            schedule = parse_schedule(args.lr_schedule).model_dump(mode="json")
        except ValueError as exc:
            raise CliError(f"--lr-schedule: {exc}") from None
    try:
        info = dataset_info(args.dataset)
        config = ExperimentConfig(dataset=args.dataset, models=args.models, e_max=args.e_max, E=args.E,
                                  seed=args.seed, preset=args.preset, ranges=ranges, val_fraction=args.val_fraction,
                                  schedule=schedule)
        summary = run_experiment(config, args.out, workers=args.workers, threads=args.threads, device=args.device,
                                 progress=args.progress)
    except (ExperimentError, UnknownDatasetError) as exc:
        raise CliError(str(exc)) from None
    print(f"trained {summary.trained} models ({summary.failed} failed), skipped {summary.skipped} already done, "
          f"in {summary.wall_s:.0f} s -> {args.out}/curves.csv", file=sys.stderr)
    if args.report:
        from peng4nn.report import build_report

        result = build_report(f"{args.out}/curves.csv", args.out, num_classes=info.num_classes, E=args.E,
                              e_max=args.e_max, title=f"{args.dataset}: {args.models} random CNNs")
        print(f"report: {result.report_path}", file=sys.stderr)
    return 0
