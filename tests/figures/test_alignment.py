"""The alignment figure: one panel per rule that has backward weights, from alignment.csv files."""

import numpy as np
import pandas as pd
import pytest

from pipeline.figures.alignment import plot_alignment, read_alignment


def write_alignment(root, model, angles):
    folder = root / model
    folder.mkdir()
    rows = [{"epoch": e, "layer": layer, "weight_angle": a, "norm_ratio": 1.0, "gradient_angle": np.nan}
            for layer, series in angles.items() for e, a in enumerate(series)]
    pd.DataFrame(rows).to_csv(folder / "alignment.csv", index=False)
    return folder


def test_tables_are_labelled_by_model_rule_and_seed(tmp_path):
    path = write_alignment(tmp_path, "ventral_cnn-supervised-fa-s1", {"area1.0": [90, 80]})
    table = read_alignment([path])
    assert set(table[["rule", "seed", "model"]].itertuples(index=False, name=None)) == {
        ("fa", 1, "ventral_cnn-supervised-fa-s1")}


def test_figure_draws_only_rules_with_backward_weights(tmp_path):
    runs = [
        write_alignment(tmp_path, "ventral_cnn-supervised-kp-s0", {"area1.0": [90, 40, 10], "readout": [89, 30, 5]}),
        write_alignment(tmp_path, "ventral_cnn-supervised-kp-s1", {"area1.0": [91, 42, 12], "readout": [88, 28, 4]}),
        write_alignment(tmp_path, "ventral_cnn-supervised-bp-s0", {"area1.0": [0, 0, 0]}),
    ]
    drawn = plot_alignment(runs, tmp_path / "alignment.png", dpi=40)
    assert (tmp_path / "alignment.png").read_bytes()[:4] == b"\x89PNG"
    assert set(drawn["rule"]) == {"kp"}                           # bp (B = W) is named, not drawn
    assert set(drawn["model"]) == {"ventral_cnn-supervised-kp-s0", "ventral_cnn-supervised-kp-s1"}


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no training runs"):
        plot_alignment([], tmp_path / "x.png")
