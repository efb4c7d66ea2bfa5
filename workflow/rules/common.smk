# Input functions and helpers shared by the rule files; no rules here.

import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.config import ConfigError
from pipeline.models.names import PATH_ARCHS, check_model, control_names, parse_model_name


MODELS = list(dict.fromkeys([
    f"{arch}-{objective}-{rule}-s{seed}"
    for arch, objective, rule, seed in itertools.product(
        config["models"]["archs"],
        config["models"]["objectives"],
        config["models"]["rules"],
        config["models"]["seeds"],
    )
] + [parse_model_name(name).name for name in config["models"]["include"]]))


# ---------------------------------------------------------------- model recovery
# A virtual dataset whose generator is a model (datasets.synthetic_mouse.simulate.generator, and
# one virtual_* dataset per entry of recovery.generators) is a hypothesis with its truth known.
# Generators are trained by rule `train` like the zoo, but are candidates only if in MODELS.
_SYNTHETIC = config["datasets"].get("synthetic_mouse")
_MAIN_GENERATOR = _SYNTHETIC["simulate"]["generator"] if _SYNTHETIC else "random"
VIRTUAL_DATASETS = {"virtual_" + parse_model_name(name).name.replace("-", "_"): parse_model_name(name).name
                    for name in config["recovery"]["generators"]}
GENERATOR_OF = {**({"synthetic_mouse": parse_model_name(_MAIN_GENERATOR).name}
                   if _MAIN_GENERATOR != "random" else {}), **VIRTUAL_DATASETS}
RECOVERY_DATASETS = list(GENERATOR_OF)
GENERATORS = list(dict.fromkeys(GENERATOR_OF.values()))


def simulate_settings(wildcards):
    """Params of simulate_synthetic_mouse: datasets.synthetic_mouse.simulate, with a virtual_*
    dataset's generator (recovery.generators) in place of the block's own."""
    block = dict(config["datasets"]["synthetic_mouse"]["simulate"])
    if wildcards.dataset in VIRTUAL_DATASETS:
        block["generator"] = VIRTUAL_DATASETS[wildcards.dataset]
    return json.dumps(block, sort_keys=True)


def generator_input(wildcards):
    """The trained generator's folder a virtual dataset is simulated from (none for random)."""
    generator = GENERATOR_OF.get(wildcards.dataset)
    return [f"results/models/{generator}"] if generator else []


def model_train_block(model):
    """`models.train` updated by that model's override."""
    return {**config["models"]["train"], **config["models"]["overrides"].get(model, {})}


def check_models():
    """ConfigError, before any job runs, for an override naming a model outside the zoo or a
    model its own job would refuse (objective x rule, input size, epochs to transfer or score)."""
    stray = sorted(set(config["models"]["overrides"]) - set(MODELS) - set(GENERATORS))
    if stray:
        raise ConfigError(
            f"config: field 'models.overrides.{stray[0]}' names a model outside the zoo "
            f"(archs x objectives x rules x seeds, plus models.include) and the generators; "
            f"the zoo is {MODELS}"
        )
    if config["recovery"]["generators"] and not _SYNTHETIC:
        raise ConfigError(
            "config: field 'recovery.generators' needs datasets.synthetic_mouse (its simulate and "
            "assemble blocks make the virtual datasets); it is null")
    for name in list(dict.fromkeys(MODELS + GENERATORS)):
        settings = model_train_block(name)
        try:
            check_model(name, input_size=settings["input_size"] or config["stimuli"]["size"],
                        epochs=settings["epochs"], transfer_epochs=config["models"]["transfer"]["epochs"],
                        compare_epochs=config["compare"]["predictivity"]["epochs"])
        except ValueError as err:
            raise ConfigError(f"config: {err}") from err


check_models()
DATASETS = [name for name, block in config["datasets"].items() if block is not None]
FIG = config["figures"]["format"]
# Datasets whose stimuli are spatial bins (MEC rate maps), which image models cannot be scored on.
SPATIAL_DATASETS = {"mec_openfield", "synthetic_mec"}
# The stimulus set each image dataset was recorded on (results/stimuli/{name}.zarr); the
# virtual animals see the probe set of the `stimuli` block.
SOURCE_STIMULI = {"allen_neuropixels": "allen_neuropixels_scenes",
                  "allen_ophys": "allen_ophys_scenes",
                  "allen_psailamul": "allen_psailamul_scenes",
                  "majajhong2015": "majajhong2015_hvm",
                  "horikawa2017": "horikawa2017_images"}
