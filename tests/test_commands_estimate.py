"""`peng4nn estimate` and `peng4nn random-arch` through the real CLI entry point."""

import json

import pytest

from peng4nn.cli import main
from peng4nn.spec import ArchSpec, analyze_spec
from tests.test_train import SENSIBLE_CNN

GOOD = SENSIBLE_CNN  # one sensible CNN for the trainer and the command


@pytest.fixture
def arch(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(GOOD, indent=2))
    return path


def test_estimate_prints_each_iteration_and_the_final_estimate(arch, capsys):
    assert main(["estimate", str(arch), "--dataset", "digits", "--device", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    iteration_lines = [ln for ln in lines if ln.startswith("epoch")]
    assert len(iteration_lines) >= 4 and "prediction" in iteration_lines[-1]
    assert lines[-1].startswith("estimate: ") and "converged at epoch" in lines[-1]
    assert "training" in out.err  # the tqdm bar goes to stderr


def test_estimate_json_and_shadow(arch, capsys):
    assert main(["estimate", str(arch), "--json", "--shadow", "--e-max", "2", "--no-progress",
                 "--threads", "1"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert result["reason"] == "max_epochs" and result["epochs_trained"] == 2.0
    assert len(result["events"]) == 4 and result["events"][0]["epoch"] == 0.5
    assert result["estimate"] == max(e["val_acc"] for e in result["events"])
    assert out.err == ""


@pytest.mark.parametrize("content, expected", [
    ('{"layers": [\n  {"type": "conv2d" "filters": 4}\n]}', ":2:21: invalid JSON"),
    ('{"layers": [\n  {"type": "flatten"},\n  {"type": "linear", "units": 0}\n]}', ":3: layers[1].units"),
    ('{"layers": [\n  {"type": "conv2d", "filters": 4,\n   "kernel": 30},\n  {"type": "flatten"},\n'
     '  {"type": "linear", "units": "num_classes"}]}', ":3: layers[0].kernel: conv2d with kernel 30"),
    ('{"layers": [{"type": "flatten"}, {"type": "linear", "units": 10}],\n "training": {\n  "lr": "fast"}}',
     ":3: training.lr"),
    ('{"layers": [\n  {"type": "conv2d",\n   "kernel": 3}]}', ":2: layers[0].filters: Field required"),
])
def test_bad_arch_file_is_one_line_with_file_line_and_field_and_exit_2(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["estimate", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path}{expected}" in err
    assert "Traceback" not in err


def test_json_value_lines_follows_nesting():
    from peng4nn.commands.estimate import json_value_lines

    text = '{"a": [1,\n  {"b": [],\n   "c": {"d": "x\\"y"}}],\n "e": null}'
    lines = json_value_lines(text)
    assert lines[("a", 0)] == 1 and lines[("a", 1, "b")] == 2 and lines[("a", 1, "c", "d")] == 3
    assert lines[("e",)] == 4 and json.loads(text)["a"][1]["c"]["d"] == 'x"y'


def test_missing_file_unknown_dataset_and_bad_policy_exit_2(arch, tmp_path, capsys):
    assert main(["estimate", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: cannot read" in capsys.readouterr().err
    assert main(["estimate", str(arch), "--dataset", "imagenet"]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    assert main(["estimate", str(arch), "--policy", "magic"]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["estimate", str(arch), "--dataset", "cifar10", "--data-root", str(tmp_path)]) == 2
    assert "data_batch_1" in capsys.readouterr().err


def test_random_arch_prints_a_valid_reproducible_spec(capsys):
    assert main(["random-arch", "--dataset", "mnist-5k", "--seed", "4"]) == 0
    first = capsys.readouterr().out
    spec = ArchSpec.from_json(first)
    assert analyze_spec(spec, (1, 28, 28), 10).output_shapes[-1] == (10,)
    assert main(["random-arch", "--dataset", "mnist-5k", "--seed", "4"]) == 0
    assert capsys.readouterr().out == first
    assert main(["random-arch", "--dataset", "cifar100", "--seed", "4", "--preset", "cpu",
                 "--ranges", '{"conv_layers": [2, 2]}']) == 0
    spec = ArchSpec.from_json(capsys.readouterr().out)
    assert sum(layer.type == "conv2d" for layer in spec.layers) == 2
    assert main(["random-arch", "--dataset", "nope"]) == 2
    assert "allowed: digits" in capsys.readouterr().err
    assert main(["random-arch", "--dataset", "digits", "--ranges", '{"kernal": [1, 2]}']) == 2
    assert "kernal" in capsys.readouterr().err
