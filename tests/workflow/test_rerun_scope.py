"""Editing one config value reruns exactly the rules whose output can depend on it.

For every leaf of the tiny run's validated config (config.yaml with the tiny config on top,
schema defaults filled in), the value is edited and `snakemake -n` is asked what it would run
after the complete run; the planned rules must equal the table below. Execution settings (`dask`) plan nothing; `figures.dpi` plans only figures.
"""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from pipeline.config import validate_config
from tests.workflow.runner import SCHEMA, TINY, snakemake

MODEL_FIGURES = {"plot_learning_curves", "plot_alignment"}
SCORE_FIGURES = {"summarize", "plot_predictivity", "plot_predictivity_by_rule", "plot_predictivity_by_model",
                 "plot_performance_vs_predictivity"}
CURVE = {"interanimal_curve", "plot_interanimal_curve"}
RECOVERY_FIGURES = {"plot_recovery_matrix", "plot_recovery_margin", "plot_layer_area"}
RECOVERY = {"recovery", "recovery_matrix", "recovery_summary"} | RECOVERY_FIGURES
PREDICTIVITY = {"predictivity", "plot_rdms"} | SCORE_FIGURES | RECOVERY
# Geometry (workflow/rules/geometry.smk): per-model tables, rule x rule similarity, their figures.
GEOMETRY_FIGURES = {"plot_geometry", "plot_probe_accuracy", "plot_rule_similarity"}
GEOMETRY = {"geometry", "rule_similarity"} | GEOMETRY_FIGURES
# Development (workflow/rules/development.smk): off in the tiny run (development.stimulus_sets: []).
DEVELOPMENT = {"development", "development_summary", "development_predictivity", "plot_development_rdms",
               "plot_development_hierarchy", "plot_development_brain"}
# Learning-rule identification (workflow/rules/identify.smk): its runs, observables, classifiers, figures.
IDENTIFY = {"identify_train", "observables", "identify", "plot_identify_accuracy", "plot_identify_confusion",
            "plot_identify_trajectory", "plot_identify_units", "plot_identify_importance"}
MODELS = {"train", "transfer", "extract"} | MODEL_FIGURES | PREDICTIVITY | GEOMETRY
NEURAL = {"interanimal"} | CURVE | PREDICTIVITY
FIGURES = (MODEL_FIGURES | SCORE_FIGURES - {"summarize"} | {"plot_rdms", "plot_interanimal_curve"} | RECOVERY_FIGURES
           | GEOMETRY_FIGURES)
EVERYTHING = {"stimuli", "simulate_synthetic_mouse", "assemble_synthetic_mouse"} | MODELS | NEURAL
# The tiny run's virtual animals come from config.yaml's generator (ventral_cnn-supervised-bp-s101,
# trained by the run): what retrains it simulates the animals again.
GENERATOR = {"simulate_synthetic_mouse", "assemble_synthetic_mouse"} | NEURAL
ZOO = {"rules": {"bp", "kp", "hebb"}, "objectives": {"supervised"}}       # as in config_tiny.yaml
# MEC chapter (workflow/rules/mec.smk): what reads which config block, and what follows.
MEC_FIGURES = {"plot_mec_predictivity", "plot_mec_score_distributions", "plot_mec_ratemaps",
               "plot_mec_knockouts", "plot_mec_decoding_vs_predictivity"}
MEC_SCORES = {"mec_scores", "mec_ks", "mec_knockouts", "plot_mec_ratemaps", "plot_mec_score_distributions",
              "plot_mec_knockouts"}                             # downstream of a model's unit scores
MEC_MAPS = {"mec_predictivity", "plot_mec_predictivity", "plot_mec_decoding_vs_predictivity"} | MEC_SCORES
MEC_NETS = {"train_mec", "mec_ratemaps", "mec_decoding"} | MEC_MAPS   # retrained path integrators
MEC_CONTROLS = {"mec_control", "mec_predictivity", "mec_scores", "mec_ks", "plot_mec_predictivity",
                "plot_mec_score_distributions"}