# Datasets of one animal (no inter-animal ceiling): model scores (raw r) and RDMs only.
SINGLE_ANIMAL_DATASETS = {"allen_psailamul"}


def config_block(*keys):
    """The config sub-tree one rule reads, as canonical JSON: editing it reruns that rule only."""
    block = config
    for key in keys:
        block = block[key]
    return json.dumps(block, sort_keys=True)


# How analyses run (dask scheduler and workers), never what they compute: it reaches
# the command line as a global, not as a param, so editing it reruns nothing.
DASK = json.dumps(config["dask"], sort_keys=True)


def train_settings(wildcards):
    """Training settings of one model: the shared block updated by that model's override,
    plus the hyperparameters of its objective and learning rule (second and third parts of
    the model name)."""
    settings = model_train_block(wildcards.model)
    spec = parse_model_name(wildcards.model)
    settings["rule_settings"] = config["models"]["rule_settings"].get(spec.rule, {})
    settings["objective_settings"] = config["models"]["objective_settings"].get(spec.objective, {})
    return json.dumps(settings, sort_keys=True)


def stimulus_set_of(dataset):
    """The stimulus set a dataset's animals were shown (`SOURCE_STIMULI`, or the probe set)."""
    if dataset == "synthetic_mouse" or dataset in VIRTUAL_DATASETS:
        return f"{config['stimuli']['name']}_probe"
    return SOURCE_STIMULI[dataset]


def without_images(dataset):
    """True for the fMRI data when no folder of their ImageNet stimuli is configured: the images
    are not distributed, so only the inter-subject RSA can run."""
    return dataset == "horikawa2017" and not config["datasets"][dataset]["stimuli"]["images"]


def activations_for(wildcards):
    return f"results/activations/{wildcards.model}/{stimulus_set_of(wildcards.dataset)}.zarr"


def final_outputs():
    """Score tables and figures of every model and dataset (the targets of `rule all`)."""
    outputs = [f"results/figures/learning_curves.{FIG}", f"results/figures/alignment.{FIG}"]
    outputs += expand("results/transfer/{model}.csv", model=MODELS)
    outputs += geometry_outputs()
    outputs += development_outputs()
    if DATASETS and all(dataset in SPATIAL_DATASETS or without_images(dataset) for dataset in DATASETS):
        outputs = []                      # no image dataset: no model is trained
    for dataset in DATASETS:
        if without_images(dataset):
            outputs.append(f"results/scores/interanimal/{dataset}.parquet")
            continue
        if dataset in SINGLE_ANIMAL_DATASETS:
            outputs += expand("results/scores/predictivity/{model}/{dataset}.parquet", model=MODELS,
                              dataset=dataset)
            outputs += expand("results/figures/rdms/{model}/{dataset}.{fig}", model=MODELS,
                              dataset=dataset, fig=FIG)
            continue
        if dataset in SPATIAL_DATASETS:
            # Stimuli are position bins, not images: only the inter-animal scores apply.
            outputs += [
                f"results/scores/interanimal/{dataset}.parquet",
                f"results/figures/interanimal_curve_{dataset}.{FIG}",
            ]
            continue
        outputs += [
            f"results/scores/interanimal/{dataset}.parquet",
            f"results/scores/summary/{dataset}.csv",
            f"results/figures/predictivity_{dataset}.{FIG}",
            f"results/figures/predictivity_by_rule_{dataset}.{FIG}",
            f"results/figures/predictivity_by_model_{dataset}.{FIG}",
            f"results/figures/performance_vs_predictivity_{dataset}.{FIG}",
            f"results/figures/interanimal_curve_{dataset}.{FIG}",
        ]
        outputs += expand(
            "results/scores/predictivity/{model}/{dataset}.parquet",
            model=MODELS,
            dataset=dataset,
        )
        outputs += expand(
            "results/figures/rdms/{model}/{dataset}.{fig}",
            model=MODELS,
            dataset=dataset,
            fig=FIG,
        )
    return (outputs + recovery_outputs() + mec_outputs() + ost_outputs() + temporal_outputs()
            + identify_outputs())


# ---------------------------------------------------------------- geometry (workflow/rules/geometry.smk)
# The stimulus sets of the `stimuli` block the geometry stage runs on (geometry.stimulus_sets).
GEOMETRY_SETS = [f"{config['stimuli']['name']}_{which}" for which in config["geometry"]["stimulus_sets"]]


