"""Bad configs: every one stops before any job runs, with one message naming the field.

`validate_config` is what the Snakefile calls at start-up; the cases that need the whole zoo
(overrides outside it, objective x rule, input size, epochs) are checked by the Snakefile
itself and tested in tests/workflow/test_snakemake.py.
"""

import pytest

from pipeline.config import ConfigError, validate_config
from tests.workflow.runner import SCHEMA

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("bad, field", [
    # misspelt or unknown keys, at every depth
    ({"modles": {}}, "modles"),
    ({"models": {"train": {"epoch": 3}}}, "models.train.epoch"),
    ({"compare": {"splits": 5}}, "compare.splits"),
    ({"compare": {"common": {"split_halves": 5}}}, "compare.common.split_halves"),
    ({"datasets": {"synthetic_mouse": {"trials": 10}}}, "datasets.synthetic_mouse.trials"),
    ({"datasets": {"allen_neuropixels": {"download": {"dandiset": "000021", "token": "x"}}}},
     "datasets.allen_neuropixels.download.token"),
    ({"dask": {"threads": 2}}, "dask.threads"),
    # wrong types
    ({"compare": {"common": {"n_splits": "five"}}}, "compare.common.n_splits"),
    ({"models": {"seeds": 0}}, "models.seeds"),
    ({"stimuli": {"size": 32.5}}, "stimuli.size"),
    ({"compare": {"common": {"noise_correction": "yes"}}}, "compare.common.noise_correction"),
    # out of range
    ({"models": {"train": {"epochs": 0}}}, "models.train.epochs"),
    ({"models": {"train": {"lr": 0}}}, "models.train.lr"),
    ({"models": {"train": {"momentum": 1.5}}}, "models.train.momentum"),
    ({"models": {"train": {"checkpoint_every": 0}}}, "models.train.checkpoint_every"),
    ({"models": {"extract": {"spatial_pool": 0}}}, "models.extract.spatial_pool"),
    ({"models": {"overrides": {"lenet-supervised-bp-s0": {"checkpoint_every": 1.5}}}},
     "models.overrides.lenet-supervised-bp-s0.checkpoint_every"),
    ({"compare": {"common": {"train_frac": 1.0}}}, "compare.common.train_frac"),
    ({"compare": {"common": {"n_halves": 0}}}, "compare.common.n_halves"),
    ({"compare": {"curve": {"sizes": [2]}}}, "compare.curve.sizes.0"),
    ({"stimuli": {"size": 8}}, "stimuli.size"),
    ({"datasets": {"synthetic_mouse": {"simulate": {"animals_per_area": 1}}}},
     "datasets.synthetic_mouse.simulate.animals_per_area"),
    ({"dask": {"workers": 0}}, "dask.workers"),
    ({"figures": {"dpi": 10}}, "figures.dpi"),
    # unknown names
    ({"device": "gpu"}, "device"),
    ({"models": {"rules": ["bp", "backprop"]}}, "models.rules.1"),
    ({"models": {"archs": ["resnet101"]}}, "models.archs.0"),
    ({"compare": {"common": {"mappings": ["svm"]}}}, "compare.common.mappings.0"),
    ({"compare": {"predictivity": {"epochs": "last"}}}, "compare.predictivity.epochs"),
    ({"models": {"include": ["lenet-simclr-fa"]}}, "models.include.0"),
    ({"dask": {"scheduler": "localhost:8786"}}, "dask.scheduler"),
    ({"datasets": {"synthetic_mouse": {"simulate": {"generator": "resnet"}}}},
     "datasets.synthetic_mouse.simulate.generator"),
    ({"recovery": {"generators": ["ventral_cnn-supervised-bp"]}}, "recovery.generators.0"),
    ({"recovery": {"analysis": {"n_boot": 1}}}, "recovery.analysis.n_boot"),
    # overrides are checked like the block they override
    ({"models": {"overrides": {"ventral_cnn-supervised-bp-s0": {"lr": -1}}}},
     "models.overrides.ventral_cnn-supervised-bp-s0.lr"),
    ({"models": {"overrides": {"ventral_cnn-supervised-bp-s0": {"optimizer": "rmsprop"}}}},
     "models.overrides.ventral_cnn-supervised-bp-s0.optimizer"),
    # NaN and inf pass every range check of JSON Schema, so they are refused before it
    ({"models": {"train": {"lr": NAN}}}, "models.train.lr"),
    ({"models": {"train": {"weight_decay": INF}}}, "models.train.weight_decay"),
    ({"compare": {"common": {"alpha": -INF}}}, "compare.common.alpha"),
    ({"compare": {"curve": {"sizes": [20, INF]}}}, "compare.curve.sizes.1"),
    ({"datasets": {"synthetic_mouse": {"assemble": {"window": [0.0, NAN]}}}},
     "datasets.synthetic_mouse.assemble.window.1"),
])
def test_a_bad_config_names_its_field(bad, field):
    with pytest.raises(ConfigError, match=f"'{field}'") as info:
        validate_config(bad, SCHEMA, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")
