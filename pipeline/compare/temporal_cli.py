"""Command line of the temporal stage (workflow/rules/temporal.smk): one verb per rule.

`add_temporal_verbs` registers them on `python -m pipeline` (as `pipeline.mec.cli.add_mec_verbs`
does for MEC).
"""

from __future__ import annotations

import logging

from pipeline.cli import json_object

log = logging.getLogger("pipeline")


def _execution(args):
    """How to run (never what): a local pool of --threads workers, or the dask block's scheduler."""
    scheduler = args.dask.get("scheduler")
    return {"scheduler": scheduler, "n_workers": args.threads or args.dask.get("workers", 1)}


def _temporal_interanimal(args):
    from pipeline.compare.temporal import temporal_interanimal
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet

    scores = temporal_interanimal(read_assembly(args.neural, time_bins="keep"), **args.settings,
                                  **_execution(args))
    scores.insert(0, "dataset", args.dataset)
    write_parquet(scores, args.out)


def _temporal_predictivity(args):
    import pandas as pd

    from pipeline.compare.model_time import bin_sources
    from pipeline.compare.temporal import temporal_predictivity
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    spec = parse_model_name(args.model)
    assembly = read_assembly(args.neural, time_bins="keep")
    activations = read_zarr(args.activations)
    time = dict(args.time)
    feedforward = time.pop("feedforward")
    recurrent = any("time" in activations[name].dims for name in activations.data_vars)
    frames = []
    for mapping in ["steps"] if recurrent else feedforward:
        sources = bin_sources(activations, assembly["time_bin"].values,
                              feedforward="uniform" if recurrent else mapping, **time)
        frame = temporal_predictivity(sources, assembly, **args.settings, **_execution(args))
        frame.insert(0, "time_mapping", mapping)
        frames.append(frame)
    scores = pd.concat(frames, ignore_index=True)
    labels = {"dataset": args.dataset, **spec.labels}
    for position, (column, value) in enumerate(labels.items()):
        scores.insert(position, column, value)
    write_parquet(scores, args.out)


def _temporal_summary(args):
    import pandas as pd

    from pipeline.compare.temporal_summary import bin_medians, phase_medians
    from pipeline.io import write_csv

    ceiling = pd.read_parquet(args.interanimal).assign(model="inter-animal", time_mapping="")
    tables = [ceiling] + [pd.read_parquet(p) for p in args.predictivity]
    phases = {name: tuple(window) for name, window in args.settings.items()}
    write_csv(pd.concat([bin_medians(t) for t in tables], ignore_index=True), args.bins)
    write_csv(pd.concat([phase_medians(t, phases) for t in tables], ignore_index=True), args.phases)


def _plot_temporal(args):
    from pipeline.figures.temporal import plot_phases, plot_predictivity_over_time

    plot_predictivity_over_time(args.bins, args.over_time, dpi=args.dpi)
    plot_phases(args.phases, args.phase_figure, dpi=args.dpi)


def add_temporal_verbs(verb):
    """Add the temporal verbs through `verb(name, func, help)`, which returns a sub-parser."""
    for name, func, help in [
        ("temporal_interanimal", _temporal_interanimal,
         "inter-animal consistency per unit and time bin (per-bin and temporally fixed maps)"),
        ("temporal_predictivity", _temporal_predictivity,
         "model -> animal predictivity per unit and time bin, the model given time by its steps "
         "or by the feedforward mappings"),
    ]:
        p = verb(name, func, help)
        if name == "temporal_predictivity":
            p.add_argument("activations")
        p.add_argument("neural", help="a time-resolved assembly (assemble.time_bins: keep)")
        p.add_argument("out")
        if name == "temporal_predictivity":
            p.add_argument("--model", required=True)
            p.add_argument("--time", type=json_object, required=True, help="the config block temporal.model_time")
        p.add_argument("--dataset", required=True)
        p.add_argument("--settings", type=json_object, required=True, help="the config block temporal.estimator")
        p.add_argument("--dask", type=json_object, default={"scheduler": None, "workers": 1},
                       help="the config's `dask` block (how to run; results do not depend on it)")
        p.add_argument("--threads", type=int, default=None)
    p = verb("temporal_summary", _temporal_summary,
             "medians over units per bin (ceiling band) and per phase (early, late), per model and area")
    p.add_argument("interanimal", help="results/temporal/interanimal/{dataset}.parquet")
    p.add_argument("predictivity", nargs="*", help="results/temporal/predictivity/{model}/{dataset}.parquet")
    p.add_argument("--bins", required=True)
    p.add_argument("--phases", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the config block temporal.phases")
    p = verb("plot_temporal", _plot_temporal,
             "predictivity over time per area with the ceiling band; early vs late phase per model")
    p.add_argument("bins")
    p.add_argument("phases")
    p.add_argument("--over-time", required=True)
    p.add_argument("--phase-figure", required=True)
    p.add_argument("--dpi", type=int, default=150)