def geometry_outputs():
    """Per-model geometry tables, the rule x rule similarity table and their figures, per set."""
    outputs = []
    for stimulus_set in GEOMETRY_SETS if MODELS else []:
        for table in ("layers", "spectrum"):
            outputs += expand("results/geometry/{table}/{model}/{stimulus_set}.parquet", table=table,
                              model=MODELS, stimulus_set=stimulus_set)
        outputs.append(f"results/geometry/rule_similarity/{stimulus_set}.parquet")
        outputs += [f"results/figures/{figure}_{stimulus_set}.{FIG}"
                    for figure in ("geometry", "probe_accuracy", "rule_similarity")]
    return outputs


def check_geometry():
    """ConfigError, before any job runs, for geometry epochs beyond a model's training."""
    if not GEOMETRY_SETS:
        return
    for block in ("analysis", "rule_similarity"):
        epochs = config["geometry"][block]["epochs"]
        if isinstance(epochs, str):
            continue
        for name in MODELS:
            trained = model_train_block(name)["epochs"]
            beyond = sorted(e for e in epochs if e > trained)
            if beyond:
                raise ConfigError(f"config: field 'geometry.{block}.epochs' lists {beyond}, beyond the "
                                  f"trained epochs 0…{trained} of model {name!r}")


check_geometry()


# ---------------------------------------------------------------- development (workflow/rules/development.smk)
# The stimulus sets of the `stimuli` block the development stage runs on (development.stimulus_sets).
DEVELOPMENT_SETS = [f"{config['stimuli']['name']}_{which}" for which in config["development"]["stimulus_sets"]]


def development_datasets(stimulus_set):
    """Image datasets whose animals were shown `stimulus_set`: the brain areas of its RSA."""
    return [dataset for dataset in DATASETS if dataset not in SPATIAL_DATASETS and not without_images(dataset)
            and stimulus_set_of(dataset) == stimulus_set]


def development_neural(wildcards):
    """The NeuralAssemblies rule development compares a model with (none for a set no animal saw)."""
    return [f"results/neural/{dataset}.zarr" for dataset in development_datasets(wildcards.stimulus_set)]


def development_outputs():
    """Per-model development tables, the half-time summary, predictivity per epoch and figures."""
    outputs = []
    for stimulus_set in DEVELOPMENT_SETS if MODELS else []:
        for table in ("rdms", "trajectory", "halftimes", "brain"):
            outputs += expand("results/development/{table}/{model}/{stimulus_set}.parquet", table=table,
                              model=MODELS, stimulus_set=stimulus_set)
        outputs += [f"results/development/halftimes_{stimulus_set}.csv",
                    f"results/figures/development/rdms_{stimulus_set}.{FIG}",
                    f"results/figures/development/rdms_{stimulus_set}.gif",
                    f"results/figures/development/hierarchy_{stimulus_set}.{FIG}"]
        for dataset in development_datasets(stimulus_set):
            outputs += [f"results/development/predictivity_{dataset}.csv",
                        f"results/figures/development/brain_{stimulus_set}.{FIG}"]
    return list(dict.fromkeys(outputs))


def check_development():
    """ConfigError, before any job runs, for development epochs beyond a model's training."""
    epochs = config["development"]["analysis"]["epochs"]
    if not DEVELOPMENT_SETS or isinstance(epochs, str):
        return
    for name in MODELS:
        trained = model_train_block(name)["epochs"]
        beyond = sorted(e for e in epochs if e > trained)
        if beyond:
            raise ConfigError(f"config: field 'development.analysis.epochs' lists {beyond}, beyond the "
                              f"trained epochs 0…{trained} of model {name!r}")


check_development()


def recovery_outputs():
    """Recovery tables and figures of every dataset whose generator is a model (none without)."""
    if not RECOVERY_DATASETS:
        return []
    outputs = ["results/recovery/matrix.csv", "results/recovery/summary.rst",
               f"results/figures/recovery_matrix.{FIG}"]
    outputs += expand("results/scores/predictivity/{model}/{dataset}.parquet", model=MODELS,
                      dataset=list(VIRTUAL_DATASETS))
    for dataset in RECOVERY_DATASETS:
        outputs += [f"results/recovery/{dataset}/recovery.csv",
                    f"results/figures/recovery_margin_{dataset}.{FIG}",
                    f"results/figures/layer_area_{dataset}.{FIG}"]
    return outputs


