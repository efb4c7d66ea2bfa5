"""Neural dynamics figures and the summary verb that feeds them (pipeline/figures/temporal.py)."""

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main as temporal_cli
from pipeline.figures.temporal import plot_phases, plot_predictivity_over_time


def _table(model, level, slope, with_layers):
    """Per-unit rows over 6 bins: score = level + slope · bin index (+ unit offsets)."""
    rows = []
    for b in range(6):
        for u in range(4):
            for split in range(2):
                row = {"area": "IT", "animal": "m0", "neuroid_id": f"u{u}", "mapping": "ridge", "split": split,
                       "temporal": "per_bin", "time_bin": 0.01 * b, "time_bin_end": 0.01 * (b + 1),
                       "score": level + slope * b + 0.01 * u}
                if with_layers:
                    for stage in ("test", "select"):
                        rows.append({**row, "stage": stage, "layer": "l1", "model": model,
                                     "time_mapping": "steps"})
                else:
                    rows.append(row)
    return pd.DataFrame(rows)


def test_summary_and_figures_from_score_tables(tmp_path):
    _table("ceiling", 0.8, 0.0, False).to_parquet(tmp_path / "interanimal.parquet")
    _table("rnn", 0.7, 0.0, True).to_parquet(tmp_path / "rnn.parquet")
    _table("ff", 0.75, -0.1, True).to_parquet(tmp_path / "ff.parquet")
    assert temporal_cli(["temporal_summary", str(tmp_path / "interanimal.parquet"), str(tmp_path / "rnn.parquet"),
                         str(tmp_path / "ff.parquet"), "--bins", str(tmp_path / "bins.csv"),
                         "--phases", str(tmp_path / "phases.csv"),
                         "--settings", '{"early": [0.0, 0.02], "late": [0.04, 0.06]}']) == 0
    phases = pd.read_csv(tmp_path / "phases.csv").set_index(["model", "phase"])["median"]
    assert phases["inter-animal", "early"] == pytest.approx(0.815)
    assert phases["ff", "early"] == pytest.approx(0.75 - 0.05 + 0.015)          # bins 0, 1
    assert phases["ff", "late"] == pytest.approx(0.75 - 0.45 + 0.015)           # bins 4, 5
    assert phases["rnn", "late"] == pytest.approx(0.715)
    bins = plot_predictivity_over_time(tmp_path / "bins.csv", tmp_path / "time.png", dpi=40)
    assert (tmp_path / "time.png").stat().st_size > 0 and len(bins) == 3 * 6
    assert np.isclose(bins[bins["model"] == "inter-animal"]["median"], 0.815).all()
    drawn = plot_phases(tmp_path / "phases.csv", tmp_path / "phases.png", dpi=40)
    assert (tmp_path / "phases.png").stat().st_size > 0 and len(drawn) == 3 * 2


def test_figures_name_a_table_without_the_summary_columns(tmp_path):
    pd.DataFrame({"model": ["m"], "median": [0.1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="temporal_summary"):
        plot_predictivity_over_time(tmp_path / "bad.csv", tmp_path / "x.png")
