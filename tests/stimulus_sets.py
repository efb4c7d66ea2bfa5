"""Small random stimulus sets in the layout of pipeline/data/stimuli.py, for training tests."""

import numpy as np
import xarray as xr

from pipeline.io import write_zarr


def write_stimuli(path, n, seed, prefix, size=16, labels=None):
    """Random uint8 images with 3-level labels; `labels` (class per image) default to random
    draws among 3 classes, made before the images from the same seeded generator."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n) if labels is None else np.asarray(labels)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"),
                   rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))},
        coords={"stimulus_id": ("stimulus", [f"{prefix}{i:03d}" for i in range(n)]),
                "superordinate": ("stimulus", [f"sup{c % 2}" for c in label]),
                "basic": ("stimulus", [f"basic{c}" for c in label]),
                "subordinate": ("stimulus", [f"basic{c}/sub{c}" for c in label])},
        attrs={"sha256": f"sha-{prefix}-{seed}"},
    )
    write_zarr(ds, path)
