"""Command line of the pipeline: one verb per Snakemake rule, each a thin call into the library.

Settings arrive as JSON objects (`--settings`), the config blocks the rule passes as params,
so the command line, the config schema and the library's keyword arguments use the same names.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("pipeline")


def json_object(text: str) -> dict:
    """argparse type of a JSON-object option (`--settings`, `--dask`): a dict, or a usage error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


class _MergeSettings(argparse.Action):
    """`--settings` given more than once: the JSON objects merged, a key in two is an error."""

    def __call__(self, parser, namespace, values, option_string=None):
        merged = dict(getattr(namespace, self.dest) or {})
        twice = sorted(set(merged) & set(values))
        if twice:
            parser.error(f"{option_string}: key(s) {twice} given in two blocks")
        setattr(namespace, self.dest, {**merged, **values})


def _stimuli(args):
    from pipeline.data.stimuli import make_stimulus_sets
    from pipeline.io import write_zarr

    for dataset in make_stimulus_sets(**args.settings).values():
        path = Path(args.out_dir) / f"{dataset.attrs['name']}.zarr"
        write_zarr(dataset, path)
        log.info("wrote %s (%d images)", path, dataset.sizes["stimulus"])


def _train(args):
    from pipeline.data.loader import LoaderSettings
    from pipeline.runtime import keep_freed_memory
    from pipeline.train import TrainSettings, train

    unknown = sorted(set(args.execution) - {"loader", "deterministic"})
    if unknown:
        raise SystemExit(f"train --execution: unknown key(s) {unknown}; expected loader, "
                         f"deterministic")
    keep_freed_memory()
    train(args.model, args.train, args.test, args.out_dir, TrainSettings.from_dict(args.settings),
          device=args.device, num_threads=args.threads,
          loader=LoaderSettings.from_dict(args.execution.get("loader")),
          deterministic=bool(args.execution.get("deterministic", False)))


def _transfer(args):
    from pipeline.transfer import transfer
    from pipeline.runtime import keep_freed_memory, set_num_threads

    if args.threads is not None:
        set_num_threads(args.threads)
    keep_freed_memory()
    transfer(args.model_dir, args.train, args.test, args.out, device=args.device,
             **args.settings)


def _extract(args):
    from pipeline.activations import extract
    from pipeline.checkpoints import run_epochs
    from pipeline.runtime import keep_freed_memory, set_num_threads

    if args.threads is not None:
        set_num_threads(args.threads)
    keep_freed_memory()
    extract(list(run_epochs(args.model_dir).values()), args.stimuli, args.out, device=args.device,
            spatial_pool=args.spatial_pool)


def _scheduler(dask: dict) -> str | None:
    """The engine's scheduler from the config's `dask` block: an address, "slurm" or None."""
    if dask.get("scheduler") and dask.get("cluster"):
        raise ValueError(f"dask: set scheduler ({dask['scheduler']!r}) or cluster "
                         f"({dask['cluster']!r}), not both")
    return dask.get("scheduler") or dask.get("cluster")


def _execution(args) -> dict:
    """Engine keywords that say how to run, never what: the scheduler and the number of workers."""
    return {"scheduler": _scheduler(args.dask), "n_workers": args.threads or args.dask.get("workers", 1)}


def _interanimal(args):
    from pipeline.compare.consistency import interanimal
    from pipeline.compare.curves import interanimal_curve
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet

    run = interanimal_curve if args.verb == "interanimal_curve" else interanimal
    scores = run(read_assembly(args.neural), **args.settings, **_execution(args))
    scores.insert(0, "dataset", args.dataset)
    write_parquet(scores, args.out)


def _predictivity(args):
    from pipeline.compare.consistency import predictivity
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    labels = {"dataset": args.dataset, **parse_model_name(args.model).labels}
    scores = predictivity(read_zarr(args.activations), read_assembly(args.neural), **args.settings,
                          **_execution(args))
    for position, (column, value) in enumerate(labels.items()):
        scores.insert(position, column, value)
    write_parquet(scores, args.out)


