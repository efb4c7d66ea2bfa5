"""The command line maps config blocks onto the library's keyword arguments."""

import pytest

from pipeline.cli import _compare_kwargs


@pytest.mark.parametrize("dask, scheduler", [
    ({"scheduler": None, "cluster": None, "workers": 2}, None),
    ({"scheduler": "tcp://127.0.0.1:8786", "cluster": None, "workers": 2}, "tcp://127.0.0.1:8786"),
    ({"scheduler": None, "cluster": "slurm", "workers": 4}, "slurm"),
])
def test_dask_block_picks_the_scheduler(dask, scheduler):
    kwargs = _compare_kwargs({"mappings": ["ridge"]}, dask, threads=None)
    assert kwargs["scheduler"] == scheduler
    assert kwargs["n_workers"] == dask["workers"]


def test_scheduler_and_cluster_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        _compare_kwargs({"mappings": ["ridge"]}, {"scheduler": "tcp://h:1", "cluster": "slurm"}, threads=2)


def test_every_source_verb_names_a_library_function():
    from pipeline.cli import _ASSEMBLERS, _DOWNLOADS, _source_function, build_parser

    parser = build_parser()
    for table, paths in ((_DOWNLOADS, ["out_dir"]), (_ASSEMBLERS, ["manifest", "out"])):
        for verb in table:
            assert callable(_source_function(table, verb)), verb
            assert parser.parse_args([verb, *paths, "--settings", "{}"]).verb == verb
