"""The paper's random CNN generator (Section IV-A2), as ``ArchSpec`` documents.

A network is 1-10 blocks of [conv -> activation -> pool] followed by two fully
connected layers. Every number is drawn uniformly from a range that callers may
override; draws that fail shape inference or the cost limits are redrawn, so
``random_cnn`` only returns specs that validate.

``PAPER_RANGES`` are the published ranges (sized for a GPU). ``CPU_RANGES``
keep the same shape of network but small enough for CPU experiments
(20 epochs of mnist-5k in seconds per net; see docs/BENCHMARKS.md).
Pure Python: no torch import.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, fields, replace
from typing import Any

from peng4nn.spec import ArchSpec, SpecError, SpecLimits, analyze_spec

Range = tuple[float, float]


@dataclass(frozen=True)
class CnnRanges:
    """Inclusive ranges (lo, hi) of every random choice; tuples of choices where named so."""

    conv_layers: tuple[int, int] = (1, 10)
    kernel: tuple[int, int] = (1, 5)
    stride: tuple[int, int] = (1, 5)
    padding: tuple[int, int] = (0, 5)
    filters: tuple[int, int] = (1, 400)
    pool_kernel: tuple[int, int] = (1, 5)
    """Pool stride is drawn from [1, pool kernel] and pool padding from [0, pool kernel // 2]."""
    pool_types: tuple[str, ...] = ("maxpool",)
    activations: tuple[str, ...] = ("relu",)
    fc_units: tuple[int, int] = (16, 1024)
    """Width of the hidden fully connected layer (the second one outputs the classes)."""
    lr: Range = (1e-6, 1 + 1e-6)
    lr_log_uniform: bool = False
    """The paper draws the learning rate uniformly; log-uniform spreads small rates better."""
    optimizers: tuple[str, ...] = ("sgd",)
    momentum: float = 0.9
    batch_sizes: tuple[int, ...] = (128,)
    limits: SpecLimits | None = None
    """Cost limits a draw must also satisfy (None: the defaults of ``SpecLimits``)."""
    max_attempts: int = 10_000

    def __post_init__(self) -> None:
        for name in ("conv_layers", "kernel", "stride", "padding", "filters", "pool_kernel", "fc_units", "lr"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"the {name!r} range must have lo <= hi; got ({lo}, {hi})")
        for name, lo in (("conv_layers", 1), ("kernel", 1), ("stride", 1), ("padding", 0), ("filters", 1),
                         ("pool_kernel", 1), ("fc_units", 1)):
            if getattr(self, name)[0] < lo:
                raise ValueError(f"the {name!r} range must start at {lo} or more; got {getattr(self, name)}")
        if self.lr[0] <= 0:
            raise ValueError(f"the 'lr' range must be positive; got {self.lr}")
        for name in ("pool_types", "activations", "optimizers", "batch_sizes"):
            if not getattr(self, name):
                raise ValueError(f"{name!r} needs at least one choice")
        bad = [p for p in self.pool_types if p not in ("maxpool", "avgpool")]
        if bad:
            raise ValueError(f"pool_types must be 'maxpool' or 'avgpool'; got {bad}")


PAPER_RANGES: dict[str, Any] = {}
"""The published ranges: the ``CnnRanges`` defaults."""

CPU_RANGES: dict[str, Any] = {
    "conv_layers": (1, 3),
    "kernel": (1, 5),
    "stride": (1, 2),
    "padding": (0, 2),
    "filters": (2, 24),
    "pool_kernel": (1, 3),
    "fc_units": (16, 64),
    "lr": (1e-4, 1.0),
    "lr_log_uniform": True,
    "batch_sizes": (128,),
    "limits": SpecLimits(max_flops=250_000, max_params=200_000),
}
"""Small nets for CPU experiments: at most 250 kFLOPs per sample forward (see docs/BENCHMARKS.md
for what 20 epochs of mnist-5k cost)."""

PRESETS: dict[str, dict[str, Any]] = {"paper": PAPER_RANGES, "cpu": CPU_RANGES}


def make_ranges(**ranges: Any) -> CnnRanges:
    """``CnnRanges`` with overrides; an unknown name is rejected with the list of known ones."""
    known = {f.name for f in fields(CnnRanges)}
    unknown = sorted(set(ranges) - known)
    if unknown:
        raise TypeError(f"unknown range(s) {unknown}; known: {sorted(known)}")
    # Accept JSON-shaped overrides (lists, a dict of limits) as well as Python ones.
    ranges = {k: tuple(v) if isinstance(v, list) else v for k, v in ranges.items()}
    if isinstance(ranges.get("limits"), dict):
        ranges["limits"] = SpecLimits(**ranges["limits"])
    return replace(CnnRanges(), **ranges)


def random_cnn(rng: random.Random | int, input_shape: tuple[int, ...], num_classes: int, **ranges: Any) -> ArchSpec:
    """Draw one valid CNN for ``input_shape`` (C, H, W) or (C, L); redraw until it validates.

    ``rng`` is a ``random.Random`` (or an int seed); the same seed gives the same spec.
    Raises ``ValueError`` if ``max_attempts`` draws all fail (ranges too large for the input).
    """
    r = make_ranges(**ranges)
    rng = random.Random(rng) if isinstance(rng, int) else rng
    if len(input_shape) not in (2, 3):
        raise ValueError(f"input_shape must be (C, H, W) or (C, L); got {tuple(input_shape)}")
    dims = len(input_shape) - 1
    last_error: SpecError | None = None
    for _ in range(r.max_attempts):
        document = _draw(rng, r, dims)
        try:
            spec = ArchSpec.parse(document)
            analyze_spec(spec, input_shape, num_classes, r.limits)
            return spec
        except SpecError as exc:
            last_error = exc
    raise ValueError(f"no valid CNN for input {tuple(input_shape)} in {r.max_attempts} draws; "
                     f"narrow the ranges (last problem: {last_error})")


def _draw(rng: random.Random, r: CnnRanges, dims: int) -> dict[str, Any]:
    suffix = f"{dims}d"
    layers: list[dict[str, Any]] = []
    for _ in range(rng.randint(*r.conv_layers)):
        layers.append({"type": f"conv{suffix}", "filters": rng.randint(*r.filters), "kernel": rng.randint(*r.kernel),
                       "stride": rng.randint(*r.stride), "padding": rng.randint(*r.padding)})
        layers.append({"type": rng.choice(r.activations)})
        pool_kernel = rng.randint(*r.pool_kernel)
        layers.append({"type": f"{rng.choice(r.pool_types)}{suffix}", "kernel": pool_kernel,
                       "stride": rng.randint(1, pool_kernel), "padding": rng.randint(0, pool_kernel // 2)})
    layers += [{"type": "flatten"},
               {"type": "linear", "units": rng.randint(*r.fc_units)},
               {"type": rng.choice(r.activations)},
               {"type": "linear", "units": "num_classes"}]
    if r.lr_log_uniform:
        lr = math.exp(rng.uniform(math.log(r.lr[0]), math.log(r.lr[1])))
    else:
        lr = rng.uniform(*r.lr)
    optimizer = rng.choice(r.optimizers)
    training: dict[str, Any] = {"optimizer": optimizer, "lr": lr, "batch_size": rng.choice(r.batch_sizes),
                                "seed": rng.randrange(2**31)}
    if optimizer == "sgd":
        training["momentum"] = r.momentum
    return {"schema": "peng4nn.arch/v1", "layers": layers, "training": training}