def _summarize(args):
    import pandas as pd

    from pipeline.compare.aggregate import summarize
    from pipeline.io import write_csv

    scores = pd.concat([pd.read_parquet(p) for p in args.predictivity], ignore_index=True)
    write_csv(summarize(pd.read_parquet(args.interanimal), scores), args.out)


def _recovery(args):
    import pandas as pd

    from pipeline.compare.recovery import recovery
    from pipeline.io import read_zarr, write_csv

    truth = Path(args.raw_dir) / "truth.zarr"
    attrs = read_zarr(truth).attrs
    if attrs.get("generator", "random") == "random":
        raise SystemExit(f"error: {truth}: the virtual animals come from the random generator; "
                         "recovery needs a model generator (datasets.synthetic_mouse.simulate."
                         "generator or recovery.generators)")
    scores = pd.concat([pd.read_parquet(p) for p in args.predictivity], ignore_index=True)
    tables = recovery(scores, attrs["generator"], json.loads(attrs["area_depths"]), **args.settings)
    for table, out in zip(tables, (args.table, args.classes, args.depth)):
        table.insert(0, "dataset", args.dataset)
        write_csv(table, out)


def _recovery_matrix(args):
    import pandas as pd

    from pipeline.compare.recovery import recovery_matrix
    from pipeline.io import write_csv

    classes = pd.concat([pd.read_csv(p) for p in args.classes], ignore_index=True)
    write_csv(recovery_matrix(classes, ci=args.settings.get("ci", 0.95)), args.out)


def _recovery_summary(args):
    from pipeline.figures.recovery import recovery_summary

    recovery_summary(args.tables, args.matrix, args.out)


def pin_blas(threads) -> None:
    """BLAS threads of a numpy-only verb (without importing torch, as `runtime.set_num_threads` does)."""
    if threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)


def _geometry(args):
    from pipeline.compare.geometry import geometry, stimulus_labels
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    pin_blas(args.threads)
    settings = dict(args.settings)
    probe = dict(settings.pop("probe", {}))
    level = probe.setdefault("label_level", "basic")
    activations = read_zarr(args.activations)
    classes = stimulus_labels(read_zarr(args.stimuli), activations["stimulus_id"].values, level)
    layers, spectrum = geometry(activations, classes, probe=probe, **settings)
    columns = {**parse_model_name(args.model).labels, "stimulus_set": args.stimulus_set}
    for table, out in ((layers, args.layers), (spectrum, args.spectrum)):
        for position, (column, value) in enumerate(columns.items()):
            table.insert(position, column, value)
        write_parquet(table, out)


def _rule_similarity(args):
    from pipeline.compare.rule_similarity import rule_similarity
    from pipeline.io import read_zarr, write_parquet

    pin_blas(args.threads)
    # results/activations/{model}/{stimulus_set}.zarr: the folder names the model
    models = {Path(path).parent.name: read_zarr(path) for path in args.activations}
    if len(models) != len(args.activations):
        raise SystemExit("error: rule_similarity: two activation stores of one model "
                         f"({', '.join(map(str, args.activations))})")
    table = rule_similarity(models, **args.settings)
    table.insert(0, "stimulus_set", args.stimulus_set)
    write_parquet(table, args.out)


