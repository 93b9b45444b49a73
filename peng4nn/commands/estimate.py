"""`peng4nn estimate ARCH.json`: train one architecture locally until the engine predicts its final accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peng4nn import defaults


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "estimate",
        help="train one architecture locally and print the engine's estimate",
        description="Train the network in ARCH.json (a peng4nn.arch/v1 document), validating every E epochs; "
                    "print each iteration's prediction and stop when the engine's estimate is stable (or at e_max).",
    )
    p.add_argument("arch", metavar="ARCH.json", help="architecture + training spec (see docs/SPEC.md)")
    p.add_argument("--dataset", default="digits", help="dataset name or .npz path (default digits)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: cuda if available)")
    p.add_argument("--e-max", dest="e_max", type=float, default=None, help=f"maximum epochs (default: the policy's, {defaults.E_MAX:g})")
    p.add_argument("--policy", default=defaults.LONE_POLICY,
                   help=f"stopping policy: paper, menndl, patience, fixed (default {defaults.LONE_POLICY})")
    p.add_argument("--shadow", action="store_true",
                   help="train to e_max anyway and report where the engine would have stopped")
    p.add_argument("--json", action="store_true", help="print the whole result (every iteration) as JSON")
    p.add_argument("--data-root", dest="data_root", default=None, help="dataset directory (default $PENG4NN_DATA)")
    p.add_argument("--download", action="store_true", help="download torchvision datasets that are missing")
    p.add_argument("--val-fraction", dest="val_fraction", type=float, default=None,
                   help="validation share carved from the training split (default: official test split / 20%%)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest for small nets on busy machines)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar on stderr")
    p.set_defaults(run=run)


def read_spec_file(path: str):
    """Parse ARCH.json; every problem becomes a one-line ``CliError`` naming the file (and line or field)."""
    from peng4nn.cli import CliError
    from peng4nn.spec import ArchSpec, SpecError

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    try:
        return ArchSpec.parse(data)
    except SpecError as exc:
        raise CliError(spec_error_line(path, text, exc)) from None


def spec_error_line(path: str, text: str, error) -> str:
    """``FILE:LINE: layers[3].kernel: message`` for each problem, on one line."""
    from peng4nn.spec import format_loc

    lines = json_value_lines(text)
    parts = []
    for err in error.errors:
        loc = tuple(err["loc"])
        while loc not in lines and loc:
            loc = loc[:-1]  # a missing field: point at the object that lacks it
        parts.append(f"{path}:{lines.get(loc, 1)}: {format_loc(err['loc'])}: {err['msg']}")
    return "; ".join(parts)


def json_value_lines(text: str) -> dict[tuple, int]:
    """Line number of every value in a valid JSON document, keyed by its path (``("layers", 3, "kernel")``)."""
    import re
    from json.decoder import scanstring

    space = re.compile(r"[ \t\n\r]*")
    decoder = json.JSONDecoder()
    found: dict[tuple, int] = {}

    def skip(pos: int) -> int:
        return space.match(text, pos).end()

    def value(pos: int, where: tuple) -> int:
        pos = skip(pos)
        found[where] = text.count("\n", 0, pos) + 1
        if text[pos] == "{":
            pos = skip(pos + 1)
            if text[pos] == "}":
                return pos + 1
            while True:
                key, pos = scanstring(text, skip(pos) + 1)
                pos = value(skip(pos) + 1, where + (key,))  # past the ':'
                pos = skip(pos)
                if text[pos] == "}":
                    return pos + 1
                pos += 1  # ','
        if text[pos] == "[":
            pos = skip(pos + 1)
            if text[pos] == "]":
                return pos + 1
            index = 0
            while True:
                pos = skip(value(pos, where + (index,)))
                if text[pos] == "]":
                    return pos + 1
                pos, index = pos + 1, index + 1
        return decoder.raw_decode(text, pos)[1]

    value(0, ())
    return found


def run(args: argparse.Namespace) -> int:
    from peng4nn.cli import CliError
    from peng4nn.datasets import DatasetError, UnknownDatasetError, dataset_info
    from peng4nn.policies import PolicyConfigError, make_policy
    from peng4nn.spec import SpecError, analyze_spec

    spec = read_spec_file(args.arch)
    try:
        info = dataset_info(args.dataset)
    except (UnknownDatasetError, DatasetError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    try:
        report = analyze_spec(spec, info.input_shape, info.num_classes)
    except SpecError as exc:
        raise CliError(spec_error_line(args.arch, Path(args.arch).read_text(), exc)) from None
    estimator = {"e_max": args.e_max} if args.e_max is not None else None
    try:
        policy = make_policy(args.policy, estimator=estimator, num_classes=info.num_classes)
    except PolicyConfigError as exc:
        raise CliError(str(exc)) from None

    import torch
    from tqdm import tqdm

    from peng4nn.train import default_device, train_and_estimate

    try:
        device = torch.device(args.device) if args.device else default_device()
    except RuntimeError as exc:
        raise CliError(f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {args.device}: CUDA is not available on this machine")
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be at least 1; got {args.threads}")
        torch.set_num_threads(args.threads)
    e_max = args.e_max if args.e_max is not None else policy.e_max
    total = int(round(e_max / policy.E))
    out = sys.stdout
    if not args.json:
        print(f"{args.arch}: {report.params:,} parameters, {report.flops:,} FLOPs per sample; "
              f"{info.name} on {device}, E={policy.E:g}, e_max={e_max:g}, policy {policy.name}", file=out)
    bar = tqdm(total=total, file=sys.stderr, unit="it", desc="training", disable=not args.progress, leave=False)

    def on_iteration(event) -> None:
        bar.update(1)
        d = event.decision
        bar.set_postfix(val_acc=f"{event.val_acc:.1f}", pred="-" if d.prediction is None else f"{d.prediction:.1f}")
        if not args.json:
            pred = "     -" if d.prediction is None else f"{d.prediction:6.2f}"
            bar.write(f"epoch {event.epoch:5.1f}  train_loss {event.train_loss:7.4f}  val_loss {event.val_loss:7.4f}  "
                      f"val_acc {event.val_acc:6.2f}%  prediction {pred}  {d.reason.value}", file=out)

    try:
        result = train_and_estimate(spec, args.dataset, policy=policy, device=device, e_max=e_max,
                                    shadow=args.shadow, on_iteration=on_iteration, data_root=args.data_root,
                                    download=args.download, val_fraction=args.val_fraction)
    except (DatasetError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()

    if args.json:
        print(json.dumps({"arch": args.arch, "dataset": info.name, "params": report.params, "flops": report.flops,
                          **result.to_dict()}, indent=2), file=out)
        return 0
    estimate = "none" if result.estimate is None else f"{result.estimate:.2f}%"
    how = "converged" if result.converged else result.reason
    print(f"estimate: {estimate} ({how} at epoch {result.stop_epoch:g}; {len(result.events)} iterations, "
          f"{result.wall_s:.1f} s on {result.device})", file=out)
    if args.shadow:
        if result.shadow_stop_epoch is None:
            print("shadow: the engine did not stop before e_max", file=out)
        else:
            print(f"shadow: the engine would have stopped at epoch {result.shadow_stop_epoch:g} with estimate "
                  f"{result.shadow_estimate:.2f}% ({result.shadow_reason}); best accuracy seen "
                  f"{result.best_val_acc:.2f}%", file=out)
    return 0