MEC_DATA = ({"mec_interanimal", "mec_data_scores", "mec_ratemaps", "mec_control", "interanimal"} | CURVE
            | MEC_MAPS)                                          # what reads the virtual MEC assembly

# (leaf path pattern, planned rules); the first matching pattern applies.
EXPECTED = [
    (r"device", MODELS | GENERATOR | MEC_NETS),
    (r"stimuli\..*", EVERYTHING),
    (r"datasets\.synthetic_mouse\.simulate\..*", NEURAL | {"simulate_synthetic_mouse", "assemble_synthetic_mouse"}),
    (r"datasets\.synthetic_mouse\.assemble\..*", NEURAL | {"assemble_synthetic_mouse"}),
    (r"models\.train\.(loader\..*|deterministic)", set()),   # how training runs, not what
    (r"models\.train\..*", MODELS | GENERATOR),
    (r"models\.(archs|objectives|rules|seeds|include|overrides)", MODELS),
    (r"models\.rule_settings\.bp\..*", MODELS | GENERATOR),     # the generator's rule
    (r"models\.rule_settings\.(kp|hebb)\..*", MODELS),
    (r"models\.rule_settings\..*", set()),                  # rules outside the zoo
    (r"models\.objective_settings\.supervised\..*", MODELS | GENERATOR),
    (r"models\.objective_settings\..*", set()),             # objectives outside the zoo
    (r"models\.transfer\..*", {"transfer", "plot_performance_vs_predictivity"}),
    (r"models\.extract\..*", {"extract"} | PREDICTIVITY | GEOMETRY),   # every reader of the activations
    (r"compare\.common\..*", {"interanimal", "predictivity"} | CURVE | SCORE_FIGURES | RECOVERY),
    (r"compare\.interanimal\..*", {"interanimal"} | CURVE | SCORE_FIGURES),
    (r"compare\.curve\..*", CURVE),
    (r"compare\.predictivity\..*", {"predictivity"} | SCORE_FIGURES | RECOVERY),
    # a virtual dataset more: its animals, every model's scores on them, the recovery tables
    (r"recovery\.generators", {"simulate_synthetic_mouse", "assemble_synthetic_mouse", "predictivity"} | RECOVERY),
    (r"recovery\.analysis\..*", RECOVERY),
    (r"datasets\.synthetic_mec\.simulate\..*", {"synthesize_mec", "assemble_synthetic_mec"} | MEC_DATA),
    (r"datasets\.synthetic_mec\.assemble\..*", {"assemble_synthetic_mec"} | MEC_DATA),
    (r"mec\.datasets", set()),                                  # edited to []: outputs only removed
    (r"mec\.models", MEC_NETS - {"mec_knockouts", "plot_mec_knockouts"}),  # a model more
    (r"mec\.train\.(n_place_cells|sigma|surround|place_cell_seed)", MEC_NETS | MEC_CONTROLS),
    (r"mec\.train\..*", MEC_NETS),
    (r"mec\.ratemaps\..*", {"mec_ratemaps", "mec_control"} | MEC_MAPS),
    (r"mec\.controls\.placecells", {"mec_ks", "plot_mec_predictivity", "plot_mec_score_distributions"}),
                                                          # true → false drops a control: only gatherers
    (r"mec\.controls\..*", MEC_CONTROLS),
    (r"mec\.compare\..*", {"mec_interanimal", "mec_predictivity", "plot_mec_predictivity",
                           "plot_mec_decoding_vs_predictivity"}),
    (r"mec\.scores\..*", MEC_SCORES),
    (r"mec\.decoding\..*", {"mec_decoding", "plot_mec_decoding_vs_predictivity"}),
    (r"mec\.knockouts\.models", set()),                        # edited to []: outputs only removed
    (r"mec\.knockouts\.settings\..*", {"mec_knockouts", "plot_mec_knockouts"}),
    (r"geometry\.stimulus_sets", {"extract"} | GEOMETRY),      # a set more: its activations too
    (r"geometry\.analysis\..*", {"geometry", "plot_geometry", "plot_probe_accuracy"}),
    (r"geometry\.rule_similarity\..*", {"rule_similarity", "plot_rule_similarity"}),
    # object solution times, off in the tiny run: a model in ost.models turns the stage on
    (r"ost\.models", {"ost_reference", "ost", "ost_consistency", "plot_ost"}),
    (r"ost\..*", set()),
    # neural dynamics, off in the tiny run (temporal.datasets empty; a dataset there needs a
    # time-resolved assembly, which the tiny run does not make): no edit plans anything
    (r"temporal\..*", set()),
    (r"development\.stimulus_sets", DEVELOPMENT),             # [] -> [probe]: the stage on (activations exist)
    (r"development\.analysis\..*", set()),                   # the stage is off
    # learning-rule identification, off in the tiny run (identify: null): a block turns it on
    (r"identify", IDENTIFY),
    (r"dask\..*", set()),
    (r"figures\..*", FIGURES | MEC_FIGURES),
]

