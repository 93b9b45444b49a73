"""Dataset registry: each torchvision layout from tiny files in the real on-disk format, the offline
datasets, user .npz files, truncation to whole batches, errors that name what is missing."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from scipy.io import savemat

from peng4nn.datasets import (
    DATA_ROOT_ENV,
    DatasetError,
    DatasetFilesMissingError,
    UnknownDatasetError,
    dataset_info,
    iteration_train_size,
    list_datasets,
    load_dataset,
)


def _write_idx(path, array, compress=False):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _images(n, shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n, classes, seed):
    return np.arange(n) % classes if seed is None else np.random.default_rng(seed).integers(0, classes, n)


def write_mnist(root, folder, n_train=40, n_val=12, compress=False):
    raw = root / folder / "raw"
    _write_idx(raw / "train-images-idx3-ubyte", _images(n_train, (28, 28), 1), compress)
    _write_idx(raw / "train-labels-idx1-ubyte", _labels(n_train, 10, None), compress)
    _write_idx(raw / "t10k-images-idx3-ubyte", _images(n_val, (28, 28), 2), compress)
    _write_idx(raw / "t10k-labels-idx1-ubyte", _labels(n_val, 10, None), compress)


def _pickle(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root, per_batch=8, n_val=10):
    base = root / "cifar-10-batches-py"
    for i in range(1, 6):
        _pickle(base / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                            "data": _images(per_batch, (3072,), i), "labels": list(_labels(per_batch, 10, None)),
                                            "filenames": [f"img{j}.png" for j in range(per_batch)]})
    _pickle(base / "test_batch", {"data": _images(n_val, (3072,), 9), "labels": list(_labels(n_val, 10, None))})
    _pickle(base / "batches.meta", {"label_names": [str(i) for i in range(10)]})


def write_cifar100(root, n_train=40, n_val=10):
    base = root / "cifar-100-python"
    _pickle(base / "train", {"data": _images(n_train, (3072,), 1), "fine_labels": list(range(n_train)),
                             "coarse_labels": [0] * n_train})
    _pickle(base / "test", {"data": _images(n_val, (3072,), 2), "fine_labels": [99] * n_val,
                            "coarse_labels": [0] * n_val})


def write_svhn(root, n_train=30, n_val=10):
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_val)):
        x = _images(n, (32, 32, 3), n).transpose(1, 2, 3, 0)  # SVHN stores H, W, C, N
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # labels 1..10, 10 meaning digit 0
        savemat(root / name, {"X": x, "y": y.astype(np.uint8)})


@pytest.mark.parametrize("name, writer, folder, n_train, n_val, shape", [
    ("mnist", lambda r: write_mnist(r, "MNIST"), None, 40, 12, (1, 28, 28)),
    ("fashion-mnist", lambda r: write_mnist(r, "FashionMNIST", compress=True), None, 40, 12, (1, 28, 28)),
    ("cifar10", write_cifar10, None, 40, 10, (3, 32, 32)),
    ("cifar100", write_cifar100, None, 40, 10, (3, 32, 32)),
    ("svhn", write_svhn, None, 30, 10, (3, 32, 32)),
])
def test_torchvision_layouts_load_offline_from_real_formats(tmp_path, name, writer, folder, n_train, n_val, shape):
    writer(tmp_path)
    data = load_dataset(name, device="cpu", E=0.5, batch_size=4, data_root=tmp_path, download=False)
    kept, steps = iteration_train_size(n_train, 0.5, 4)
    assert data.x_train.shape == (kept, *shape) and data.x_train.dtype == torch.float32
    assert data.x_val.shape == (n_val, *shape)
    assert data.steps_per_iteration == steps and steps * 4 * 2 == kept
    assert data.info.input_shape == shape
    # normalised per channel with the training split's statistics
    raw = load_dataset(name, device="cpu", E=0.5, batch_size=n_train // 2, data_root=tmp_path, normalize=False)
    dims = [0, *range(2, raw.x_train.ndim)]
    mean, std = raw.x_train.mean(dim=dims, keepdim=True), raw.x_train.std(dim=dims, keepdim=True)
    assert torch.allclose(data.x_val, (raw.x_val - mean) / std, atol=1e-5)
    assert float(raw.x_train.max()) <= 1.0
    assert int(data.y_train.max()) < data.info.num_classes and int(data.y_val.min()) >= 0


def test_svhn_label_10_means_digit_0(tmp_path):
    write_svhn(tmp_path, n_train=20, n_val=10)
    data = load_dataset("svhn", device="cpu", batch_size=2, data_root=tmp_path)
    assert sorted(data.y_val.tolist()) == list(range(10))


def test_cifar100_uses_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    data = load_dataset("cifar100", device="cpu", batch_size=2, data_root=tmp_path)
    assert data.y_val.tolist() == [99] * 10


def test_missing_files_are_named_and_nothing_is_downloaded(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetFilesMissingError) as info:
        load_dataset("cifar10", device="cpu", batch_size=4, data_root=tmp_path, download=False)
    assert "data_batch_3" in str(info.value) and DATA_ROOT_ENV in str(info.value)
    assert "data_batch_1" not in str(info.value)
    with pytest.raises(DatasetFilesMissingError, match="t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", device="cpu", batch_size=4, data_root=tmp_path / "empty")
    with pytest.raises(DatasetFilesMissingError, match="train_32x32.mat"):
        load_dataset("svhn", device="cpu", batch_size=4, data_root=tmp_path / "empty")


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "env-root", "MNIST")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env-root"))
    data = load_dataset("mnist", device="cpu", batch_size=4)
    assert len(data.x_val) == 12


def test_val_fraction_carves_validation_from_training_split(tmp_path):
    write_mnist(tmp_path, "MNIST", n_train=40)
    data = load_dataset("mnist", device="cpu", batch_size=2, data_root=tmp_path, val_fraction=0.25)
    assert len(data.x_val) == 10 and len(data.x_train) == 28  # 30 left, truncated to whole half-epochs of 2
    with pytest.raises(DatasetError, match="val_fraction"):
        load_dataset("mnist", device="cpu", batch_size=2, data_root=tmp_path, val_fraction=1.5)


def test_digits_and_mnist_5k_load_offline():
    digits = load_dataset("digits", device="cpu", E=0.5, batch_size=32)
    assert digits.info.input_shape == (1, 8, 8) and digits.info.num_classes == 10
    assert len(digits.x_train) + len(digits.x_val) <= 1797 and len(digits.x_val) == 359
    assert len(digits.x_train) == digits.steps_per_iteration * 32 * 2
    assert set(digits.y_val.tolist()) == set(range(10))
    mnist = load_dataset("mnist-5k", device="cpu", E=0.5, batch_size=100)
    assert mnist.x_train.shape[1:] == (1, 28, 28) and len(mnist.x_val) == 1000
    assert len(mnist.x_train) == 4000 and mnist.steps_per_iteration == 20
    assert set(mnist.y_train[:200].tolist()) == set(range(10))  # class-sorted file is shuffled before truncation


def test_split_does_not_depend_on_batch_size_and_reloads_are_identical():
    a = load_dataset("digits", device="cpu", batch_size=32)
    b = load_dataset("digits", device="cpu", batch_size=100)
    c = load_dataset("digits", device="cpu", batch_size=32, normalize=False)
    again = load_dataset("digits", device="cpu", batch_size=32, normalize=False)
    assert torch.equal(a.x_val, b.x_val)
    assert torch.equal(c.x_train, again.x_train)  # the per-process cache is never written into
    assert float(c.x_train.max()) == 1.0 and float(c.x_train.min()) == 0.0  # digits' 0..16 scaled to [0, 1]
    assert torch.equal(a.y_train[:len(b.y_train)], b.y_train)


@pytest.mark.parametrize("n, E, b, kept, steps", [
    (1437, 0.5, 64, 1408, 11), (1437, 1.0, 64, 1408, 22), (1437, 2.0, 64, 1408, 44),
    (1437, 0.25, 100, 1200, 3), (100, 0.5, 50, 100, 1),
])
def test_truncation_gives_whole_batches_per_iteration(n, E, b, kept, steps):
    assert iteration_train_size(n, E, b) == (kept, steps)
    assert abs(kept * E - steps * b) < 1e-9


def test_batch_larger_than_an_iteration_is_a_clear_error():
    with pytest.raises(DatasetError, match="batch_size 1024 is larger than E x training samples"):
        load_dataset("digits", device="cpu", batch_size=1024)


def test_user_npz_images_and_sequences(tmp_path):
    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(64, 3, 20)).astype(np.float32), y_train=rng.integers(0, 4, 64),
             x_val=rng.normal(size=(16, 3, 20)).astype(np.float32), y_val=np.arange(16) % 4)
    info = dataset_info(str(path))
    assert info.input_shape == (3, 20) and info.num_classes == 4
    data = load_dataset(str(path), device="cpu", batch_size=8)
    assert data.x_train.shape == (64, 3, 20) and data.steps_per_iteration == 4

    flat = tmp_path / "flat.npz"
    np.savez(flat, x_train=rng.integers(0, 256, (20, 30)).astype(np.uint8), y_train=np.arange(20) % 2,
             x_val=rng.integers(0, 256, (4, 30)).astype(np.uint8), y_val=np.arange(4) % 2)
    assert dataset_info(str(flat)).input_shape == (1, 30)


def test_bad_npz_files_are_named(tmp_path):
    missing = tmp_path / "missing_key.npz"
    np.savez(missing, x_train=np.zeros((4, 1, 2, 2)), y_train=np.zeros(4, int), x_val=np.zeros((2, 1, 2, 2)))
    with pytest.raises(DatasetError, match="missing array.*y_val"):
        dataset_info(str(missing))
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, x_train=np.zeros((4, 1, 2, 2)), y_train=np.zeros(3, int), x_val=np.zeros((2, 1, 2, 2)),
             y_val=np.zeros(2, int))
    with pytest.raises(DatasetError, match="y_train must be a vector of 4 labels"):
        dataset_info(str(mismatch))
    with pytest.raises(DatasetFilesMissingError, match="nope.npz"):
        dataset_info(str(tmp_path / "nope.npz"))


def test_registry_metadata_and_unknown_names():
    names = [d.name for d in list_datasets()]
    assert names == ["digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"]
    assert dataset_info("cifar100").num_classes == 100
    assert dataset_info("svhn").input_shape == (3, 32, 32)
    with pytest.raises(UnknownDatasetError) as info:
        dataset_info("imagenet")
    assert isinstance(info.value, KeyError)
    assert "imagenet" in str(info.value) and "fashion-mnist" in str(info.value) and not str(info.value).startswith('"')
