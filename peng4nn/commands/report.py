"""`peng4nn report CURVES.csv --out DIR`: replay every policy on recorded curves; write results, report and figures."""

from __future__ import annotations

import argparse
import sys

from peng4nn import defaults


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="replay every policy on recorded curves and write report.md, results.json and figures",
        description=(
            "Replay recorded validation curves (CSV: model_id,epoch,val_acc[,val_loss,train_loss]) through PEng4NN, "
            "the MENNDL and patience baselines, Optuna's pruners and the fixed budget k=1..e_max; write "
            "DIR/results.json, DIR/report.md and the paper's figures as PNG."
        ),
    )
    p.add_argument("curves", metavar="CURVES.csv", help="recorded curves; rows of a model consecutive, in epoch order")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-classes", dest="num_classes", type=int, default=10,
                   help="classes of the task, for the never-learn marker (default 10)")
    p.add_argument("--E", type=float, default=None, help="epochs per iteration (default: inferred from the curves)")
    p.add_argument("--e-max", dest="e_max", type=float, default=defaults.E_MAX,
                   help=f"maximum epochs (default {defaults.E_MAX:g})")
    p.add_argument("--backend", default=defaults.BACKEND, choices=("fast", "scipy"),
                   help=f"curve-fitting back-end (default {defaults.BACKEND})")
    p.add_argument("--title", default=None, help="title of report.md")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError
    from peng4nn.policies import PolicyConfigError
    from peng4nn.replay import CurveFileError
    from peng4nn.report import build_report

    if args.num_classes < 2:
        raise CliError(f"--num-classes must be at least 2; got {args.num_classes}")
    if args.E is not None and not args.E > 0:
        raise CliError(f"--E must be positive; got {args.E}")
    if not args.e_max > 0:
        raise CliError(f"--e-max must be positive; got {args.e_max}")
    try:
        result = build_report(args.curves, args.out, num_classes=args.num_classes, E=args.E, e_max=args.e_max,
                              backend=args.backend, title=args.title)
    except (CurveFileError, PolicyConfigError) as exc:
        raise CliError(str(exc)) from None
    for note in result.results.get("notes", []):
        print(f"{args.curves}: note: {note}", file=sys.stderr)
    for name, label in (("adaptive", "adaptive (the default)"), ("paper", "paper (Algorithm 2)")):
        s = result.results["policies"][name]["summary"]
        print(f"{result.results['n_models']} models, {label}: saves {100 * s['epochs_saved_mean']:.1f}% of epochs "
              f"({s['throughput_gain']:.2f}x), overlap@20% {s['overlap']['20']:.2f}", file=sys.stderr)
    print(f"wrote {result.report_path}, {result.results_path.name} and {len(result.figures)} figures", file=sys.stderr)
    return 0