def make_report():
    """Write results/report.html with `snakemake --report` once every final output exists.

    The report run gets the run's own validated config as one file, so it sees exactly what
    this run saw, whatever `--configfile`s were given and in whatever order. With a model
    generator, the report opens with results/recovery/summary.rst (rules/recovery.smk).
    """
    if not all(Path(path).exists() for path in final_outputs()):
        print("report: some final outputs are missing; run the whole DAG to get results/report.html")
        return
    config_path = Path("results/.report_config.yaml")
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=True))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workflow.main_snakefile),
               "--report", "results/report.html", "--quiet", "all", "--configfile", str(config_path)]
    subprocess.run(command, check=True)


# ---------------------------------------------------------------- MEC (workflow/rules/mec.smk)
# Path integrators (mec.models), controls (mec.controls) and the rate-map datasets they are
# compared with (mec.datasets); all empty when the config's `mec` block is null.

MEC = config.get("mec") or {}
MEC_MODELS = [parse_model_name(name).name for name in MEC.get("models", [])]
MEC_CONTROLS = control_names(MEC["controls"]) if MEC else []
MEC_SOURCES = MEC_MODELS + MEC_CONTROLS
MEC_KNOCKOUT_MODELS = list((MEC.get("knockouts") or {}).get("models", []))
MEC_DATASETS = list(MEC.get("datasets", []))
MEC_CONTROL_PATTERN = r"placecells|velocity|nmf_full|nmf_r\d+"
MEC_SOURCE_PATTERN = rf"{MEC_CONTROL_PATTERN}|[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+-s\d+"


def check_mec():
    """ConfigError, before any job runs, for a MEC model that is not a path integrator, a
    knockout model outside mec.models, or a MEC dataset that the config does not define."""
    for name in MEC_MODELS:
        if parse_model_name(name).arch not in PATH_ARCHS:
            raise ConfigError(f"config: field 'mec.models' lists {name!r}, which is not a path "
                              f"integrator ({{cell}}_{{nonlinearity}}-placecell|position-...)")
    stray = sorted(set(MEC_KNOCKOUT_MODELS) - set(MEC_MODELS))
    if stray:
        raise ConfigError(f"config: field 'mec.knockouts.models' names {stray[0]!r}, which is "
                          f"not in mec.models {MEC_MODELS}")
    for dataset in MEC_DATASETS:
        if not config["datasets"].get(dataset):
            raise ConfigError(f"config: field 'mec.datasets' lists {dataset!r}, but "
                              f"datasets.{dataset} is not configured (null or absent)")


def mec_block(*keys):
    """`config_block("mec", *keys)`, or "{}" when the run has no `mec` block (no MEC job runs,
    but the rules are still defined)."""
    return config_block("mec", *keys) if MEC else "{}"


def mec_train_settings(wildcards):
    """mec.train plus the model's rule settings (mec.rule_settings[rule])."""
    learning_rule = parse_model_name(wildcards.model).rule
    return json.dumps({**MEC["train"], "rule_settings": MEC["rule_settings"].get(learning_rule, {})},
                      sort_keys=True)


def mec_place_cell_settings():
    """The place-cell keys of mec.train: all a control's maps depend on from that block."""
    keys = ("n_place_cells", "sigma", "surround", "place_cell_seed")
    return json.dumps({key: MEC["train"][key] for key in keys}, sort_keys=True) if MEC else "{}"


def mec_outputs():
    """Tables and figures of the MEC chapter (empty without a `mec` block)."""
    outputs = []
    for dataset in MEC_DATASETS:
        outputs += [
            f"results/mec/interanimal/{dataset}.parquet",
            f"results/mec/ks/{dataset}.parquet",
            f"results/figures/mec/predictivity_{dataset}.{FIG}",
            f"results/figures/mec/score_distributions_{dataset}.{FIG}",
        ]
        outputs += expand("results/mec/predictivity/{source}/{dataset}.parquet",
                          source=MEC_SOURCES, dataset=dataset)
        outputs += expand(f"results/figures/mec/ratemaps/{{model}}/{dataset}.{FIG}",
                          model=MEC_MODELS)
        if MEC_MODELS:
            outputs.append(f"results/figures/mec/decoding_vs_predictivity_{dataset}.{FIG}")
        if MEC_KNOCKOUT_MODELS:
            outputs.append(f"results/figures/mec/knockouts_{dataset}.{FIG}")
    return outputs


