"""The consistency-versus-stimuli figure reads an interanimal_curve table."""

import numpy as np
import pandas as pd
import pytest

from pipeline.figures.curves import plot_curve


def test_curve_figure_is_written(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"dataset": "d", "area": area, "animal": f"m{a}", "neuroid_id": f"u{u}", "mapping": "pls",
             "split": s, "stage": "test", "n_stimuli": n, "r": 0.5, "r_mapping": 0.8, "r_target": 0.8,
             "r_full": 0.6, "score": n / 120 + rng.normal(0, 0.01), "score_full": 0.5, "score_thesis": 0.5}
            for area in ("VISp", "VISl") for a in range(2) for u in range(3) for s in range(2)
            for n in (20, 60, 120)]
    pd.DataFrame(rows).to_parquet(tmp_path / "curve.parquet")
    plot_curve(tmp_path / "curve.parquet", tmp_path / "curve.png", dpi=40)
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_table_without_sizes_is_refused(tmp_path):
    pd.DataFrame({"area": ["VISp"], "mapping": ["pls"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="n_stimuli"):
        plot_curve(tmp_path / "t.parquet", tmp_path / "x.png")
