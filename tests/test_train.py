import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from pipeline.io import write_zarr
from pipeline.learning import make_rule
from pipeline.objectives import OBJECTIVE_DEFAULTS
from pipeline.runtime import autocast, resolve_device, seed_everything, set_num_threads
from pipeline.train import TrainSettings, train

MODEL = "ventral_cnn-supervised-bp-s0"
# Four classes told apart by colour; (superordinate, basic, subordinate) per class.
CLASSES = [("warm", "red", "red/a"), ("cool", "green", "green/a"), ("cool", "blue", "blue/a"),
           ("warm", "gray", "gray/a")]
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [120, 120, 120]])


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def write_stimuli(path, per_class, seed, size=16, prefix=""):
    """Tiny stimulus set in the layout of pipeline/data/stimuli.py, colours plus noise."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(len(CLASSES)), per_class)
    noise = rng.integers(-50, 50, (label.size, size, size, 3))
    image = np.clip(COLOURS[label][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"), image)},
        coords={"stimulus_id": ("stimulus", [f"{prefix}{i:04d}" for i in range(label.size)]),
                **{level: ("stimulus", [CLASSES[c][k] for c in label])
                   for k, level in enumerate(("superordinate", "basic", "subordinate"))}},
        attrs={"sha256": f"{prefix}{seed}", "name": prefix},
    )
    write_zarr(ds, path)
    return ds


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory):
    root = tmp_path_factory.mktemp("stimuli")
    write_stimuli(root / "train.zarr", 24, seed=0, prefix="train")
    write_stimuli(root / "test.zarr", 8, seed=1, prefix="test")
    return root / "train.zarr", root / "test.zarr"


KW = dict(epochs=3, batch_size=16, lr=0.05)


def run(stimuli, out, model=MODEL, **kw):
    return train(model, *stimuli, out, TrainSettings(**{**KW, **kw}), device="cpu")


@pytest.fixture(scope="module")
def trained(stimuli, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    return out, run(stimuli, out)


def load(path):
    return torch.load(path, weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_writes_every_checkpoint_and_metrics(trained):
    out, metrics = trained
    assert sorted(p.name for p in out.glob("*.pt")) == [f"epoch_{e:03d}.pt" for e in range(4)]
    on_disk = pd.read_csv(out / "metrics.csv")
    assert list(on_disk.columns) == ["epoch", "loss", "train_acc", "test_acc", "test_loss",
                                     "seconds"]
    assert on_disk["epoch"].tolist() == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(on_disk, metrics, check_dtype=False)


@pytest.fixture(scope="module")
def every_epoch_of_five(stimuli, tmp_path_factory):
    """5 epochs with a checkpoint every epoch: the reference of the checkpoint_every tests."""
    out = tmp_path_factory.mktemp("every1")
    return out, run(stimuli, out, epochs=5)


def test_checkpoint_every_writes_epoch_0_every_kth_and_the_last(stimuli, every_epoch_of_five,
                                                                tmp_path):
    from pipeline.checkpoints import run_epochs

    dense, dense_metrics = every_epoch_of_five
    metrics = run(stimuli, tmp_path, epochs=5, checkpoint_every=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "epoch_000.pt", "epoch_002.pt", "epoch_004.pt", "epoch_005.pt"]
    assert list(run_epochs(tmp_path)) == [0, 2, 4, 5]
    # metrics.csv and alignment.csv keep every epoch, equal to the dense run's
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv").drop(columns="seconds"),
                                  dense_metrics.drop(columns="seconds"), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "alignment.csv"),
                                  pd.read_csv(dense / "alignment.csv"))
    for epoch in (0, 2, 4, 5):                    # checkpointing changes no weight
        assert_same_weights(load(tmp_path / f"epoch_{epoch:03d}.pt")["state_dict"],
                            load(dense / f"epoch_{epoch:03d}.pt")["state_dict"])
    assert [r["epoch"] for r in load(tmp_path / "epoch_002.pt")["skipped"]] == [1]
    assert "skipped" not in load(tmp_path / "epoch_005.pt")     # follows epoch 4 at once
    assert load(tmp_path / "epoch_002.pt")["settings"]["checkpoint_every"] == 2
    assert "checkpoint_every" not in load(dense / "epoch_002.pt")["settings"]


def test_a_run_resumed_under_checkpoint_every_equals_an_uninterrupted_one(stimuli, tmp_path):
    """A 3-epoch run (checkpoints 0, 2, 3) extended to 5: epoch 3 is not one of the longer
    run's checkpoints and is removed; training resumes after epoch 2 and every checkpoint and
    metrics row equals the uninterrupted run's, byte for byte."""
    run(stimuli, tmp_path / "whole", epochs=5, checkpoint_every=2)
    run(stimuli, tmp_path / "parts", epochs=3, checkpoint_every=2)
    assert (tmp_path / "parts" / "epoch_003.pt").exists()
    resumed = run(stimuli, tmp_path / "parts", epochs=5, checkpoint_every=2)
    for name in ("epoch_000.pt", "epoch_002.pt", "epoch_004.pt", "epoch_005.pt"):
        assert (tmp_path / "parts" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "parts").glob("*.pt")) == sorted(
        p.name for p in (tmp_path / "whole").glob("*.pt"))
    pd.testing.assert_frame_equal(
        resumed.drop(columns="seconds"),
        pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(columns="seconds"),
        check_dtype=False)


