"""Measurement limits on the observables (spec_ch5-6 B.7.5): additive noise, then unit subsampling.

Follows lr-identify's `obfuscate_tensor`: white Gaussian noise of a fixed standard deviation is
added independently to every entry of the measured matrix, and then a random fraction of its
units is kept (⌈fraction · n⌉, at least one). Units are chosen once per run, layer and seed, so
the same "electrode" records every checkpoint; the activity change draws its output units with
seed + 1 and its input units with seed, as a recording would not sample the same cells on both
sides. Kept units stay in their original order, so a fraction of 1 and no noise reproduce the
clean matrix exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["CLEAN", "Measurement", "measurements", "unit_index", "degrade"]


@dataclass(frozen=True)
class Measurement:
    """One measurement condition.

    Attributes
    ----------
    fraction : float
        Share of units kept, in (0, 1].
    noise : float
        Standard deviation of the additive Gaussian noise (≥ 0), in the measure's own units.
    draw : int
        Which random draw of units and noise (seeds differ per draw).
    """

    fraction: float = 1.0
    noise: float = 0.0
    draw: int = 0

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise ValueError(f"unit fraction must be in (0, 1]; got {self.fraction!r}")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise ValueError(f"noise must be a finite number ≥ 0; got {self.noise!r}")

    @property
    def is_clean(self) -> bool:
        return self.fraction == 1 and self.noise == 0


CLEAN = Measurement()


def measurements(fractions, noise, draws) -> list[Measurement]:
    """The Cartesian product of unit fractions and noise levels, `draws[i]` draws for
    `fractions[i]` (spec B.7.5: more draws for the smallest fractions); the clean condition
    is left out (it is always measured)."""
    if len(draws) != len(fractions):
        raise ValueError(f"units.draws must give one count per fraction ({len(fractions)}); "
                         f"got {len(draws)}")
    out = [Measurement(float(f), float(s), d) for f, n in zip(fractions, draws)
           for s in noise for d in range(n)]
    return [m for m in out if not m.is_clean]


def unit_index(n_units: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the ⌈fraction · n_units⌉ units a seeded permutation keeps."""
    keep = max(1, math.ceil(fraction * n_units))
    if keep >= n_units:
        return np.arange(n_units)
    order = np.random.default_rng(seed).permutation(n_units)
    return np.sort(order[:keep])


def degrade(matrix: torch.Tensor, measurement: Measurement, *, seed: int,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise added to every entry of `matrix` (rows, units), then the kept units' columns.

    Parameters
    ----------
    matrix : torch.Tensor
        (rows, units): examples × units, or one row of flattened weights.
    measurement : Measurement
    seed : int
        Seed of the unit choice (`unit_index`).
    generator : torch.Generator, optional
        Draws the noise (needed when measurement.noise > 0), on the CPU.
    """
    if measurement.noise > 0:
        if generator is None:
            raise ValueError("degrade: a noise generator is needed for noise > 0")
        noise = torch.randn(matrix.shape, generator=generator, dtype=matrix.dtype)
        matrix = matrix + measurement.noise * noise.to(matrix.device)
    index = unit_index(matrix.shape[1], measurement.fraction, seed)
    if len(index) == matrix.shape[1]:
        return matrix
    return matrix[:, torch.from_numpy(index).to(matrix.device)]