# Figures: verb = library function -> (module of pipeline.figures, positional inputs as
# (name, nargs), help). Each function takes those inputs, then `out` and `dpi`.
_FIGURES = {
    "plot_learning_curves": ("learning_curves", [("model_dirs", "+")],
                             "loss and accuracy over epochs, one line per model"),
    "plot_alignment": ("alignment", [("model_dirs", "+")],
                       "angle between backward and forward weights per layer over training"),
    "plot_predictivity": ("predictivity", [("interanimal", None), ("predictivity", "+")],
                          "predictivity by layer per area with the inter-animal ceiling"),
    "plot_predictivity_by_rule": ("comparison", [("summary", None)],
                                  "best-layer predictivity per area by learning rule"),
    "plot_predictivity_by_model": ("comparison", [("summary", None)],
                                   "best-layer predictivity per area by architecture x objective"),
    "plot_performance_vs_predictivity": ("comparison", [("summary", None), ("transfer", "+")],
                                         "best-layer predictivity against linear-evaluation "
                                         "top-1 across models"),
    "plot_interanimal_curve": ("interanimal_curve", [("curve", None)],
                               "inter-animal consistency against the number of stimuli"),
    "plot_rdms": ("rdms", [("neural", None), ("activations", None), ("stimuli", None)],
                  "probe-set RDMs of the brain areas and the model layers"),
    "plot_recovery_matrix": ("recovery", [("matrix", None)],
                             "model recovery: confusion of true and winning class per mapping "
                             "and area group"),
    "plot_recovery_margin": ("recovery", [("table", None)],
                             "model recovery: the true class's margin over the best wrong class "
                             "per area and mapping"),
    "plot_layer_area": ("recovery", [("depth", None)],
                        "predictivity by relative layer depth per area, the generator's depth "
                        "marked"),
    "plot_mec_ratemaps": ("mec", [("neural", None), ("ratemaps", None), ("data_scores", None),
                                  ("model_scores", None)],
                          "MEC rate maps of data and model units, sorted by grid score"),
    "plot_mec_score_distributions": ("mec", [("data_scores", None), ("model_scores", "+")],
                                     "grid and border score distributions, data vs models "
                                     "(KS distance)"),
    "plot_mec_predictivity": ("mec", [("interanimal", None), ("predictivity", "+")],
                              "best-layer MEC predictivity per model with the inter-animal "
                              "ceiling"),
    "plot_mec_knockouts": ("mec", [("knockouts", "+")],
                           "decoding degradation after cell-type vs random g-unit knockouts"),
    "plot_mec_decoding_vs_predictivity": ("mec", [("tables", "+")],
                                          "decoding error against MEC predictivity per model "
                                          "(decoding and predictivity tables, any order)"),
    "plot_geometry": ("geometry", [("tables", "+")],
                      "participation ratio, components for the variance share and PCA spectrum per "
                      "layer over epochs, a panel per rule (geometry and spectrum tables, any order)"),
    "plot_probe_accuracy": ("geometry", [("tables", "+")],
                            "linear-probe accuracy per layer by learning rule (geometry tables)"),
    "plot_rule_similarity": ("geometry", [("table", None)],
                             "rule x rule RDM similarity heat maps per layer with bootstrap intervals"),
}


def _figure(args):
    module, inputs, _ = _FIGURES[args.verb]
    plot = getattr(importlib.import_module(f"pipeline.figures.{module}"), args.verb)
    plot(*(getattr(args, name) for name, _ in inputs), args.out, dpi=args.dpi)