def test_alignment_csv_has_a_row_per_epoch_and_layer(trained):
    out, _ = trained
    table = pd.read_csv(out / "alignment.csv")
    assert list(table.columns) == ["epoch", "layer", "weight_angle", "norm_ratio",
                                   "gradient_angle"]
    layers = [f"area{a}.{i}" for a in range(1, 5) for i in (0, 3)] + ["readout"]
    assert table["epoch"].tolist() == [e for e in range(4) for _ in layers]
    assert table["layer"].tolist() == layers * 4
    assert (table[["weight_angle", "gradient_angle"]] == 0).all().all()   # bp: B is W
    assert (table["norm_ratio"] == 1).all()


def test_learns_above_chance(trained):
    _, metrics = trained
    assert metrics["test_acc"].iloc[-1] >= 0.75          # chance is 0.25
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]


def test_checkpoints_load_with_weights_only(trained, stimuli):
    out, _ = trained
    checkpoint = load(out / "epoch_002.pt")
    assert checkpoint["model_name"] == MODEL and checkpoint["arch"] == "ventral_cnn"
    assert checkpoint["rule"] == "bp" and checkpoint["settings"]["rule_settings"] == {}
    assert checkpoint["objective"] == "supervised" and checkpoint["heads"] == {}
    assert checkpoint["settings"]["objective_settings"] == {}
    assert checkpoint["alignment_optimizer"] is None and len(checkpoint["alignment"]) == 9
    assert checkpoint["epoch"] == 2 and checkpoint["n_classes"] == 4
    assert checkpoint["classes"] == ["blue/a", "gray/a", "green/a", "red/a"]
    assert checkpoint["label_level"] == "subordinate" and checkpoint["input_size"] == 16
    images = xr.open_zarr(stimuli[0])["image"].values / 255
    np.testing.assert_allclose(checkpoint["preprocessing"]["mean"], images.mean((0, 1, 2)))
    np.testing.assert_allclose(checkpoint["preprocessing"]["std"], images.std((0, 1, 2)))
    assert checkpoint["preprocessing"]["input_size"] == 16
    assert all(isinstance(t, torch.Tensor) for t in checkpoint["state_dict"].values())


def test_epoch_0_holds_the_initial_weights(trained):
    out, _ = trained
    torch.manual_seed(0)
    from pipeline.models import build_model

    initial = build_model("ventral_cnn", 4, 16).state_dict()
    assert_same_weights(load(out / "epoch_000.pt")["state_dict"], initial)


