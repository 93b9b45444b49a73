"""Architecture + training specification (``peng4nn.arch/v1``) and shape inference.

Any NAS can submit a network as JSON: a sequential list of whitelisted layers
and the training settings. Validation happens in two steps:

1. ``ArchSpec.model_validate`` (pydantic) checks the document itself: unknown
   layer types or fields, wrong types, out-of-range values.
2. ``analyze_spec`` runs shape inference against the dataset's input shape,
   counts parameters and forward FLOPs and checks them against ``SpecLimits``
   so that one submission cannot exhaust a GPU.

Both raise ``SpecError`` whose ``.errors`` list names the bad field by path,
e.g. ``("layers", 3, "kernel")``. This module is pure Python (no torch): the API
validates submissions with it and must start fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from peng4nn.schedule import LRSchedule

SCHEMA_VERSION = "peng4nn.arch/v1"
"""The only value accepted in a spec's ``schema`` field."""

Shape = tuple[int, ...]
Loc = tuple[Union[str, int], ...]


# --------------------------------------------------------------------------- errors


class SpecError(ValueError):
    """An invalid architecture spec; ``errors`` lists each problem with its field path."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = [{"loc": tuple(e["loc"]), "msg": str(e["msg"])} for e in errors]
        super().__init__("; ".join(f"{format_loc(e['loc'])}: {e['msg']}" for e in self.errors))


def format_loc(loc: Loc) -> str:
    """``("layers", 3, "kernel")`` -> ``"layers[3].kernel"``; ``()`` -> ``"<spec>"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<spec>"


# --------------------------------------------------------------------------- layers


class _Layer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(ge=1, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
StrictBool = Annotated[bool, Field(strict=True)]


class _Conv(_Layer):
    """Convolutions: torch's Conv1d/Conv2d arguments, ``filters`` = out_channels."""

    filters: PositiveInt
    kernel: PositiveInt
    stride: PositiveInt = 1
    padding: NonNegativeInt = 0
    dilation: PositiveInt = 1
    groups: PositiveInt = 1
    bias: StrictBool = True


class Conv2d(_Conv):
    type: Literal["conv2d"]


class Conv1d(_Conv):
    type: Literal["conv1d"]


class _Pool(_Layer):
    """Pooling layers: ``stride`` null means ``kernel`` (as in torch); padding at most kernel // 2."""

    kernel: PositiveInt
    stride: PositiveInt | None = None
    padding: NonNegativeInt = 0


class MaxPool2d(_Pool):
    type: Literal["maxpool2d"]


class MaxPool1d(_Pool):
    type: Literal["maxpool1d"]


class AvgPool2d(_Pool):
    type: Literal["avgpool2d"]


class AvgPool1d(_Pool):
    type: Literal["avgpool1d"]


class GlobalAvgPool(_Layer):
    """Mean over all spatial positions: (C, H, W) or (C, L) -> (C,)."""

    type: Literal["global_avg_pool"]


class BatchNorm(_Layer):
    """Batch normalisation over channels (2-D or 1-D chosen from the input shape)."""

    type: Literal["batchnorm"]
    momentum: float = Field(0.1, gt=0, le=1)
    eps: float = Field(1e-5, gt=0)


class Dropout(_Layer):
    type: Literal["dropout"]
    p: float = Field(0.5, ge=0, lt=1)


class Flatten(_Layer):
    type: Literal["flatten"]


class Linear(_Layer):
    type: Literal["linear"]
    units: Union[int, Literal["num_classes"]]
    """A positive width, or "num_classes" for the dataset's class count."""
    bias: StrictBool = True

    @field_validator("units", mode="before")
    @classmethod
    def _check_units(cls, value: Any) -> Any:
        # One readable error instead of one per union member.
        if value == "num_classes" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"units must be a positive integer or \"num_classes\"; got {value!r}")


class ReLU(_Layer):
    type: Literal["relu"]


class LeakyReLU(_Layer):
    type: Literal["leaky_relu"]
    negative_slope: float = Field(0.01, ge=0)


class GELU(_Layer):
    type: Literal["gelu"]


class SiLU(_Layer):
    type: Literal["silu"]


