import json

import numpy as np
import pytest
import torch
import xarray as xr

import pipeline.activations
import pipeline.checkpoints
from pipeline.activations import content_key, extract, read_layer
from pipeline.checkpoints import CheckpointError
from pipeline.io import read_zarr, write_zarr
from pipeline.learning import make_rule
from pipeline.models import build_model, layer_outputs
from pipeline.train import TrainSettings, train
from tests.stimulus_sets import write_stimuli

LAYERS = ["area1", "area2", "area3", "area4", "readout"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    write_stimuli(root / "train.zarr", 30, 0, "train")
    write_stimuli(root / "test.zarr", 9, 1, "test")
    write_stimuli(root / "probe.zarr", 21, 2, "probe")
    train("ventral_cnn-supervised-bp-s0", root / "train.zarr", root / "test.zarr",
          root / "model", TrainSettings(epochs=2, batch_size=8), device="cpu")
    checkpoints = sorted((root / "model").glob("epoch_*.pt"))
    return root, checkpoints


def direct_forward(checkpoint_path, images):
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    model = make_rule(checkpoint["rule"]).convert(
        build_model(checkpoint["arch"], checkpoint["n_classes"], checkpoint["input_size"]))
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    pre = checkpoint["preprocessing"]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        return {k: v.flatten(1).numpy() for k, v in layer_outputs(model, x).items()}


def test_store_layout_and_values(setup, tmp_path):
    root, checkpoints = setup
    out = tmp_path / "probe.zarr"
    extract(checkpoints, root / "probe.zarr", out, device="cpu", batch_size=8)
    ds = read_zarr(out)
    assert sorted(ds.data_vars) == sorted(LAYERS)
    assert ds["epoch"].values.tolist() == [0, 1, 2]
    probe = read_zarr(root / "probe.zarr").load()
    assert ds["stimulus_id"].values.tolist() == probe["stimulus_id"].values.tolist()
    assert ds["area1"].dims == ("epoch", "stimulus", "unit_area1")
    assert ds["area1"].shape == (3, 21, 16 * 8 * 8)
    assert ds["readout"].shape == (3, 21, 3)
    assert all(ds[layer].dtype == np.float32 for layer in LAYERS)
    # one epoch and one batch (extract's batch_size 8) per chunk: each batch is written whole
    assert ds["area1"].encoding["chunks"] == (1, 8, 16 * 8 * 8)
    key = json.loads(ds.attrs["content_key"])
    assert key == content_key(checkpoints, root / "probe.zarr")
    assert key["stimulus_sha256"] == "sha-probe-2" and key["layers"] == LAYERS
    assert len(key["weights_sha256"]) == 3 and len(set(key["weights_sha256"])) == 3
    for epoch, path in enumerate(checkpoints):
        expected = direct_forward(path, probe["image"].values)
        for layer in LAYERS:
            np.testing.assert_allclose(ds[layer].isel(epoch=epoch).values, expected[layer],
                                       rtol=1e-5, atol=1e-5)


def consolidated_metadata(path):
    return json.loads((path / ".zmetadata").read_text())["metadata"]


def assert_layout_is_xarrays(store, tmp_path):
    """The store's metadata equal what xarray's own writer makes of the same Dataset."""
    ds = read_zarr(store).load()
    fresh = xr.Dataset({name: (var.dims, var.values) for name, var in ds.data_vars.items()},
                       coords={name: (c.dims, c.values) for name, c in ds.coords.items()},
                       attrs=ds.attrs)
    encoding = {name: {"chunks": var.encoding["chunks"], "compressors": None}
                for name, var in ds.data_vars.items()}
    fresh.to_zarr(tmp_path / "by_xarray.zarr", consolidated=True, zarr_format=2, encoding=encoding)
    assert consolidated_metadata(store) == consolidated_metadata(tmp_path / "by_xarray.zarr")


def test_store_layout_is_what_xarray_writes(setup, tmp_path):
    root, checkpoints = setup
    extract(checkpoints, root / "probe.zarr", tmp_path / "probe.zarr", device="cpu", batch_size=8)
    assert_layout_is_xarrays(tmp_path / "probe.zarr", tmp_path)


def test_read_layer_names_the_unit_dim(setup, tmp_path):
    root, checkpoints = setup
    out = tmp_path / "probe.zarr"
    extract(checkpoints[:1], root / "probe.zarr", out, device="cpu")
    layer = read_layer(out, "area4")
    assert layer.dims == ("epoch", "stimulus", "unit") and layer.shape == (1, 21, 128)
    assert "stimulus_id" in layer.coords
    with pytest.raises(KeyError, match="no layer 'area9'"):
        read_layer(out, "area9")


def test_cache_reused_for_same_key_and_recomputed_when_stale(setup, tmp_path, monkeypatch):
    root, checkpoints = setup
    mine = []
    for path in checkpoints[:2]:
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        mine.append(copy)
    out = tmp_path / "probe.zarr"
    extract(mine, root / "probe.zarr", out, device="cpu")
    before = read_layer(out, "readout")

    def fail(*args, **kwargs):
        raise AssertionError("store rewritten although its content key is unchanged")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline.activations, "_create_store", fail)
        extract(mine, root / "probe.zarr", out, device="cpu")

    checkpoint = torch.load(mine[1], weights_only=True)
    checkpoint["state_dict"]["readout.bias"] += 1.0
    torch.save(checkpoint, mine[1])
    extract(mine, root / "probe.zarr", out, device="cpu")
    after = read_layer(out, "readout")
    np.testing.assert_allclose(after.isel(epoch=1), before.isel(epoch=1) + 1.0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after.isel(epoch=0), before.isel(epoch=0))
    stored = json.loads(read_zarr(out).attrs["content_key"])
    assert stored == content_key(mine, root / "probe.zarr")