def test_same_seed_same_weights_other_seed_differs(trained, stimuli, tmp_path):
    out, _ = trained
    run(stimuli, tmp_path / "again", epochs=1)
    assert_same_weights(load(tmp_path / "again" / "epoch_001.pt")["state_dict"],
                        load(out / "epoch_001.pt")["state_dict"])
    run(stimuli, tmp_path / "s1", model="ventral_cnn-supervised-bp-s1", epochs=1)
    other = load(tmp_path / "s1" / "epoch_001.pt")["state_dict"]
    assert not torch.equal(other["readout.weight"], load(out / "epoch_001.pt")["state_dict"]["readout.weight"])


def test_resume_continues_to_the_same_weights(trained, stimuli, tmp_path):
    out, metrics = trained
    run(stimuli, tmp_path, epochs=1)
    first = (tmp_path / "epoch_001.pt").stat().st_mtime_ns
    resumed = run(stimuli, tmp_path)
    assert (tmp_path / "epoch_001.pt").stat().st_mtime_ns == first       # not retrained
    assert_same_weights(load(tmp_path / "epoch_003.pt")["state_dict"],
                        load(out / "epoch_003.pt")["state_dict"])
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), metrics.drop(columns="seconds"))


def test_step_schedule_sets_each_epochs_rate_and_resumes(stimuli, tmp_path):
    run(stimuli, tmp_path / "full", lr_milestones=[1, 2], lr_gamma=0.5)
    rates = [load(tmp_path / "full" / f"epoch_{e:03d}.pt")["optimizer"]["param_groups"][0]["lr"]
             for e in (1, 2, 3)]
    assert rates == pytest.approx([0.05, 0.025, 0.0125])   # MultiStepLR stepped per epoch
    run(stimuli, tmp_path / "resumed", epochs=2, lr_milestones=[1, 2], lr_gamma=0.5)
    run(stimuli, tmp_path / "resumed", lr_milestones=[1, 2], lr_gamma=0.5)
    assert_same_weights(load(tmp_path / "resumed" / "epoch_003.pt")["state_dict"],
                        load(tmp_path / "full" / "epoch_003.pt")["state_dict"])


def test_resume_skips_a_corrupt_checkpoint(trained, stimuli, tmp_path):
    out, _ = trained
    run(stimuli, tmp_path)
    path = tmp_path / "epoch_002.pt"
    path.write_bytes(path.read_bytes()[:100])
    run(stimuli, tmp_path)
    assert_same_weights(load(tmp_path / "epoch_003.pt")["state_dict"],
                        load(out / "epoch_003.pt")["state_dict"])


def test_changed_settings_start_afresh(stimuli, tmp_path):
    run(stimuli, tmp_path, epochs=1)
    run(stimuli, tmp_path, epochs=1, lr=0.01)
    assert load(tmp_path / "epoch_001.pt")["settings"]["lr"] == 0.01


def test_resume_of_a_feedback_rule_continues_to_the_same_weights(stimuli, tmp_path):
    """Weight mirror: B, the Adam state of the alignment optimizer and the noise generator
    all travel in the checkpoint."""
    model = "ventral_cnn-supervised-wm-s0"
    whole = run(stimuli, tmp_path / "whole", model=model)
    run(stimuli, tmp_path / "parts", model=model, epochs=1)
    resumed = run(stimuli, tmp_path / "parts", model=model)
    final = load(tmp_path / "whole" / "epoch_003.pt")
    assert_same_weights(load(tmp_path / "parts" / "epoch_003.pt")["state_dict"],
                        final["state_dict"])
    assert sum(k.endswith("weight_fb") for k in final["state_dict"]) == 9
    assert final["alignment_optimizer"]["state"]                 # Adam moments saved
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), whole.drop(columns="seconds"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "parts" / "alignment.csv"),
                                  pd.read_csv(tmp_path / "whole" / "alignment.csv"))
    first = load(tmp_path / "whole" / "epoch_000.pt")["state_dict"]
    assert not torch.equal(first["area2.0.weight_fb"], final["state_dict"]["area2.0.weight_fb"])


