"""Downloads write only inside their dataset's cache folder, whatever the source's listing says."""

import pytest

from pipeline.data.fetch.dandi import list_assets
from pipeline.data.fetch.download import DownloadError, destination, fetch
from pipeline.data.mec_openfield import download_mec_openfield
from tests.data.http_server import DandiFixture, FixtureServer

FAST = {"retries": 1, "backoff": 0.01, "timeout": 5}
ESCAPE = "sub-1/../../escaped/sub-1_ses-1.nwb"          # `*` of fnmatch also matches "/"


@pytest.mark.parametrize("path", [ESCAPE, "../sub-1_ses-1.nwb", "/etc/sub-1_ses-1.nwb",
                                  "sub-1/../../../x.nwb", "./../x.nwb"])
def test_a_path_that_leaves_the_cache_is_refused(tmp_path, path):
    with pytest.raises(DownloadError, match=r"mec: remote path .* leads outside the cache folder"):
        destination(tmp_path / "cache", path, dataset="mec")


@pytest.mark.parametrize("path", ["sub-1/sub-1_ses-1.nwb", "sub-1/./sub-1_ses-1.nwb", "a.nwb"])
def test_a_path_inside_the_cache_is_kept(tmp_path, path):
    assert destination(tmp_path / "cache", path, dataset="mec") == tmp_path / "cache" / path


@pytest.fixture
def hostile_dandiset():
    with FixtureServer() as server:
        fixture = DandiFixture(server, dandiset="000582")
        fixture.add("sub-2/sub-2_ses-1.nwb", b"fine" * 100)
        fixture.add(ESCAPE, b"escape" * 100)
        yield fixture


def test_fetch_of_a_hostile_listing_writes_nothing_outside(hostile_dandiset, tmp_path):
    asset = next(a for a in list_assets("000582", api_url=hostile_dandiset.api, **FAST) if a.path == ESCAPE)
    with pytest.raises(DownloadError, match="leads outside the cache folder"):
        fetch(asset.remote(), tmp_path / "cache", dataset="mec_openfield", **FAST)
    assert not (tmp_path / "escaped").exists()
    assert not any(tmp_path.glob("**/*.nwb"))


def test_the_mec_download_stops_on_a_hostile_listing(hostile_dandiset, tmp_path):
    with pytest.raises(DownloadError, match=r"mec_openfield: remote path .*escaped.* leads outside"):
        download_mec_openfield(tmp_path / "cache", api_url=hostile_dandiset.api,
                               dandisets=[{"dandiset": "000582", "version": "draft", "path_glob": "sub-*/*.nwb"}],
                               **FAST)
    assert not (tmp_path / "escaped").exists()