# Data sources: verb = library function -> (module of pipeline.data, positional inputs,
# positional outputs as (name, kind), help). Each function takes the inputs and the rule's config
# block (`--settings`) as keyword arguments; download_* and simulate_* write into their directory
# themselves, the others return what is written to the outputs (a *_stimuli set is named after
# its file, results/stimuli/{name}.zarr).
_SOURCES = {
    "simulate_synthetic_mouse": ("synthetic_mouse", ["probe", "out_dir"], [],
                                 "simulate virtual animals viewing the probe set; Allen-layout "
                                 "NWB sessions"),
    "assemble_synthetic_mouse": ("synthetic_mouse", ["raw_dir", "stimuli"],
                                 [("out", "assembly")],
                                 "simulated NWB sessions -> NeuralAssembly with the spec's "
                                 "reliability filters"),
    "download_allen_neuropixels": ("allen_neuropixels", ["out_dir"], [],
                                   "fetch and verify Allen Neuropixels sessions (DANDI 000021) "
                                   "and scene templates"),
    "assemble_allen_neuropixels": ("allen_neuropixels", ["manifest"], [("out", "assembly")],
                                   "Neuropixels sessions of a manifest -> NeuralAssembly with "
                                   "the spec's unit, window and specimen filters"),
    "allen_neuropixels_stimuli": ("allen_neuropixels", ["manifest"], [("out", "stimulus_set")],
                                  "natural-scene template TIFFs of a manifest -> stimulus set"),
    "download_allen_ophys": ("allen_ophys", ["out_dir"], [],
                             "fetch and verify Allen two-photon natural-scene experiments (S3)"),
    "assemble_allen_ophys": ("allen_ophys", ["manifest"], [("out", "assembly")],
                             "two-photon experiments of a manifest -> NeuralAssembly of "
                             "per-trial mean dF/F with the spec's filters"),
    "allen_ophys_stimuli": ("allen_ophys", ["manifest"], [("out", "stimulus_set")],
                            "natural-scene template stack of a manifest's NWB -> stimulus set"),
    "assemble_allen_psailamul": ("allen_psailamul", ["source"],
                                 [("neural", "assembly"), ("stimuli", "stimulus_set")],
                                 "psailamul Allen VISp trial means -> single-trial "
                                 "NeuralAssembly and 31x31 stimuli"),
    "download_majajhong2015": ("majajhong2015", ["out_dir"], [],
                               "fetch and sha1-verify the Brain-Score Majaj-Hong 2015 assembly "
                               "and HvM stimulus set"),
    "assemble_majajhong2015": ("majajhong2015", ["manifest"], [("out", "assembly")],
                               "Brain-Score netCDF assembly of a manifest -> V4/IT "
                               "NeuralAssembly (trials by repetition, time window)"),
    "majajhong2015_stimuli": ("majajhong2015", ["manifest"], [("out", "stimulus_set")],
                              "HvM stimulus CSV + zip of a manifest -> stimulus set"),
    "download_horikawa2017": ("horikawa2017", ["out_dir"], [],
                              "fetch and md5-verify the Horikawa & Kamitani 2017 subject files "
                              "(figshare)"),
    "assemble_horikawa2017": ("horikawa2017", ["manifest"], [("out", "assembly")],
                              "BData subject files of a manifest -> NeuralAssembly of ROI "
                              "voxels (trials by run)"),
    "horikawa2017_stimuli": ("horikawa2017", ["neural"], [("out", "stimulus_set")],
                             "ImageNet images of the fMRI stimulus ids, from the folder "
                             "`images` -> stimulus set"),
    "download_mec_openfield": ("mec_openfield", ["out_dir"], [],
                               "fetch and verify MEC open-field sessions (DANDI 000582, 000053)"),
    "assemble_mec_openfield": ("mec_openfield", ["manifest"], [("out", "assembly")],
                               "MEC sessions of a manifest -> NeuralAssembly of 5-cm rate maps "
                               "(split-half trials)"),
    "synthesize_mec": ("synthetic_mec", ["out_dir"], [],
                       "simulate virtual MEC animals (grid modules, border, HD, heterogeneous "
                       "cells; Poisson spikes); DANDI 000582-layout NWB + truth.zarr"),
    "assemble_synthetic_mec": ("synthetic_mec", ["raw_dir"], [("out", "assembly")],
                               "virtual MEC sessions -> NeuralAssembly of 5-cm rate maps through "
                               "the real MEC loader"),
}


