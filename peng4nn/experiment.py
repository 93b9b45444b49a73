"""The paper's experiment (Section IV): draw N random CNNs, train each to e_max, record every full curve.

Each model trains in shadow mode (the engine watches but never stops it), validating
every E epochs, so its whole curve up to e_max is ground truth for every policy that
replay later simulates. Finished curves are appended to ``DIR/curves.csv`` in the
replay format, one model's rows in one write, so a run can be killed at any time and
re-run: models already in the file (or recorded as failed) are skipped.

Files in DIR:
  run.json        the settings (a re-run must use the same ones) and the wall time of each session
  curves.csv      model_id,epoch,val_acc,val_loss,train_loss: one block of e_max/E rows per model
  models.jsonl    one line per finished model: spec, parameters, FLOPs, wall time, shadow stop
  failures.jsonl  models that ended before e_max (diverged, out of memory, error): no full curve

Model i of seed s is drawn from ``random.Random(s * 1_000_003 + i)``, so which models a
run contains does not depend on the order or the number of workers.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from peng4nn import defaults

__all__ = ["CURVE_COLUMNS", "ExperimentConfig", "ExperimentError", "ModelRecord", "completed_models",
           "run_experiment", "train_one_model"]

CURVE_COLUMNS = ("model_id", "epoch", "val_acc", "val_loss", "train_loss", "lr")
"""Header of curves.csv: the replay format with both losses and the learning rate of each iteration."""

SEED_STRIDE = 1_000_003
"""Model i of seed s draws from random.Random(s * SEED_STRIDE + i): distinct streams for every (s, i) we use."""


class ExperimentError(ValueError):
    """Settings that cannot run, or a DIR that holds a different experiment."""


@dataclass(frozen=True)
class ExperimentConfig:
    """What defines an experiment; stored in run.json and checked on resume."""

    dataset: str
    models: int
    e_max: float = defaults.E_MAX
    E: float = defaults.E
    seed: int = 0
    preset: str = "cpu"
    """Base ranges of the generator: 'cpu' (small nets) or 'paper' (the published ranges)."""
    ranges: dict[str, Any] = field(default_factory=dict)
    """Overrides of the preset, JSON-style (lists for ranges, a dict for limits)."""
    val_fraction: float | None = None
    schedule: dict[str, Any] | None = None
    """Learning-rate schedule every network trains with (peng4nn.schedule.LRSchedule fields); None: constant."""

    def __post_init__(self) -> None:
        if self.models < 1:
            raise ExperimentError(f"models must be at least 1; got {self.models}")
        if not self.E > 0:
            raise ExperimentError(f"E must be positive; got {self.E}")
        if self.e_max < self.E:
            raise ExperimentError(f"e_max must be at least E ({self.E}); got {self.e_max}")
        if abs(self.e_max / self.E - round(self.e_max / self.E)) > 1e-9:
            raise ExperimentError(f"e_max must be a whole number of iterations of E={self.E}; got {self.e_max}")
        from peng4nn.search_space import PRESETS

        if self.preset not in PRESETS:
            raise ExperimentError(f"preset must be one of {sorted(PRESETS)}; got {self.preset!r}")
        try:
            self.generator_ranges()
        except (TypeError, ValueError) as exc:
            raise ExperimentError(f"invalid ranges: {exc}") from None
        if self.schedule is not None:
            try:
                self.lr_schedule().check_within(self.e_max)
            except ValueError as exc:
                raise ExperimentError(f"invalid schedule: {exc}") from None

    def lr_schedule(self):
        """The schedule as an LRSchedule (None: constant rate)."""
        from peng4nn.schedule import LRSchedule

        return None if self.schedule is None else LRSchedule(**self.schedule)

    @property
    def iterations(self) -> int:
        """Rows of a complete curve."""
        return int(round(self.e_max / self.E))

    def generator_ranges(self) -> dict[str, Any]:
        """The preset with the overrides applied, as keyword arguments of ``random_cnn``."""
        from peng4nn.search_space import PRESETS, make_ranges
        from peng4nn.spec import SpecLimits

        merged = dict(PRESETS[self.preset])
        for name, value in self.ranges.items():
            if name == "limits":
                value = SpecLimits(**value) if isinstance(value, dict) else value
            elif isinstance(value, list):
                value = tuple(value)
            merged[name] = value
        make_ranges(**merged)  # validates names and values
        return merged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelRecord:
    """One trained model as a worker returns it."""

    index: int
    model_id: str
    status: str
    """'ok' for a full curve, else the reason it ended early (diverged, out_of_memory, error)."""
    rows: list[tuple[float, float, float, float, float | None]]
    """(epoch, val_acc, val_loss, train_loss, lr) per iteration."""
    wall_s: float
    info: dict[str, Any]


def model_id_for(seed: int, index: int) -> str:
    return f"s{seed}-m{index:05d}"


def train_one_model(config: ExperimentConfig, index: int, device: str = "cpu") -> ModelRecord:
    """Draw model `index` and train it to e_max in shadow mode (runs in a worker process)."""
    from peng4nn.datasets import dataset_info
    from peng4nn.policies import make_policy
    from peng4nn.search_space import random_cnn
    from peng4nn.spec import ArchSpec, analyze_spec
    from peng4nn.train import train_and_estimate

    info = dataset_info(config.dataset)
    model_id = model_id_for(config.seed, index)
    ranges = config.generator_ranges()
    start = time.perf_counter()
    spec = random_cnn(random.Random(config.seed * SEED_STRIDE + index), info.input_shape, info.num_classes, **ranges)
    if config.schedule is not None:
        document = spec.to_dict()
        document["training"]["schedule"] = dict(config.schedule)
        spec = ArchSpec.parse(document)
    cost = analyze_spec(spec, info.input_shape, info.num_classes, ranges.get("limits"))
    meta: dict[str, Any] = {"model_id": model_id, "index": index, "params": cost.params, "flops": cost.flops,
                            "spec": spec.to_dict()}
    try:
        policy = make_policy("paper", estimator={"E": config.E, "e_max": config.e_max}, num_classes=info.num_classes)
        result = train_and_estimate(spec, config.dataset, policy=policy, device=device, e_max=config.e_max,
                                    shadow=True, val_fraction=config.val_fraction)
    except Exception as exc:  # one bad model must not end a 300-model run; it is recorded with its error
        meta["error"] = f"{type(exc).__name__}: {exc}"
        return ModelRecord(index, model_id, "error", [], time.perf_counter() - start, meta)
    rows = [(e.epoch, e.val_acc, e.val_loss, e.train_loss, e.lr) for e in result.events]
    complete = len(rows) == config.iterations and result.reason not in ("diverged", "out_of_memory", "cancelled")
    meta.update({"reason": result.reason, "shadow_stop_epoch": result.shadow_stop_epoch,
                 "shadow_estimate": result.shadow_estimate, "shadow_converged": result.shadow_converged,
                 "best_val_acc": result.best_val_acc, "train_wall_s": result.wall_s})
    status = "ok" if complete else (result.reason if result.reason != "max_epochs" else "short_curve")
    return ModelRecord(index, model_id, status, rows, time.perf_counter() - start, meta)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_in_worker(config: ExperimentConfig, index: int, device: str) -> ModelRecord:
    return train_one_model(config, index, device)


# --------------------------------------------------------------------------- files


def completed_models(directory: Path, iterations: int) -> set[str]:
    """Models whose full curve is in curves.csv or whose failure is recorded; cuts a torn last block.

    A kill during a write can leave a partial block at the end of curves.csv; it is removed
    so the file stays valid for replay and the model is trained again.
    """
    done: set[str] = set()
    curves = directory / "curves.csv"
    if curves.exists():
        with curves.open(newline="") as fh:
            lines = fh.readlines()
        counts: dict[str, int] = {}
        order: list[str] = []
        keep = 1
        for n, line in enumerate(lines[1:], start=1):
            if not line.endswith("\n"):
                break
            model_id = line.split(",", 1)[0]
            if model_id not in counts:
                order.append(model_id)
                counts[model_id] = 0
            counts[model_id] += 1
            if counts[model_id] == iterations:
                keep = n + 1
        if keep < len(lines) or (lines and not lines[-1].endswith("\n")):
            with curves.open("w", newline="") as fh:
                fh.writelines(lines[:keep])
        done |= {m for m in order if counts[m] == iterations}
    failures = directory / "failures.jsonl"
    if failures.exists():
        for line in failures.read_text().splitlines():
            if line.strip():
                try:
                    done.add(json.loads(line)["model_id"])
                except (ValueError, KeyError):
                    continue  # a torn last line: that model runs again
    return done


def _append(path: Path, text: str) -> None:
    with path.open("a", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _curve_block(record: ModelRecord, with_lr: bool) -> str:
    """Rows in the file's layout (runs recorded before the lr column keep their five columns)."""
    if with_lr:
        return "".join(f"{record.model_id},{e:g},{acc!r},{vl!r},{tl!r},{lr!r}\n" for e, acc, vl, tl, lr in record.rows)
    return "".join(f"{record.model_id},{e:g},{acc!r},{vl!r},{tl!r}\n" for e, acc, vl, tl, _ in record.rows)