# Edits that a generic rule cannot make valid (the rest: numbers bumped, booleans flipped,
# enums and nulls set to another allowed value, lists extended or shortened).
EDITS = {
    "identify": {"grid": {"rules": ["sgdm", "fa"], "archs": ["lenet"], "batch_sizes": [32],   # 2 runs, 1 epoch
                          "init_seeds": [0], "data_seeds": [0]},
                 "train": {"epochs": 1}, "observables": {"n_stimuli": 16},
                 "classify": {"n_splits": 2, "cv": 2, "classifiers": ["rf"]}},
    "models.archs": ["ventral_cnn", "lenet"],
    "models.objectives": ["supervised", "rotation"],
    "models.rules": ["bp", "kp", "hebb", "fa"],          # a new model each: its jobs, then the figures
    "models.seeds": [0, 1, 2],
    "models.include": ["lenet-supervised-bp-s0"],
    "models.train.input_size": 24,
    "models.train.label_level": "basic",
    "models.train.lr_milestones": [1],
    "models.train.loader.shards": "edits/shards",
    "models.train.loader.pin_memory": False,
    "stimuli.train_per_class": 5,
    "stimuli.test_per_class": 3,
    "stimuli.name": "blobs",
    "datasets.synthetic_mouse.assemble.specimen_quantile": 0.5,
    "datasets.synthetic_mouse.simulate.generator": "ventral_cnn-supervised-kp-s0",   # a candidate, trained
    "recovery.generators": ["ventral_cnn-supervised-kp-s0"],
    "models.rule_settings.kp.decay": 0.001,
    "models.rule_settings.burstprop_kp.decay": 0.001,
    "models.rule_settings.nmf.n_components": 64,
    "models.transfer.epochs": "all",
    "models.extract.spatial_pool": 2,
    "compare.common.splits_per_task": 1,
    "compare.common.mappings": ["ridge", "rsa"],
    "compare.common.alphas": [1.0, 10.0],
    "compare.curve.sizes": [16, None],
    "compare.predictivity.epochs": "final",
    "compare.interanimal.equalize_sources": "min",
    "dask.scheduler": "tcp://127.0.0.1:8786",
    "dask.cluster": "slurm",
    "figures.format": "pdf",
    "datasets.synthetic_mec.simulate.spacing_ratio": 1.6,     # halved it would leave the schema (> 1)
    "datasets.synthetic_mec.simulate.trajectory_file": "edits/trajectory.npz",
    "datasets.synthetic_mec.assemble.position_unit": "m",   # the files' own unit, now stated
    "mec.datasets": [],
    "mec.models": ["ugrnn_relu-placecell-bp-s0", "rnn_tanh-placecell-bp-s0"],
    "mec.controls.nmf_ranks": [4],
    "mec.compare.mappings": ["ridge"],
    "mec.knockouts.models": [],
    "mec.train.surround": 3.0,                         # halved it would leave the schema (> 1)
    "mec.ratemaps.epochs": "final",
    "mec.decoding.epochs": "final",
    "geometry.stimulus_sets": ["probe", "test"],
    "geometry.analysis.epochs": "final",
    "geometry.rule_similarity.epochs": "ends",
    "development.stimulus_sets": ["probe"],
    "development.analysis.epochs": "final",
    "development.analysis.levels": ["superordinate", "basic"],
    "ost.models": ["ventral_cnn-supervised-bp-s0"],
    "ost.reference.path": "edits/ost_reference.csv",
    "ost.reference.dataset": "virtual_ventral_cnn_supervised_kp_s0",
    "ost.presentation.layers": ["area4"],
    "ost.presentation.graded_units": 8,
    "temporal.datasets": [],                                   # any dataset needs time_bins: keep
    "temporal.models": ["ventral_cnn-supervised-bp-s0"],
    "temporal.estimator.maps": ["per_bin"],
    "temporal.estimator.mappings": ["pls"],
    "temporal.model_time.feedforward": ["graded"],
    "temporal.model_time.n_units": 8,
}


