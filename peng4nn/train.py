"""The train-validate-decide loop of the paper's Fig. 2 for one architecture.

Each iteration trains E epochs (whole batches drawn from a device-side index
permutation), validates under ``torch.inference_mode()``, hands the point to
the stopping policy and emits one ``IterationEvent``. The policy's ``Decision``
is the only stopping rule here: the trainer never re-derives convergence.

Failures a NAS must survive end the run with a reason instead of raising:
a NaN/inf loss is "diverged" (scored as never-learn), CUDA out-of-memory is
"out_of_memory" (memory freed; CUDA's OutOfMemoryError or the CPU allocator's failure), ``should_stop()`` returning true is "cancelled".
"""

from __future__ import annotations

import gc
import math
import os
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from peng4nn.analyzer import EPOCH_TOLERANCE, Reason, StoppingPolicy
from peng4nn.datasets import DatasetTensors, load_dataset
from peng4nn.model import build_model
from peng4nn.policies import make_policy
from peng4nn.results import IterationEvent, TrainResult
from peng4nn.spec import ArchSpec, SpecLimits, analyze_spec, check_schedule, network_info

MIN_EVAL_BATCH = 1024
"""Validation needs no gradients, so it runs in batches at least this large (fewer kernel launches)."""


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_optimizer(params, training) -> torch.optim.Optimizer:
    """The spec's optimizer; unknown names are rejected by the spec schema already."""
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum, dampening=training.dampening,
                               nesterov=training.nesterov, weight_decay=training.weight_decay)
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, betas=training.betas, weight_decay=training.weight_decay)
    if training.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=training.lr, betas=training.betas, weight_decay=training.weight_decay)
    raise ValueError(f"unknown optimizer {training.optimizer!r}; allowed: sgd, adam, adamw")


class BatchOrder:
    """Index batches from successive ``randperm`` epochs, drawn on the data's device.

    One iteration takes ``steps`` whole batches; with E = 0.5 two iterations
    consume exactly one permutation (one epoch).
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device: torch.device):
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self._perm = torch.empty(0, dtype=torch.long, device=device)
        self._pos = 0

    def take(self, steps: int) -> torch.Tensor:
        need = steps * self.batch_size
        chunks = []
        while need > 0:
            if self._pos >= len(self._perm):
                self._perm = torch.randperm(self.n, generator=self.generator, device=self.device)
                self._pos = 0
            chunk = self._perm[self._pos:self._pos + need]
            self._pos += len(chunk)
            need -= len(chunk)
            chunks.append(chunk)
        order = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return order.view(steps, self.batch_size)


def train_iteration(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    batches: torch.Tensor, label_smoothing: float, autocast) -> float:
    """Train on each row of ``batches`` (indices); return the mean loss (NaN/inf if it diverged).

    The running loss stays on the device: one host sync per iteration, not per step.
    """
    model.train()
    total = torch.zeros((), device=x.device)
    for idx in batches:
        with autocast():
            loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().float()
    return float(total) / len(batches)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, autocast) -> tuple[float, float]:
    """(accuracy in percent, mean cross-entropy) on the validation tensors."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    loss_sum = torch.zeros((), device=x.device)
    for start in range(0, len(x), batch_size):
        with autocast():
            logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum")
        correct += (logits.argmax(dim=1) == target).sum()
    n = max(len(x), 1)
    return 100.0 * int(correct) / n, float(loss_sum) / n


def _is_cpu_oom(exc: RuntimeError) -> bool:
    """The CPU allocator reports exhaustion as a plain RuntimeError (CUDA raises OutOfMemoryError)."""
    return "can't allocate memory" in str(exc) or "not enough memory" in str(exc)


