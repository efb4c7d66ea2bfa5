"""Faults of training, checkpoints, extraction and transfer, each with its exact outcome.

Issue 19, items 3-6 of the training side: stale checkpoints of an earlier run, corrupt or
truncated checkpoints, non-finite training, byte-reproducible checkpoints, temporaries of a
killed extraction, and invalid model combinations caught at start-up (`check_model`).
"""

import json
import logging
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import cli
from pipeline.activations import content_key, extract
from pipeline.checkpoints import (RUN_RECORD, CheckpointError, epoch_path, read_checkpoint,
                                  read_run_record, run_epochs)
from pipeline.io import read_zarr, remove_stale_temporaries, save_torch
from pipeline.models import ARCHS, MIN_INPUT_SIZE, check_model
from pipeline.train import TrainSettings, _check_finite, train
from pipeline.transfer import transfer
from tests.stimulus_sets import write_stimuli

MODEL = "ventral_cnn-supervised-bp-s0"
KW = dict(epochs=2, batch_size=16, lr=0.05)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory):
    root = tmp_path_factory.mktemp("stimuli")
    write_stimuli(root / "train.zarr", 32, 0, "train", labels=np.arange(32) % 4)
    write_stimuli(root / "test.zarr", 12, 1, "test", labels=np.arange(12) % 4)
    write_stimuli(root / "probe.zarr", 10, 2, "probe", labels=np.arange(10) % 4)
    return root


def run(stimuli, out, model=MODEL, **kw):
    return train(model, stimuli / "train.zarr", stimuli / "test.zarr", out,
                 TrainSettings(**{**KW, **kw}), device="cpu")


@pytest.fixture(scope="module")
def clean(stimuli, tmp_path_factory):
    """A finished 2-epoch run, never modified by the tests."""
    out = tmp_path_factory.mktemp("clean") / "model"
    run(stimuli, out)
    return out


def copy_run(src, dst):
    """A copy of a run folder with the files' bytes and mtimes (so sha256 records stay valid)."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        (dst / path.name).write_bytes(path.read_bytes())
        os.utime(dst / path.name, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    return dst


def flip_a_bit(path, offset=None):
    """Flip one bit in the middle of a file, keeping its size."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0x01
    path.write_bytes(bytes(data))


