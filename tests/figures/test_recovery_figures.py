"""Tests for pipeline.figures.recovery: the recovery figures and the report's summary page."""

import pandas as pd
import pytest
from docutils.core import publish_parts

from pipeline.data.assembly import ALLEN_AREAS
from pipeline.figures.recovery import (plot_layer_area, plot_recovery_margin, plot_recovery_matrix,
                                       recovery_summary)

TRUE, WRONG = "ventral_cnn-supervised-bp", "ventral_cnn-supervised-fa"


@pytest.fixture
def tables(tmp_path):
    rows, depth = [], []
    for k, area in enumerate(ALLEN_AREAS):
        for mapping in ("ridge", "rsa"):
            won = not (area == "VISpm" and mapping == "rsa")
            rows.append({"dataset": "synthetic_mouse", "area": area, "mapping": mapping,
                         "generator": f"{TRUE}-s101", "true_class": TRUE, "winner": TRUE if won else WRONG,
                         "rank": 1 if won else 2, "margin": 0.1 if won else -0.05,
                         "margin_low": 0.05 if won else -0.1, "margin_high": 0.15 if won else 0.01,
                         "best_layer": "area2", "depth_layer": "area2" if k else "area1",
                         "at_depth": bool(k)})
            for cls in (TRUE, WRONG):
                for j, layer in enumerate(("area1", "area2", "area3")):
                    depth.append({"area": area, "mapping": mapping, "class": cls, "layer": layer,
                                  "depth": j / 2, "score": 0.5 + 0.1 * j * (cls == TRUE),
                                  "is_true": cls == TRUE, "generator_depth": min(k / 5, 1)})
    matrix = pd.DataFrame([
        {"mapping": m, "group": g, "true_class": TRUE, "winner": w, "count": c, "n": 2,
         "recovered": r, "proportion": r / 2, "ci_low": 0.01, "ci_high": 0.99, "chance": 0.5}
        for m in ("ridge", "rsa") for g in ("early", "late")
        for w, c, r in ([(TRUE, 2, 2)] if m == "ridge" else [(TRUE, 1, 1), (WRONG, 1, 1)])])
    paths = {name: tmp_path / f"{name}.csv" for name in ("table", "depth", "matrix")}
    pd.DataFrame(rows).to_csv(paths["table"], index=False)
    pd.DataFrame(depth).to_csv(paths["depth"], index=False)
    matrix.to_csv(paths["matrix"], index=False)
    return paths


def test_figures_are_written(tables, tmp_path):
    plot_recovery_matrix(tables["matrix"], tmp_path / "matrix.png", dpi=50)
    plot_recovery_margin(tables["table"], tmp_path / "margin.png", dpi=50)
    plot_layer_area(tables["depth"], tmp_path / "depth.png", dpi=50)
    for name in ("matrix", "margin", "depth"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1_000


def test_figures_name_a_missing_column(tables, tmp_path):
    with pytest.raises(ValueError, match="lacks column"):
        plot_recovery_margin(pd.read_csv(tables["table"]).drop(columns="margin"), tmp_path / "x.png")


def test_summary_is_valid_rst_that_marks_the_truth(tables, tmp_path):
    out = tmp_path / "summary.rst"
    recovery_summary([tables["table"]], tables["matrix"], out)
    text = out.read_text()
    html = publish_parts(text, writer="html", settings_overrides={"halt_level": 2})["html_body"]
    assert "Model recovery" in html and f"<strong>{TRUE}</strong>" in html
    assert f"{WRONG} (truth: {TRUE})" in text               # the one cell the truth lost
    assert text.count(f"**{TRUE}**") == 11
    assert "no (area2; generator depth area1)" in text and "2/2" in text
    assert "The truth wins **11 of 12** area × mapping cells" in text and "depth in 10 of the 12" in text
