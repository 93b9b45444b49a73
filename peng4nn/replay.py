"""Replay recorded validation curves through a stopping policy, as if the models were training now.

A recorded curve is a model's full validation history (a CSV row per validation point).
Replay feeds each model's points to a fresh policy one at a time, stops where the policy
says stop, and records what the engine would have reported, alongside the MENNDL
baseline's stop epoch and the ground truth (the best accuracy up to e_max).

Models are replayed one after another in file order, each fully before the next: a
population-aware policy (one that shares state across models, such as an Optuna pruner)
only ever sees models that came before, exactly as in a live search.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from peng4nn import defaults, metrics
from peng4nn.analyzer import EPOCH_TOLERANCE, Decision, EstimatorSettings, Reason, StoppingPolicy
from peng4nn.curve import MIN_POINTS
from peng4nn.network_info import NetworkInfo
from peng4nn.policies import DEFAULT_SEARCH_POLICY, make_policy_factory
from peng4nn.schedule import RateSchedule, TabulatedSchedule

__all__ = [
    "REQUIRED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "CurveFileError",
    "ReplayError",
    "RecordedCurve",
    "ModelOutcome",
    "PolicyFactory",
    "read_curves",
    "infer_epoch_step",
    "longest_run",
    "read_network_info",
    "baseline_monitor",
    "policy_factory",
    "replay",
]

#: Columns every curves file must have; extra columns are ignored.
REQUIRED_COLUMNS = ("model_id", "epoch", "val_acc")
#: Columns used when present: losses feed the LOSS check and the MENNDL baseline; lr is the learning rate
#: of each point (the network's schedule, known to a NAS in advance). A column empty in every row is absent.
OPTIONAL_COLUMNS = ("val_loss", "train_loss", "lr")
#: Columns of a `--models` side file (besides model_id): what a NAS knows of each network.
NETWORK_COLUMNS = ("num_params", "depth", "initial_lr")


class CurveFileError(ValueError):
    """A curves file cannot be replayed; names the file, the line (1 = header) and the model."""

    def __init__(self, path: str | Path, line: int | None, model: str | None, message: str):
        self.path = str(path)
        self.line = line
        self.model = model
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        who = f" model {model!r}:" if model is not None else ""
        super().__init__(f"{where}:{who} {message}")


class ReplayError(ValueError):
    """A policy refused a recorded point mid-replay; names the model, the point's line and epoch."""

    def __init__(self, model: str, line: int, epoch: float, message: str):
        self.model, self.line, self.epoch, self.message = model, line, epoch, message
        super().__init__(f"line {line}: model {model!r}: at epoch {epoch:g}: {message}")


@dataclass(frozen=True, eq=False)
class RecordedCurve:
    """One model's recorded validation curve, in epoch order."""

    model_id: str
    epochs: np.ndarray
    val_acc: np.ndarray
    val_loss: np.ndarray | None
    train_loss: np.ndarray | None
    #: Line of the file where this model's first row is (1 = the header).
    first_line: int = 0
    #: Line of each point, when read from a file.
    lines: tuple[int, ...] | None = None
    #: What `read_curves` did to the file's values that the user should hear about (the same on every curve).
    file_notes: tuple[str, ...] = ()
    #: The learning rate of each point (the `lr` column), when recorded.
    lr: np.ndarray | None = None
    #: The schedule every network of the file follows (`--lr-schedule`), when the file has no lr column.
    given_schedule: RateSchedule | None = None
    #: What the NAS knew of this network (a `--models` side file), when given.
    network: NetworkInfo | None = None

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def schedule(self) -> RateSchedule | None:
        """The network's learning-rate schedule, known in advance: the lr column read as one (a NAS sets the
        rate of every epoch before training), or the file's --lr-schedule."""
        if self.lr is not None:
            return TabulatedSchedule(self.epochs, self.lr)
        return self.given_schedule

    def point(self, i: int) -> tuple[float, float, float | None, float | None, float | None]:
        """The i-th point as the arguments of `StoppingPolicy.observe`."""
        return (
            float(self.epochs[i]),
            float(self.val_acc[i]),
            None if self.val_loss is None else float(self.val_loss[i]),
            None if self.train_loss is None else float(self.train_loss[i]),
            None if self.lr is None else float(self.lr[i]),
        )

    def line_of(self, i: int) -> int:
        """File line of the i-th point (the model's first line when unknown)."""
        return self.lines[i] if self.lines is not None else self.first_line

    def best_accuracy(self, e_max: float) -> float:
        """Ground truth: the highest validation accuracy recorded up to e_max."""
        upto = self.epochs <= e_max + EPOCH_TOLERANCE
        return float(np.max(self.val_acc[upto])) if upto.any() else float(self.val_acc[0])


