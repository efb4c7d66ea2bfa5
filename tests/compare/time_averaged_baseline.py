"""Time-averaged outputs that must not change when time-resolved data is added.

`results()` runs the time-averaged paths on small fixed inputs: inter-animal consistency and
predictivity of the engine (every mapping), and the static virtual animals (on fixed random
images, so no other module's stimuli enter) through the Neuropixels loader. ``time_averaged_baseline.npz`` beside this file holds what the code before
the time-resolved paths existed returned (commit b3f414b), made with

    git archive b3f414b | tar -x -C /tmp/before
    cp tests/compare/time_averaged_baseline.py /tmp/before/tests/compare/
    cd /tmp/before && PYTHONPATH=. python -c "from tests.compare.time_averaged_baseline import save; \\
        save('/work/main/tests/compare/time_averaged_baseline.npz')"

so the test compares today's numbers bit for bit with that code's, except the model-source PLS
rows: narrow layers are fitted through their features since, which agrees with the stored
kernel form to rounding.
"""

import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

BASELINE = Path(__file__).with_name("time_averaged_baseline.npz")
KEYS = ("area", "animal", "source", "neuroid_id", "mapping", "split", "stage", "layer", "epoch")
VALUES = ("r", "r_mapping", "r_target", "r_full", "score", "score_full", "score_thesis",
          "score_brainscore", "nc_lower", "nc_upper")


def _table(prefix, frame):
    out = {}
    for column in KEYS + VALUES:
        if column in frame.columns:
            values = frame[column].to_numpy()
            out[f"{prefix}/{column}"] = values.astype(str) if column in KEYS else values.astype(np.float64)
    return out


def results() -> dict[str, np.ndarray]:
    """Arrays of the time-averaged paths on fixed small inputs (module docstring)."""
    from pipeline.compare.consistency import interanimal, predictivity
    from pipeline.data.allen_neuropixels import neuropixels_assembly
    from pipeline.data.synthetic_mouse import simulate_synthetic_mouse
    from pipeline.io import read_zarr
    from tests.compare.conftest import simulate_animals

    assembly, rates = simulate_animals(n_animals=3, units_per_animal=8, n_stimuli=40, n_trials=8,
                                       areas=("V1", "V2"), seed=3)
    settings = dict(mappings=("ridge", "pls", "one_to_one", "rsa", "cka"), n_halves=3, n_splits=2,
                    n_components=4, seed=1)
    out = _table("interanimal", interanimal(assembly, **settings))
    rng = np.random.default_rng(5)
    layers = {"a": rng.standard_normal((2, 40, 12)), "b": rates[None, :, :10] + rng.standard_normal((2, 40, 10))}
    activations = xr.Dataset({k: (("epoch", "stimulus", f"unit_{k}"), v.astype(np.float32)) for k, v in layers.items()},
                             coords={"epoch": [0, 1], "stimulus_id": ("stimulus", assembly["stimulus_id"].values)})
    out.update(_table("predictivity", predictivity(activations, assembly, **settings)))
    images = np.random.default_rng(7).integers(0, 256, (16, 24, 24, 3), dtype=np.uint8)
    probe = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), images)},
                       coords={"stimulus_id": ("stimulus", [f"p{i:02d}" for i in range(16)])})
    with tempfile.TemporaryDirectory() as tmp:
        paths = simulate_synthetic_mouse(probe, tmp, animals_per_area=2, units_per_animal=5, trials=8, seed=2)
        neural = neuropixels_assembly(paths, probe["stimulus_id"].values, n_boot=10, seed=0,
                                      unit_threshold=0.2, median_threshold=0.1)
        truth = read_zarr(Path(tmp) / "truth.zarr").load()
    out["synthetic/rate"] = truth["rate"].values
    out["synthetic/truth_neuroid_id"] = truth["neuroid_id"].values.astype(str)
    out["synthetic/response"] = neural.values
    out["synthetic/neuroid_id"] = neural["neuroid_id"].values.astype(str)
    out["synthetic/reliability"] = neural["reliability"].values
    out["synthetic/window_start"] = neural["window_start"].values
    return out


def save(path=BASELINE):
    """Write `results()` to `path` (npz)."""
    np.savez_compressed(path, **results())