def _has_lr_column(curves: Path) -> bool:
    with curves.open() as fh:
        return "lr" in fh.readline().strip().split(",")


def _write_record(directory: Path, record: ModelRecord) -> None:
    meta = {"status": record.status, "wall_s": round(record.wall_s, 3), **record.info}
    if record.status == "ok":
        _append(directory / "models.jsonl", json.dumps(meta) + "\n")
        curves = directory / "curves.csv"
        _append(curves, _curve_block(record, _has_lr_column(curves)))
    else:
        meta["rows"] = [list(r) for r in record.rows]
        _append(directory / "failures.jsonl", json.dumps(meta) + "\n")


def _prepare_directory(directory: Path, config: ExperimentConfig) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    run_file = directory / "run.json"
    if run_file.exists():
        state = json.loads(run_file.read_text())
        state["config"].setdefault("schedule", None)  # runs recorded before schedules existed
        stored = dict(state["config"])
        current = config.to_dict()
        stored.pop("models", None)
        current.pop("models", None)
        if stored != current:
            diff = sorted(k for k in current if stored.get(k) != current[k])
            raise ExperimentError(f"{directory} holds a different experiment (settings differ in {diff}); "
                                  "use another --out or the same settings")
        state["config"]["models"] = max(state["config"].get("models", 0), config.models)
    else:
        state = {"config": config.to_dict(), "sessions": []}
    curves = directory / "curves.csv"
    if not curves.exists() or curves.stat().st_size == 0:
        curves.write_text(",".join(CURVE_COLUMNS) + "\n")
    return state


