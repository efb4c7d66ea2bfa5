"""Command line of the pipeline: one verb per Snakemake rule, each a thin call into the library.

Settings arrive as one JSON object (`--settings`), the config block the rule passes as params,
so the command line and the config schema use the same field names.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("pipeline")


def _json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _stimuli(args):
    from pipeline.data.stimuli import make_stimulus_sets
    from pipeline.io import write_zarr

    for dataset in make_stimulus_sets(**args.settings).values():
        path = Path(args.out_dir) / f"{dataset.attrs['name']}.zarr"
        write_zarr(dataset, path)
        log.info("wrote %s (%d images)", path, dataset.sizes["stimulus"])


def _synthesize_ecephys(args):
    from pipeline.data.synthetic import synthesize_ecephys
    from pipeline.io import read_zarr

    keys = ("animals_per_area", "units_per_animal", "trials", "seed")
    probe = read_zarr(args.probe).load()
    synthesize_ecephys(probe, args.out_dir, **{k: args.settings[k] for k in keys})


def _assemble_ecephys(args):
    from pipeline.data.allen_ecephys import assemble_ecephys
    from pipeline.data.assembly import ALLEN_AREAS, write_assembly
    from pipeline.io import read_zarr

    s = args.settings
    stimuli = read_zarr(args.stimuli)
    sessions = sorted(p for p in Path(args.raw_dir).glob("sub-*/sub-*_ses-*.nwb")
                      if "_probe-" not in p.name)
    if not sessions:
        raise FileNotFoundError(f"{args.raw_dir}: no session files sub-*/sub-*_ses-*.nwb")
    assembly = assemble_ecephys(
        sessions, stimuli["stimulus_id"].values, areas=ALLEN_AREAS,
        bin_size=s["bin_size"], window=tuple(s["window"]), unit_threshold=s["unit_threshold"],
        median_threshold=s["median_threshold"], specimen_quantile=s["specimen_quantile"],
        n_boot=s["reliability_boot"], seed=s["seed"],
    )
    write_assembly(assembly, args.out)


def _train(args):
    from pipeline.train import train

    train(args.model, args.train, args.test, args.out_dir, device=args.device,
          num_threads=args.threads, **args.settings)


def _transfer(args):
    from pipeline.objectives.linear_eval import transfer
    from pipeline.runtime import set_num_threads

    if args.threads is not None:
        set_num_threads(args.threads)
    transfer(args.model_dir, args.train, args.test, args.out, device=args.device,
             **args.settings)


def _extract(args):
    from pipeline.activations import extract
    from pipeline.runtime import set_num_threads

    set_num_threads(args.threads)
    checkpoints = sorted(Path(args.model_dir).glob("epoch_*.pt"))
    if not checkpoints:
        raise FileNotFoundError(f"{args.model_dir}: no checkpoints epoch_*.pt")
    extract(checkpoints, args.stimuli, args.out, device=args.device)


# Defaults of the `compare` block's keys, as in workflow/schemas/config.schema.yaml; used when a
# caller passes a partial block (Snakemake fills them from the schema).
_COMPARE_DEFAULTS = {
    "mappings": ["ridge", "pls", "rsa"], "split_halves": 10, "splits": 5, "train_frac": 0.5, "alpha": 1.0,
    "n_components": 25, "alphas": None, "rsa_compare": "pearson", "mode": "pooled", "equalize_sources": None,
    "projection": {"method": "none", "n_components": 1000, "seed": 0}, "select_layers": True,
    "noise_correction": True, "splits_per_task": None, "curve_sizes": [20, 40, 60, 80, 100, None], "seed": 0,
    "epochs": "all",
}


def _scheduler(dask: dict) -> str | None:
    """The engine's scheduler from the config's `dask` block: an address, "slurm" or None."""
    if dask.get("scheduler") and dask.get("cluster"):
        raise ValueError(f"dask: set scheduler ({dask['scheduler']!r}) or cluster "
                         f"({dask['cluster']!r}), not both")
    return dask.get("scheduler") or dask.get("cluster")


def _compare_kwargs(settings: dict, dask: dict, threads: int, verb: str = "interanimal") -> dict:
    """Map the config's `compare` and `dask` blocks onto the keyword arguments of one engine verb.

    Common: mappings, split_halves -> n_halves, splits -> n_splits, train_frac, seed, alpha,
    n_components, alphas, rsa_compare, noise_correction, splits_per_task; dask.scheduler
    (or dask.cluster) -> scheduler, --threads (or dask.workers) -> n_workers. interanimal and interanimal_curve add
    mode and equalize_sources (and the curve curve_sizes -> sizes); predictivity adds
    projection, select_layers and epochs.
    """
    s = {**_COMPARE_DEFAULTS, **settings}
    kwargs = dict(
        mappings=tuple(s["mappings"]), n_halves=s["split_halves"], n_splits=s["splits"],
        train_frac=s["train_frac"], seed=s["seed"], alpha=s["alpha"], n_components=s["n_components"],
        alphas=s["alphas"], rsa_compare=s["rsa_compare"], noise_correction=s["noise_correction"],
        splits_per_task=s["splits_per_task"], scheduler=_scheduler(dask),
        n_workers=threads or dask.get("workers", 1),
    )
    if verb == "predictivity":
        kwargs.update(projection={**_COMPARE_DEFAULTS["projection"], **(s["projection"] or {})},
                      select_layers=s["select_layers"], epochs=s["epochs"])
    else:
        kwargs.update(mode=s["mode"], equalize_sources=s["equalize_sources"])
    if verb == "interanimal_curve":
        kwargs["sizes"] = tuple(s["curve_sizes"])
    return kwargs


def _interanimal(args):
    from pipeline.compare.consistency import interanimal
    from pipeline.compare.curves import interanimal_curve
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet

    run = interanimal_curve if args.verb == "interanimal_curve" else interanimal
    scores = run(read_assembly(args.neural), **_compare_kwargs(args.settings, args.dask, args.threads, args.verb))
    scores.insert(0, "dataset", args.dataset)
    write_parquet(scores, args.out)


def _predictivity(args):
    from pipeline.compare.consistency import predictivity
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    spec = parse_model_name(args.model)
    scores = predictivity(read_zarr(args.activations), read_assembly(args.neural),
                          **_compare_kwargs(args.settings, args.dask, args.threads, "predictivity"))
    labels = {"dataset": args.dataset, "model": spec.name, "arch": spec.arch,
              "objective": spec.objective, "rule": spec.rule, "seed": spec.seed}
    for position, (column, value) in enumerate(labels.items()):
        scores.insert(position, column, value)
    write_parquet(scores, args.out)


def _learning_curves(args):
    from pipeline.figures.learning import plot_learning_curves

    plot_learning_curves([Path(d) / "metrics.csv" for d in args.model_dirs], args.out,
                         dpi=args.style.get("dpi", 150))


def _predictivity_figure(args):
    from pipeline.figures.predictivity import plot_predictivity

    plot_predictivity(args.interanimal, args.predictivity, args.out, args.summary,
                      dpi=args.style.get("dpi", 150))


def _rdm_figure(args):
    from pipeline.figures.rdms import plot_rdms

    plot_rdms(args.neural, args.activations, args.stimuli, args.out, dpi=args.style.get("dpi", 150))


def _alignment_figure(args):
    from pipeline.figures.alignment import plot_alignment

    plot_alignment([Path(d) / "alignment.csv" for d in args.model_dirs], args.out,
                   dpi=args.style.get("dpi", 150))


def _curve_figure(args):
    from pipeline.figures.curves import plot_curve

    plot_curve(args.curve, args.out, dpi=args.style.get("dpi", 150))


def _rule_figure(args):
    from pipeline.figures.comparison import plot_groups

    plot_groups(args.summary, args.out, parts=("rule",), dpi=args.style.get("dpi", 150))


def _model_figure(args):
    from pipeline.figures.comparison import plot_groups

    plot_groups(args.summary, args.out, parts=("arch", "objective"), dpi=args.style.get("dpi", 150))


def _performance_figure(args):
    from pipeline.figures.comparison import plot_performance

    plot_performance(args.summary, args.transfer, args.out, dpi=args.style.get("dpi", 150))


# Real sources: verb -> (module, function, help). Downloads take (out_dir, settings) and
# write out_dir/manifest.json; assemblers take (manifest, settings) and return a NeuralAssembly.
_DOWNLOADS = {
    "download_allen_neuropixels": ("pipeline.data.allen_download", "download_allen_neuropixels",
                                   "fetch and verify Allen Neuropixels sessions (DANDI 000021) "
                                   "and scene templates"),
    "download_allen_ophys": ("pipeline.data.allen_download", "download_allen_ophys",
                             "fetch and verify Allen two-photon natural-scene experiments (S3)"),
    "download_majajhong2015": ("pipeline.data.macaque", "download_majajhong2015",
                               "fetch and sha1-verify the Brain-Score Majaj-Hong 2015 assembly "
                               "and HvM stimulus set"),
    "download_horikawa2017": ("pipeline.data.fmri", "download_horikawa2017",
                              "fetch and md5-verify the Horikawa & Kamitani 2017 subject files "
                              "(figshare)"),
    "download_mec": ("pipeline.data.mec", "download_mec",
                     "fetch and verify MEC open-field sessions (DANDI 000582, 000053)"),
}
_ASSEMBLERS = {
    "assemble_allen_neuropixels": ("pipeline.data.allen_ecephys", "assemble_allen_neuropixels",
                                   "Neuropixels sessions of a manifest -> NeuralAssembly with "
                                   "the spec's unit, window and specimen filters"),
    "assemble_allen_ophys": ("pipeline.data.allen_ophys", "assemble_allen_ophys",
                             "two-photon experiments of a manifest -> NeuralAssembly of "
                             "per-trial mean dF/F with the spec's filters"),
    "assemble_majajhong2015": ("pipeline.data.macaque", "assemble_majajhong2015",
                               "Brain-Score netCDF assembly of a manifest -> V4/IT "
                               "NeuralAssembly (trials by repetition, time window)"),
    "assemble_horikawa2017": ("pipeline.data.fmri", "assemble_horikawa2017",
                              "BData subject files of a manifest -> NeuralAssembly of ROI "
                              "voxels (trials by run)"),
    "assemble_mec": ("pipeline.data.mec", "assemble_mec_manifest",
                     "MEC sessions of a manifest -> NeuralAssembly of 5-cm rate maps "
                     "(split-half trials)"),
}


def _source_function(table: dict, verb: str):
    module, name, _ = table[verb]
    return getattr(importlib.import_module(module), name)


def _download(args):
    """A download verb: one line on stderr (no traceback) when the source cannot be used."""
    from pipeline.data.download import DownloadError

    try:
        _source_function(_DOWNLOADS, args.verb)(args.out_dir, args.settings)
    except DownloadError as err:
        raise SystemExit(f"error: {err}") from None


def _assemble_manifest(args):
    from pipeline.data.assembly import write_assembly

    write_assembly(_source_function(_ASSEMBLERS, args.verb)(args.manifest, args.settings), args.out)


def _allen_stimuli(args):
    from pipeline.data.allen_stimuli import stimulus_set_from_manifest
    from pipeline.io import write_zarr

    write_zarr(stimulus_set_from_manifest(args.manifest, name=args.name,
                                          size=args.settings["stimulus_size"]), args.out)


def _assemble_psailamul(args):
    from pipeline.data.allen_ophys import load_psailamul
    from pipeline.data.assembly import write_assembly
    from pipeline.io import write_zarr

    assembly, stimuli = load_psailamul(args.source)
    write_assembly(assembly, args.neural)
    write_zarr(stimuli, args.stimuli)


def _majajhong2015_stimuli(args):
    from pipeline.data.macaque import majajhong2015_stimuli
    from pipeline.io import write_zarr

    write_zarr(majajhong2015_stimuli(args.manifest, args.settings, name=args.name), args.out)


def _horikawa2017_stimuli(args):
    from pipeline.data.assembly import read_assembly
    from pipeline.data.fmri import stimulus_set_from_folder
    from pipeline.io import write_zarr

    if not args.settings.get("images"):
        raise SystemExit("error: horikawa2017: `images` is null; the ImageNet stimuli are not "
                         "distributed with the fMRI data, so point it at a folder holding them")
    ids = read_assembly(args.neural)["stimulus_id"].values
    write_zarr(stimulus_set_from_folder(args.settings["images"], ids, name=args.name,
                                        size=args.settings["stimulus_size"]), args.out)


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
    p.add_argument("--settings", type=_json, required=True, help="the config's `stimuli` block")

    p = verb("synthesize_ecephys", _synthesize_ecephys,
             "simulate virtual animals and write them as Allen-layout NWB sessions")
    p.add_argument("probe", help="probe stimulus set (Zarr)")
    p.add_argument("out_dir")
    p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")

    p = verb("assemble_ecephys", _assemble_ecephys,
             "NWB sessions -> NeuralAssembly Zarr with the spec's reliability filters")
    p.add_argument("raw_dir")
    p.add_argument("stimuli", help="stimulus set whose order the presentations' frame indexes")
    p.add_argument("out")
    p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")

    p = verb("train", _train, "train one model; a checkpoint per epoch and metrics.csv")
    p.add_argument("model", help="{arch}-{objective}-{rule}-s{seed}")
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("out_dir")
    p.add_argument("--settings", type=_json, default={},
                   help="epochs, batch_size, lr, label_level, input_size, rule_settings, "
                        "objective_settings")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("transfer", _transfer,
             "linear-evaluation top-1 of a model's frozen penultimate features -> CSV")
    p.add_argument("model_dir")
    p.add_argument("train")
    p.add_argument("test")
    p.add_argument("out")
    p.add_argument("--settings", type=_json, default={},
                   help="the config's models.transfer block: epochs, label_level, C, max_iter")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("extract", _extract, "activations of every layer and epoch on a stimulus set")
    p.add_argument("model_dir")
    p.add_argument("stimuli")
    p.add_argument("out")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    for name, func, help in [
        ("interanimal", _interanimal, "inter-animal consistency, pooled or pairwise source (the ceiling)"),
        ("interanimal_curve", _interanimal,
         "inter-animal consistency on random subsets of the stimuli (compare.curve_sizes)"),
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
        p.add_argument("--settings", type=_json, required=True, help="the config's `compare` block")
        p.add_argument("--dask", type=_json, default={"scheduler": None, "workers": 1})
        p.add_argument("--threads", type=int, default=None)

    p = verb("learning_curves", _learning_curves, "plot loss and accuracy over epochs")
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--style", type=_json, default={})

    p = verb("predictivity_figure", _predictivity_figure,
             "predictivity by layer per area with the inter-animal ceiling")
    p.add_argument("interanimal")
    p.add_argument("predictivity", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--style", type=_json, default={})

    p = verb("rdm_figure", _rdm_figure, "probe-set RDMs of the brain areas and the model layers")
    p.add_argument("neural")
    p.add_argument("activations")
    p.add_argument("stimuli", help="the stimulus set, for its category labels")
    p.add_argument("--out", required=True)
    p.add_argument("--style", type=_json, default={})

    p = verb("alignment_figure", _alignment_figure,
             "angle between backward and forward weights per layer over training")
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--style", type=_json, default={})

    p = verb("curve_figure", _curve_figure, "inter-animal consistency against the number of stimuli")
    p.add_argument("curve", help="results/scores/interanimal_curve/{dataset}.parquet")
    p.add_argument("--out", required=True)
    p.add_argument("--style", type=_json, default={})

    for name, func, help in [
        ("rule_figure", _rule_figure, "best-layer predictivity per area by learning rule"),
        ("model_figure", _model_figure,
         "best-layer predictivity per area by architecture x objective"),
    ]:
        p = verb(name, func, help)
        p.add_argument("summary", help="results/scores/summary/{dataset}.csv")
        p.add_argument("--out", required=True)
        p.add_argument("--style", type=_json, default={})

    p = verb("performance_figure", _performance_figure,
             "best-layer predictivity against linear-evaluation top-1 across models")
    p.add_argument("summary", help="results/scores/summary/{dataset}.csv")
    p.add_argument("transfer", nargs="+", help="results/models/{model}/transfer.csv of every model")
    p.add_argument("--out", required=True)
    p.add_argument("--style", type=_json, default={})
    for name, (_, _, help) in _DOWNLOADS.items():
        p = verb(name, _download, help)
        p.add_argument("out_dir", help="the cache, data/raw/<dataset>; gets manifest.json")
        p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")
    for name, (_, _, help) in _ASSEMBLERS.items():
        p = verb(name, _assemble_manifest, help)
        p.add_argument("manifest")
        p.add_argument("out")
        p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")

    p = verb("allen_stimuli", _allen_stimuli,
             "natural-scene templates of a download manifest -> stimulus set Zarr")
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--name", required=True, help="stimulus set name (stored in its attrs)")
    p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")

    p = verb("assemble_psailamul", _assemble_psailamul,
             "psailamul Allen VISp trial means -> single-trial NeuralAssembly and 31x31 stimuli")
    p.add_argument("source", help="folder holding allen_ns_ordered_derived.npz")
    p.add_argument("neural")
    p.add_argument("stimuli")

    p = verb("majajhong2015_stimuli", _majajhong2015_stimuli,
             "HvM stimulus CSV + zip of a manifest -> stimulus set Zarr")
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--name", required=True, help="stimulus set name (stored in its attrs)")
    p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")
    p = verb("horikawa2017_stimuli", _horikawa2017_stimuli,
             "ImageNet images of the fMRI stimulus ids, from the folder `images` -> stimulus set")
    p.add_argument("neural", help="results/neural/horikawa2017.zarr (its stimulus ids)")
    p.add_argument("out")
    p.add_argument("--name", required=True, help="stimulus set name (stored in its attrs)")
    p.add_argument("--settings", type=_json, required=True, help="the dataset's config block")

    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)
    return 0
