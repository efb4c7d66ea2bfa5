"""Command line of the development stage (workflow/rules/development.smk): one verb per rule.

`add_development_verbs` registers them on `python -m pipeline`; the library
(`pipeline.compare.development`) is imported only by the verb that runs, so other jobs do not
pay for its imports.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import json_object


def _development(args):
    from threadpoolctl import threadpool_limits

    from pipeline.compare.development import LEVELS, development, layer_kinds
    from pipeline.compare.geometry import stimulus_labels
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    if args.threads is not None:
        threadpool_limits(limits=args.threads)
    settings = dict(args.settings)
    activations = read_zarr(args.activations)
    stimuli = read_zarr(args.stimuli)
    ids = activations["stimulus_id"].values
    labels = {level: stimulus_labels(stimuli, ids, level) for level in settings.get("levels", LEVELS)}
    # results/neural/{dataset}.zarr: the file names the dataset
    assemblies = {Path(path).stem: read_assembly(path) for path in args.neural}
    tables = development(activations, labels, assemblies, **settings)
    kinds = layer_kinds(args.model_dir)
    columns = {**parse_model_name(args.model).labels, "stimulus_set": args.stimulus_set}
    for name in ("rdms", "trajectory", "halftimes", "brain"):
        table = getattr(tables, name)
        for position, (column, value) in enumerate(columns.items()):
            table.insert(position, column, value)
        table.insert(len(columns) + 1, "layer_kind", table["layer"].map(kinds))
        write_parquet(table, getattr(args, name))


def _development_summary(args):
    import pandas as pd

    from pipeline.io import write_csv

    write_csv(pd.concat([pd.read_parquet(p) for p in args.halftimes], ignore_index=True), args.out)


def _development_predictivity(args):
    import pandas as pd

    from pipeline.compare.aggregate import median_over_units
    from pipeline.io import write_csv

    scores = pd.concat([pd.read_parquet(p) for p in args.predictivity], ignore_index=True)
    write_csv(median_over_units(scores), args.out)


def _figure(args):
    from pipeline.figures import development as figures

    plot = getattr(figures, args.verb)
    extra = {"stimuli": args.stimuli, "gif": args.gif} if args.verb == "plot_development_rdms" else {}
    plot(args.tables, args.out, dpi=args.dpi, **extra)


def add_development_verbs(verb) -> None:
    """Register this stage's verbs through `verb(name, func, help)` (as `pipeline.cli` does)."""
    p = verb("development", _development, "RDMs, hierarchy-level correlations, coarse-before-fine "
             "half-times and brain RSA of every layer and epoch of one model")
    p.add_argument("activations", help="results/activations/{model}/{stimulus_set}.zarr")
    p.add_argument("stimuli", help="results/stimuli/{stimulus_set}.zarr (the label levels)")
    p.add_argument("model_dir", help="results/models/{model} (which layers are convolutional)")
    p.add_argument("--neural", nargs="*", default=[], help="results/neural/{dataset}.zarr recorded on the set")
    p.add_argument("--model", required=True)
    p.add_argument("--stimulus-set", required=True)
    for name in ("rdms", "trajectory", "halftimes", "brain"):
        p.add_argument(f"--{name}", required=True, help=f"the {name} table (Parquet)")
    p.add_argument("--settings", type=json_object, required=True, help="the config block development.analysis")
    p.add_argument("--threads", type=int, default=None)

    p = verb("development_summary", _development_summary, "the half-times of every model in one CSV")
    p.add_argument("halftimes", nargs="+", help="results/development/halftimes/{model}/{stimulus_set}.parquet")
    p.add_argument("--out", required=True)

    p = verb("development_predictivity", _development_predictivity,
             "median predictivity over units per model, area, mapping, layer and scored epoch")
    p.add_argument("predictivity", nargs="+", help="results/scores/predictivity/{model}/{dataset}.parquet")
    p.add_argument("--out", required=True)

    for name, help in (("plot_development_rdms", "each model's last conv layer RDM over epochs: a strip "
                        "(--out) and an animated GIF (--gif)"),
                       ("plot_development_hierarchy", "correlation with each level's category model "
                        "over epochs, half-times marked (trajectory and halftimes tables)"),
                       ("plot_development_brain", "RSA similarity to each brain area over epochs with "
                        "the noise ceiling")):
        p = verb(name, _figure, help)
        p.add_argument("tables", nargs="+")
        if name == "plot_development_rdms":
            p.add_argument("--stimuli", required=True, help="results/stimuli/{stimulus_set}.zarr (category order)")
            p.add_argument("--gif", required=True)
        p.add_argument("--out", required=True, help="figure file; its suffix gives the format")
        p.add_argument("--dpi", type=int, default=150)
