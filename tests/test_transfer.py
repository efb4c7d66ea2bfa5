import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import binom

from pipeline.io import write_zarr
from pipeline.train import TrainSettings, train
from pipeline.transfer import transfer

pytestmark = pytest.mark.usefixtures("torch_one_thread")
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [120, 120, 120]])
N_TEST = 200


def write_stimuli(path, per_class, seed, *, random_labels=False):
    """Four colour classes plus pixel noise; `random_labels` draws labels independent of the
    images (uniform over the four classes), so no classifier can beat chance on them."""
    rng = np.random.default_rng(seed)
    colour = np.repeat(np.arange(4), per_class)
    label = rng.integers(0, 4, colour.size) if random_labels else colour
    noise = rng.integers(-50, 50, (colour.size, 16, 16, 3))
    image = np.clip(COLOURS[colour][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    names = [f"c{c}" for c in label]
    ds = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), image)},
                    coords={"stimulus_id": ("stimulus", [f"{seed}_{i}" for i in range(colour.size)]),
                            **{level: ("stimulus", names)
                               for level in ("superordinate", "basic", "subordinate")}},
                    attrs={"sha256": f"{seed}-{random_labels}"})
    write_zarr(ds, path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    write_stimuli(root / "train.zarr", 24, 0)
    write_stimuli(root / "test.zarr", N_TEST // 4, 1)
    write_stimuli(root / "train_random.zarr", 24, 2, random_labels=True)
    write_stimuli(root / "test_random.zarr", N_TEST // 4, 3, random_labels=True)
    train("ventral_cnn-supervised-bp-s0", root / "train.zarr", root / "test.zarr",
          root / "model", TrainSettings(epochs=2, batch_size=16, lr=0.05), device="cpu")
    return root


def test_trained_network_is_above_chance_on_the_category_task(trained, tmp_path):
    table = transfer(trained / "model", trained / "train.zarr", trained / "test.zarr",
                     tmp_path / "transfer.csv", device="cpu")
    assert list(table.columns) == ["epoch", "label_level", "top1", "chance"]
    assert table["epoch"].tolist() == [2] and table["chance"].iloc[0] == 0.25
    # above what a label-blind guesser reaches with probability 0.1%
    assert table["top1"].iloc[0] > binom.ppf(0.999, N_TEST, 0.25) / N_TEST
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "transfer.csv"), table)


def test_labels_unrelated_to_the_images_give_chance(trained, tmp_path):
    """Test labels are independent of the features, so the number correct is Binomial(200,
    1/4) whatever the classifier: outside its central 99.8% only by a leak or a bug."""
    table = transfer(trained / "model", trained / "train_random.zarr",
                     trained / "test_random.zarr", tmp_path / "transfer.csv", epochs="all",
                     device="cpu")
    assert table["epoch"].tolist() == [0, 1, 2]
    low, high = binom.ppf([0.001, 0.999], N_TEST, 0.25) / N_TEST
    assert table["top1"].between(low, high).all()


def test_unknown_epochs_raise(trained, tmp_path):
    with pytest.raises(ValueError, match=r"transfer epochs \[7\] have no checkpoint"):
        transfer(trained / "model", trained / "train.zarr", trained / "test.zarr",
                 tmp_path / "t.csv", epochs=[1, 7], device="cpu")