def test_feedback_rule_starts_from_build_model_and_records_alignment(stimuli, tmp_path):
    run(stimuli, tmp_path, model="ventral_cnn-supervised-fa-s0", epochs=1)
    torch.manual_seed(0)
    from pipeline.models import build_model

    initial = make_rule("fa").convert(build_model("ventral_cnn", 4, 16)).state_dict()
    checkpoint = load(tmp_path / "epoch_000.pt")
    assert_same_weights(checkpoint["state_dict"], initial)
    assert checkpoint["rule"] == "fa" and checkpoint["settings"]["rule_settings"] == {}
    table = pd.read_csv(tmp_path / "alignment.csv")
    assert len(table) == 2 * 9 and table["weight_angle"].between(60, 120).all()
    fb = [k for k in initial if k.endswith("weight_fb")]
    assert_same_weights({k: load(tmp_path / "epoch_001.pt")["state_dict"][k] for k in fb},
                        {k: initial[k] for k in fb})                    # FA: B is fixed


def test_hebbian_rule_records_nan_angles_for_its_conv_layers(stimuli, tmp_path):
    run(stimuli, tmp_path, model="ventral_cnn-supervised-hebb-s0", epochs=1)
    table = pd.read_csv(tmp_path / "alignment.csv")
    hebbian = table[table["layer"] != "readout"]
    assert len(hebbian) == 2 * 8 and hebbian.drop(columns=["epoch", "layer"]).isna().all().all()
    readout = table[table["layer"] == "readout"]
    assert (readout["weight_angle"] == 0).all() and (readout["norm_ratio"] == 1).all()


def test_hebbian_readout_fit_changes_only_the_readout(stimuli, tmp_path):
    """readout: fit refits the readout after each epoch and nothing else: the Hebbian kernels
    and BatchNorm statistics, which never see the readout, equal readout: sgd's bit for bit."""
    model = "ventral_cnn-supervised-hebb-s0"
    run(stimuli, tmp_path / "fit", model=model, epochs=2)
    run(stimuli, tmp_path / "sgd", model=model, epochs=2, rule_settings={"readout": "sgd"})
    fit, sgd = (load(tmp_path / kind / "epoch_002.pt")["state_dict"] for kind in ("fit", "sgd"))
    assert fit.keys() == sgd.keys()
    for name in fit:
        assert torch.equal(fit[name], sgd[name]) != name.startswith("readout."), name


def test_hebbian_readout_settings_are_checked():
    with pytest.raises(ValueError, match="readout must be one of fit, sgd; got 'lbfgs'"):
        make_rule("hebb", {"readout": "lbfgs"})
    with pytest.raises(ValueError, match="readout_iterations must be an int ≥ 1; got 0"):
        make_rule("hebb", {"readout_iterations": 0})


def test_changed_rule_settings_start_afresh(stimuli, tmp_path):
    model = "ventral_cnn-supervised-sa-s0"
    run(stimuli, tmp_path, model=model, epochs=1)
    first = (tmp_path / "epoch_001.pt").stat().st_mtime_ns
    run(stimuli, tmp_path, model=model, epochs=1, rule_settings={"lr": 0.01})
    checkpoint = load(tmp_path / "epoch_001.pt")
    assert checkpoint["settings"]["rule_settings"] == {"self": 2e-3, "decay": 1e-3,
                                                       "optimizer": "adam", "lr": 0.01}
    assert (tmp_path / "epoch_001.pt").stat().st_mtime_ns != first