def _save_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / "run.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(directory / "run.json")


# --------------------------------------------------------------------------- runner


@dataclass
class ExperimentSummary:
    trained: int
    skipped: int
    failed: int
    wall_s: float
    directory: Path


def run_experiment(config: ExperimentConfig, directory: str | os.PathLike, *, workers: int = 1, threads: int = 1,
                   device: str = "cpu", progress: bool = True,
                   on_model: Callable[[ModelRecord], None] | None = None) -> ExperimentSummary:
    """Train the models of `config` not yet in `directory`, appending each as it finishes."""
    if workers < 1:
        raise ExperimentError(f"workers must be at least 1; got {workers}")
    if threads < 1:
        raise ExperimentError(f"threads must be at least 1; got {threads}")
    directory = Path(directory)
    state = _prepare_directory(directory, config)
    done = completed_models(directory, config.iterations)
    todo = [i for i in range(config.models) if model_id_for(config.seed, i) not in done]
    session = {"started": _now(), "workers": workers, "threads": threads, "device": device, "to_train": len(todo)}
    state["sessions"].append(session)
    _save_state(directory, state)

    start = time.perf_counter()
    failed = trained = 0
    bar = _progress_bar(config.models, config.models - len(todo), progress)
    try:
        for record in _records(config, todo, workers, threads, device):
            _write_record(directory, record)
            failed += record.status != "ok"
            trained += 1
            bar.update(1)
            bar.set_postfix_str(f"failed={failed}", refresh=False)
            if on_model is not None:
                on_model(record)
    finally:
        bar.close()
        session["finished"] = _now()
        session["wall_s"] = round(time.perf_counter() - start, 1)
        session["trained"] = trained
        _save_state(directory, state)
    return ExperimentSummary(trained=trained, skipped=config.models - len(todo), failed=failed,
                             wall_s=time.perf_counter() - start, directory=directory)


def _records(config: ExperimentConfig, todo: list[int], workers: int, threads: int,
             device: str) -> Iterable[ModelRecord]:
    if workers == 1 or len(todo) <= 1:
        _init_worker(threads)
        for index in todo:
            yield train_one_model(config, index, device)
        return
    import multiprocessing

    # spawn, not fork: the parent may hold torch threads, which fork does not copy safely
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = [pool.submit(_train_in_worker, config, index, device) for index in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="model", desc="training", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, smoothing=0.1)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
