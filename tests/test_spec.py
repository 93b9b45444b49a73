"""Architecture spec: schema validation, shape inference, cost counting and limits."""

import json
import subprocess
import sys

import pytest

from peng4nn.spec import ArchSpec, SpecError, SpecLimits, analyze_spec, format_loc

DIGITS = (1, 8, 8)


def doc(*layers, **training):
    return {"schema": "peng4nn.arch/v1", "layers": list(layers), "training": training}


SMALL_CNN = doc(
    {"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "units": "num_classes"},
)


def errors_of(data, shape=DIGITS, classes=10, limits=None):
    with pytest.raises(SpecError) as info:
        analyze_spec(data, shape, classes, limits)
    return info.value.errors


def test_valid_cnn_shapes_params_and_flops_are_counted_by_hand():
    report = analyze_spec(SMALL_CNN, DIGITS, 10)
    assert report.output_shapes == [(8, 8, 8), (8, 8, 8), (8, 4, 4), (128,), (10,)]
    conv_params = 8 * 1 * 3 * 3 + 8
    linear_params = 128 * 10 + 10
    assert report.params == conv_params + linear_params
    conv_flops = 2 * (1 * 3 * 3) * (8 * 8 * 8)
    relu_flops = 8 * 8 * 8
    pool_flops = 8 * 4 * 4 * 2 * 2
    linear_flops = 2 * 128 * 10
    assert report.flops == conv_flops + relu_flops + pool_flops + linear_flops
    assert report.num_layers == 5


def test_every_layer_type_and_conv1d_on_sequences():
    data = doc(
        {"type": "conv1d", "filters": 4, "kernel": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 1,
         "bias": False},
        {"type": "batchnorm"}, {"type": "leaky_relu", "negative_slope": 0.2},
        {"type": "avgpool1d", "kernel": 2}, {"type": "maxpool1d", "kernel": 3, "stride": 1, "padding": 1},
        {"type": "residual", "layers": [{"type": "conv1d", "filters": 4, "kernel": 3, "padding": 1},
                                        {"type": "gelu"}]},
        {"type": "global_avg_pool"}, {"type": "dropout", "p": 0.1}, {"type": "linear", "units": 6},
        {"type": "silu"}, {"type": "tanh"}, {"type": "sigmoid"}, {"type": "batchnorm"},
        {"type": "linear", "units": "num_classes"},
        optimizer="adamw", lr=0.001, weight_decay=0.01, batch_size=32, label_smoothing=0.1, seed=7,
    )
    report = analyze_spec(data, (2, 20), 3)
    assert report.output_shapes[0] == (4, 10)
    assert report.output_shapes[3] == (4, 5)
    assert report.output_shapes[5] == (4, 5)
    assert report.output_shapes[-1] == (3,)
    assert report.num_layers == 16  # the residual wrapper and its two body layers count


def test_round_trip_json_keeps_schema_key_and_defaults():
    spec = ArchSpec.parse(SMALL_CNN)
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec
    loaded = json.loads(text)
    assert loaded["schema"] == "peng4nn.arch/v1"
    assert loaded["training"]["optimizer"] == "sgd"
    assert json.loads(spec.model_dump_json())["schema"] == "peng4nn.arch/v1"


def test_non_positive_size_names_the_field_and_shapes():
    errs = errors_of(doc({"type": "conv2d", "filters": 4, "kernel": 3}, {"type": "maxpool2d", "kernel": 5},
                         {"type": "conv2d", "filters": 6, "kernel": 9}, {"type": "flatten"},
                         {"type": "linear", "units": 10}))
    assert errs[0]["loc"] == ("layers", 2, "kernel")
    assert "(4, 1, 1)" in errs[0]["msg"] and "non-positive size (6, -7, -7)" in errs[0]["msg"]


def test_pool_padding_over_half_kernel_is_rejected():
    errs = errors_of(doc({"type": "maxpool2d", "kernel": 2, "padding": 2}, {"type": "flatten"},
                         {"type": "linear", "units": 10}))
    assert errs[0]["loc"] == ("layers", 0, "padding")
    assert "kernel // 2 = 1" in errs[0]["msg"]


def test_unknown_layer_type_lists_allowed_types():
    errs = errors_of(doc({"type": "conv3d", "filters": 3, "kernel": 3}))
    assert errs[0]["loc"] == ("layers", 0, "type")
    assert "conv3d" in errs[0]["msg"] and "conv2d" in errs[0]["msg"]


def test_unknown_field_and_wrong_types_each_named():
    errs = errors_of(doc({"type": "flatten"}, {"type": "linear", "units": "ten", "activation": "relu"},
                         batch_size=1.5, optimizer="rmsprop"))
    locs = {e["loc"] for e in errs}
    assert ("layers", 1, "units") in locs
    assert ("layers", 1, "activation") in locs
    assert ("training", "batch_size") in locs
    assert ("training", "optimizer") in locs
    assert any("'ten'" in e["msg"] for e in errs)


def test_nested_residual_field_path():
    errs = errors_of(doc({"type": "residual", "layers": [{"type": "relu"}, {"type": "conv2d", "kernel": 3}]}))
    assert errs[0]["loc"] == ("layers", 0, "layers", 1, "filters")
    assert format_loc(errs[0]["loc"]) == "layers[0].layers[1].filters"


def test_residual_shape_mismatch_lists_both_shapes():
    errs = errors_of(doc({"type": "conv2d", "filters": 4, "kernel": 1},
                         {"type": "residual", "layers": [{"type": "conv2d", "filters": 8, "kernel": 1}]},
                         {"type": "flatten"}, {"type": "linear", "units": "num_classes"}))
    assert errs[0]["loc"] == ("layers", 1)
    assert "(4, 8, 8)" in errs[0]["msg"] and "(8, 8, 8)" in errs[0]["msg"]


def test_linear_on_unflattened_input_and_wrong_final_width():
    errs = errors_of(doc({"type": "linear", "units": 10}))
    assert errs[0]["loc"] == ("layers", 0) and "flatten" in errs[0]["msg"]
    errs = errors_of(doc({"type": "flatten"}, {"type": "linear", "units": 7}))
    assert errs[0]["loc"] == ("layers",) and "(10,)" in errs[0]["msg"] and "(7,)" in errs[0]["msg"]


def test_conv_on_wrong_rank_and_groups():
    errs = errors_of(doc({"type": "conv1d", "filters": 4, "kernel": 3}), shape=DIGITS)
    assert "(C, L)" in errs[0]["msg"]
    errs = errors_of(doc({"type": "conv2d", "filters": 4, "kernel": 3, "groups": 3}), shape=(3, 8, 8))
    assert errs[0]["loc"] == ("layers", 0, "groups") and "filters=4" in errs[0]["msg"]


def test_limits_on_params_flops_layers_and_batch_size():
    wide = doc({"type": "flatten"}, {"type": "linear", "units": 4096}, {"type": "relu"},
               {"type": "linear", "units": "num_classes"}, batch_size=512)
    report = analyze_spec(wide, DIGITS, 10)
    limits = SpecLimits(max_params=report.params - 1, max_flops=report.flops - 1, max_layers=3,
                        max_batch_size=256)
    errs = errors_of(wide, limits=limits)
    messages = " | ".join(e["msg"] for e in errs)
    assert "parameters must be at most" in messages and f"{report.params:,}" in messages
    assert "FLOPs" in messages and "layers must be at most 3; got 4" in messages
    assert ("training", "batch_size") in {e["loc"] for e in errs}
    assert analyze_spec(wide, DIGITS, 10, SpecLimits(max_params=None, max_flops=None, max_layers=None,
                                                       max_batch_size=None)).params == report.params


def test_schema_version_training_rules_and_json_syntax():
    errs = errors_of({"schema": "peng4nn.arch/v2", "layers": [{"type": "flatten"}]})
    assert errs[0]["loc"] == ("schema",)
    errs = errors_of(doc({"type": "flatten"}, {"type": "linear", "units": 10}, nesterov=True, momentum=0.0))
    assert errs[0]["loc"] == ("training",) and "nesterov" in errs[0]["msg"]
    errs = errors_of(doc({"type": "flatten"}, lr=0))
    assert ("training", "lr") in {e["loc"] for e in errs}
    with pytest.raises(SpecError) as info:
        ArchSpec.from_json('{"layers": [\n  {"type": "relu"},\n]}')
    assert "line 3" in str(info.value)
    errs = errors_of({"schema": "peng4nn.arch/v1", "layers": []})
    assert errs[0]["loc"] == ("layers",)


def test_spec_error_is_a_value_error_with_readable_text():
    with pytest.raises(ValueError, match=r"layers\[0\]\.kernel"):
        analyze_spec(doc({"type": "conv2d", "filters": 1, "kernel": 99}), DIGITS, 10)


def test_every_layer_type_builds_with_the_analysed_shapes_and_params():
    import torch

    from peng4nn.model import build_model

    data = doc(
        {"type": "conv2d", "filters": 6, "kernel": 3, "stride": 2, "padding": 2, "dilation": 2, "groups": 3},
        {"type": "batchnorm"}, {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1},
        {"type": "residual", "layers": [{"type": "conv2d", "filters": 6, "kernel": 3, "padding": 1},
                                        {"type": "batchnorm"}, {"type": "silu"}]},
        {"type": "maxpool2d", "kernel": 2}, {"type": "dropout", "p": 0.2}, {"type": "flatten"},
        {"type": "linear", "units": 12, "bias": False}, {"type": "batchnorm"}, {"type": "tanh"},
        {"type": "linear", "units": "num_classes"}, {"type": "sigmoid"},
    )
    report = analyze_spec(data, (3, 16, 16), 4)
    model = build_model(data, (3, 16, 16), 4).eval()
    assert sum(p.numel() for p in model.parameters()) == report.params
    x = torch.randn(3, 3, 16, 16)
    shapes = []
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == report.output_shapes


def test_spec_module_does_not_import_torch():
    code = "import sys, peng4nn.spec, peng4nn.search_space, peng4nn.datasets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_documented_example_validates():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "SPEC.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    report = analyze_spec(example, DIGITS, 10)
    assert report.output_shapes[-1] == (10,)