def test_unknown_rule_settings_raise(stimuli, tmp_path):
    with pytest.raises(ValueError, match=r"model 'ventral_cnn-supervised-kp-s0': rule_settings "
                                         r"for rule 'kp' have unknown key\(s\) \['lr'\]"):
        run(stimuli, tmp_path, model="ventral_cnn-supervised-kp-s0", rule_settings={"lr": 1.0})


def test_label_level_picks_the_classes(stimuli, tmp_path):
    metrics = run(stimuli, tmp_path, epochs=0, label_level="superordinate")
    assert load(tmp_path / "epoch_000.pt")["classes"] == ["cool", "warm"]
    assert metrics["epoch"].tolist() == [0]


def test_bad_inputs_raise(stimuli, tmp_path):
    with pytest.raises(ValueError, match="label_level must be one of"):
        run(stimuli, tmp_path, label_level="species")
    train_path, _ = stimuli
    odd = tmp_path / "odd.zarr"
    ds = write_stimuli(odd, 2, seed=3, prefix="odd")
    write_zarr(ds.assign_coords(subordinate=("stimulus", ["new/x"] * ds.sizes["stimulus"])), odd)
    with pytest.raises(ValueError, match=r"odd.zarr: 1 subordinate class\(es\) absent"):
        train(MODEL, train_path, odd, tmp_path / "m", TrainSettings(epochs=0))
    with pytest.raises(ValueError, match="unknown model rule"):
        run(stimuli, tmp_path, model="ventral_cnn-supervised-xx-s0")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda; got 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device 'cuda' was requested but torch finds no"):
            resolve_device("cuda")


def test_set_num_threads_pins_torch_and_blas():
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):          # restores the BLAS pools afterwards
        try:
            set_num_threads(1)
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        finally:
            torch.set_num_threads(before)
    with pytest.raises(ValueError, match="positive int; got 0"):
        set_num_threads(0)


def test_seed_everything_repeats_draws():
    seed_everything(3)
    first = torch.rand(3), np.random.rand()
    seed_everything(3)
    assert torch.equal(first[0], torch.rand(3)) and first[1] == np.random.rand()


# Small heads, a bank smaller than the negatives drawn, so sampling is exercised.
SSL = {"simclr": {"hidden_dim": 32, "projection_dim": 16},
       "instance": {"embedding_dim": 16, "negatives": 8},
       "autoencoder": {"embedding_dim": 16, "channels": 16},
       "rotation": {}}


@pytest.mark.parametrize("objective", list(SSL))
def test_resume_of_other_objectives_continues_to_the_same_weights(objective, stimuli, tmp_path):
    """Heads (projection, decoder, memory bank) and the views' generator travel in the
    checkpoint; a feedback rule converts the heads too."""
    model = f"ventral_cnn-{objective}-kp-s0"
    kw = dict(model=model, epochs=2, objective_settings=SSL[objective])
    whole = run(stimuli, tmp_path / "whole", **kw)
    run(stimuli, tmp_path / "parts", **{**kw, "epochs": 1})
    resumed = run(stimuli, tmp_path / "parts", **kw)
    final = load(tmp_path / "whole" / "epoch_002.pt")
    parts = load(tmp_path / "parts" / "epoch_002.pt")
    assert_same_weights(parts["state_dict"], final["state_dict"])
    assert_same_weights(parts["heads"], final["heads"])
    assert final["objective"] == objective
    assert final["settings"]["objective_settings"] == {**OBJECTIVE_DEFAULTS[objective],
                                                       **SSL[objective]}
    if objective != "rotation":
        assert final["heads"] and all(isinstance(t, torch.Tensor) for t in final["heads"].values())
        assert any(k.endswith("weight_fb") for k in final["heads"]) == (objective != "instance")
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), whole.drop(columns="seconds"))
    assert np.isfinite(whole["loss"]).all()
    table = pd.read_csv(tmp_path / "whole" / "alignment.csv")
    backbone = table[~table["layer"].str.startswith("heads.")]
    assert backbone["layer"].iloc[0] == "area1.0"
    assert backbone["gradient_angle"].notna().all()       # the objective's δ reaches every layer


