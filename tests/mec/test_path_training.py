"""Path-integration training: a trained UGRNN-ReLU decodes position far better than its untrained
copy; checkpoints resume to the same weights; learning rules train path integrators too."""

import pandas as pd
import pytest
import torch

from pipeline.checkpoints import run_epochs
from pipeline.mec.training import (PathSettings, evaluate, load_path_integrator,
                                   train_path_integrator)

SMALL = dict(batch_size=64, n_units=96, n_input=32, n_place_cells=128, arena=1.0, lr=3e-3,
             eval_batches=2)


def test_trained_ugrnn_relu_decodes_far_better_than_untrained(tmp_path):
    settings = PathSettings(epochs=2, steps_per_epoch=150, **SMALL)
    table = train_path_integrator("ugrnn_relu-placecell-bp-s0", tmp_path / "m", settings,
                                  device="cpu", num_threads=1)
    # both errors on the same 5 x 64 held-out trajectories (not the training metrics)
    errors = {}
    for epoch, path in run_epochs(tmp_path / "m").items():
        model, task, _ = load_path_integrator(path)
        errors[epoch] = 100 * evaluate(model, task, n_batches=5, batch_size=64, n_steps=20,
                                       width=1.0)[1]
    print(f"decoding error: untrained {errors[0]:.1f} cm, trained {errors[2]:.1f} cm")
    assert errors[0] > 30.0                      # about chance in a 1 m box
    assert errors[2] < 0.5 * errors[0]
    assert list(table.epoch) == [0, 1, 2] and table.loss.iloc[-1] < table.loss.iloc[0]


def test_resumed_run_gives_the_weights_of_an_uninterrupted_one(tmp_path):
    small = dict(SMALL, n_units=16, n_place_cells=16, batch_size=8, eval_batches=1)
    train_path_integrator("rnn_tanh-position-bp-s1", tmp_path / "a",
                          PathSettings(epochs=1, steps_per_epoch=5, **small), device="cpu")
    train_path_integrator("rnn_tanh-position-bp-s1", tmp_path / "a",       # resumes epoch 1
                          PathSettings(epochs=2, steps_per_epoch=5, **small), device="cpu")
    train_path_integrator("rnn_tanh-position-bp-s1", tmp_path / "b",
                          PathSettings(epochs=2, steps_per_epoch=5, **small), device="cpu")
    a, _, _ = load_path_integrator(tmp_path / "a/epoch_002.pt")
    b, _, _ = load_path_integrator(tmp_path / "b/epoch_002.pt")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    assert len(pd.read_csv(tmp_path / "a/metrics.csv")) == 3


@pytest.mark.parametrize("rule", ["fa", "kp"])
def test_a_learning_rule_trains_a_path_integrator(tmp_path, rule):
    small = dict(SMALL, n_units=32, n_place_cells=32, batch_size=32)
    table = train_path_integrator(f"ugrnn_relu-placecell-{rule}-s0", tmp_path / rule,
                                  PathSettings(epochs=1, steps_per_epoch=40, **small),
                                  device="cpu")
    model, _, header = load_path_integrator(tmp_path / rule / "epoch_001.pt")
    assert header["rule"] == rule and "FBLinear" in repr(model)
    assert table.test_loss.iloc[1] < table.test_loss.iloc[0]


def test_bad_settings_and_names_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="mec.train.lr"):
        PathSettings(lr=0)
    with pytest.raises(ValueError, match="unknown key"):
        PathSettings.from_dict({"epochs": 1, "hidden": 3})
    with pytest.raises(ValueError, match="not a path integrator"):
        train_path_integrator("ventral_cnn-supervised-bp-s0", tmp_path, PathSettings(epochs=1))


def test_a_non_finite_loss_stops_before_the_checkpoint(tmp_path):
    small = dict(SMALL, n_units=8, n_input=4, n_place_cells=8, batch_size=4, eval_batches=1)
    with pytest.raises(FloatingPointError, match="epoch 1, steps 1-50"):
        train_path_integrator("ugrnn_relu-placecell-bp-s0", tmp_path,
                              PathSettings(epochs=1, steps_per_epoch=60, **{**small, "lr": 1e30}),
                              device="cpu")
    assert not (tmp_path / "epoch_001.pt").exists() and (tmp_path / "epoch_000.pt").exists()