check_mec()


# ---------------------------------------------------------------- object solution times (workflow/rules/ost.smk)
# Models whose OSTs are computed (ost.models; none: the stage is off), the probe set their decoders
# read, and the reference table: a user's CSV (ost.reference.path) or the virtual observer's.
OST = config["ost"]
OST_MODELS = [parse_model_name(name).name for name in OST["models"]]
OST_STIMULI = f"results/stimuli/{config['stimuli']['name']}_probe.zarr"
OST_REFERENCE = OST["reference"]["path"] or "results/ost/reference.csv"


def check_ost():
    """ConfigError, before any job runs, for an OST model outside the zoo, a window shorter than
    a step, a reference file that is absent, or a virtual observer without its virtual animals."""
    if not OST_MODELS:
        return
    stray = sorted(set(OST_MODELS) - set(MODELS))
    if stray:
        raise ConfigError(f"config: field 'ost.models' lists {stray[0]!r}, which is not in the zoo "
                          f"(archs x objectives x rules x seeds, plus models.include): {MODELS}")
    for block, step in (("presentation", OST["presentation"]["step_ms"]),
                        ("reference", OST["reference"]["bin_ms"])):
        start, stop = OST[block]["window_ms"]
        if stop - start < step:
            raise ConfigError(f"config: field 'ost.{block}.window_ms' must span at least one step of "
                              f"{step} ms; got [{start}, {stop}]")
    path, dataset = OST["reference"]["path"], OST["reference"]["dataset"]
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config: field 'ost.reference.path': {path} is not a file (a CSV with "
                          f"columns image_id, dprime[, ost_ms])")
    if path is None and not (config["datasets"].get(dataset) if dataset == "synthetic_mouse"
                             else dataset in VIRTUAL_DATASETS):
        raise ConfigError(f"config: field 'ost.reference.dataset' is {dataset!r}, which this run does "
                          f"not simulate; configure it, or give a reference CSV in ost.reference.path")


def ost_outputs():
    """Per-model OST tables, the consistency table and its figure (none while ost.models is empty)."""
    if not OST_MODELS:
        return []
    return expand("results/ost/{model}/ost.parquet", model=OST_MODELS) + [
        "results/ost/consistency.csv", f"results/figures/ost.{FIG}"]


check_ost()


# ---------------------------------------------------------------- neural dynamics (workflow/rules/temporal.smk)
# Time-resolved datasets (temporal.datasets; none: the stage is off) and the models scored over
# time on them (temporal.models, trained and extracted like the zoo).
TEMPORAL = config["temporal"]
TEMPORAL_DATASETS = list(TEMPORAL["datasets"])
TEMPORAL_MODELS = [parse_model_name(name).name for name in TEMPORAL["models"]]


def check_temporal():
    """ConfigError, before any job runs, for a temporal dataset that the run does not configure,
    or whose assembly averages its time bins."""
    for dataset in TEMPORAL_DATASETS:
        source = "synthetic_mouse" if dataset in VIRTUAL_DATASETS else dataset
        block = config["datasets"].get(source)
        if not block:
            raise ConfigError(f"config: field 'temporal.datasets' lists {dataset!r}, but "
                              f"datasets.{source} is not configured (null or absent)")
        if dataset in SPATIAL_DATASETS or (block.get("assemble") or {}).get("time_bins") != "keep":
            raise ConfigError(f"config: field 'temporal.datasets' lists {dataset!r}, whose assembly is "
                              f"not time-resolved; set datasets.{source}.assemble.time_bins: keep")


def temporal_outputs():
    """Per-bin score tables, summaries and figures of the temporal stage (none while it is off)."""
    outputs = []
    for dataset in TEMPORAL_DATASETS:
        outputs.append(f"results/temporal/interanimal/{dataset}.parquet")
        outputs += expand("results/temporal/predictivity/{model}/{dataset}.parquet", model=TEMPORAL_MODELS,
                          dataset=dataset)
        outputs += [f"results/temporal/summary/{dataset}_{table}.csv" for table in ("bins", "phases")]
        outputs += [f"results/figures/temporal/{figure}_{dataset}.{FIG}"
                    for figure in ("predictivity_over_time", "phases")]
    return outputs


check_temporal()