def test_autoencoder_refuses_hebb(stimuli, tmp_path):
    with pytest.raises(ValueError, match="'ventral_cnn-autoencoder-hebb-s0': objective "
                                         "'autoencoder' cannot be trained with rule 'hebb'"):
        run(stimuli, tmp_path, model="ventral_cnn-autoencoder-hebb-s0")


def test_input_size_resizes_in_training_and_extraction(stimuli, tmp_path):
    """A model trained at 24 px on 16 px stimuli: checkpoints record 24, and extraction of
    probe images equals a direct forward pass on their bilinear, antialiased resize."""
    import torch.nn.functional as F

    from pipeline.activations import extract, read_layer
    from pipeline.models import build_model, layer_outputs

    run(stimuli, tmp_path / "model", epochs=1, input_size=24)
    checkpoint = load(tmp_path / "model" / "epoch_001.pt")
    assert checkpoint["input_size"] == 24 and checkpoint["preprocessing"]["input_size"] == 24
    probe = write_stimuli(tmp_path / "probe.zarr", 2, seed=5, prefix="probe")
    extract([tmp_path / "model" / "epoch_001.pt"], tmp_path / "probe.zarr",
            tmp_path / "acts.zarr", device="cpu")
    model = build_model("ventral_cnn", 4, 24)
    model.load_state_dict(checkpoint["state_dict"])
    pre = checkpoint["preprocessing"]
    x = torch.from_numpy(probe["image"].values).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(pre["mean"]).view(1, 3, 1, 1)) / torch.tensor(pre["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = layer_outputs(model.eval(), x)
    for layer in ("area1", "readout"):
        np.testing.assert_allclose(read_layer(tmp_path / "acts.zarr", layer).isel(epoch=0),
                                   expected[layer].flatten(1).numpy(), rtol=1e-5, atol=1e-5)
    assert read_layer(tmp_path / "acts.zarr", "area1").shape[-1] == 16 * 12 * 12
    with pytest.raises(ValueError, match="input_size must be a positive int or None"):
        run(stimuli, tmp_path / "bad", input_size=0)


def test_channel_stats_are_exact_over_chunks():
    from pipeline.train import _channel_stats

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (250, 6, 6, 3), dtype=np.uint8)
    images[..., 2] = 7                                    # constant channel: std 1, not 0
    mean, std = _channel_stats(images, chunk=64)
    pixels = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std[:2], pixels.std(0)[:2], rtol=0, atol=1e-12)
    assert std[2] == 1.0


@pytest.mark.parametrize("field, value, message", [
    ("epochs", -1, "epochs must be a non-negative int; got -1"),
    ("epochs", True, "epochs must be a non-negative int; got True"),
    ("batch_size", 0, "batch_size must be a positive int; got 0"),
    ("lr", 0, r"lr must be a number > 0; got 0"),
    ("momentum", 1.5, r"momentum must be a number in \[0, 1\]; got 1.5"),
    ("weight_decay", -1e-4, "weight_decay must be a number ≥ 0; got -0.0001"),
    ("lr_milestones", [2, 2], r"lr_milestones must be a list of distinct positive ints; got \[2, 2\]"),
    ("lr_gamma", 0, r"lr_gamma must be a number in \(0, 1\]; got 0"),
    ("label_level", "species", "label_level must be one of superordinate, basic, subordinate; "
                               "got 'species'"),
    ("input_size", 0, "input_size must be a positive int or None; got 0"),
    ("rule_settings", [1], r"rule_settings must be a dict or None; got \[1\]"),
    ("optimizer", "rmsprop", "optimizer must be one of sgd, nesterov, adam; got 'rmsprop'"),
    ("data_seed", -1, "data_seed must be a non-negative int or None; got -1"),
    ("checkpoint_every", 0, "checkpoint_every must be a positive int; got 0"),
    ("checkpoint_every", 2.0, "checkpoint_every must be a positive int; got 2.0"),
])
def test_train_settings_name_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**{field: value})


