"""Generated populations of validation curves, for judging stopping policies where the truth is known.

Real NAS populations mix networks that learn at very different speeds, networks that never
learn, late bloomers (flat at chance for a few epochs, then learning: the paper's open
problem), networks that overfit after a peak, and noisy validation sets. Each kind is a
knob here so a policy can be tested against the cases it must not get wrong. Generation is
deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peng4nn.replay import RecordedCurve

__all__ = ["KINDS", "PopulationSpec", "POPULATIONS", "generate_population", "learning_curve", "write_csv"]


@dataclass(frozen=True)
class PopulationSpec:
    """Mixture of curve kinds: fractions of never-learners, late bloomers, overfitters and collapsing curves (which
    learn, then diverge back to chance); the rest are ordinary learners."""

    n_models: int = 200
    num_classes: int = 10
    e_max: float = 20.0
    E: float = 0.5
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
}


#: Curve kinds in the order of the mixture; a generated model_id ends with its kind ("m0007-bloomer").
KINDS = ("learner", "never", "bloomer", "overfit", "collapse")


def learning_curve(epochs: np.ndarray, start: float, final: float, rate: float, onset: float = 0.0) -> np.ndarray:
    """Noise-free curve: `start` until `onset`, then exponential approach to `final` at `rate` per epoch."""
    t = np.maximum(epochs - onset, 0.0)
    return final - (final - start) * np.exp(-rate * t)


def generate_population(spec: PopulationSpec, seed: int = 0) -> list[RecordedCurve]:
    """`spec.n_models` curves in arrival order, E-spaced up to e_max, accuracy clipped to [0, 100]."""
    rng = np.random.default_rng(seed)
    epochs = spec.E * np.arange(1, int(round(spec.e_max / spec.E)) + 1)
    chance = 100.0 / spec.num_classes
    fractions = [spec.never_learn, spec.late_bloom, spec.overfit, spec.collapse]
    kinds = rng.choice(5, size=spec.n_models, p=[1 - sum(fractions), *fractions])
    curves = []
    for i, kind in enumerate(kinds):
        final = rng.uniform(*spec.final_range)
        rate = float(np.exp(rng.uniform(*np.log(spec.rate_range))))
        start = chance + rng.uniform(0.0, 0.5) * (final - chance)
        sigma = rng.uniform(*(spec.noisy_noise if rng.random() < spec.noisy else spec.noise))
        if kind == 1:  # never learns
            clean = np.full_like(epochs, chance)
        elif kind == 2:  # late bloomer
            clean = learning_curve(epochs, chance, final, max(rate, 0.5), onset=rng.uniform(*spec.bloom_range))
        else:
            clean = learning_curve(epochs, start, final, rate, onset=epochs[0])
            if kind == 3:  # overfits after a peak
                peak = rng.uniform(3.0, 10.0)
                clean = clean - rng.uniform(0.2, 1.0) * np.maximum(epochs - peak, 0.0)
            elif kind == 4:  # diverges: back to chance within a few epochs of a peak
                peak = rng.uniform(2.0, 10.0)
                clean = np.where(epochs <= peak, clean, np.maximum(clean - 20.0 * (epochs - peak), chance))
        acc = np.clip(clean + rng.normal(0.0, sigma, len(epochs)), 0.0, 100.0)
        model_id = f"m{i:04d}-{KINDS[kind]}"
        curves.append(RecordedCurve(model_id, epochs.copy(), np.round(acc, 3), None, None, first_line=0))
    return curves


def write_csv(curves: list[RecordedCurve], path) -> None:
    """Write curves in the replay format (model_id,epoch,val_acc)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write("model_id,epoch,val_acc\n")
        for c in curves:
            for e, a in zip(c.epochs, c.val_acc):
                out.write(f"{c.model_id},{e:g},{a:g}\n")