def recorded_copies(checkpoints, folder):
    """Copies of the checkpoints with their digest records, as `train` leaves them."""
    copies = []
    for path in checkpoints:
        for name in (path.name, f"{path.name}.sha256"):
            (folder / name).write_bytes(path.with_name(name).read_bytes())
        copies.append(folder / path.name)
    return copies


def test_an_up_to_date_store_is_reused_without_reading_the_checkpoints(setup, tmp_path,
                                                                       monkeypatch):
    root, checkpoints = setup
    mine = recorded_copies(checkpoints, tmp_path)
    out = tmp_path / "probe.zarr"
    extract(mine, root / "probe.zarr", out, device="cpu")
    monkeypatch.setattr(pipeline.checkpoints, "_VERIFIED", {})       # a fresh job

    def fail(*args, **kwargs):
        raise AssertionError("a checkpoint's bytes were read for an up-to-date store")

    monkeypatch.setattr(pipeline.checkpoints, "file_checksum", fail)
    monkeypatch.setattr(pipeline.checkpoints, "_sha256", fail)
    extract(mine, root / "probe.zarr", out, device="cpu")


def test_checkpoints_checked_during_extraction_publish_nothing_when_corrupt(setup, tmp_path):
    """Bytes that torch reads but that differ from the record (here the record's crc32c is
    changed): the forward passes run, the check fails, and neither store nor temporary is left."""
    root, checkpoints = setup
    mine = recorded_copies(checkpoints, tmp_path)
    sidecar = mine[1].with_name(f"{mine[1].name}.sha256")
    record = json.loads(sidecar.read_text())
    name = next(k for k in ("crc32c", "crc32") if k in record)
    sidecar.write_text(json.dumps({**record, name: record[name] ^ 1}))
    out = tmp_path / "out" / "probe.zarr"
    out.parent.mkdir()
    with pytest.raises(CheckpointError, match=rf"{mine[1].name}: corrupt checkpoint: its {name} is"):
        extract(mine, root / "probe.zarr", out, device="cpu")
    assert list(out.parent.iterdir()) == []


def test_stimulus_sha_recomputed_when_attr_missing(setup, tmp_path):
    root, checkpoints = setup
    ds = read_zarr(root / "probe.zarr").load()
    ds.attrs = {}
    write_zarr(ds, tmp_path / "bare.zarr")
    key = content_key(checkpoints[:1], tmp_path / "bare.zarr")
    assert len(key["stimulus_sha256"]) == 64
    ds["image"].values[0, 0, 0, 0] ^= 1
    write_zarr(ds, tmp_path / "bare2.zarr")
    assert content_key(checkpoints[:1], tmp_path / "bare2.zarr")["stimulus_sha256"] != key["stimulus_sha256"]


