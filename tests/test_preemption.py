"""SIGTERM in the middle of an epoch: a mid-epoch checkpoint, exit status 75, and a rerun that ends
with the weights of an uninterrupted run (CPU), even after the model folder was deleted (as
Snakemake deletes a failed job's output) or the newest mid-epoch checkpoint was truncated."""

import logging
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from pipeline import checkpoints
from pipeline.train import TrainSettings, train
from tests.conftest import REPO
from tests.test_train import stimuli  # noqa: F401  (the fixture: 24 train, 8 test images)

pytestmark = pytest.mark.usefixtures("torch_one_thread")

MODEL = "ventral_cnn-supervised-fa-s0"            # an alignment optimizer and noise generator too
KW = dict(epochs=2, batch_size=4, lr=0.05)        # 96 training images: 24 batches per epoch

# Trains in a fresh interpreter with per-batch debug lines on stderr.
_TRAIN = textwrap.dedent(f"""
    import logging, sys
    import torch
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from pipeline.train import TrainSettings, train
    train({MODEL!r}, sys.argv[1], sys.argv[2], sys.argv[3], TrainSettings(**{KW!r}),
          device="cpu")
""")


@pytest.fixture(scope="module")
def uninterrupted(stimuli, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu")
    return out


def interrupt(stimuli, out, after_batch: int) -> subprocess.CompletedProcess:
    """Start a training run, send SIGTERM once it logs batch `after_batch` of epoch 1, wait."""
    process = subprocess.Popen([sys.executable, "-c", _TRAIN, *map(str, stimuli), str(out)],
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    lines = []
    for line in process.stderr:
        lines.append(line)
        if re.search(rf"epoch 1: batch {after_batch} of 24 done", line):
            process.send_signal(signal.SIGTERM)
            break
    lines += process.stderr.readlines()
    process.wait(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, "", "".join(lines))


def assert_same_run(a, b):
    for epoch in range(KW["epochs"] + 1):
        x = torch.load(checkpoints.epoch_path(a, epoch), weights_only=True)
        y = torch.load(checkpoints.epoch_path(b, epoch), weights_only=True)
        for key in ("state_dict", "heads"):
            for name in x[key]:
                torch.testing.assert_close(x[key][name], y[key][name], rtol=0, atol=0)
        assert x["metrics"] == y["metrics"]
        assert x["optimizer"]["state"].keys() == y["optimizer"]["state"].keys()


def test_sigterm_mid_epoch_then_rerun_equals_uninterrupted(stimuli, uninterrupted, tmp_path):
    out = tmp_path / "model"
    done = interrupt(stimuli, out, after_batch=3)
    assert done.returncode == checkpoints.PREEMPTED_EXIT, done.stderr[-3000:]
    assert "SIGTERM received; stopped after batch" in done.stderr
    partials = sorted(checkpoints.resume_dir(out).glob("partial_*.pt"))
    assert len(partials) == 1
    epoch, batch = map(int, re.findall(r"\d+", partials[0].name))
    assert epoch == 1 and 3 <= batch < 24                   # mid-epoch
    assert not (out / "epoch_001.pt").exists()
    shutil.rmtree(out)                                       # what Snakemake does to a failed job

    train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu")
    assert_same_run(out, uninterrupted)
    assert (out / "epoch_000.pt").read_bytes() == (uninterrupted / "epoch_000.pt").read_bytes()
    assert (out / "epoch_002.pt").read_bytes() == (uninterrupted / "epoch_002.pt").read_bytes()
    assert not checkpoints.resume_dir(out).exists()          # removed once finished


def test_truncated_mid_epoch_checkpoint_falls_back_to_the_one_before(stimuli, uninterrupted,
                                                                      tmp_path, caplog):
    out = tmp_path / "model"
    assert interrupt(stimuli, out, after_batch=2).returncode == checkpoints.PREEMPTED_EXIT
    second = interrupt(stimuli, out, after_batch=12)         # resumes, then stops again
    assert second.returncode == checkpoints.PREEMPTED_EXIT, second.stderr[-3000:]
    assert "resuming epoch 1 after batch" in second.stderr
    partials = sorted(checkpoints.resume_dir(out).glob("partial_*.pt"))
    assert len(partials) == 2
    newest = partials[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    caplog.set_level(logging.INFO, logger="pipeline")
    train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu")
    assert f"{newest} unreadable" in caplog.text
    assert re.search(rf"resuming epoch 1 after batch {int(partials[0].stem[-6:])}\b", caplog.text)
    assert_same_run(out, uninterrupted)


def test_a_signal_stops_the_run_in_process(stimuli, uninterrupted, tmp_path, monkeypatch):
    """The same path without a subprocess: the flag set after the first batch of epoch 2."""
    from pipeline import train as train_module

    real = train_module._autocast_loss
    calls = []

    def signalled(loss_fn, run):
        calls.append(run.epoch)
        if run.epoch == 2 and calls.count(2) == 1:
            signal.raise_signal(signal.SIGUSR1)
        return real(loss_fn, run)

    monkeypatch.setattr(train_module, "_autocast_loss", signalled)
    out = tmp_path / "model"
    with pytest.raises(checkpoints.Preempted) as stopped:
        train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu")
    assert stopped.value.code == checkpoints.PREEMPTED_EXIT and "SIGUSR1" in str(stopped.value)
    assert [p.name for p in checkpoints.resume_dir(out).glob("partial_*.pt")] == [
        "partial_002_000001.pt"]
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL   # handlers restored
    monkeypatch.setattr(train_module, "_autocast_loss", real)
    train(MODEL, *stimuli, out, TrainSettings(**KW), device="cpu")
    assert_same_run(out, uninterrupted)


SPARSE = dict(epochs=5, batch_size=16, lr=0.05, checkpoint_every=2)   # checkpoints 0, 2, 4, 5


@pytest.fixture(scope="module")
def sparse_uninterrupted(stimuli, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse")
    train(MODEL, *stimuli, out, TrainSettings(**SPARSE), device="cpu")
    return out


@pytest.mark.parametrize("epoch, batch, partial", [
    (4, 1, "partial_004_000001.pt"),        # mid-epoch; epoch 3 trained, not checkpointed
    (3, None, "partial_004_000000.pt"),     # the end of epoch 3, which has no checkpoint
])
def test_a_stop_under_checkpoint_every_resumes_to_the_same_run(stimuli, sparse_uninterrupted,
                                                              tmp_path, monkeypatch, epoch,
                                                              batch, partial):
    """SIGUSR1 during an epoch, or at the end of one without a checkpoint: the mid-epoch
    checkpoint carries the epochs trained since the last epoch checkpoint, and the rerun
    writes the uninterrupted run's checkpoints and metrics.csv, byte for byte."""
    from pipeline import train as train_module

    real = train_module._autocast_loss
    batches = 96 // SPARSE["batch_size"]
    calls = []

    def signalled(loss_fn, run):
        calls.append(run.epoch)
        if run.epoch == epoch and calls.count(epoch) == (batch or batches):
            signal.raise_signal(signal.SIGUSR1)
        return real(loss_fn, run)

    monkeypatch.setattr(train_module, "_autocast_loss", signalled)
    out = tmp_path / "model"
    with pytest.raises(checkpoints.Preempted):
        train(MODEL, *stimuli, out, TrainSettings(**SPARSE), device="cpu")
    assert [p.name for p in checkpoints.resume_dir(out).glob("partial_*.pt")] == [partial]
    assert sorted(p.name for p in out.glob("epoch_*.pt")) == ["epoch_000.pt", "epoch_002.pt"]
    shutil.rmtree(out)                                       # what Snakemake does to a failed job
    monkeypatch.setattr(train_module, "_autocast_loss", real)
    train(MODEL, *stimuli, out, TrainSettings(**SPARSE), device="cpu")
    names = sorted(p.name for p in sparse_uninterrupted.glob("epoch_*.pt"))
    assert names == ["epoch_000.pt", "epoch_002.pt", "epoch_004.pt", "epoch_005.pt"]
    assert sorted(p.name for p in out.glob("epoch_*.pt")) == names
    for name in names:
        assert (out / name).read_bytes() == (sparse_uninterrupted / name).read_bytes(), name
    metrics = [(d / "metrics.csv").read_text().splitlines() for d in (out, sparse_uninterrupted)]
    drop_seconds = [[line.rsplit(",", 1)[0] for line in lines] for lines in metrics]
    assert drop_seconds[0] == drop_seconds[1] and len(drop_seconds[0]) == 1 + 6
    assert not checkpoints.resume_dir(out).exists()