def _source(args):
    """A data-source verb; one line on stderr (no traceback) when a source cannot be reached."""
    from pipeline.data.assembly import write_assembly
    from pipeline.data.fetch.remote import DownloadError
    from pipeline.io import write_zarr

    module, inputs, outputs, _ = _SOURCES[args.verb]
    function = getattr(importlib.import_module(f"pipeline.data.{module}"), args.verb)
    settings = dict(getattr(args, "settings", {}))
    if getattr(args, "generator_dir", None):          # simulate_synthetic_mouse with a model
        settings["generator_dir"] = args.generator_dir
    if args.verb.endswith("_stimuli"):
        settings["name"] = Path(args.out).stem
    try:
        result = function(*(getattr(args, name) for name in inputs), **settings)
    except DownloadError as err:
        raise SystemExit(f"error: {err}") from None
    write = {"assembly": write_assembly, "stimulus_set": write_zarr}
    for (name, kind), value in zip(outputs, result if len(outputs) > 1 else [result]):
        write[kind](value, getattr(args, name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help):
        sub = verbs.add_parser(name, help=help, description=help)
        sub.set_defaults(func=func)
        return sub

    p = verb("stimuli", _stimuli, "render the procedural stimulus sets (train, test, probe) to Zarr")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the config's `stimuli` block")

    p = verb("train", _train, "train one model; checkpoints (every epoch, or every "
                              "checkpoint_every) and metrics.csv")
    p.add_argument("model", help="{arch}-{objective}-{rule}-s{seed}")
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("out_dir")
    p.add_argument("--settings", type=json_object, default={},
                   help="epochs, checkpoint_every, batch_size, lr, label_level, input_size, "
                        "rule_settings, objective_settings")
    p.add_argument("--execution", type=json_object, default={},
                   help="how to run, never what is computed: {loader: {...}, deterministic: bool} "
                        "(models.train.loader and .deterministic)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("transfer", _transfer,
             "linear-evaluation top-1 of a model's frozen penultimate features -> CSV")
    p.add_argument("model_dir")
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("out")
    p.add_argument("--settings", type=json_object, default={},
                   help="the config's models.transfer block: epochs, label_level, C, max_iter")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("extract", _extract, "activations of every layer and epoch on a stimulus set")
    p.add_argument("model_dir")
    p.add_argument("stimuli")
    p.add_argument("out")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--spatial-pool", type=int, default=None,
                   help="average-pool convolutional maps to this grid side (models.extract.spatial_pool)")

    for name, func, help in [
        ("interanimal", _interanimal, "inter-animal consistency, pooled or pairwise source (the ceiling)"),
        ("interanimal_curve", _interanimal,
         "inter-animal consistency on random subsets of the stimuli (compare.curve.sizes)"),
        ("predictivity", _predictivity, "model -> animal noise-corrected predictivity"),
    ]:
        p = verb(name, func, help)
        if name == "predictivity":
            p.add_argument("activations")
        p.add_argument("neural")
        p.add_argument("out")
        if name == "predictivity":
            p.add_argument("--model", required=True)
        p.add_argument("--dataset", required=True)
        p.add_argument("--settings", type=json_object, action=_MergeSettings, required=True,
                       help="a block of the config's `compare` section (repeat to merge blocks: "
                            "common, then the rule's own); keys are the engine's keyword arguments")
        p.add_argument("--dask", type=json_object, default={"scheduler": None, "workers": 1},
                       help="the config's `dask` block (how to run; results do not depend on it)")
        p.add_argument("--threads", type=int, default=None)

    p = verb("summarize", _summarize, "per area and mapping: the inter-animal ceiling and each "
             "model's best layer (results/scores/summary/{dataset}.csv)")
    p.add_argument("interanimal", help="results/scores/interanimal/{dataset}.parquet")
    p.add_argument("predictivity", nargs="+", help="results/scores/predictivity/{model}/{dataset}.parquet")
    p.add_argument("--out", required=True)

    p = verb("recovery", _recovery, "model recovery on one virtual dataset with a model generator: "
             "rank and margin of the true class, best layer vs the generator's depth")
    p.add_argument("raw_dir", help="data/raw/{dataset} (its truth.zarr names the generator)")
    p.add_argument("predictivity", nargs="+", help="results/scores/predictivity/{model}/{dataset}.parquet")
    p.add_argument("--dataset", required=True)
    p.add_argument("--table", required=True, help="per area and mapping (recovery.csv)")
    p.add_argument("--classes", required=True, help="per area, mapping and class (classes.csv)")
    p.add_argument("--depth", required=True, help="layer-area correspondence (depth.csv)")
    p.add_argument("--settings", type=json_object, required=True, help="the config block recovery.analysis")

    p = verb("recovery_matrix", _recovery_matrix, "confusion matrix of model recovery over generator "
             "datasets, per mapping and area group, with binomial intervals")
    p.add_argument("classes", nargs="+", help="results/recovery/{dataset}/classes.csv")
    p.add_argument("--out", required=True)
    p.add_argument("--settings", type=json_object, required=True, help="the config block recovery.analysis")

    p = verb("geometry", _geometry, "participation ratio, PCA spectrum, components for a variance "
             "share and linear-probe accuracy of every layer and epoch of one model")
    p.add_argument("activations", help="results/activations/{model}/{stimulus_set}.zarr")
    p.add_argument("stimuli", help="results/stimuli/{stimulus_set}.zarr (the probe's labels)")
    p.add_argument("--model", required=True)
    p.add_argument("--stimulus-set", required=True)
    p.add_argument("--layers", required=True, help="per layer and epoch (Parquet)")
    p.add_argument("--spectrum", required=True, help="per layer, epoch and component (Parquet)")
    p.add_argument("--settings", type=json_object, required=True, help="the config block geometry.analysis")
    p.add_argument("--threads", type=int, default=None)

    p = verb("rule_similarity", _rule_similarity, "learning rule x learning rule similarity of "
             "layer RDMs per architecture x objective, with a bootstrap over stimuli")
    p.add_argument("activations", nargs="+", help="results/activations/{model}/{stimulus_set}.zarr")
    p.add_argument("--stimulus-set", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--settings", type=json_object, required=True,
                   help="the config block geometry.rule_similarity")
    p.add_argument("--threads", type=int, default=None)

    p = verb("recovery_summary", _recovery_summary, "the report's opening page: which class wins per "
             "area and mapping, the truth marked (reStructuredText)")
    p.add_argument("tables", nargs="+", help="results/recovery/{dataset}/recovery.csv")
    p.add_argument("--matrix", required=True, help="results/recovery/matrix.csv")
    p.add_argument("--out", required=True)

    for name, (_, inputs, help) in _FIGURES.items():
        p = verb(name, _figure, help)
        for argument, nargs in inputs:
            p.add_argument(argument, nargs=nargs)
        p.add_argument("--out", required=True, help="figure file; its suffix gives the format")
        p.add_argument("--dpi", type=int, default=150)

    for name, (module, inputs, outputs, help) in _SOURCES.items():
        p = verb(name, _source, help)
        for argument in inputs + [output for output, _ in outputs]:
            p.add_argument(argument)
        if name != "assemble_allen_psailamul":        # its one setting is its input folder
            p.add_argument("--settings", type=json_object, required=True,
                           help=f"the config block datasets.{module}.<step> of the rule")
        if name == "simulate_synthetic_mouse":
            p.add_argument("--generator-dir", default=None,
                           help="results/models/{generator}: the trained model that plays the "
                                "areas when the settings' generator is a model name")

    # the verbs of the stages with their own modules (mec, development, identify, ost, temporal .smk)
    from pipeline.compare.development_cli import add_development_verbs
    from pipeline.compare.ost_cli import add_ost_verbs
    from pipeline.compare.temporal_cli import add_temporal_verbs
    from pipeline.identify.cli import add_identify_verbs
    from pipeline.mec.cli import add_mec_verbs

    for add_verbs in (add_mec_verbs, add_development_verbs, add_identify_verbs, add_ost_verbs,
                      add_temporal_verbs):
        add_verbs(verb)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)
    return 0