def _autocast_for(device: torch.device):
    """bf16 autocast on CUDA (tensor cores); plain fp32 elsewhere."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext


def train_and_estimate(
    spec: ArchSpec | dict,
    dataset: str | os.PathLike | DatasetTensors,
    *,
    policy: StoppingPolicy | None = None,
    device: str | torch.device | None = None,
    e_max: float | None = None,
    shadow: bool = False,
    on_iteration: Callable[[IterationEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_root: str | os.PathLike | None = None,
    download: bool = False,
    val_fraction: float | None = None,
    limits: SpecLimits | None = None,
) -> TrainResult:
    """Train ``spec`` on ``dataset`` until the policy stops it (or e_max); see the module docstring.

    ``policy`` defaults to ``make_policy("paper", num_classes=...)`` (with ``e_max`` if given);
    E comes from the policy. Raises ``SpecError`` / dataset errors for bad input, before training.
    """
    spec = ArchSpec.parse(spec)
    device = torch.device(device) if device is not None else default_device()
    if isinstance(dataset, DatasetTensors):
        info = dataset.info
    else:
        from peng4nn.datasets import dataset_info

        info = dataset_info(dataset)
    report = analyze_spec(spec, info.input_shape, info.num_classes, limits)  # reject bad specs before loading data
    if policy is None:
        estimator = {"e_max": e_max} if e_max is not None else None
        policy = make_policy("paper", estimator=estimator, num_classes=info.num_classes)
    E = policy.E
    run_e_max = float(e_max) if e_max is not None else float(policy.e_max)
    training = spec.training
    check_schedule(spec, run_e_max)
    if training.schedule is not None and policy.schedule is None:
        policy.schedule = training.schedule.bound(run_e_max)  # the engine sees the drops coming
    if policy.network is None:
        policy.network = network_info(spec, report)

    if isinstance(dataset, DatasetTensors):
        data = dataset
        if abs(data.E - E) > EPOCH_TOLERANCE or data.batch_size != training.batch_size:
            raise ValueError(f"dataset tensors were truncated for E={data.E}, batch_size={data.batch_size}; "
                             f"this run needs E={E}, batch_size={training.batch_size}")
        device = data.device
    else:
        data = load_dataset(dataset, device=device, E=E, batch_size=training.batch_size, data_root=data_root,
                            download=download, val_fraction=val_fraction)

    run = _Run(spec, data, policy, device)
    try:
        return run.execute(run_e_max, shadow, on_iteration, should_stop)
    finally:
        run.release()


class _Run:
    """State of one training run; ``release`` drops every tensor it holds."""

    def __init__(self, spec: ArchSpec, data: DatasetTensors, policy: StoppingPolicy, device: torch.device):
        self.spec = spec
        self.device = device
        self.data = data
        self.policy = policy
        self.training = spec.training
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.autocast = _autocast_for(device)
        self.eval_batch = max(MIN_EVAL_BATCH, data.batch_size)

    def _setup(self) -> None:
        """Build the model on the device (inside the OOM guard: a huge model fails here)."""
        info = self.data.info
        torch.manual_seed(self.training.seed)
        model = build_model(self.spec, info.input_shape, info.num_classes, SpecLimits(
            max_params=None, max_flops=None, max_layers=None, max_batch_size=None))  # limits checked already
        model = model.to(self.device)
        if self.data.x_train.ndim == 4:
            # channels_last: ~25% less time per step for the CPU preset's random CNNs (max pooling
            # alone is ~6x faster); on CUDA it is what tensor-core convolutions want.
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = make_optimizer(model.parameters(), self.training)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.training.seed)
        self.order = BatchOrder(len(self.data.x_train), self.data.batch_size, generator, self.device)

    def release(self, collect: bool = False) -> None:
        """Drop the model, optimizer state and data; ``collect`` also runs the cycle collector
        (after OOM: ~0.3 s, too slow to pay per model otherwise) before CUDA's cache is emptied."""
        self.model = self.optimizer = self.data = None
        if collect:
            gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def execute(self, e_max: float, shadow: bool, on_iteration, should_stop) -> TrainResult:
        E = self.policy.E
        iterations = max(1, int(math.floor(e_max / E + EPOCH_TOLERANCE)))
        events: list[IterationEvent] = []
        ended: tuple[str, float | None] | None = None  # (reason, estimate) for runs that end abnormally
        start = time.perf_counter()
        epoch = 0.0
        oom = False
        try:
            self._setup()
            for iteration in range(1, iterations + 1):
                if should_stop is not None and should_stop():
                    ended = (Reason.CANCELLED.value, None)
                    break
                t0 = time.perf_counter()
                lr = self._apply_schedule(iteration * E, e_max)
                batches = self.order.take(self.data.steps_per_iteration)
                train_loss = train_iteration(self.model, self.optimizer, self.data.x_train, self.data.y_train,
                                             batches, self.training.label_smoothing, self.autocast)
                val_acc, val_loss = evaluate(self.model, self.data.x_val, self.data.y_val, self.eval_batch,
                                             self.autocast)
                if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                    ended = (Reason.DIVERGED.value, self._never_learn_estimate(events))
                    epoch = iteration * E
                    break
                epoch = iteration * E
                t1 = time.perf_counter()
                decision = self.policy.observe(epoch, val_acc, val_loss=val_loss, train_loss=train_loss, lr=lr)
                t2 = time.perf_counter()
                event = IterationEvent(iteration, epoch, train_loss, val_acc, val_loss, decision,
                                       elapsed_s=t2 - start, engine_s=t2 - t1, iteration_s=t2 - t0, lr=lr)
                events.append(event)
                if on_iteration is not None:
                    on_iteration(event)
                if decision.stop and not shadow:
                    break
        except torch.OutOfMemoryError:
            oom = True  # handled below, once the traceback (and the tensors it pins) is gone
        except RuntimeError as exc:
            if not _is_cpu_oom(exc):
                raise
            oom = True
        if oom:
            self.release(collect=True)
            ended = (Reason.OUT_OF_MEMORY.value, None)
            epoch = events[-1].epoch if events else 0.0
        return self._result(events, ended, epoch, shadow, time.perf_counter() - start)

    def _apply_schedule(self, epoch: float, e_max: float) -> float:
        """Set the rate for the iteration that ends at `epoch` (constant within an iteration) and return it."""
        schedule = self.training.schedule
        lr = self.training.lr * (schedule.factor_at(epoch, e_max) if schedule is not None else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _never_learn_estimate(self, events: list[IterationEvent]) -> float:
        """A diverged model scores its best accuracy so far, or chance if it never validated."""
        if events:
            return max(e.val_acc for e in events)
        return 100.0 / self.data.info.num_classes

    def _result(self, events, ended, epoch, shadow, wall_s) -> TrainResult:
        best = max((e.val_acc for e in events), default=None)
        final = self.policy.final
        result = TrainResult(estimate=None, converged=False, stop_epoch=epoch, epochs_trained=epoch,
                             reason=Reason.MAX_EPOCHS.value, best_val_acc=best,
                             final_val_acc=events[-1].val_acc if events else None, device=str(self.device),
                             wall_s=wall_s, events=events)
        if shadow and final is not None:
            result.shadow_stop_epoch = final.epoch
            result.shadow_estimate = final.estimate
            result.shadow_converged = final.converged
            result.shadow_reason = final.reason.value
            result.shadow_interval = list(final.interval) if final.interval is not None else None
        if ended is not None:
            result.reason, result.estimate = ended
        elif final is not None and not shadow:
            result.estimate, result.converged, result.reason = final.estimate, final.converged, final.reason.value
            result.stop_epoch = final.epoch
            result.interval = list(final.interval) if final.interval is not None else None
        else:  # reached e_max (always, in shadow mode): the paper's answer there is the best accuracy seen
            result.estimate = best
        return result