@dataclass(frozen=True, eq=False)
class ModelOutcome:
    """What replay found for one model: the engine's answer, the baseline's stop and the truth."""

    model_id: str
    stop_epoch: float
    estimate: float
    converged: bool
    reason: Reason
    baseline_stop_epoch: float
    actual_max: float
    #: The policy's decision at every point it saw, up to and including the stop (for Fig. 4).
    decisions: tuple[Decision, ...] = ()
    #: The stopping decision's interval for the estimate (None: the policy gives none, or the curve ended).
    interval: tuple[float, float] | None = None

    @property
    def epochs_saved(self) -> float:
        """Fraction of the baseline's epochs the engine did not train (negative if it trained longer)."""
        return metrics.epochs_saved([self.stop_epoch], [self.baseline_stop_epoch])[0]

    def to_dict(self) -> dict[str, Any]:
        """The per-model entry of `peng4nn replay --json`."""
        return {
            "model_id": self.model_id,
            "stop_epoch": self.stop_epoch,
            "estimate": self.estimate,
            "converged": self.converged,
            "baseline_stop_epoch": self.baseline_stop_epoch,
            "actual_max": self.actual_max,
            "interval": list(self.interval) if self.interval is not None else None,
        }


PolicyFactory = Callable[[RecordedCurve], StoppingPolicy]


# --------------------------------------------------------------------------- reading