def test_checkpoints_of_different_models_rejected(setup, tmp_path):
    root, checkpoints = setup
    checkpoint = torch.load(checkpoints[1], weights_only=True)
    checkpoint["preprocessing"] = {**checkpoint["preprocessing"], "mean": [0.0, 0.0, 0.0]}
    torch.save(checkpoint, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: arch/n_classes/input_size/rule/preprocessing differ"):
        content_key([checkpoints[0], tmp_path / "other.pt"], root / "probe.zarr")


def test_stimuli_of_another_size_are_resized(setup, tmp_path, caplog):
    root, checkpoints = setup
    write_stimuli(tmp_path / "big.zarr", 5, 3, "big", size=32)
    with caplog.at_level("INFO", logger="pipeline.activations"):
        extract(checkpoints[:1], tmp_path / "big.zarr", tmp_path / "big_act.zarr", device="cpu")
    assert "resizing stimuli from (32, 32) to the model's input size 16×16" in caplog.text
    assert read_layer(tmp_path / "big_act.zarr", "area1").shape == (1, 5, 16 * 8 * 8)


@pytest.mark.parametrize("rule", ["kp", "hebb"])
def test_models_of_other_rules_are_rebuilt_with_their_layers(setup, tmp_path, rule):
    """The checkpoint names its rule; extraction converts the layers to load B (weight_fb)."""
    root, _ = setup
    train(f"ventral_cnn-supervised-{rule}-s0", root / "train.zarr", root / "test.zarr",
          tmp_path / "model", TrainSettings(epochs=1, batch_size=8), device="cpu")
    checkpoints = sorted((tmp_path / "model").glob("epoch_*.pt"))
    extract(checkpoints, root / "probe.zarr", tmp_path / "probe.zarr", device="cpu")
    ds = read_zarr(tmp_path / "probe.zarr")
    assert json.loads(ds.attrs["content_key"])["layers"] == LAYERS
    probe = read_zarr(root / "probe.zarr").load()
    expected = direct_forward(checkpoints[-1], probe["image"].values)
    for layer in LAYERS:
        np.testing.assert_allclose(ds[layer].isel(epoch=-1).values, expected[layer],
                                   rtol=1e-5, atol=1e-5)


def test_recurrent_model_stores_every_time_step(setup, tmp_path):
    root, _ = setup
    train("convrnn-supervised-bp-s0", root / "train.zarr", root / "test.zarr", tmp_path / "model",
          TrainSettings(epochs=1, batch_size=8), device="cpu")
    checkpoints = sorted((tmp_path / "model").glob("epoch_*.pt"))
    extract(checkpoints, root / "probe.zarr", tmp_path / "probe.zarr", device="cpu", batch_size=8)
    ds = read_zarr(tmp_path / "probe.zarr")
    model = build_model("convrnn", 3, 16)
    steps = model.time_steps
    assert json.loads(ds.attrs["content_key"])["time_steps"] == steps
    assert ds["time"].values.tolist() == list(range(steps))
    assert ds["area1"].dims == ("epoch", "time", "stimulus", "unit_area1")
    assert ds["area1"].shape == (2, steps, 21, 16 * 8 * 8)
    assert ds["readout"].shape == (2, steps, 21, 3)
    layer = read_layer(tmp_path / "probe.zarr", "area4")
    assert layer.dims == ("epoch", "time", "stimulus", "unit") and layer.shape == (2, steps, 21, 128)
    # Values: the per-step outputs of a direct forward pass of the last checkpoint.
    checkpoint = torch.load(checkpoints[-1], weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    probe = read_zarr(root / "probe.zarr").load()
    pre = checkpoint["preprocessing"]
    x = torch.from_numpy(probe["image"].values).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = layer_outputs(model, x)
    for name in ("area2", "readout"):
        direct = expected[name].flatten(2).transpose(0, 1).numpy()       # (time, stimulus, unit)
        # Batches of 8 vs 21 round differently; eight recurrent steps compound it to ~1e-4.
        np.testing.assert_allclose(ds[name].isel(epoch=-1).values, direct, rtol=1e-4, atol=1e-4)
    assert not np.allclose(ds["area1"].isel(epoch=-1, time=0), ds["area1"].isel(epoch=-1, time=-1))
    assert_layout_is_xarrays(tmp_path / "probe.zarr", tmp_path)


def test_feedforward_content_key_has_no_time_steps(setup):
    root, checkpoints = setup
    assert "time_steps" not in content_key(checkpoints[:1], root / "probe.zarr")


def test_a_failure_mid_extraction_leaves_no_store(setup, tmp_path, monkeypatch):
    root, checkpoints = setup
    forward = pipeline.activations._forward_all
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipeline.activations, "_forward_all", fail_second)
    with pytest.raises(RuntimeError, match="killed"):
        extract(checkpoints, root / "probe.zarr", tmp_path / "probe.zarr", device="cpu")
    assert list(tmp_path.iterdir()) == []            # neither the store nor its temporary


def adaptive_means(maps, grid):
    """Adaptive average pooling written out: bin i of a side n spans [floor(i·n/g), ceil((i+1)·n/g))."""
    def bins(n):
        g = min(grid, n)
        return [(i * n // g, -(-(i + 1) * n // g)) for i in range(g)]
    rows, cols = bins(maps.shape[-2]), bins(maps.shape[-1])
    return np.stack([np.stack([maps[..., a:b, c:d].mean((-2, -1)) for c, d in cols], -1)
                     for a, b in rows], -2)


@pytest.mark.parametrize("shape, grid", [((3, 4, 8, 8), 2), ((3, 4, 7, 5), 3), ((2, 3, 4, 6, 6), 4),
                                         ((3, 4, 2, 9), 3)])
def test_pool_maps_takes_the_adaptive_bin_means(shape, grid):
    out = torch.randn(shape)
    recurrent = len(shape) == 5
    pooled = pipeline.activations.pool_maps(out, grid, recurrent)
    np.testing.assert_allclose(pooled.numpy(), adaptive_means(out.numpy(), grid), rtol=1e-6, atol=1e-6)
    dense = torch.randn(3, 10)
    assert pipeline.activations.pool_maps(dense, grid, False) is dense


def test_spatial_pool_stores_the_pooled_maps_and_keys_them(setup, tmp_path, caplog):
    root, checkpoints = setup
    full, pooled = tmp_path / "full.zarr", tmp_path / "pooled.zarr"
    extract(checkpoints, root / "probe.zarr", full, device="cpu", batch_size=8)
    extract(checkpoints, root / "probe.zarr", pooled, device="cpu", batch_size=8, spatial_pool=2)
    a, b = read_zarr(full), read_zarr(pooled)
    assert b["area1"].shape == (3, 21, 16 * 2 * 2)         # 16 channels of 8×8 maps → 2×2
    maps = a["area1"].values.reshape(3, 21, 16, 8, 8)
    np.testing.assert_allclose(b["area1"].values.reshape(3, 21, 16, 2, 2),
                               maps.reshape(3, 21, 16, 2, 4, 2, 4).mean((4, 6)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(b["readout"].values, a["readout"].values)   # dense: unchanged
    key = json.loads(b.attrs["content_key"])
    assert key["spatial_pool"] == 2 and "spatial_pool" not in json.loads(a.attrs["content_key"])
    assert key == content_key(checkpoints, root / "probe.zarr", spatial_pool=2)
    with caplog.at_level("INFO", logger="pipeline.activations"):
        extract(checkpoints, root / "probe.zarr", pooled, device="cpu", batch_size=8)
    assert "stale" in caplog.text                            # full maps asked: recomputed
    assert read_zarr(pooled)["area1"].shape == (3, 21, 16 * 8 * 8)
    with pytest.raises(ValueError, match="spatial_pool must be an integer >= 1"):
        extract(checkpoints, root / "probe.zarr", tmp_path / "bad.zarr", device="cpu", spatial_pool=0)
