"""Command line of the pipeline: one verb per Snakemake rule, each a thin call into the library.

Settings arrive as one JSON object (`--settings`), the config block the rule passes as params,
so the command line and the config schema use the same field names.
"""

from __future__ import annotations

import argparse
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


def _extract(args):
    from pipeline.activations import extract
    from pipeline.runtime import set_num_threads

    set_num_threads(args.threads)
    checkpoints = sorted(Path(args.model_dir).glob("epoch_*.pt"))
    if not checkpoints:
        raise FileNotFoundError(f"{args.model_dir}: no checkpoints epoch_*.pt")
    extract(checkpoints, args.stimuli, args.out, device=args.device)


def _compare_kwargs(settings: dict, dask: dict, threads: int) -> dict:
    """Map the config's `compare` and `dask` blocks onto the engine's keyword arguments."""
    return dict(
        mappings=tuple(settings["mappings"]), n_halves=settings["split_halves"],
        n_splits=settings["splits"], train_frac=settings["train_frac"], seed=settings["seed"],
        alpha=settings["alpha"], n_components=settings["n_components"],
        scheduler=dask["scheduler"], n_workers=threads or dask["workers"],
    )


def _interanimal(args):
    from pipeline.compare.consistency import interanimal
    from pipeline.data.assembly import read_assembly
    from pipeline.io import write_parquet

    scores = interanimal(read_assembly(args.neural),
                         **_compare_kwargs(args.settings, args.dask, args.threads))
    scores.insert(0, "dataset", args.dataset)
    write_parquet(scores, args.out)


def _predictivity(args):
    from pipeline.compare.consistency import predictivity
    from pipeline.data.assembly import read_assembly
    from pipeline.io import read_zarr, write_parquet
    from pipeline.models.names import parse_model_name

    spec = parse_model_name(args.model)
    scores = predictivity(read_zarr(args.activations), read_assembly(args.neural),
                          **_compare_kwargs(args.settings, args.dask, args.threads))
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
    p.add_argument("--settings", type=_json, default={}, help="epochs, batch_size, lr, label_level")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    p = verb("extract", _extract, "activations of every layer and epoch on a stimulus set")
    p.add_argument("model_dir")
    p.add_argument("stimuli")
    p.add_argument("out")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None)

    for name, func, help in [
        ("interanimal", _interanimal, "pooled-source inter-animal consistency (the ceiling)"),
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
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.func(args)
    return 0
