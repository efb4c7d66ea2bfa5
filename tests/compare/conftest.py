"""Virtual animals with known noise-free rates for the comparison tests."""

import numpy as np
import pytest
import xarray as xr


def simulate_animals(n_animals=4, units_per_animal=30, n_stimuli=118, n_trials=20, latent_dim=6,
                     noise_sd=1.0, poisson=False, areas=("VISp",), seed=0):
    """Noisy trials of linear-nonlinear readouts of one shared latent per area.

    Returns the NeuralAssembly and the noise-free rates (stimulus, neuroid) aligned with it.
    """
    rng = np.random.default_rng(seed)
    blocks, rates, animal, area, ids = [], [], [], [], []
    for a_i, name in enumerate(areas):
        Z = rng.standard_normal((n_stimuli, latent_dim))
        for k in range(n_animals):
            W = rng.standard_normal((latent_dim, units_per_animal)) / np.sqrt(latent_dim)
            gain = rng.uniform(1.0, 3.0, units_per_animal)
            rate = gain * np.logaddexp(0.0, 1.5 * Z @ W + rng.normal(0, 0.5, units_per_animal))
            if poisson:
                trials = rng.poisson(rate[:, None, :] * np.ones((1, n_trials, 1))).astype(float)
            else:
                trials = rate[:, None, :] + noise_sd * rng.standard_normal((n_stimuli, n_trials, units_per_animal))
            blocks.append(trials)
            rates.append(rate)
            animal += [f"m{a_i}{k}"] * units_per_animal
            area += [name] * units_per_animal
            ids += [f"{name}-m{k}-u{u}" for u in range(units_per_animal)]
    assembly = xr.DataArray(
        np.concatenate(blocks, axis=2), dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(n_stimuli)]),
                "neuroid_id": ("neuroid", ids), "animal": ("neuroid", animal), "area": ("neuroid", area),
                "reliability": ("neuroid", np.full(len(ids), np.nan))})
    return assembly, np.concatenate(rates, axis=1)


def as_activations(features, stimulus_ids, layer="layer1", epochs=(0,)):
    """An activations Dataset with one layer whose features are the same at every epoch."""
    data = np.broadcast_to(features, (len(epochs),) + features.shape).astype(np.float32)
    return xr.Dataset({layer: (("epoch", "stimulus", "unit"), data)},
                      coords={"epoch": list(epochs), "stimulus_id": ("stimulus", list(stimulus_ids))})


@pytest.fixture(scope="session")
def simulate():
    """`simulate_animals`, for tests that draw their own virtual animals."""
    return simulate_animals


@pytest.fixture(scope="session")
def to_activations():
    """`as_activations`, wrapping features as a one-layer activations Dataset."""
    return as_activations
