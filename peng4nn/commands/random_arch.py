"""`peng4nn random-arch`: print one network drawn from the paper's generator, as an arch JSON document."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "random-arch",
        help="print a random CNN spec (the paper's generator) for a dataset",
        description="Draw one CNN from the paper's generator (Section IV-A2) that validates against the dataset's "
                    "input shape and print it as a peng4nn.arch/v1 JSON document.",
    )
    p.add_argument("--dataset", required=True, help="dataset name (digits, mnist-5k, cifar10, ...) or an .npz path")
    p.add_argument("--seed", type=int, default=0, help="generator seed; the same seed prints the same spec (default 0)")
    p.add_argument("--preset", choices=("paper", "cpu"), default="paper",
                   help="ranges: the paper's (default) or small CPU-sized nets")
    p.add_argument("--ranges", default=None,
                   help='JSON overrides of the preset\'s ranges, e.g. \'{"conv_layers": [1, 3]}\'')
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import random

    from peng4nn.cli import CliError, json_object_option
    from peng4nn.datasets import DatasetError, UnknownDatasetError, dataset_info
    from peng4nn.search_space import PRESETS, random_cnn

    try:
        info = dataset_info(args.dataset)
    except (UnknownDatasetError, DatasetError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    ranges = dict(PRESETS[args.preset])
    if args.ranges:
        ranges.update(json_object_option(args.ranges, "--ranges"))
    try:
        spec = random_cnn(random.Random(args.seed), info.input_shape, info.num_classes, **ranges)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from None
    print(spec.to_json())
    return 0