def same_weights(a, b):
    a = torch.load(a, weights_only=True)["state_dict"]
    b = torch.load(b, weights_only=True)["state_dict"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- item 3: stale checkpoints

def test_rerun_with_fewer_epochs_removes_the_later_checkpoints(stimuli, tmp_path, caplog):
    run(stimuli, tmp_path, epochs=4)
    with caplog.at_level(logging.WARNING, logger="pipeline.checkpoints"):
        run(stimuli, tmp_path, epochs=2)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == [
        "epoch_000.pt", "epoch_001.pt", "epoch_002.pt"]
    assert not list(tmp_path.glob("epoch_003*")) and not list(tmp_path.glob("epoch_004*"))
    assert f"{tmp_path}: removing epoch_003.pt, epoch_004.pt" in caplog.text
    assert "epochs: 4 -> 2" in caplog.text
    assert list(run_epochs(tmp_path)) == [0, 1, 2]
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == 3


def test_rerun_with_another_lr_starts_a_clean_folder(stimuli, tmp_path, caplog):
    run(stimuli, tmp_path, epochs=3)
    with caplog.at_level(logging.WARNING, logger="pipeline.checkpoints"):
        run(stimuli, tmp_path, epochs=1, lr=0.01)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == ["epoch_000.pt", "epoch_001.pt"]
    assert "settings.lr: 0.05 -> 0.01" in caplog.text and str(tmp_path) in caplog.text
    assert all(read_checkpoint(p)["settings"]["lr"] == 0.01 for p in run_epochs(tmp_path).values())
    assert read_run_record(tmp_path)["header"]["settings"]["lr"] == 0.01


def test_rerun_with_more_epochs_resumes_without_retraining(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    first = epoch_path(model, 2).stat().st_mtime_ns
    metrics = run(stimuli, model, epochs=3)
    assert epoch_path(model, 2).stat().st_mtime_ns == first
    assert list(run_epochs(model)) == [0, 1, 2, 3]
    # the resumed epochs keep their seconds (from run.json; checkpoints hold none)
    assert metrics["seconds"][:3].tolist() == pd.read_csv(clean / "metrics.csv")["seconds"].tolist()


def test_extract_reads_exactly_the_recorded_epochs(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    # a stale checkpoint of another run that the record does not list
    (model / "epoch_003.pt").write_bytes((model / "epoch_002.pt").read_bytes())
    out = tmp_path / "act.zarr"
    cli.main(["extract", str(model), str(stimuli / "probe.zarr"), str(out), "--device", "cpu",
              "--threads", "1"])
    assert read_zarr(out)["epoch"].values.tolist() == [0, 1, 2]


def test_transfer_final_is_the_recorded_final_epoch(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    (model / "epoch_004.pt").write_bytes((model / "epoch_002.pt").read_bytes())
    table = transfer(model, stimuli / "train.zarr", stimuli / "test.zarr", tmp_path / "t.csv",
                     device="cpu")
    assert table["epoch"].tolist() == [2]


def test_transfer_of_an_epoch_beyond_the_run_names_the_found_epochs(stimuli, clean, tmp_path):
    with pytest.raises(ValueError, match=r"transfer epochs \[5\] have no checkpoint; found "
                                         r"epochs \[0, 1, 2\]"):
        transfer(clean, stimuli / "train.zarr", stimuli / "test.zarr", tmp_path / "t.csv",
                 epochs=[5], device="cpu")


def test_unfinished_run_is_refused(clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    record = json.loads((model / RUN_RECORD).read_text())
    (model / RUN_RECORD).write_text(json.dumps({**record, "complete": False}))
    with pytest.raises(CheckpointError, match=r"run\.json: training did not finish .*`train`"):
        run_epochs(model)


def test_recorded_epoch_missing_is_named(clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    epoch_path(model, 1).unlink()
    with pytest.raises(FileNotFoundError, match=r"epoch_001\.pt: missing, but .*run\.json lists "
                                                r"epochs 0…2 \(a checkpoint every 1\); rebuild it with the `train` rule"):
        run_epochs(model)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"epochs": 2}'])
def test_unreadable_run_record_is_named(clean, tmp_path, text):
    model = copy_run(clean, tmp_path / "model")
    (model / RUN_RECORD).write_text(text)
    with pytest.raises(CheckpointError, match=r"run\.json: .*rebuild it with the `train` rule"):
        run_epochs(model)


def test_folder_without_run_record_is_read_by_glob_with_a_warning(clean, tmp_path, caplog):
    """Documented handling of runs trained before run records: every epoch_*.pt, a warning."""
    model = copy_run(clean, tmp_path / "model")
    (model / RUN_RECORD).unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.checkpoints"):
        assert list(run_epochs(model)) == [0, 1, 2]
    assert "has no run.json (trained before run records)" in caplog.text


# ---------------------------------------------------------------- item 4: checkpoint integrity

@pytest.mark.parametrize("epoch", [0, 2])
def test_bit_flipped_checkpoint_is_named_on_load(clean, tmp_path, epoch):
    model = copy_run(clean, tmp_path / "model")
    flip_a_bit(epoch_path(model, epoch))
    with pytest.raises(CheckpointError, match=rf"epoch_00{epoch}\.pt: corrupt checkpoint: its "
                                              r"crc32c? is .*rebuild it with the `train` rule"):
        read_checkpoint(epoch_path(model, epoch))


def test_bit_flipped_checkpoint_stops_extraction(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    flip_a_bit(epoch_path(model, 1))
    with pytest.raises(CheckpointError, match=r"epoch_001\.pt: corrupt checkpoint"):
        cli.main(["extract", str(model), str(stimuli / "probe.zarr"), str(tmp_path / "a.zarr"),
                  "--device", "cpu", "--threads", "1"])
    assert not (tmp_path / "a.zarr").exists()


def test_bit_flipped_checkpoint_stops_transfer(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    flip_a_bit(epoch_path(model, 2))
    with pytest.raises(CheckpointError, match=r"epoch_002\.pt: corrupt checkpoint"):
        transfer(model, stimuli / "train.zarr", stimuli / "test.zarr", tmp_path / "t.csv",
                 device="cpu")
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("keep_record", [True, False])
def test_truncated_checkpoint_is_named(clean, tmp_path, keep_record):
    model = copy_run(clean, tmp_path / "model")
    path = epoch_path(model, 1)
    path.write_bytes(path.read_bytes()[:1000])
    if not keep_record:
        path.with_name("epoch_001.pt.sha256").unlink()
    message = "corrupt checkpoint" if keep_record else r"unreadable checkpoint \(RuntimeError"
    with pytest.raises(CheckpointError, match=rf"epoch_001\.pt: {message}.*`train` rule"):
        read_checkpoint(path)


def test_unreadable_digest_record_is_named(clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    (model / "epoch_001.pt.sha256").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"epoch_001\.pt\.sha256: unreadable digest record"):
        read_checkpoint(epoch_path(model, 1))


def test_resume_retrains_from_before_a_corrupt_checkpoint(stimuli, clean, tmp_path, caplog):
    model = copy_run(clean, tmp_path / "model")
    flip_a_bit(epoch_path(model, 2))
    first = epoch_path(model, 1).stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="pipeline.checkpoints"):
        run(stimuli, model)
    assert "epoch_002.pt unreadable" in caplog.text and "corrupt checkpoint" in caplog.text
    assert epoch_path(model, 1).stat().st_mtime_ns == first
    assert epoch_path(model, 2).read_bytes() == epoch_path(clean, 2).read_bytes()


# ---------------------------------------------------------------- item 5: non-finite training

@pytest.mark.parametrize("rule, lr, message, written", [
    # the case: lr 1e5 turns BatchNorm statistics to inf in epoch 2
    ("bp", 1e5, r"epoch 2: weights 'backbone\.area1\.4\.running_var' hold NaN or inf", 2),
    ("fa", 1e30, r"epoch 1, batch 2 of 2: the training loss is nan \(lr 1e\+30\)", 1),
    ("bp", 1e30, r"epoch 1, batch 2 of 2: the training loss is nan \(lr 1e\+30\)", 1),
    ("hebb", 1e30, r"epoch 1: weights 'backbone\.readout\.weight' hold NaN or inf", 1),
])
def test_non_finite_training_stops_naming_model_epoch_and_batch(stimuli, tmp_path, rule, lr,
                                                                message, written):
    model = f"ventral_cnn-supervised-{rule}-s0"
    with pytest.raises(FloatingPointError, match=rf"model '{model}', {message}"):
        run(stimuli, tmp_path, model=model, lr=lr, epochs=3)
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == [
        f"epoch_{e:03d}.pt" for e in range(written)]       # none of the failing epoch
    with pytest.raises(CheckpointError, match="training did not finish"):
        run_epochs(tmp_path)                    # the failed run is never extracted


def test_non_finite_weights_are_named(stimuli, tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    fake = SimpleNamespace(net=net, name=MODEL, settings=TrainSettings())
    _check_finite(fake, 3)                      # finite: nothing happens
    with torch.no_grad():
        net[1].bias[0] = float("inf")
    with pytest.raises(FloatingPointError, match=rf"model '{MODEL}', epoch 3: weights '1\.bias' "
                                                 r"hold NaN or inf"):
        _check_finite(fake, 3)


# ---------------------------------------------------------------- byte-reproducible checkpoints

def test_two_clean_runs_write_byte_identical_checkpoints(stimuli, clean, tmp_path):
    run(stimuli, tmp_path / "again")
    for epoch in range(3):
        again = epoch_path(tmp_path / "again", epoch).read_bytes()
        assert again == epoch_path(clean, epoch).read_bytes()
    assert "seconds" not in read_checkpoint(epoch_path(clean, 1))["metrics"]
    assert pd.read_csv(clean / "metrics.csv")["seconds"].notna().all()
    paths = lambda d: list(run_epochs(d).values())               # noqa: E731
    probe = stimuli / "probe.zarr"
    assert content_key(paths(tmp_path / "again"), probe) == content_key(paths(clean), probe)


def test_old_checkpoints_with_seconds_resume_and_extract(stimuli, clean, tmp_path):
    """Checkpoints written before this change (seconds in metrics, no run.json) still work."""
    model = tmp_path / "old"
    for epoch in range(2):
        checkpoint = torch.load(epoch_path(clean, epoch), weights_only=True)
        checkpoint["metrics"] = {**checkpoint["metrics"], "seconds": 10.0 + epoch}
        save_torch(checkpoint, epoch_path(model, epoch))
    first = epoch_path(model, 1).stat().st_mtime_ns
    metrics = run(stimuli, model)
    assert epoch_path(model, 1).stat().st_mtime_ns == first            # resumed, not retrained
    assert metrics["seconds"].tolist()[:2] == [10.0, 11.0]
    assert same_weights(epoch_path(model, 2), epoch_path(clean, 2))
    extract(list(run_epochs(model).values()), stimuli / "probe.zarr", tmp_path / "a.zarr",
            device="cpu")
    assert read_zarr(tmp_path / "a.zarr")["epoch"].values.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- temporaries of killed writers

def test_extract_removes_the_temporaries_of_a_killed_extraction(stimuli, clean, tmp_path, caplog):
    out = tmp_path / "act.zarr"
    left = tmp_path / ".act.zarr.tmp-deadbeef"
    (left / "area1").mkdir(parents=True)
    other = tmp_path / ".other.zarr.tmp-deadbeef"
    other.mkdir()
    with caplog.at_level(logging.WARNING, logger="pipeline.io"):
        extract(list(run_epochs(clean).values()), stimuli / "probe.zarr", out, device="cpu")
    assert not left.exists() and other.exists() and out.exists()
    assert f"removing {left}, a temporary left by an interrupted write of {out}" in caplog.text


def test_train_removes_the_temporaries_of_a_killed_checkpoint_write(stimuli, clean, tmp_path):
    model = copy_run(clean, tmp_path / "model")
    (model / ".epoch_003.pt.tmp-0123abcd").write_bytes(b"partial")
    (model / ".epoch_003.pt.sha256.tmp-0123abcd").write_bytes(b"partial")
    run(stimuli, model, epochs=3)
    assert not list(model.glob(".*tmp-*"))


def test_remove_stale_temporaries_touches_only_its_output(tmp_path):
    for name in (".a.csv.tmp-1", ".a.csv.tmp-2", ".a.csv.x.tmp-3", ".b.csv.tmp-1"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path / "a.csv")
    assert [p.name for p in removed] == [".a.csv.tmp-1", ".a.csv.tmp-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.csv.x.tmp-3", ".b.csv.tmp-1"]


# ---------------------------------------------------------------- start-up checks (check_model)

def test_check_model_accepts_a_valid_model():
    spec = check_model(MODEL, input_size=16, epochs=3, transfer_epochs=[0, 3],
                       compare_epochs="ends")
    assert (spec.arch, spec.rule) == ("ventral_cnn", "bp")


def test_check_model_refuses_autoencoder_with_hebb():
    with pytest.raises(ValueError, match=r"model 'lenet-autoencoder-hebb-s0': objective "
                                         r"'autoencoder' cannot be trained with rule 'hebb'"):
        check_model("lenet-autoencoder-hebb-s0", input_size=32, epochs=2)


@pytest.mark.parametrize("arch", ARCHS)
def test_check_model_refuses_an_input_below_the_arch_minimum(arch):
    name = f"{arch}-supervised-bp-s0"
    check_model(name, input_size=MIN_INPUT_SIZE[arch], epochs=1)
    with pytest.raises(ValueError, match=rf"model '{name}': input_size must be at least "
                                         rf"{MIN_INPUT_SIZE[arch]} for arch '{arch}'; got "
                                         rf"{MIN_INPUT_SIZE[arch] - 1}"):
        check_model(name, input_size=MIN_INPUT_SIZE[arch] - 1, epochs=1)


@pytest.mark.parametrize("field, kw", [
    ("models.transfer.epochs", {"transfer_epochs": [1, 6]}),
    ("compare epochs", {"compare_epochs": [0, 9]}),
])
def test_check_model_refuses_epochs_beyond_training(field, kw):
    with pytest.raises(ValueError, match=rf"model '{MODEL}': {field} \[\d\] are outside the "
                                         r"trained epochs 0…5 \(models.train.epochs = 5\)"):
        check_model(MODEL, input_size=32, epochs=5, **kw)


@pytest.mark.parametrize("kw, message", [
    ({"transfer_epochs": "ends"}, r"models.transfer.epochs must be 'final', 'all' or a list"),
    ({"compare_epochs": 3}, r"compare epochs must be 'all', 'final', 'ends' or a list of int"),
    ({"input_size": "32"}, r"input_size must be an int; got '32'"),
    ({"epochs": -1}, r"epochs must be a non-negative int; got -1"),
])
def test_check_model_names_a_bad_setting(kw, message):
    with pytest.raises(ValueError, match=rf"model '{MODEL}': {message}"):
        check_model(MODEL, **{"input_size": 32, "epochs": 5, **kw})


def test_check_model_names_a_malformed_model():
    with pytest.raises(ValueError, match=r"model name 'ventral_cnn-supervised-xx-s0': unknown "
                                         r"model rule 'xx'"):
        check_model("ventral_cnn-supervised-xx-s0", input_size=32, epochs=1)
