"""Build a ``torch.nn.Module`` from a validated ``ArchSpec``.

Shape inference (``peng4nn.spec.analyze_spec``) runs first, so every module
built here is known to accept the dataset's input and end in ``num_classes``
outputs; this module only maps layer types to torch modules.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peng4nn.spec import ArchSpec, SpecLimits, analyze_spec, layer_output_shape


class ResidualBlock(nn.Module):
    """``x + body(x)``."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalAvgPool(nn.Module):
    """Mean over every spatial dimension: (N, C, ...) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).mean(dim=2)


def build_model(spec: ArchSpec | dict, input_shape: tuple[int, ...], num_classes: int,
                limits: SpecLimits | None = None) -> nn.Sequential:
    """Validate ``spec`` against the input shape and build its network (parameters on CPU)."""
    spec = ArchSpec.parse(spec)
    report = analyze_spec(spec, input_shape, num_classes, limits)
    shape = tuple(input_shape)
    modules = []
    for layer, out_shape in zip(spec.layers, report.output_shapes):
        modules.append(_build_layer(layer, shape, num_classes))
        shape = out_shape
    return nn.Sequential(*modules)


def _build_layer(layer: Any, shape: tuple[int, ...], num_classes: int) -> nn.Module:
    kind = layer.type
    if kind in ("conv2d", "conv1d"):
        conv = nn.Conv2d if kind == "conv2d" else nn.Conv1d
        return conv(shape[0], layer.filters, layer.kernel, stride=layer.stride, padding=layer.padding,
                    dilation=layer.dilation, groups=layer.groups, bias=layer.bias)
    if kind in ("maxpool2d", "maxpool1d", "avgpool2d", "avgpool1d"):
        pool = {"maxpool2d": nn.MaxPool2d, "maxpool1d": nn.MaxPool1d,
                "avgpool2d": nn.AvgPool2d, "avgpool1d": nn.AvgPool1d}[kind]
        return pool(layer.kernel, stride=layer.stride, padding=layer.padding)
    if kind == "global_avg_pool":
        return GlobalAvgPool()
    if kind == "batchnorm":
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return norm(shape[0], eps=layer.eps, momentum=layer.momentum)
    if kind == "dropout":
        return nn.Dropout(layer.p)
    if kind == "flatten":
        return nn.Flatten()
    if kind == "linear":
        units = num_classes if layer.units == "num_classes" else layer.units
        return nn.Linear(shape[0], units, bias=layer.bias)
    if kind == "residual":
        body = []
        for sub in layer.layers:
            body.append(_build_layer(sub, shape, num_classes))
            shape = layer_output_shape(sub, shape, num_classes)
        return ResidualBlock(nn.Sequential(*body))
    if kind == "leaky_relu":
        return nn.LeakyReLU(layer.negative_slope)
    simple = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    return simple[kind]()

