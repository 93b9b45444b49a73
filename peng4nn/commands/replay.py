"""`peng4nn replay CURVES.csv`: simulate a stopping policy on recorded curves and report the paper's metrics."""

from __future__ import annotations

import argparse
import json
import sys

from peng4nn import defaults

#: Classes assumed for the never-learn marker (chance accuracy) when --num-classes is not given.
DEFAULT_NUM_CLASSES = 10

_ESTIMATOR_OPTIONS = {  # option dest -> EstimatorSettings field
    "N": "N",
    "E": "E",
    "e_max": "e_max",
    "t": "t",
    "loss_check": "loss_check",
    "L": "L",
    "c_min": "c_min",
    "never_learn": "never_learn",
    "window": "window",
}
#: Estimator settings that only Algorithm 2 reads (the others: E, e_max, c_min, never_learn).
_PAPER_ONLY = ("N", "t", "loss_check", "L", "window")
_POLICY_OPTIONS = ("patience", "min_delta", "k", "monitor", "top", "budget")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="simulate a stopping policy on recorded validation curves",
        description=(
            "Replay recorded validation curves (CSV: model_id,epoch,val_acc[,val_loss,train_loss]) through a "
            "stopping policy, one model after another, and compare with the MENNDL baseline and the ground truth."
        ),
    )
    p.add_argument("curves", metavar="CURVES.csv", help="recorded curves; rows of a model consecutive, in epoch order")
    p.add_argument("--policy", default=None,
                   help="adaptive (default: the file is one search, in order), paper, menndl, patience or fixed")
    p.add_argument("--backend", default=defaults.BACKEND, choices=("fast", "scipy"),
                   help=f"curve-fitting back-end (default {defaults.BACKEND})")
    p.add_argument("--num-classes", type=int, default=DEFAULT_NUM_CLASSES,
                   help=f"classes of the task, for the never-learn marker 100/classes+1 (default {DEFAULT_NUM_CLASSES})")
    g = p.add_argument_group("estimator settings (the paper's symbols)")
    g.add_argument("--N", type=int, help="predictions that must agree (default 3)")
    g.add_argument("--E", type=float, help="epochs per iteration (default: inferred from the epoch spacing)")
    g.add_argument("--e-max", dest="e_max", type=float, help=f"maximum epochs (default {defaults.E_MAX:g})")
    g.add_argument("--t", type=float, help="allowed spread of the last N predictions, points (default 0.5)")
    g.add_argument("--loss-check", dest="loss_check", action="store_true", default=None,
                   help="the paper's LOSS flag (needs a val_loss column)")
    g.add_argument("--L", type=float, help="epochs of the loss check (default 5)")
    g.add_argument("--c-min", dest="c_min", type=int, help="fewest points fitted (default 3)")
    g.add_argument("--never-learn", dest="never_learn", type=float, help="never-learn accuracy (default 100/classes+1)")
    g.add_argument("--window", choices=("mean", "median"), help="centre of the last N predictions (default mean)")
    b = p.add_argument_group("baseline policy parameters (only for the named policy)")
    b.add_argument("--patience", type=float, help="menndl/patience: epochs without improvement")
    b.add_argument("--min-delta", dest="min_delta", type=float, help="patience: smallest gain that counts")
    b.add_argument("--k", type=float, help="fixed: epochs every model trains (default e_max)")
    b.add_argument("--monitor", choices=("auto", "train_loss", "val_loss", "val_acc"), help="menndl: signal watched")
    b.add_argument("--top", type=float, help="adaptive: target fraction x of the search, percent (default 20)")
    b.add_argument("--budget", type=float,
                   help="adaptive: mean epochs per model, every model counted (default: no cap)")
    d = p.add_argument_group("what the search knew (optional)")
    d.add_argument("--lr-schedule", dest="lr_schedule", default=None,
                   help="learning-rate schedule of every network, for files without an lr column: "
                        "step:5,10,15:0.2, cosine, cosine+warmup=1 or JSON")
    d.add_argument("--models", dest="models_file", default=None, metavar="MODELS.csv",
                   help="side file: model_id and any of num_params, depth, initial_lr")
    d.add_argument("--epoch-zero", dest="epoch_zero", choices=("auto", "drop", "shift"), default="auto",
                   help="rows at epoch 0: drop (an evaluation before training), shift (the file counts epochs from "
                        "0) or auto (drop when the models sit together at chance level there; default)")
    p.add_argument("--json", action="store_true", help="print one JSON object {summary, models} instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from peng4nn.analyzer import EstimatorSettings
    from peng4nn.cli import CliError
    from peng4nn.metrics import summarize
    from peng4nn.policies import PolicyConfigError, default_policy
    from peng4nn.replay import (CurveFileError, ReplayError, baseline_monitor, infer_epoch_step, longest_run,
                                policy_factory, read_curves, replay)

    args.policy_defaulted = args.policy is None
    args.policy = args.policy or default_policy(in_search=True)
    options = {field: getattr(args, dest) for dest, field in _ESTIMATOR_OPTIONS.items() if getattr(args, dest) is not None}
    paper_only = [f"--{name.replace('_', '-')}" for name in _PAPER_ONLY if name in options]
    if paper_only and args.policy != "paper":
        verb = "applies" if len(paper_only) == 1 else "apply"
        raise CliError(f"{', '.join(paper_only)} {verb} only to the paper's rule; add --policy paper "
                       f"(the policy is {args.policy!r}{' by default' if args.policy_defaulted else ''})")
    params = {name: getattr(args, name) for name in _POLICY_OPTIONS if getattr(args, name) is not None}
    if args.num_classes < 2:
        raise CliError(f"--num-classes must be at least 2; got {args.num_classes}")
    settings = _settings(EstimatorSettings, ValidationError, CliError, options)  # fail fast, before reading

    try:
        curves = read_curves(args.curves, c_min=settings.c_min, epoch_zero=args.epoch_zero,
                             chance=100.0 / args.num_classes)
    except CurveFileError as exc:
        raise CliError(str(exc)) from None
    for note in curves[0].file_notes:
        print(f"{args.curves}: note: {note}", file=sys.stderr)
    e_inferred = "E" not in options
    if e_inferred:
        settings = _settings(EstimatorSettings, ValidationError, CliError, {**options, "E": infer_epoch_step(curves)})
    longest = longest_run(curves, settings.E)
    if longest > settings.e_max + 1e-9:
        print(f"{args.curves}: note: curves run to epoch {longest:g}; replayed up to e_max={settings.e_max:g} "
              f"(--e-max {longest:g} replays them whole)", file=sys.stderr)
    curves = _with_search_knowledge(args, curves, settings, CliError)
    if settings.loss_check and any(c.val_loss is None for c in curves):
        raise CliError(f"{args.curves}:1: --loss-check needs a val_loss column")
    if params.get("monitor") in ("train_loss", "val_loss") and any(getattr(c, params["monitor"]) is None for c in curves):
        raise CliError(f"{args.curves}:1: --monitor {params['monitor']} needs a {params['monitor']} column")

    try:
        factory = policy_factory(
            args.policy, estimator=settings, backend=args.backend, num_classes=args.num_classes, **params
        )
    except (PolicyConfigError, ValueError) as exc:
        raise CliError(str(exc)) from None
    monitor = baseline_monitor(curves)
    try:
        outcomes = replay(curves, factory, e_max=settings.e_max, monitor=monitor)
    except ReplayError as exc:
        raise CliError(f"{args.curves}:{exc.line}: model {exc.model!r}: at epoch {exc.epoch:g}: {exc.message}") from None
    summary = summarize(outcomes)

    if args.json:
        print(f"baseline: MENNDL rule on {monitor}", file=sys.stderr)
        print(json.dumps({"summary": summary, "models": [o.to_dict() for o in outcomes]}))
        return 0
    print(_table(outcomes))
    print()
    print(_summary_text(summary, args.policy, settings, e_inferred, monitor))
    return 0


def _with_search_knowledge(args, curves, settings, cli_error):
    """Attach --lr-schedule and --models to the curves (what a NAS knows before training)."""
    from dataclasses import replace

    from peng4nn.replay import CurveFileError, read_network_info
    from peng4nn.schedule import parse_schedule

    schedule = None
    if args.lr_schedule is not None:
        if any(c.lr is not None for c in curves):
            raise cli_error(f"{args.curves}:1: --lr-schedule is for files without an lr column; this file has one")
        try:
            schedule = parse_schedule(args.lr_schedule).bound(settings.e_max)
        except ValueError as exc:
            raise cli_error(f"--lr-schedule: {exc}") from None
    networks = {}
    if args.models_file is not None:
        try:
            networks = read_network_info(args.models_file)
        except CurveFileError as exc:
            raise cli_error(str(exc)) from None
        unknown = [c.model_id for c in curves if c.model_id not in networks]
        if unknown:
            print(f"{args.models_file}: note: {len(unknown)} model(s) of {args.curves} are not in it (first: "
                  f"{unknown[0]!r}); they are estimated without metadata", file=sys.stderr)
    if schedule is None and not networks:
        return curves
    return [replace(c, given_schedule=schedule, network=networks.get(c.model_id)) for c in curves]


def _settings(settings_cls, validation_error, cli_error, options):
    try:
        return settings_cls(**options)
    except validation_error as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        value = f"; got {err['input']!r}" if field != "settings" else ""
        raise cli_error(f"invalid estimator setting {field}: {err['msg']}{value}") from None


def _table(outcomes) -> str:
    head = ("model_id", "stop", "estimate", "conv", "reason", "menndl", "actual_max", "saved")
    rows = [
        (
            o.model_id,
            f"{o.stop_epoch:g}",
            f"{o.estimate:.2f}",
            "yes" if o.converged else "no",
            o.reason.value,
            f"{o.baseline_stop_epoch:g}",
            f"{o.actual_max:.2f}",
            f"{o.epochs_saved:.0%}",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    left = {0, 4}

    def fmt(r):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths)), *map(fmt, rows)])


