"""Generated populations of validation curves, for judging stopping policies where the truth is known.

Real NAS populations mix networks that learn at very different speeds, networks that never
learn, late bloomers (flat at chance for a few epochs, then learning: the paper's open
problem), curves that rise, collapse to chance and bloom later, networks that overfit after a
peak, and noisy validation sets. Real training also follows a learning-rate schedule: after
each step drop a curve jumps to a higher plateau (the gap it closes differs per network),
cosine annealing lifts the plateau as the rate falls, warm-up slows the start, and a high rate
keeps the plateau noisy until it drops. Each is a knob here so a policy can be tested against
the cases it must not get wrong. Generation is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peng4nn import defaults
from peng4nn.replay import RecordedCurve
from peng4nn.schedule import LRSchedule

__all__ = ["KINDS", "PopulationSpec", "POPULATIONS", "generate_population", "learning_curve", "write_csv"]


@dataclass(frozen=True)
class PopulationSpec:
    """Mixture of curve kinds: fractions of never-learners, late bloomers, overfitters and collapsing curves (which
    learn, then diverge back to chance); the rest are ordinary learners."""

    n_models: int = 200
    num_classes: int = 10
    e_max: float = defaults.E_MAX
    E: float = defaults.E
    never_learn: float = 0.10
    late_bloom: float = 0.05
    overfit: float = 0.10
    collapse: float = 0.0
    noisy: float = 0.10
    #: Final accuracies of learners are drawn uniformly from this range (points).
    final_range: tuple[float, float] = (40.0, 90.0)
    #: Learning rates (per epoch) are log-uniform in this range: small rates make curves cross.
    rate_range: tuple[float, float] = (0.2, 2.0)
    #: Validation noise (points, standard deviation) of ordinary and of noisy curves.
    noise: tuple[float, float] = (0.2, 0.8)
    noisy_noise: tuple[float, float] = (1.5, 3.0)
    #: Epoch range in which late bloomers start learning.
    bloom_range: tuple[float, float] = (2.0, 8.0)
    #: Fraction of curves that rise above chance, collapse back to it within the first epochs, then bloom.
    collapse_bloom: float = 0.0
    #: Learning-rate schedule every network trains with (None: constant).
    schedule: LRSchedule | None = None
    #: Points below the final accuracy a network's plateau sits while the rate is at its peak; the schedule's
    #: drops close the gap (per network, uniform in this range).
    schedule_gap: tuple[float, float] = (1.0, 8.0)
    #: Validation noise shrinks with the rate: at the peak rate it is this many times the noise at the end.
    peak_noise_factor: float = 1.0
    #: Accuracy at the first point of ordinary learners, as a fraction of the way from chance to their final.
    start_fraction: tuple[float, float] = (0.0, 0.5)


#: Named populations used by tests and bench/adaptive_frontier.py.
POPULATIONS: dict[str, PopulationSpec] = {
    "mixed": PopulationSpec(),
    "crossing": PopulationSpec(rate_range=(0.08, 1.5), final_range=(55.0, 85.0), overfit=0.05),
    "bloomers": PopulationSpec(never_learn=0.15, late_bloom=0.15, bloom_range=(1.5, 6.0)),
    "noisy": PopulationSpec(noisy=0.5, final_range=(60.0, 80.0)),
    "tight-top": PopulationSpec(final_range=(85.0, 99.0), rate_range=(0.5, 3.0), never_learn=0.2),
    # Shaped after real random-CNN searches on small data: many never learn, some collapse.
    "nas-like": PopulationSpec(
        never_learn=0.35, late_bloom=0.05, overfit=0.10, collapse=0.05, final_range=(50.0, 98.0), rate_range=(0.15, 3.0)
    ),
    # Real training's schedules (issue: estimates that hold on real NAS training).
    "step": PopulationSpec(
        E=1.0, never_learn=0.05, late_bloom=0.02, final_range=(65.0, 93.0), rate_range=(0.3, 2.0),
        schedule=LRSchedule(kind="step", milestones=(10.0, 15.0), gamma=0.1), schedule_gap=(1.0, 8.0),
        peak_noise_factor=2.0,
    ),
    "step3-tight": PopulationSpec(
        E=1.0, never_learn=0.0, late_bloom=0.0, overfit=0.05, final_range=(80.0, 95.5), rate_range=(0.4, 3.0),
        schedule=LRSchedule(kind="step", milestones=(5.0, 10.0, 15.0), gamma=0.2), schedule_gap=(0.5, 5.0),
        start_fraction=(0.2, 0.8),
    ),
    "cosine": PopulationSpec(
        never_learn=0.10, late_bloom=0.05, final_range=(55.0, 92.0), rate_range=(0.2, 1.5),
        schedule=LRSchedule(kind="cosine", warmup_epochs=1.0), schedule_gap=(2.0, 10.0), peak_noise_factor=2.0,
    ),
    "step-bloomers": PopulationSpec(
        never_learn=0.15, late_bloom=0.10, collapse_bloom=0.10, bloom_range=(1.5, 6.0), noisy=0.3,
        schedule=LRSchedule(kind="step", milestones=(8.0, 14.0), gamma=0.1), schedule_gap=(1.0, 6.0),
        peak_noise_factor=2.0,
    ),
    # Deep networks on a hard task: one point per epoch, near 0 at the start, a long step schedule.
    "long-hard": PopulationSpec(
        n_models=150, num_classes=200, E=1.0, e_max=100.0, never_learn=0.05, late_bloom=0.05, overfit=0.05,
        final_range=(20.0, 60.0), rate_range=(0.03, 0.3), bloom_range=(3.0, 15.0), start_fraction=(0.0, 0.05),
        schedule=LRSchedule(kind="step", milestones=(50.0, 75.0), gamma=0.1), schedule_gap=(3.0, 12.0),
        peak_noise_factor=1.5,
    ),
}


#: Curve kinds in the order of the mixture; a generated model_id ends with its kind ("m0007-bloomer").
KINDS = ("learner", "never", "bloomer", "overfit", "collapse", "dipbloomer")


def learning_curve(epochs: np.ndarray, start: float, final: float, rate: float, onset: float = 0.0) -> np.ndarray:
    """Noise-free curve: `start` until `onset`, then exponential approach to `final` at `rate` per epoch."""
    t = np.maximum(epochs - onset, 0.0)
    return final - (final - start) * np.exp(-rate * t)


def _scheduled(clean: np.ndarray, epochs: np.ndarray, spec: PopulationSpec, rates: np.ndarray, gap: float,
               onset: float) -> np.ndarray:
    """The curve under the schedule: its plateau sits `gap` points low while the rate is at its peak and rises
    as the rate falls (a step drop lifts it within about an epoch, annealing lifts it gradually)."""
    relative = rates / rates.max()
    # Rate-limited part of the gap: what is left of it follows the rate with about an epoch of lag.
    target = gap * np.sqrt(relative)
    lagged = np.empty_like(target)
    level = target[0]
    keep = np.exp(-2.0 * spec.E)
    for j, t in enumerate(target):
        level = t + (level - t) * keep if t < level else t
        lagged[j] = level
    learning = np.clip((epochs - onset) / 2.0, 0.0, 1.0)  # no gap before the curve learns at all
    return clean - lagged * learning


def generate_population(spec: PopulationSpec, seed: int = 0) -> list[RecordedCurve]:
    """`spec.n_models` curves in arrival order, E-spaced up to e_max, accuracy clipped to [0, 100], with the
    learning rate of each point when the spec has a schedule."""
    rng = np.random.default_rng(seed)
    epochs = spec.E * np.arange(1, int(round(spec.e_max / spec.E)) + 1)
    chance = 100.0 / spec.num_classes
    schedule = spec.schedule.bound(spec.e_max) if spec.schedule is not None else None
    factors = np.array([schedule.rate_at(e) for e in epochs]) if schedule is not None else None
    fractions = [spec.never_learn, spec.late_bloom, spec.overfit, spec.collapse, spec.collapse_bloom]
    kinds = rng.choice(6, size=spec.n_models, p=[1 - sum(fractions), *fractions])
    curves = []
    for i, kind in enumerate(kinds):
        final = rng.uniform(*spec.final_range)
        rate = float(np.exp(rng.uniform(*np.log(spec.rate_range))))
        start = chance + rng.uniform(*spec.start_fraction) * (final - chance)
        sigma = rng.uniform(*(spec.noisy_noise if rng.random() < spec.noisy else spec.noise))
        onset = epochs[0]
        if kind == 1:  # never learns
            clean = np.full_like(epochs, chance)
        elif kind == 2:  # late bloomer
            onset = rng.uniform(*spec.bloom_range)
            clean = learning_curve(epochs, chance, final, max(rate, 0.5), onset=onset)
        elif kind == 5:  # rises above chance, collapses back to it, blooms later
            onset = rng.uniform(*spec.bloom_range)
            clean = learning_curve(epochs, chance, final, max(rate, 0.5), onset=onset)
            bump = rng.uniform(8.0, 25.0) * np.exp(-((epochs - epochs[0]) / max(spec.E, 0.5)) ** 2)
            clean = np.where(epochs < onset, clean + bump, clean)
        else:
            clean = learning_curve(epochs, start, final, rate, onset=epochs[0])
            if kind == 3:  # overfits after a peak
                peak = rng.uniform(3.0, 10.0)
                clean = clean - rng.uniform(0.2, 1.0) * np.maximum(epochs - peak, 0.0)
            elif kind == 4:  # diverges: back to chance within a few epochs of a peak
                peak = rng.uniform(2.0, 10.0)
                clean = np.where(epochs <= peak, clean, np.maximum(clean - 20.0 * (epochs - peak), chance))
        noise = np.full_like(epochs, sigma)
        lrs = None
        if factors is not None:
            if kind != 1:
                clean = _scheduled(clean, epochs, spec, factors, rng.uniform(*spec.schedule_gap), onset)
            noise = sigma * (1.0 + (spec.peak_noise_factor - 1.0) * np.sqrt(factors / factors.max()))
            lrs = np.round(float(np.exp(rng.uniform(np.log(1e-3), np.log(1e-1)))) * factors, 10)
        acc = np.clip(clean + rng.normal(0.0, 1.0, len(epochs)) * noise, 0.0, 100.0)
        model_id = f"m{i:04d}-{KINDS[kind]}"
        curves.append(RecordedCurve(model_id, epochs.copy(), np.round(acc, 3), None, None, first_line=0, lr=lrs))
    return curves


def write_csv(curves: list[RecordedCurve], path) -> None:
    """Write curves in the replay format (model_id,epoch,val_acc, and lr when the curves have rates)."""
    with_lr = any(c.lr is not None for c in curves)
    with open(path, "w", encoding="utf-8") as out:
        out.write("model_id,epoch,val_acc,lr\n" if with_lr else "model_id,epoch,val_acc\n")
        for c in curves:
            for j, (e, a) in enumerate(zip(c.epochs, c.val_acc)):
                rate = f",{c.lr[j]:g}" if with_lr else ""
                out.write(f"{c.model_id},{e:g},{a:g}{rate}\n")
