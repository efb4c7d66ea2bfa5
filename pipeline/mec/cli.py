"""Command-line verbs of the MEC chapter (spec §3), one per rule of workflow/rules/mec.smk.

`pipeline.cli.build_parser` calls `add_mec_verbs`; each verb is a thin call into
`pipeline.mec` and writes its output atomically (`pipeline.io`). Settings arrive as JSON objects,
the config blocks (``mec.*``) the rule passes as params.
"""

from __future__ import annotations

import logging

from pipeline.cli import json_object, pin_blas

log = logging.getLogger("pipeline")


def _threads(args):
    from pipeline.runtime import set_num_threads

    if args.threads is not None:
        set_num_threads(args.threads)


def _train_mec(args):
    from pipeline.mec.training import PathSettings, train_path_integrator
    from pipeline.runtime import keep_freed_memory

    keep_freed_memory()
    train_path_integrator(args.model, args.out_dir, PathSettings.from_dict(args.settings),
                          device=args.device, num_threads=args.threads)


def _mec_ratemaps(args):
    from pipeline.io import write_zarr
    from pipeline.mec.model_ratemaps import ratemaps_of_run
    from pipeline.runtime import resolve_device

    _threads(args)
    write_zarr(ratemaps_of_run(args.model_dir, args.neural, device=resolve_device(args.device),
                               **args.settings), args.out)


def _mec_control(args):
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_zarr
    from pipeline.mec.controls import control_rate_maps
    from pipeline.mec.model_ratemaps import arena_grid

    _threads(args)
    grid = arena_grid(read_assembly(args.neural))
    ratemaps = {k: args.ratemaps[k] for k in ("n_batches", "batch_size", "n_steps")}
    write_zarr(control_rate_maps(args.control, grid, **args.place_cells, **ratemaps,
                                 nmf_max_iter=args.controls.get("nmf_max_iter", 500)), args.out)


def _mec_predictivity(args):
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.mec.comparison import predictivity_table

    scores = predictivity_table(read_zarr(args.ratemaps), read_assembly(args.neural),
                                source=args.source, dataset=args.dataset, **args.settings,
                                scheduler=None, n_workers=args.threads or 1)
    write_parquet(scores, args.out)


def _mec_interanimal(args):
    from pipeline.compare.consistency import interanimal
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet

    scores = interanimal(read_assembly(args.neural), **args.settings, mode="pooled",
                         scheduler=None, n_workers=args.threads or 1)
    scores.insert(0, "dataset", args.dataset)
    write_parquet(scores, args.out)


def _mec_scores(args):
    from pipeline.io import read_zarr, write_parquet
    from pipeline.mec.comparison import source_labels, store_scores

    pin_blas(args.threads)
    table = store_scores(read_zarr(args.ratemaps), **args.settings)
    for position, (column, value) in enumerate(
            {"dataset": args.dataset, **source_labels(args.source)}.items()):
        table.insert(position, column, value)
    write_parquet(table, args.out)


def _mec_data_scores(args):
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet
    from pipeline.mec.scores import assembly_scores

    pin_blas(args.threads)
    table = assembly_scores(read_assembly(args.neural), **args.settings)
    table.insert(0, "dataset", args.dataset)
    write_parquet(table, args.out)


def _mec_ks(args):
    import pandas as pd

    from pipeline.io import write_parquet
    from pipeline.mec.comparison import ks_table

    models = {}
    for path in args.model_scores:
        table = pd.read_parquet(path)
        models[str(table["model"].iloc[0])] = table
    out = ks_table(pd.read_parquet(args.data_scores), models)
    out.insert(0, "dataset", args.dataset)
    write_parquet(out, args.out)


def _mec_decoding(args):
    from pipeline.io import write_parquet
    from pipeline.mec.decoding import decoding_table
    from pipeline.runtime import resolve_device

    _threads(args)
    write_parquet(decoding_table(args.model_dir, device=resolve_device(args.device),
                                 **args.settings), args.out)