def _number(raw: str | None, column: str, path, line: int, model: str | None) -> float:
    if raw is None or raw.strip() == "":
        raise CurveFileError(path, line, model, f"{column} is missing")
    try:
        value = float(raw)
    except ValueError:
        raise CurveFileError(path, line, model, f"{column} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise CurveFileError(path, line, model, f"{column} must be finite; got {raw!r}")
    return value


class _CurveBuilder:
    def __init__(self, model_id: str, first_line: int, columns: Sequence[str]):
        self.model_id = model_id
        self.first_line = first_line
        self.last_line = first_line
        self.values: dict[str, list[float]] = {c: [] for c in columns}
        self.lines: list[int] = []

    def add(self, row: dict[str, float], line: int, path) -> None:
        epochs = self.values["epoch"]
        epoch = row["epoch"]
        if epochs and epoch <= epochs[-1] + EPOCH_TOLERANCE:
            what = "repeats" if abs(epoch - epochs[-1]) <= EPOCH_TOLERANCE else "decreases after"
            raise CurveFileError(path, line, self.model_id, f"epoch {epoch:g} {what} epoch {epochs[-1]:g}; epochs must increase")
        for column, value in row.items():
            self.values[column].append(value)
        self.lines.append(line)
        self.last_line = line

    def build(self) -> RecordedCurve:
        v = self.values
        return RecordedCurve(
            model_id=self.model_id,
            epochs=np.asarray(v["epoch"], dtype=float),
            val_acc=np.asarray(v["val_acc"], dtype=float),
            val_loss=np.asarray(v["val_loss"], dtype=float) if "val_loss" in v else None,
            train_loss=np.asarray(v["train_loss"], dtype=float) if "train_loss" in v else None,
            first_line=self.first_line,
            lines=tuple(self.lines),
            lr=np.asarray(v["lr"], dtype=float) if "lr" in v else None,
        )


#: How rows at epoch 0 are read: "auto" decides per file (below), "drop" skips them as an evaluation before
#: training, "shift" reads them as the end of the first epoch (every epoch of the file moves up one step).
EPOCH_ZERO_MODES = ("auto", "drop", "shift")


def read_curves(path: str | Path, *, c_min: int = MIN_POINTS, epoch_zero: str = "auto",
                chance: float | None = None) -> list[RecordedCurve]:
    """Read and validate a curves CSV; raise `CurveFileError` at the first problem.

    Rules: a header holding model_id, epoch and val_acc (val_loss, train_loss and lr optional,
    other columns ignored; an optional column empty in every row counts as absent, one empty in
    some rows only is an error); every used value a finite number; epoch non-negative and strictly
    increasing within a model; val_acc a percentage in [0, 100]; lr non-negative; one model's rows
    consecutive; at least one model. Blank lines are skipped. A model with fewer than `c_min`
    points (a run that crashed early) is kept: replay ends it at its last point.
    A file whose every val_acc is at most 1 holds fractions (a percent file like that would be a
    search where nothing ever learned): its accuracies are scaled to percent.
    Rows at epoch 0 are either an evaluation before training (dropped) or the end of the first
    epoch of a file that counts from 0 (every epoch shifted up by one step): `epoch_zero` says
    which; "auto" drops them when the models sit together at chance level there (`chance`, in
    percent, when known), as random initialisations do, and shifts otherwise.
    Whatever was applied is said in every curve's `file_notes`, for the caller to tell the user.
    """
    if epoch_zero not in EPOCH_ZERO_MODES:
        raise ValueError(f"epoch_zero must be one of {EPOCH_ZERO_MODES}; got {epoch_zero!r}")
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CurveFileError(path, None, None, f"cannot open: {exc.strerror or exc}") from None
    rows: list[tuple[int, str, float, float, list[str | None]]] = []
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise CurveFileError(path, 1, None, "empty file; expected a header with " + ",".join(REQUIRED_COLUMNS))
            names = [h.strip() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise CurveFileError(
                    path, 1, None, f"missing column(s) {', '.join(missing)}; the header has {', '.join(names) or 'nothing'}"
                )
            index = {c: names.index(c) for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in names}
            optional = [c for c in OPTIONAL_COLUMNS if c in index]
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                model_id = (_field(fields, index["model_id"]) or "").strip()
                if not model_id:
                    raise CurveFileError(path, line, None, "model_id is missing")
                epoch = _number(_field(fields, index["epoch"]), "epoch", path, line, model_id)
                val_acc = _number(_field(fields, index["val_acc"]), "val_acc", path, line, model_id)
                if epoch < 0:
                    raise CurveFileError(path, line, model_id, f"epoch must be positive; got {epoch:g}")
                if not 0.0 <= val_acc <= 100.0:
                    raise CurveFileError(path, line, model_id, f"val_acc must be a percentage in [0, 100]; got {val_acc:g}")
                raws = [_field(fields, index[c]) for c in optional]
                rows.append((line, model_id, epoch, val_acc, [r if r is not None and r.strip() else None for r in raws]))
        except csv.Error as exc:
            raise CurveFileError(path, reader.line_num, None, f"malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise CurveFileError(path, None, None, f"not UTF-8 text: {exc.reason}") from None
    if not rows:
        raise CurveFileError(path, 2, None, "no data rows after the header")
    notes = []

    # Optional columns: absent when empty everywhere, numbers everywhere otherwise.
    used = []
    for j, column in enumerate(optional):
        if all(r[4][j] is None for r in rows):
            notes.append(f"column {column} is empty in every row: read as absent")
            continue
        used.append((j, column))
    values: list[dict[str, float]] = []
    for line, model_id, epoch, val_acc, raws in rows:
        row = {"epoch": epoch, "val_acc": val_acc}
        for j, column in used:
            row[column] = _number(raws[j], column, path, line, model_id)
            if column == "lr" and row[column] < 0:
                raise CurveFileError(path, line, model_id, f"lr must not be negative; got {row[column]:g}")
        values.append(row)

    if max(r["val_acc"] for r in values) <= 1.0:
        for r in values:
            r["val_acc"] *= 100.0
        notes.append(FRACTION_NOTE)

    zero = [i for i, r in enumerate(values) if r["epoch"] == 0]
    if zero:
        mode = epoch_zero if epoch_zero != "auto" else _epoch_zero_mode([values[i]["val_acc"] for i in zero], chance)
        if mode == "drop":
            keep = set(range(len(values))) - set(zero)
            notes.append(f"{len(zero)} row(s) at epoch 0 dropped as an evaluation before training"
                         + (" (the models sit together at chance level there)" if epoch_zero == "auto" else "")
                         + "; --epoch-zero shift reads them as the end of the first epoch instead")
        else:
            step = _first_step(rows, values)
            for r in values:
                r["epoch"] += step
            keep = set(range(len(values)))
            notes.append(f"epochs count from 0: every epoch shifted up by {step:g}, so epoch 0 is the end of the "
                         "first training step" + (" (accuracy there is already above chance)" if epoch_zero == "auto"
                                                   else "") + "; --epoch-zero drop skips those rows instead")
        rows = [rows[i] for i in sorted(keep)]
        values = [values[i] for i in sorted(keep)]
        if not rows:
            raise CurveFileError(path, 2, None, "no data rows after the rows at epoch 0")

    columns = ["epoch", "val_acc", *(c for _, c in used)]
    curves: list[RecordedCurve] = []
    seen: dict[str, int] = {}
    current: _CurveBuilder | None = None
    for (line, model_id, *_), row in zip(rows, values):
        if current is None or model_id != current.model_id:
            if model_id in seen:
                raise CurveFileError(
                    path, line, model_id,
                    f"rows of one model must be consecutive; this model's earlier rows end at line {seen[model_id]}",
                )
            if current is not None:
                curves.append(current.build())
                seen[current.model_id] = current.last_line
            current = _CurveBuilder(model_id, line, columns)
        current.add(row, line, path)
    curves.append(current.build())
    short = [c.model_id for c in curves if len(c) < c_min]
    if short:
        notes.append(f"{len(short)} model(s) with fewer than c_min={c_min} points (first: {short[0]!r}): too few "
                     "to fit, each ends at its last point with the best accuracy it showed (curve_ended)")
    if notes:
        curves = [replace(c, file_notes=tuple(notes)) for c in curves]
    return curves


#: At a random initialisation every model scores about chance: their median within this many points of it,
#: and half of them within this many points of each other.
_INIT_SPREAD = 3.0


def _epoch_zero_mode(accs: list[float], chance: float | None) -> str:
    """"drop" when the rows at epoch 0 look like random initialisations, else "shift"."""
    median = statistics.median(accs)
    q = statistics.quantiles(accs, n=4) if len(accs) >= 2 else [median, median, median]
    together = q[2] - q[0] <= _INIT_SPREAD
    at_chance = chance is None or median <= chance + _INIT_SPREAD
    return "drop" if together and at_chance else "shift"


def _first_step(rows, values) -> float:
    """The spacing after epoch 0 (the file's E), from the first model that has a second row."""
    for i in range(len(rows) - 1):
        if values[i]["epoch"] == 0 and rows[i + 1][1] == rows[i][1]:
            return float(values[i + 1]["epoch"])
    return 1.0


def read_network_info(path: str | Path) -> dict[str, NetworkInfo]:
    """A `--models` side file: model_id and any of num_params, depth, initial_lr (empty cells unknown)."""
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise CurveFileError(path, None, None, f"cannot open: {exc.strerror or exc}") from None
    out: dict[str, NetworkInfo] = {}
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader, None) or []]
            if "model_id" not in header:
                raise CurveFileError(path, 1, None, "missing column model_id; the header has "
                                     + (", ".join(header) or "nothing"))
            present = [c for c in NETWORK_COLUMNS if c in header]
            if not present:
                raise CurveFileError(path, 1, None, f"no known column; expected any of {', '.join(NETWORK_COLUMNS)}")
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                model_id = (_field(fields, header.index("model_id")) or "").strip()
                if not model_id:
                    raise CurveFileError(path, line, None, "model_id is missing")
                if model_id in out:
                    raise CurveFileError(path, line, model_id, "model_id repeats")
                data = {}
                for column in present:
                    raw = _field(fields, header.index(column))
                    if raw is not None and raw.strip():
                        data[column] = _number(raw, column, path, line, model_id)
                try:
                    out[model_id] = NetworkInfo(**data)
                except ValueError as exc:
                    err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ("?",), "msg": str(exc)}
                    raise CurveFileError(path, line, model_id,
                                         f"{err['loc'][0]}: {err['msg']}; got {err.get('input')!r}") from None
        except csv.Error as exc:
            raise CurveFileError(path, reader.line_num, None, f"malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise CurveFileError(path, None, None, f"not UTF-8 text: {exc.reason}") from None
    return out


FRACTION_NOTE = "val_acc holds fractions (every value is at most 1): read as percent after multiplying by 100"


def _field(fields: list[str], i: int) -> str | None:
    """The i-th field of a row, None when the row is short."""
    return fields[i] if i < len(fields) else None


def infer_epoch_step(curves: Iterable[RecordedCurve]) -> float:
    """E, the epochs per iteration: the median spacing between consecutive recorded epochs."""
    curves = list(curves)
    steps = np.concatenate([np.diff(c.epochs) for c in curves])
    if not len(steps):  # one point per model: the first epoch is one step
        return float(round(min(float(c.epochs[0]) for c in curves), 9))
    return float(round(statistics.median(steps.tolist()), 9))


def longest_run(curves: Iterable[RecordedCurve], E: float) -> float:
    """e_max when not given: the last epoch of the longest curve, as a whole number of steps of E."""
    last = max(float(c.epochs[-1]) for c in curves)
    return max(E, round(last / E) * E)


def baseline_monitor(curves: Sequence[RecordedCurve]) -> str:
    """The signal MENNDL's rule watches: train_loss if recorded, else val_loss, else val_acc."""
    for column in ("train_loss", "val_loss"):
        if curves and all(getattr(c, column) is not None for c in curves):
            return column
    return "val_acc"


# --------------------------------------------------------------------------- replaying


def policy_factory(
    name: str = DEFAULT_SEARCH_POLICY,
    *,
    estimator: EstimatorSettings | dict | None = None,
    backend: str = defaults.BACKEND,
    num_classes: int | None = None,
    **params: Any,
) -> PolicyFactory:
    """A factory of fresh per-model policies by name (`peng4nn.policies.make_policy_factory`, the one
    registry); bad names or parameters fail here, not mid-replay. One factory is one search."""
    return make_policy_factory(name, estimator=estimator, num_classes=num_classes, backend=backend, **params)


def run_policy(policy: StoppingPolicy, curve: RecordedCurve) -> tuple[Decision | None, list[Decision]]:
    """Feed the curve's points to the policy until it stops or the curve ends; then call finish()."""
    decisions: list[Decision] = []
    try:
        for i in range(len(curve)):
            point = curve.point(i)
            try:
                decision = policy.observe(*point)
            except ValueError as exc:
                raise ReplayError(curve.model_id, curve.line_of(i), point[0], str(exc)) from exc
            decisions.append(decision)
            if decision.stop:
                break
    finally:
        policy.finish()
    return policy.final, decisions


def replay(
    curves: Sequence[RecordedCurve],
    factory: PolicyFactory,
    *,
    e_max: float = defaults.E_MAX,
    monitor: str | None = None,
    baseline_factory: PolicyFactory | None = None,
) -> list[ModelOutcome]:
    """Replay every curve through a fresh policy from `factory`, in order, one model at a time.

    The baseline is MENNDL's rule (at most e_max epochs, stop when the monitored signal has
    not improved for 10 epochs) on `monitor` (default: `baseline_monitor(curves)`). A curve
    that ends before a policy stops ends the model at its last point with reason
    `curve_ended`, estimate = the best accuracy seen.
    """
    if baseline_factory is None:
        watched = monitor or baseline_monitor(curves)
        baseline_factory = policy_factory("menndl", estimator={"e_max": e_max}, monitor=watched)
    outcomes = []
    for curve in curves:
        final, decisions = run_policy(factory(curve), curve)
        base_final, base_decisions = run_policy(baseline_factory(curve), curve)
        last = decisions[-1]
        if final is None:
            stop_epoch, estimate, converged, reason = last.epoch, _best_seen(curve, len(decisions)), False, Reason.CURVE_ENDED
        else:
            stop_epoch, estimate, converged, reason = final.epoch, final.estimate, final.converged, final.reason
            if estimate is None:  # a stopping decision always carries one; guard against a policy that forgets
                estimate = _best_seen(curve, len(decisions))
        baseline_stop = base_final.epoch if base_final is not None else base_decisions[-1].epoch
        outcomes.append(
            ModelOutcome(
                model_id=curve.model_id,
                stop_epoch=float(stop_epoch),
                estimate=float(estimate),
                converged=bool(converged),
                reason=reason,
                baseline_stop_epoch=float(baseline_stop),
                actual_max=curve.best_accuracy(e_max),
                decisions=tuple(decisions),
                interval=final.interval if final is not None else None,
            )
        )
    return outcomes


def _best_seen(curve: RecordedCurve, n_points: int) -> float:
    return float(np.max(curve.val_acc[:n_points]))
