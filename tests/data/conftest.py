"""Small synthetic Neuropixels sessions shared by the data tests."""

import pytest

from pipeline.data.stimuli import make_stimulus_sets
from pipeline.data.synthetic_mouse import simulate_synthetic_mouse


@pytest.fixture(scope="session")
def probe_small():
    return make_stimulus_sets(train_per_class=0, test_per_class=0, probe=40, seed=0)["probe"]


@pytest.fixture(scope="session")
def sessions(tmp_path_factory, probe_small):
    """Three virtual animals, 10 units per area, 40 images × 20 trials; (out_dir, nwb paths)."""
    out = tmp_path_factory.mktemp("synthetic_mouse")
    paths = simulate_synthetic_mouse(probe_small, out, animals_per_area=3, units_per_animal=10,
                               trials=20, seed=0)
    return out, paths


@pytest.fixture
def http_server():
    """A real HTTP server on 127.0.0.1 serving what each test registers (tests/data/http_server.py)."""
    from tests.data.http_server import FixtureServer

    with FixtureServer() as server:
        yield server
