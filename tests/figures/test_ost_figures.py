import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from pipeline.compare.ost import consistency_table
from pipeline.cli import main
from pipeline.figures.ost import plot_ost


def _ost_table(model, seed, n=30):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(80, 250, n)
    ost = reference + rng.normal(0, 20, n)
    ost[:4] = np.nan                                      # unsolved by the model
    return pd.DataFrame({"model": model, "image_id": [f"im{i}" for i in range(n)],
                         "category": "c", "reference_dprime": 2.0,
                         "reference_ost_ms": reference, "ost_ms": ost})


def test_plot_ost_writes_one_panel_per_model_and_the_consistency(tmp_path):
    tables = [_ost_table("convrnn-supervised-bp-s0", 0), _ost_table("ventral_cnn-supervised-bp-s0", 1)]
    consistency = consistency_table(tables, n_shuffles=50)
    consistency.to_csv(tmp_path / "consistency.csv", index=False)
    paths = []
    for k, table in enumerate(tables):
        paths.append(str(tmp_path / f"ost{k}.parquet"))
        table.to_parquet(paths[-1])
    assert main(["plot_ost", str(tmp_path / "consistency.csv"), *paths, "--out", str(tmp_path / "ost.png"),
                 "--dpi", "40"]) == 0
    image = imread(tmp_path / "ost.png")
    assert image.shape[1] > 2 * image.shape[0]           # three panels side by side
    assert image.std() > 0


def test_plot_ost_names_a_missing_column(tmp_path):
    consistency = pd.DataFrame({"model": ["m"], "rho": [0.1]})
    with pytest.raises(ValueError, match=r"OST consistency table lacks column\(s\) \['n_images', 'null_high'"):
        plot_ost(consistency, [], tmp_path / "x.png")