class Tanh(_Layer):
    type: Literal["tanh"]


class Sigmoid(_Layer):
    type: Literal["sigmoid"]


class Residual(_Layer):
    """``x + body(x)``: the body's output shape must equal its input shape."""

    type: Literal["residual"]
    layers: list["Layer"] = Field(min_length=1)


Layer = Annotated[
    Union[
        Conv2d, Conv1d, MaxPool2d, MaxPool1d, AvgPool2d, AvgPool1d, GlobalAvgPool,
        BatchNorm, Dropout, Flatten, Linear, ReLU, LeakyReLU, GELU, SiLU, Tanh, Sigmoid,
        Residual,
    ],
    Field(discriminator="type"),
]
Residual.model_rebuild()

LAYER_TYPES: tuple[str, ...] = (
    "conv2d", "conv1d", "maxpool2d", "maxpool1d", "avgpool2d", "avgpool1d", "global_avg_pool",
    "batchnorm", "dropout", "flatten", "linear", "relu", "leaky_relu", "gelu", "silu", "tanh",
    "sigmoid", "residual",
)
"""Every accepted ``type`` value (the whitelist)."""

ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid")


# --------------------------------------------------------------------------- training


class TrainingSpec(BaseModel):
    """How to train: optimizer and its settings, batch size, loss, seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    """SGD only."""
    dampening: float = Field(0.0, ge=0, lt=1)
    """SGD only."""
    nesterov: StrictBool = False
    """SGD only; needs momentum > 0 and dampening = 0 (torch's rule)."""
    weight_decay: float = Field(0.0, ge=0, le=1)
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW only."""
    batch_size: PositiveInt = 64
    loss: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: NonNegativeInt = 0
    schedule: LRSchedule | None = None
    """Learning-rate schedule as a fraction of `lr` over the run (None: constant). The trainer applies it
    and the engine reads its drops (peng4nn/schedule.py)."""

    @model_validator(mode="after")
    def _check_combinations(self) -> "TrainingSpec":
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                "nesterov=true needs momentum > 0 and dampening = 0; "
                f"got momentum={self.momentum}, dampening={self.dampening}"
            )
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1); got {list(self.betas)}")
        return self


# --------------------------------------------------------------------------- spec


class ArchSpec(BaseModel):
    """A whole submission: ``{"schema": "peng4nn.arch/v1", "layers": [...], "training": {...}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    schema_: Literal["peng4nn.arch/v1"] = Field(SCHEMA_VERSION, alias="schema")
    layers: list[Layer] = Field(min_length=1)
    training: TrainingSpec = Field(default_factory=TrainingSpec)

    @classmethod
    def parse(cls, data: Any) -> "ArchSpec":
        """Validate a dict (or an ``ArchSpec``); raise ``SpecError`` with field paths."""
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_pydantic_errors(exc)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> "ArchSpec":
        """Parse JSON text; a syntax error becomes a ``SpecError`` naming the line and column."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([{"loc": (), "msg": f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"}]) from None
        return cls.parse(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document (``schema`` key included, defaults filled in)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Turn pydantic errors into ``{loc, msg}`` with the union tag dropped from the path.

    Pydantic reports ``("layers", 3, "conv2d", "kernel")`` for a tagged union;
    users wrote ``layers[3].kernel``.
    """
    out = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        cleaned: list[str | int] = []
        i = 0
        while i < len(loc):
            part = loc[i]
            cleaned.append(part)
            if isinstance(part, int) and i + 1 < len(loc) and loc[i + 1] in LAYER_TYPES and i > 0 and loc[i - 1] == "layers":
                i += 1  # skip the union tag
            i += 1
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "value_error":
            pass  # our own validators already say what they got
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown layer type {err['input'].get('type')!r}; allowed: {', '.join(LAYER_TYPES)}"
            cleaned.append("type")
        elif err["type"] == "union_tag_not_found":
            msg = f"missing 'type'; allowed: {', '.join(LAYER_TYPES)}"
            cleaned.append("type")
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            msg = f"{msg}; got {err['input']!r}"
        if cleaned and cleaned[-1] == "schema_":
            cleaned[-1] = "schema"
        out.append({"loc": tuple(cleaned), "msg": msg})
    return out


# --------------------------------------------------------------------------- limits & analysis


class SpecLimits(BaseModel):
    """Upper bounds on what one submission may cost; ``None`` disables a bound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_params: int | None = Field(50_000_000, ge=1)
    max_flops: int | None = Field(20_000_000_000, ge=1)
    """Forward FLOPs per sample."""
    max_layers: int | None = Field(200, ge=1)
    """Counts layers inside residual blocks too."""
    max_batch_size: int | None = Field(4096, ge=1)


@dataclass(frozen=True)
class SpecReport:
    """What shape inference found: totals plus the output shape after each top-level layer."""

    params: int
    flops: int
    """Forward FLOPs per sample: 2 x multiply-accumulates of conv/linear layers,
    plus one per output element of pools, norms, activations and residual adds."""
    output_shapes: list[Shape] = field(default_factory=list)
    num_layers: int = 0
    depth: int = 0
    """Weight layers (convolutions and linear layers, residual bodies included)."""

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "flops": self.flops, "num_layers": self.num_layers, "depth": self.depth,
                "output_shapes": [list(s) for s in self.output_shapes]}


class _ShapeError(Exception):
    def __init__(self, loc: Loc, msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def analyze_spec(spec: ArchSpec | dict, input_shape: Shape, num_classes: int,
                 limits: SpecLimits | None = None) -> SpecReport:
    """Infer every layer's output shape and the network's cost; raise ``SpecError`` if invalid.

    ``input_shape`` excludes the batch dimension: (C, H, W) for images, (C, L) for sequences.
    """
    spec = ArchSpec.parse(spec)
    limits = limits or SpecLimits()
    input_shape = tuple(int(s) for s in input_shape)
    counter = _Counter()
    shapes: list[Shape] = []
    shape = input_shape
    try:
        for i, layer in enumerate(spec.layers):
            shape = _infer(layer, shape, ("layers", i), num_classes, counter)
            shapes.append(shape)
        if shape != (num_classes,):
            raise _ShapeError(("layers",), f"the network must end with shape ({num_classes},) for {num_classes} "
                              f"classes; the last layer outputs {_fmt(shape)}")
    except _ShapeError as exc:
        raise SpecError([{"loc": exc.loc, "msg": exc.msg}]) from None

    errors = []
    checks = [
        (("layers",), "layers", counter.layers, limits.max_layers),
        (("layers",), "parameters", counter.params, limits.max_params),
        (("layers",), "forward FLOPs per sample", counter.flops, limits.max_flops),
        (("training", "batch_size"), "batch_size", spec.training.batch_size, limits.max_batch_size),
    ]
    for loc, what, value, bound in checks:
        if bound is not None and value > bound:
            errors.append({"loc": loc, "msg": f"{what} must be at most {bound:,}; got {value:,}"})
    if errors:
        raise SpecError(errors)
    return SpecReport(params=counter.params, flops=counter.flops, output_shapes=shapes, num_layers=counter.layers,
                      depth=counter.weight_layers)


def check_schedule(spec: ArchSpec, e_max: float) -> None:
    """A schedule whose milestones or warm-up reach past the run is a mistake: name the field."""
    check_schedule_fits(spec.training.schedule, e_max, ("training", "schedule"))


def check_schedule_fits(schedule: LRSchedule | None, e_max: float, loc: Loc) -> None:
    """`LRSchedule.check_within` as a `SpecError` at ``loc`` + the field (milestones or warmup_epochs)."""
    if schedule is None:
        return
    try:
        schedule.check_within(e_max)
    except ValueError as exc:
        field_name = "warmup_epochs" if "warmup" in str(exc) else "milestones"
        raise SpecError([{"loc": (*loc, field_name), "msg": str(exc)}]) from None


def network_info(spec: ArchSpec, report: SpecReport) -> "NetworkInfo":
    """What the engine may know of a submitted network: size, depth and initial rate."""
    from peng4nn.network_info import NetworkInfo

    return NetworkInfo(num_params=max(report.params, 1), depth=report.depth, initial_lr=spec.training.lr)


def layer_output_shape(layer: Any, shape: Shape, num_classes: int) -> Shape:
    """Output shape of one (already validated) layer; the model builder walks residual bodies with it."""
    return _infer(layer, tuple(shape), (), num_classes, _Counter())


@dataclass
class _Counter:
    params: int = 0
    flops: int = 0
    layers: int = 0
    weight_layers: int = 0


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _window_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _infer(layer: Any, shape: Shape, loc: Loc, num_classes: int, counter: _Counter) -> Shape:
    """Output shape of ``layer`` applied to ``shape``; updates the running cost."""
    counter.layers += 1
    kind = layer.type
    numel = math.prod(shape)

    if kind in ("conv2d", "conv1d", "maxpool2d", "maxpool1d", "avgpool2d", "avgpool1d"):
        dims = 2 if kind.endswith("2d") else 1
        if len(shape) != dims + 1:
            expected = "(C, H, W)" if dims == 2 else "(C, L)"
            raise _ShapeError(loc, f"{kind} needs input of shape {expected}; got {_fmt(shape)}")
        channels, spatial = shape[0], shape[1:]
        is_conv = kind.startswith("conv")
        stride = layer.stride if is_conv or layer.stride is not None else layer.kernel
        dilation = layer.dilation if is_conv else 1
        if not is_conv and layer.padding > layer.kernel // 2:
            raise _ShapeError(loc + ("padding",), f"padding must be at most kernel // 2 = {layer.kernel // 2}; "
                              f"got {layer.padding}")
        out_spatial = tuple(_window_out(s, layer.kernel, stride, layer.padding, dilation) for s in spatial)
        if min(out_spatial) < 1:
            raise _ShapeError(loc + ("kernel",), f"{kind} with kernel {layer.kernel}, stride {stride}, padding "
                              f"{layer.padding}, dilation {dilation} turns input {_fmt(shape)} into a "
                              f"non-positive size {_fmt((layer.filters if is_conv else channels, *out_spatial))}")
        if is_conv:
            if channels % layer.groups:
                raise _ShapeError(loc + ("groups",), f"groups={layer.groups} must divide the {channels} input channels")
            if layer.filters % layer.groups:
                raise _ShapeError(loc + ("groups",), f"groups={layer.groups} must divide filters={layer.filters}")
            out = (layer.filters, *out_spatial)
            counter.weight_layers += 1
            fan_in = (channels // layer.groups) * layer.kernel ** dims
            counter.params += layer.filters * fan_in + (layer.filters if layer.bias else 0)
            counter.flops += 2 * fan_in * math.prod(out)
        else:
            out = (channels, *out_spatial)
            counter.flops += math.prod(out) * layer.kernel ** dims
        return out

    if kind == "global_avg_pool":
        if len(shape) not in (2, 3):
            raise _ShapeError(loc, f"global_avg_pool needs input of shape (C, H, W) or (C, L); got {_fmt(shape)}")
        counter.flops += numel
        return (shape[0],)

    if kind == "batchnorm":
        if len(shape) not in (1, 2, 3):
            raise _ShapeError(loc, f"batchnorm needs input of shape (C, H, W), (C, L) or (F,); got {_fmt(shape)}")
        counter.params += 2 * shape[0]
        counter.flops += 2 * numel
        return shape

    if kind == "flatten":
        return (numel,)

    if kind == "linear":
        if len(shape) != 1:
            raise _ShapeError(loc, f"linear needs a flat input (F,); got {_fmt(shape)}: add a flatten or "
                              "global_avg_pool layer before it")
        units = num_classes if layer.units == "num_classes" else layer.units
        counter.weight_layers += 1
        counter.params += shape[0] * units + (units if layer.bias else 0)
        counter.flops += 2 * shape[0] * units
        return (units,)

    if kind == "residual":
        inner = shape
        for j, sub in enumerate(layer.layers):
            inner = _infer(sub, inner, loc + ("layers", j), num_classes, counter)
        if inner != shape:
            raise _ShapeError(loc, f"residual body must keep the shape: input {_fmt(shape)}, body output {_fmt(inner)}")
        counter.flops += numel
        return shape

    if kind == "dropout":
        return shape

    # activations
    counter.flops += numel
    return shape
