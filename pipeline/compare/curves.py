"""Inter-animal consistency as a function of the number of stimuli (spec §2.3, Fig. 3.13B).

The thesis finds the consistency rising steadily with the number of images (20, 40, ..., 100
and all of the 118), so that stimuli, not neurons, limit it. Each size draws a seeded random
subset of the stimuli, which is then split into train and test stimuli as usual; the trial
split-halves are the same for every size.
"""

from __future__ import annotations

import inspect
import logging

from pipeline.compare.consistency import interanimal
from pipeline.compare.splits import stimulus_splits, stimulus_subset
from pipeline.compare.tasks import animal_groups, finish, interanimal_tasks, prepare, run

log = logging.getLogger(__name__)

_OPTIONS = {name: parameter.default for name, parameter in inspect.signature(interanimal).parameters.items()
            if parameter.kind is parameter.KEYWORD_ONLY}
"""The keywords of `interanimal` and their defaults, which `interanimal_curve` shares."""


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
    unknown = set(kwargs) - set(_OPTIONS)
    if unknown:
        raise TypeError(f"interanimal_curve got unexpected keyword arguments {sorted(unknown)}.")
    o = {**_OPTIONS, **kwargs}
    maps, R, halves, assembly = prepare(
        assembly, "interanimal_curve assembly", mappings=o["mappings"], alpha=o["alpha"],
        n_components=o["n_components"], alphas=o["alphas"], mode=o["mode"], rsa_compare=o["rsa_compare"],
        equalize_sources=o["equalize_sources"], n_halves=o["n_halves"], n_splits=o["n_splits"], seed=o["seed"],
        noise_correction=o["noise_correction"])
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
    out = finish(frames, ceilings, ("n_stimuli",), ceiling_keys=("area", "n_stimuli"))
    out["mode"] = o["mode"]
    return out
