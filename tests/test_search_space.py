"""The paper's random CNN generator: only valid specs, within the ranges, reproducible."""

import random

import pytest
import torch

from peng4nn.model import build_model
from peng4nn.search_space import CPU_RANGES, PAPER_RANGES, make_ranges, random_cnn
from peng4nn.spec import ArchSpec, SpecLimits, analyze_spec


def _forward(spec, shape, classes):
    """Run two samples through the built model; check torch agrees with the pure-Python analysis."""
    report = analyze_spec(spec, shape, classes, SpecLimits(max_params=None, max_flops=None))
    model = build_model(spec, shape, classes, SpecLimits(max_params=None, max_flops=None)).eval()
    assert sum(p.numel() for p in model.parameters()) == report.params
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:]))) for m in model]
    with torch.inference_mode():
        out = model(torch.randn(2, *shape))
    for h in hooks:
        h.remove()
    assert seen == report.output_shapes  # shape inference is what torch computes, layer by layer
    return out


@pytest.mark.parametrize(
    "shape, classes, preset, seeds",
    [
        ((1, 8, 8), 10, PAPER_RANGES, 8),
        ((1, 28, 28), 10, CPU_RANGES, 40),
        ((3, 32, 32), 100, CPU_RANGES, 20),
        ((2, 50), 5, CPU_RANGES, 20),
    ],
)
def test_every_draw_validates_builds_and_runs_forward(shape, classes, preset, seeds):
    rng = random.Random(1234)
    for _ in range(seeds):
        spec = random_cnn(rng, shape, classes, **preset)
        report = analyze_spec(spec, shape, classes, make_ranges(**preset).limits)
        out = _forward(spec, shape, classes)
        assert out.shape == (2, classes)
        assert report.output_shapes[-1] == (classes,)


def test_draws_follow_the_paper_structure_and_ranges():
    rng = random.Random(7)
    conv_counts = set()
    for _ in range(60):
        spec = random_cnn(rng, (3, 32, 32), 10)
        types = [layer.type for layer in spec.layers]
        n_conv = types.count("conv2d")
        conv_counts.add(n_conv)
        assert 1 <= n_conv <= 10
        assert types.count("maxpool2d") == n_conv  # a pooling layer after each conv
        assert types[-4:] == ["flatten", "linear", "relu", "linear"]  # two fully connected layers
        for layer in spec.layers:
            if layer.type == "conv2d":
                assert 1 <= layer.kernel <= 5 and 1 <= layer.stride <= 5 and 0 <= layer.padding <= 5
                assert 1 <= layer.filters <= 400
            if layer.type == "maxpool2d":
                assert 1 <= layer.kernel <= 5 and 1 <= layer.stride <= layer.kernel
                assert 0 <= layer.padding <= layer.kernel // 2
        assert 1e-6 <= spec.training.lr <= 1 + 1e-6
    assert len(conv_counts) >= 3  # depths vary


def test_same_seed_same_spec_and_overrides_apply():
    a = random_cnn(random.Random(5), (1, 28, 28), 10, **CPU_RANGES)
    b = random_cnn(5, (1, 28, 28), 10, **CPU_RANGES)
    assert a == b
    c = random_cnn(6, (1, 28, 28), 10, **CPU_RANGES)
    assert a != c
    spec = random_cnn(1, (1, 28, 28), 10, conv_layers=(2, 2), filters=[3, 3], optimizers=("adam",),
                      batch_sizes=(32,), limits={"max_flops": 10_000_000})
    convs = [layer for layer in spec.layers if layer.type == "conv2d"]
    assert len(convs) == 2 and all(layer.filters == 3 for layer in convs)
    assert spec.training.optimizer == "adam" and spec.training.batch_size == 32
    assert isinstance(ArchSpec.from_json(spec.to_json()), ArchSpec)


def test_cpu_preset_respects_its_cost_limit():
    limits = make_ranges(**CPU_RANGES).limits
    assert isinstance(limits, SpecLimits) and limits.max_flops is not None
    rng = random.Random(3)
    for _ in range(30):
        spec = random_cnn(rng, (1, 28, 28), 10, **CPU_RANGES)
        assert analyze_spec(spec, (1, 28, 28), 10).flops <= limits.max_flops


def test_bad_ranges_and_impossible_requests_are_rejected():
    with pytest.raises(TypeError, match="unknown range"):
        random_cnn(0, (1, 8, 8), 10, kernels=(1, 3))
    with pytest.raises(ValueError, match="'kernel' range must have lo <= hi"):
        random_cnn(0, (1, 8, 8), 10, kernel=(5, 1))
    with pytest.raises(ValueError, match="no valid CNN"):
        random_cnn(0, (1, 8, 8), 10, kernel=(20, 20), padding=(0, 0), max_attempts=50)
