"""Tests for pipeline.data.allen_psailamul: the trial-mean assembly and the real psailamul VISp
snapshot read through the rule's verb."""

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.data.allen_psailamul import assemble_allen_psailamul, trial_mean_assembly
from pipeline.data.assembly import read_assembly
from pipeline.data.natural_scenes import natural_scene_ids
from pipeline.data.reliability import split_half_reliability
from pipeline.io import read_zarr
from tests.conftest import SHARED_REAL

PSAILAMUL = SHARED_REAL / "allen_natural_scenes_psailamul"


def test_trial_mean_assembly_is_flagged_single_trial():
    assembly = trial_mean_assembly(np.arange(6.0).reshape(3, 2), ["a", "b", "c"],
                                   neuroid_ids=["n1", "n2"], animal="m", area="VISp",
                                   source="toy")
    assert assembly.sizes == {"stimulus": 3, "trial": 1, "neuroid": 2}
    assert assembly.attrs["trial_means_only"] is True
    assert assembly.reliability.isnull().all()
    with pytest.raises(ValueError, match=r"toy: trial means must be \(stimulus, neuroid\)"):
        trial_mean_assembly(np.zeros((2, 2)), ["a", "b", "c"], neuroid_ids=["n1", "n2"],
                            animal="m", area="VISp", source="toy")
    with pytest.raises(ValueError, match="need >= 2 trials"):
        split_half_reliability(assembly)                         # downstream cannot split


@pytest.mark.skipif(not PSAILAMUL.exists(), reason=f"{PSAILAMUL} is not available")
def test_psailamul_trial_means_load_through_the_cli(tmp_path):
    neural, scenes = tmp_path / "neural.zarr", tmp_path / "stimuli.zarr"
    assert cli(["assemble_allen_psailamul", str(PSAILAMUL), str(neural), str(scenes)]) == 0
    assembly, stimuli = read_assembly(neural), read_zarr(scenes).load()
    assert assembly.sizes == {"stimulus": 118, "trial": 1, "neuroid": 212}
    assert bool(assembly.attrs["trial_means_only"]) is True
    np.testing.assert_array_equal(assembly.stimulus_id, natural_scene_ids(118))
    np.testing.assert_array_equal(stimuli.stimulus_id, assembly.stimulus_id)
    assert set(assembly.area.values) == {"VISp"} and assembly.neuroid_id.values[0] == \
        "501498760_cell000"
    assert (assembly.psailamul_split == "test").sum() == 18
    assert stimuli.image.shape == (118, 31, 31, 3) and stimuli.image.dtype == np.uint8
    assert stimuli.attrs["name"] == "allen_psailamul_scenes"
    # Values are the snapshot's, in Allen scene order.
    raw = np.load(PSAILAMUL / "allen_ns_ordered_derived.npz")
    np.testing.assert_array_equal(assembly.isel(trial=0).values, raw["mean_dff"])
    np.testing.assert_array_equal(stimuli.image.values[..., 0], raw["images"])
    # The ordered file agrees with the repository's own train split.
    train = np.load(PSAILAMUL / "Allen_train_output.npy")
    np.testing.assert_allclose(assembly.isel(trial=0).values[raw["train_scene_index"]], train,
                               rtol=1e-6)


def test_missing_psailamul_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="allen_ns_ordered_derived.npz: not found"):
        assemble_allen_psailamul(tmp_path)
