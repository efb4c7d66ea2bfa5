"""Inter-animal consistency as a function of the number of stimuli (spec §2.3, Fig. 3.13B).

The thesis finds the consistency rising steadily with the number of images (20, 40, ..., 100
and all of the 118), so that stimuli, not neurons, limit it. Each size draws a seeded random
subset of the stimuli, which is then split into train and test stimuli as usual; the trial
split-halves are the same for every size.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.compare.grid import (
    animal_groups,
    build_mappings,
    check_settings,
    finish,
    halves_or_none,
    interanimal_tasks,
    responses,
    run,
)
from pipeline.compare.splits import stimulus_splits, stimulus_subset

log = logging.getLogger(__name__)


def interanimal_curve(assembly, *, sizes=(20, 40, 60, 80, 100, None), **kwargs):
    """Inter-animal consistency as a function of the number of stimuli (spec §2.3, Fig. 3.13B).

    For each size, a random subset of that many stimuli (seeded with `seed`; None: all) is
    split into train and test stimuli as usual and scored as by `interanimal`. The trial
    split-halves are shared by all sizes.

    Parameters
    ----------
    assembly : xarray.DataArray
        As for `interanimal`.
    sizes : sequence of int or None
        Numbers of stimuli (the reference uses 20, 40, ..., 100 and all).
    **kwargs
        Any keyword of `interanimal`.

    Returns
    -------
    pandas.DataFrame
        The `interanimal` columns plus ``n_stimuli``.
    """
    options = dict(mappings=("ridge", "pls", "rsa"), n_halves=20, n_splits=5, train_frac=0.5, seed=0,
                   alpha=1.0, n_components=25, alphas=None, rsa_compare="pearson", mode="pooled",
                   equalize_sources=None, noise_correction=True, per_half=False, splits_per_task=None,
                   scheduler=None, n_workers=1)
    unknown = set(kwargs) - set(options)
    if unknown:
        raise TypeError(f"interanimal_curve got unexpected keyword arguments {sorted(unknown)}.")
    options.update(kwargs)
    o = options
    check_settings(o["mode"], o["rsa_compare"], o["equalize_sources"], o["n_halves"], o["n_splits"])
    maps = build_mappings(o["mappings"], o["alpha"], o["n_components"], o["alphas"])
    R = responses(assembly, "interanimal_curve assembly")
    halves = halves_or_none(R, o["n_halves"], o["seed"], o["noise_correction"], "interanimal_curve assembly")
    groups, ids = animal_groups(assembly), assembly["neuroid_id"].values.astype(str)
    tasks, ceilings = [], {}
    for size in sizes:
        stimuli = stimulus_subset(R.shape[0], size, o["seed"])
        splits = stimulus_splits(stimuli.size, o["n_splits"], o["train_frac"], o["seed"])
        more, area_ceilings = interanimal_tasks(
            R, groups, ids, maps, halves, splits, mode=o["mode"], equalize_sources=o["equalize_sources"],
            seed=o["seed"], rsa_compare=o["rsa_compare"], per_half=o["per_half"],
            splits_per_task=o["splits_per_task"], stimuli=None if size is None else stimuli,
            extra_labels={"n_stimuli": int(stimuli.size)})
        tasks += more
        ceilings.update({(area, int(stimuli.size)): task for area, task in area_ceilings.items()})
    log.info("interanimal_curve: sizes %s, %d tasks", list(sizes), len(tasks))
    frames, ceilings = run(tasks, ceilings, o["scheduler"], o["n_workers"], "interanimal_curve")
    out = finish(frames, {}, ("n_stimuli",))
    out["nc_lower"] = np.nan
    out["nc_upper"] = np.nan
    for (area, size), per_animal in ceilings.items():
        for animal, (lo, up) in per_animal.items():
            rows = ((out["mapping"] == "rsa") & (out["area"] == area) & (out["animal"] == animal)
                    & (out["n_stimuli"] == size))
            out.loc[rows, ["nc_lower", "nc_upper"]] = [lo, up]
    out["mode"] = o["mode"]
    return out