def _summary_text(summary, policy, settings, e_inferred, monitor) -> str:
    e_note = " (inferred from the epoch spacing)" if e_inferred else ""
    lines = [
        f"policy: {policy}; E={settings.E:g}{e_note}, e_max={settings.e_max:g}",
        f"baseline: MENNDL rule on {monitor}",
        f"models: {summary['n_models']}",
        f"epochs per model (mean): {summary['mean_epochs']:.2f} ({summary['mean_epochs'] / settings.e_max:.1%} of e_max)",
        f"epochs saved vs baseline (mean): {summary['epochs_saved_mean']:.1%}",
        f"throughput gain: {summary['throughput_gain']:.2f}x",
        "overlap of best x%:          " + ", ".join(f"{x}%: {v:.2f}" for x, v in summary["overlap"].items()),
        "mean accuracy diff (points): " + ", ".join(f"{x}%: {v:.2f}" for x, v in summary["mean_acc_diff"].items()),
        f"regret@1 (points): {summary['regret_at_1']:.2f}",
        f"estimate error (mean abs, points): all {summary['mae']:.2f}, true top 20% {summary['mae_top']['20']:.2f}",
        "interval coverage at the stop: " + (f"{summary['coverage']:.2f} of {summary['coverage_n']} models stopped "
                                             "before e_max" if summary["coverage_n"] else "no interval reported"),
    ]
    return "\n".join(lines)