def _mec_knockouts(args):
    import pandas as pd

    from pipeline.checkpoints import run_epochs
    from pipeline.io import write_parquet
    from pipeline.mec.knockouts import knockout_table
    from pipeline.mec.training import load_path_integrator
    from pipeline.runtime import resolve_device

    _threads(args)
    final = list(run_epochs(args.model_dir).values())[-1]
    model, task, header = load_path_integrator(final, resolve_device(args.device))
    scores = pd.read_parquet(args.scores)
    scores = scores[scores["epoch"] == scores["epoch"].max()]
    s = dict(args.settings)
    table = knockout_table(model, task, scores, s.pop("thresholds"), n_steps=header["settings"]["n_steps"],
                           width=header["settings"]["arena"], **s)
    table.insert(0, "dataset", args.dataset)
    table.insert(0, "model", header["model_name"])
    write_parquet(table, args.out)


def add_mec_verbs(verb) -> None:
    """Register the MEC verbs with `pipeline.cli`'s `verb(name, func, help)` factory."""

    def common(p, *, device=True):
        if device:
            p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--threads", type=int, default=None)

    p = verb("train_mec", _train_mec, "train one path integrator (spec 3.5); a checkpoint per "
             "epoch, metrics.csv, run.json")
    p.add_argument("model", help="{cell}_{nonlinearity}-{placecell|position}-{rule}-s{seed}")
    p.add_argument("out_dir")
    p.add_argument("--settings", type=json_object, required=True, help="the config block mec.train "
                   "with rule_settings")
    common(p)

    p = verb("mec_ratemaps", _mec_ratemaps, "rate maps of a path integrator's units on a MEC "
             "assembly's bins (an activations-like store)")
    p.add_argument("model_dir")
    p.add_argument("neural")
    p.add_argument("out")
    p.add_argument("--settings", type=json_object, required=True, help="the config block mec.ratemaps")
    common(p)

    p = verb("mec_control", _mec_control, "rate maps of a control model (place cells, NMF, "
             "velocity) on a MEC assembly's bins")
    p.add_argument("control")
    p.add_argument("neural")
    p.add_argument("out")
    p.add_argument("--place-cells", type=json_object, required=True,
                   help="n_place_cells, sigma, surround, place_cell_seed of mec.train")
    p.add_argument("--ratemaps", type=json_object, required=True, help="the config block mec.ratemaps")
    p.add_argument("--controls", type=json_object, required=True, help="the config block mec.controls")
    common(p, device=False)

    for name, func, help in [
        ("mec_predictivity", _mec_predictivity, "model (or control) -> MEC predictivity, every "
         "layer and stored epoch (the consistency engine)"),
        ("mec_interanimal", _mec_interanimal, "MEC inter-animal consistency, pooled source, "
         "with the settings of mec.compare"),
    ]:
        p = verb(name, func, help)
        if name == "mec_predictivity":
            p.add_argument("ratemaps")
        p.add_argument("neural")
        p.add_argument("out")
        if name == "mec_predictivity":
            p.add_argument("--source", required=True, help="model or control name")
        p.add_argument("--dataset", required=True)
        p.add_argument("--settings", type=json_object, required=True, help="the config block mec.compare")
        common(p, device=False)

    p = verb("mec_scores", _mec_scores, "grid and border scores of a rate-map store's units")
    p.add_argument("ratemaps")
    p.add_argument("out")
    p.add_argument("--source", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the config block mec.scores")
    common(p, device=False)

    p = verb("mec_data_scores", _mec_data_scores, "grid and border scores of a MEC assembly's units")
    p.add_argument("neural")
    p.add_argument("out")
    p.add_argument("--dataset", required=True)
    p.add_argument("--settings", type=json_object, default={}, help="grid-score keywords of "
                   "pipeline.mec.scores.assembly_scores (none by default)")
    common(p, device=False)

    p = verb("mec_ks", _mec_ks, "KS distance of model vs data score distributions")
    p.add_argument("data_scores")
    p.add_argument("model_scores", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--dataset", required=True)

    p = verb("mec_decoding", _mec_decoding, "top-3 place-cell decoding error of a path "
             "integrator's checkpoints (eq. 4.16)")
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--settings", type=json_object, required=True, help="the config block mec.decoding")
    common(p)

    p = verb("mec_knockouts", _mec_knockouts, "grid/border vs random g-unit knockouts: relative "
             "decoding degradation")
    p.add_argument("model_dir")
    p.add_argument("scores", help="results/mec/scores/{model}/{dataset}.parquet")
    p.add_argument("out")
    p.add_argument("--dataset", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the config block mec.knockouts "
                   "without models")
    common(p)
