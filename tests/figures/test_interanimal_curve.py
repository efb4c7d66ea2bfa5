"""The consistency-versus-stimuli figure reads an interanimal_curve table."""

import numpy as np
import pandas as pd
import pytest

from pipeline.figures.interanimal_curve import plot_interanimal_curve


def test_curve_figure_draws_the_median_per_area_and_size(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"dataset": "d", "area": area, "animal": f"m{a}", "neuroid_id": f"u{u}", "mapping": "pls",
             "split": s, "stage": "test", "n_stimuli": n, "r": 0.5, "r_mapping": 0.8, "r_target": 0.8,
             "r_full": 0.6, "score": n / 120 + rng.normal(0, 0.01), "score_full": 0.5, "score_thesis": 0.5}
            for area in ("VISp", "VISl") for a in range(2) for u in range(3) for s in range(2)
            for n in (20, 60, 120)]
    pd.DataFrame(rows).to_parquet(tmp_path / "curve.parquet")
    drawn = plot_interanimal_curve(tmp_path / "curve.parquet", tmp_path / "curve.png", dpi=40)
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(drawn) == 2 * 3                                     # areas x sizes, one mapping
    expected = pd.DataFrame(rows).groupby(["area", "n_stimuli", "animal", "neuroid_id"])["score"].mean()
    expected = expected.groupby(level=["area", "n_stimuli"]).median()
    np.testing.assert_allclose(drawn.set_index(["area", "n_stimuli"])["score"].sort_index(),
                               expected.sort_index(), rtol=1e-12)


def test_a_table_without_sizes_is_refused(tmp_path):
    pd.DataFrame({"area": ["VISp"], "mapping": ["pls"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="n_stimuli"):
        plot_interanimal_curve(tmp_path / "t.parquet", tmp_path / "x.png")
