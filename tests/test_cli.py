"""The command line passes config blocks to the library's keyword arguments unchanged."""

import argparse
import importlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.cli import _FIGURES, _SOURCES, _execution, build_parser, main


@pytest.mark.parametrize("dask, scheduler", [
    ({"scheduler": None, "cluster": None, "workers": 2}, None),
    ({"scheduler": "tcp://127.0.0.1:8786", "cluster": None, "workers": 2}, "tcp://127.0.0.1:8786"),
    ({"scheduler": None, "cluster": "slurm", "workers": 4}, "slurm"),
])
def test_dask_block_picks_the_scheduler(dask, scheduler):
    kwargs = _execution(argparse.Namespace(dask=dask, threads=None))
    assert kwargs == {"scheduler": scheduler, "n_workers": dask["workers"]}


def test_scheduler_and_cluster_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        _execution(argparse.Namespace(dask={"scheduler": "tcp://h:1", "cluster": "slurm"}, threads=2))


def test_compare_verbs_pass_the_blocks_to_the_engine(tmp_path):
    from pipeline.compare.consistency import interanimal
    from pipeline.data.assembly import write_assembly

    rng = np.random.default_rng(25)
    signal = rng.standard_normal((118, 1, 12))
    assembly = xr.DataArray(
        signal + rng.standard_normal((118, 6, 12)), dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i:03d}" for i in range(118)]),
                "neuroid_id": ("neuroid", [f"u{i}" for i in range(12)]),
                "animal": ("neuroid", np.repeat(["m0", "m1", "m2"], 4)), "area": ("neuroid", ["VISp"] * 12),
                "reliability": ("neuroid", np.full(12, np.nan))})
    write_assembly(assembly, tmp_path / "neural.zarr")
    common = ('{"mappings": ["ridge", "cka"], "n_halves": 2, "n_splits": 2, "train_frac": 0.5, '
              '"seed": 1, "alpha": 2.0, "n_components": 3}')
    blocks = {"interanimal": ["--settings", '{"mode": "pairwise", "equalize_sources": 3}'],
              "interanimal_curve": ["--settings", '{"mode": "pairwise", "equalize_sources": 3}',
                                    "--settings", '{"sizes": [30, null]}']}
    for verb, own in blocks.items():
        out = tmp_path / f"{verb}.parquet"
        assert main([verb, str(tmp_path / "neural.zarr"), str(out), "--dataset", "toy",
                     "--settings", common, *own, "--threads", "1"]) == 0
        table = pd.read_parquet(out)
        assert set(table["dataset"]) == {"toy"} and set(table["mode"]) == {"pairwise"}
        assert set(table["mapping"]) == {"ridge", "cka"} and set(table["n_source_units"]) == {3}
    assert sorted(set(table["n_stimuli"])) == [30, 118]
    direct = interanimal(assembly, mappings=("ridge", "cka"), n_halves=2, n_splits=2, seed=1, alpha=2.0,
                         n_components=3, mode="pairwise", equalize_sources=3)
    written = pd.read_parquet(tmp_path / "interanimal.parquet").drop(columns="dataset")
    pd.testing.assert_frame_equal(written, direct, check_exact=True)


def test_a_key_in_two_blocks_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["interanimal", "n.zarr", "o.parquet", "--dataset", "d",
                                   "--settings", '{"seed": 1}', "--settings", '{"seed": 2}'])
    assert "['seed'] given in two blocks" in capsys.readouterr().err


@pytest.mark.parametrize("verb", sorted(_FIGURES))
def test_every_figure_verb_is_the_library_function_of_its_name(verb):
    module, inputs, _ = _FIGURES[verb]
    assert callable(getattr(importlib.import_module(f"pipeline.figures.{module}"), verb))
    paths = [f"{name}.x" for name, _ in inputs]
    args = build_parser().parse_args([verb, *paths, "--out", "f.png", "--dpi", "60"])
    assert args.verb == verb and args.dpi == 60


@pytest.mark.parametrize("verb", sorted(_SOURCES))
def test_every_data_source_verb_is_the_library_function_of_its_name(verb):
    module, inputs, outputs, _ = _SOURCES[verb]
    assert callable(getattr(importlib.import_module(f"pipeline.data.{module}"), verb))
    paths = [f"{name}.x" for name in inputs + [output for output, _ in outputs]]
    settings = [] if verb == "assemble_allen_psailamul" else ["--settings", "{}"]
    assert build_parser().parse_args([verb, *paths, *settings]).verb == verb


def test_the_command_line_starts_without_the_libraries_of_the_verbs():
    """Every Snakemake job starts `python -m pipeline`: building its parser imports none of the
    stages' libraries, so a job pays only for the imports of the verb it runs."""
    code = ("import sys; from pipeline.cli import build_parser; build_parser(); "
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert loaded.isdisjoint({"torch", "numpy", "pandas", "xarray", "scipy", "sklearn", "zarr"})


def test_jobs_that_run_no_model_import_no_torch():
    """The Snakefile's imports and the modules of jobs that only read names, assemblies, scores
    or rate maps leave torch unimported (about 1.5 s of every such process)."""
    modules = ["pipeline.models", "pipeline.config", "pipeline.identify.grid",
               "pipeline.compare.consistency", "pipeline.compare.recovery",
               "pipeline.data.synthetic_mec", "pipeline.data.synthetic_mouse",
               "pipeline.mec.comparison", "pipeline.mec.scores", "pipeline.figures.comparison",
               "pipeline.figures.mec", "pipeline.figures.rdms"]
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