def test_train_settings_from_a_config_block():
    settings = TrainSettings.from_dict({"epochs": 2, "lr_milestones": [3, 1], "rule_settings": None})
    assert settings == TrainSettings(epochs=2, lr_milestones=(3, 1))
    assert settings.rule_settings == {} and settings.lr_milestones == (3, 1)
    with pytest.raises(ValueError, match=r"train settings have unknown key\(s\) \['epoch', 'lrate'\]"):
        TrainSettings.from_dict({"epoch": 2, "lrate": 0.1})


@pytest.mark.parametrize("kind, expected", [("sgd", (torch.optim.SGD, False)),
                                            ("nesterov", (torch.optim.SGD, True)),
                                            ("adam", (torch.optim.Adam, None))])
def test_task_optimizer_kind(kind, expected):
    """TrainSettings.optimizer reaches the task optimizer (and Kolen-Pollack's B follows it)."""
    from pipeline.models import build_model

    for rule in ("bp", "kp"):
        model = make_rule(rule, optimizer=kind).convert(build_model("lenet", 4, 8))
        task, feedback = make_rule(rule, optimizer=kind).optimizers(model, lr=0.1, momentum=0.9,
                                                                    weight_decay=1e-4)
        for optimizer in (task, feedback) if rule == "kp" else (task,):
            assert type(optimizer) is expected[0]
            if expected[1] is not None:
                assert optimizer.param_groups[0]["nesterov"] is expected[1]
    with pytest.raises(ValueError, match="optimizer must be one of sgd, nesterov, adam"):
        make_rule("bp", optimizer="lbfgs")


def test_optimizer_and_data_seed_reach_the_run(stimuli, tmp_path):
    """Adam's moments are in the checkpoint and its header; another data-order seed keeps the
    initial weights and changes the trained ones; data_seed = the model seed changes nothing."""
    lenet = dict(model="lenet-supervised-bp-s0", epochs=1)
    run(stimuli, tmp_path / "adam", optimizer="adam", lr=0.001, **lenet)
    final = load(tmp_path / "adam" / "epoch_001.pt")
    assert final["settings"]["optimizer"] == "adam" and "exp_avg" in next(iter(final["optimizer"]["state"].values()))
    run(stimuli, tmp_path / "base", **lenet)
    run(stimuli, tmp_path / "same", data_seed=0, **lenet)
    run(stimuli, tmp_path / "other", data_seed=5, **lenet)
    weights = {name: [load(tmp_path / name / f"epoch_{e:03d}.pt")["state_dict"] for e in (0, 1)]
               for name in ("base", "same", "other")}
    assert "data_seed" not in load(tmp_path / "base" / "epoch_001.pt")["settings"]
    for key in weights["base"][0]:
        assert torch.equal(weights["base"][0][key], weights["other"][0][key])
        assert torch.equal(weights["base"][1][key], weights["same"][1][key])
    assert not all(torch.equal(weights["base"][1][k], weights["other"][1][k]) for k in weights["base"][1])


# Data loading, precision and determinism (pipeline.data.loader, pipeline.runtime).

def test_streamed_training_equals_in_memory_and_ignores_workers(stimuli, trained, tmp_path):
    """A set streamed from its shard store (memory_mb 0), read by 0 or 2 workers, trains to the
    weights of the in-memory run, checkpoint bytes included."""
    from pipeline.data.loader import LoaderSettings

    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu",
              loader=LoaderSettings(workers=workers, memory_mb=0, shards=str(tmp_path / "s")))
        for epoch in range(KW["epochs"] + 1):
            name = f"epoch_{epoch:03d}.pt"
            assert (out / name).read_bytes() == (trained[0] / name).read_bytes()
    assert len(list((tmp_path / "s").iterdir())) == 2          # train and test stores, reused


