"""Verbs of the identification stage, registered on `python -m pipeline` by `add_identify_verbs`.

One verb per rule of workflow/rules/identify.smk, each a thin call into the library; settings
arrive as the rule's config block in JSON (`--settings`). Training runs use the pipeline's own
`python -m pipeline train` verb.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from pipeline.cli import json_object

log = logging.getLogger("pipeline.identify")


def _threads(threads) -> None:
    if threads is not None:
        from pipeline.runtime import set_num_threads

        set_num_threads(threads)


def _identify_vectors(args):
    from pipeline.identify.vectors import make_vector_sets
    from pipeline.io import write_zarr

    for dataset in make_vector_sets(**args.settings).values():
        path = Path(args.out_dir) / f"{dataset.attrs['name']}.zarr"
        write_zarr(dataset, path)
        log.info("wrote %s (%d vectors)", path, dataset.sizes["stimulus"])


def _observables(args):
    from pipeline.identify.grid import parse_run
    from pipeline.identify.measurement import measurements
    from pipeline.identify.observables import observables
    from pipeline.io import write_parquet
    from pipeline.runtime import resolve_device

    _threads(args.threads)
    run = parse_run(args.run)
    settings = dict(args.settings)
    units = settings.pop("units", None) or {}
    degraded = run.rule in units.get("rules", []) and run.arch in units.get("archs", [])
    conditions = (measurements(units["fractions"], units["noise"], units["draws"])
                  if degraded else [])
    table = observables(args.run_dir, args.stimuli, measurements=conditions,
                        device=resolve_device(args.device), **settings)
    for position, (column, value) in enumerate(run.labels().items()):
        table.insert(position, column, value)
    write_parquet(table, args.out)


def _identify(args):
    import pandas as pd

    from pipeline.identify.analyses import identify
    from pipeline.io import write_parquet

    _threads(args.threads)
    table = pd.concat([pd.read_parquet(path) for path in args.observables], ignore_index=True)
    tables = identify(table, args.settings, n_jobs=args.threads or 1)
    for frame, out in zip(tables, (args.accuracy, args.confusion, args.importance)):
        write_parquet(frame, out)


# Figures: verb -> (input, help); each is pipeline.figures.identify.<verb>(input, out, dpi=).
FIGURES = {
    "plot_identify_accuracy": ("accuracy", "rule-identification accuracy per observable × "
                                           "classifier with chance, controls and holdouts"),
    "plot_identify_confusion": ("confusion", "confusion matrices of the rule classes per "
                                             "observable × classifier"),
    "plot_identify_trajectory": ("accuracy", "accuracy against the number of trajectory samples "
                                             "per period, and across thirds of training"),
    "plot_identify_units": ("accuracy", "accuracy against the fraction of units measured, per "
                                        "noise level"),
    "plot_identify_importance": ("importance", "random-forest Gini and permutation importance "
                                               "per statistic"),
}


def _figure(args):
    plot = getattr(importlib.import_module("pipeline.figures.identify"), args.verb)
    plot(getattr(args, FIGURES[args.verb][0]), args.out, dpi=args.dpi)


def add_identify_verbs(verb) -> None:
    """Register this stage's verbs through `verb(name, func, help)` (as `pipeline.cli` does)."""
    p = verb("identify_vectors", _identify_vectors,
             "render the vector task's train and test sets (vectors_{train,test}.zarr)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the block identify.vectors")

    p = verb("observables", _observables,
             "per layer and checkpoint of one run: the statistics of weights, activations and "
             "activity change on a validation subset (long Parquet)")
    p.add_argument("run_dir", help="the run's training folder (results/identify/runs/{run})")
    p.add_argument("stimuli", help="the task's validation stimulus set (Zarr)")
    p.add_argument("out")
    p.add_argument("--run", required=True, help="{task}-{arch}-{rule}-b{bs}-i{seed}-d{seed}")
    p.add_argument("--settings", type=json_object, required=True,
                   help="the block identify.observables")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("identify", _identify, "classify the learning rule from the observables of every "
             "run: separability, controls, holdouts, trajectory and unit subsampling")
    p.add_argument("observables", nargs="+", help="results/identify/observables/{run}.parquet")
    p.add_argument("--accuracy", required=True)
    p.add_argument("--confusion", required=True)
    p.add_argument("--importance", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the block identify.classify")
    p.add_argument("--threads", type=int, default=None)

    for name, (argument, help) in FIGURES.items():
        p = verb(name, _figure, help)
        p.add_argument(argument)
        p.add_argument("--out", required=True, help="figure file; its suffix gives the format")
        p.add_argument("--dpi", type=int, default=150)