def leaves(config, prefix=""):
    """(dotted path, value) of every leaf: a scalar or a list (an empty mapping has none)."""
    if isinstance(config, dict):
        for key, value in config.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], config


def schema_at(schema, path):
    node = schema
    for key in path.split("."):
        props = node.get("properties", {})
        node = props[key] if key in props else node.get("additionalProperties", {})
        if "$ref" in node:                                     # "#/a/b/...": a pointer into the schema
            pointer, node = node["$ref"], schema
            for part in pointer.lstrip("#/").split("/"):
                node = node[part]
    return node


def edited(path, value, schema):
    """Another valid value for one leaf."""
    if path in EDITS:
        return EDITS[path]
    node = schema_at(schema, path)
    if "enum" in node:
        return next(v for v in node["enum"] if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if value + 1 <= node.get("maximum", value + 1) else value - 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return [v / 2 if isinstance(v, float) else v + 1 for v in value]
    raise AssertionError(f"no edit for {path} = {value!r}: add one to EDITS")


def expected_rules(path):
    """The planned rules of the first row of EXPECTED whose pattern matches; None if none does."""
    return next((rules for pattern, rules in EXPECTED if re.fullmatch(pattern, path)), None)


def set_leaf(config, path, value):
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value


def planned_rules(log):
    return set(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M)) - {"all"}


def test_every_leaf_has_a_row():
    """A new config key needs a row saying which rules its value can change."""
    config = validate_config(yaml.safe_load(TINY.read_text()), SCHEMA)
    assert [path for path, _ in leaves(config) if expected_rules(path) is None] == []


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(30 * 60)
def test_editing_a_leaf_plans_exactly_the_rules_that_depend_on_it(tiny_run):
    schema = yaml.safe_load(SCHEMA.read_text())
    config = yaml.safe_load((tiny_run / "results/.report_config.yaml").read_text())
    edits = tiny_run / "edits"
    edits.mkdir(exist_ok=True)
    (edits / "trajectory.npz").touch()                  # the edited trajectory_file: an input

    def plan(number, path, value):
        changed = yaml.safe_load(yaml.safe_dump(config))
        set_leaf(changed, path, edited(path, value, schema))
        (edits / f"{number}.yaml").write_text(yaml.safe_dump(changed))
        dry = snakemake(tiny_run, "-n", "--configfile", edits / f"{number}.yaml")
        assert dry.returncode == 0, f"{path}: {dry.stderr[-2000:]}"
        return path, planned_rules(dry.stdout + dry.stderr)

    with ThreadPoolExecutor(2) as pool:                 # dry runs take no lock
        plans = list(pool.map(lambda item: plan(*item), [(k, *leaf) for k, leaf in enumerate(leaves(config))]))
    wrong = [f"{path}: planned {sorted(planned)}, expected {sorted(expected_rules(path))}"
             for path, planned in plans if planned != expected_rules(path)]
    assert not wrong, "\n".join(wrong)