def test_bf16_steps_follow_fp32_and_local_rules_fall_back():
    """bf16 autocast for bp and the feedback rules: one bf16 step moves every weight (and every
    learned B) as the fp32 step does, to bf16 rounding. The local rules fall back to fp32."""
    from pipeline.models import build_model
    from pipeline.runtime import BF16_RULES, resolve_precision

    cpu = torch.device("cpu")
    assert BF16_RULES == {"bp", "fa", "ss", "kp", "wm", "ia", "sa", "aa"}
    assert resolve_precision("bf16", cpu, "bp") == resolve_precision("bf16", cpu, "fa") \
        == torch.bfloat16
    for rule in ("hebb", "pc", "burstprop", "ddtp", "nmf"):
        assert resolve_precision("bf16", cpu, rule) is None
    assert resolve_precision("auto", cpu, "bp") is None          # autocast on a GPU only
    assert resolve_precision("fp32", cpu, "bp") is None
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))

    def one_step(name, dtype):
        seed_everything(0)
        rule = make_rule(name)
        net = rule.convert(build_model("ventral_cnn", 4, 16))
        before = {k: v.clone() for k, v in net.state_dict().items()}
        optimizers = rule.optimizers(net, lr=0.01, momentum=0.9, weight_decay=0.0)

        def loss_fn(model, images, labels):
            with autocast(cpu, dtype):
                logits = model(images)
            return logits, torch.nn.functional.cross_entropy(logits.float(), labels)
        _, loss = rule.step(net, x, y, optimizers, torch.Generator(), loss_fn=loss_fn)
        assert torch.isfinite(loss)
        return {k: v - before[k] for k, v in net.state_dict().items()     # W and B of every
                if k.endswith(("weight", "weight_fb")) and v.dim() > 1}       # conv and linear

    def cosine(a, b):
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0))

    bp = one_step("bp", None)
    for name in sorted(BF16_RULES):
        fp32, bf16 = one_step(name, None), one_step(name, torch.bfloat16)
        for key, step in fp32.items():
            assert bf16[key].dtype == torch.float32
            if not step.any():                              # a fixed B stays fixed
                assert not bf16[key].any(), (name, key)
                continue
            assert cosine(step, bf16[key]) > 0.9, (name, key)
            if key in bp and name != "bp" and cosine(bp[key], step) < 0.999:
                # B reaches this layer: the bf16 step follows the rule's own fp32 step
                assert cosine(step, bf16[key]) > cosine(bp[key], bf16[key]) + 0.1, (name, key)


def test_bf16_run_is_recorded_and_never_resumes_fp32(stimuli, trained, tmp_path, caplog):
    out = tmp_path / "bf16"
    run(stimuli, out, epochs=1, precision="bf16")
    header = load(out / "epoch_001.pt")["settings"]
    assert header["precision"] == "bf16" and "precision" not in load(trained[0] / "epoch_001.pt")[
        "settings"]
    metrics = pd.read_csv(out / "metrics.csv")
    assert np.isfinite(metrics["loss"]).all()
    fp32 = load(trained[0] / "epoch_001.pt")["state_dict"]
    assert any(not torch.equal(v, fp32[k]) for k, v in load(out / "epoch_001.pt")[
        "state_dict"].items() if v.is_floating_point())
    run(stimuli, out, epochs=1, precision="fp32")            # other header: trained afresh
    assert_same_weights(load(out / "epoch_001.pt")["state_dict"],
                        load(trained[0] / "epoch_001.pt")["state_dict"])
    assert "precision" in caplog.text


def test_deterministic_changes_nothing_on_cpu(stimuli, trained, tmp_path):
    out = tmp_path / "det"
    train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu", deterministic=True)
    assert (out / "epoch_003.pt").read_bytes() == (trained[0] / "epoch_003.pt").read_bytes()
