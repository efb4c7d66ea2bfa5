"""Tests for pipeline.data.fetch.dandi against DANDI API routes served on 127.0.0.1."""

import hashlib

import pytest

from pipeline.data.fetch.dandi import list_assets
from pipeline.data.fetch.download import ChecksumError, DownloadError, fetch
from tests.data.http_server import DandiFixture

FAST = {"retries": 2, "backoff": 0.01, "timeout": 5}
SESSIONS = "sub-*/sub-*_ses-*.nwb"


def _files():
    return {f"sub-{s}/sub-{s}_ses-{s + 1}.nwb": hashlib.sha256(str(s).encode()).digest() * 500
            for s in (11, 22, 33)}


@pytest.fixture
def dandi(http_server):
    fixture = DandiFixture(http_server, page_size=2)
    for path, data in _files().items():
        fixture.add(path, data, sha256=path.startswith("sub-11"))
    fixture.add("sub-11/sub-11_ses-12_probe-7_ecephys.nwb", b"lfp" * 100)
    fixture.add("dataset_description.json", b"{}")
    return fixture


@pytest.mark.parametrize("inline", [True, False])
def test_listing_follows_pages_and_reads_digests(http_server, inline):
    fixture = DandiFixture(http_server, page_size=2, inline_metadata=inline)
    for path, data in _files().items():
        fixture.add(path, data, sha256=path.startswith("sub-11"))
    assets = list_assets("000021", api_url=fixture.api, glob=SESSIONS, **FAST)
    assert [a.path for a in assets] == list(_files())
    pages = http_server.gets("/api/dandisets/000021/versions/draft/assets/")
    assert len(pages) == 2                               # 3 assets, 2 per page
    assert pages[0].query["glob"] == SESSIONS and pages[0].query["metadata"] == "1"
    assert pages[1].query["page"] == "2"
    first, second = assets[0], assets[1]
    data = _files()[first.path]
    assert first.size == len(data)
    assert first.digests == {"dandi-etag": hashlib.md5(hashlib.md5(data).digest()).hexdigest()
                             + "-1", "sha256": hashlib.sha256(data).hexdigest()}
    assert set(second.digests) == {"dandi-etag"}         # DANDI has not computed a sha256
    assert first.download_url == f"{fixture.api}/assets/{first.asset_id}/download/"
    metadata_gets = [r for r in http_server.requests if r.path.endswith(f"{first.asset_id}/")]
    assert len(metadata_gets) == (0 if inline else 1)


def test_probe_files_need_a_client_side_filter(dandi):
    paths = [a.path for a in list_assets("000021", api_url=dandi.api, glob=SESSIONS, **FAST)]
    assert "sub-11/sub-11_ses-12_probe-7_ecephys.nwb" in paths     # the glob alone keeps it
    assert "dataset_description.json" not in paths


def test_download_redirects_and_verifies_etag_only(dandi, http_server, tmp_path):
    asset = list_assets("000021", api_url=dandi.api, glob="sub-22/*", **FAST)[0]
    assert set(asset.digests) == {"dandi-etag"}
    result = fetch(asset.remote(), tmp_path, dataset="allen_neuropixels", **FAST)
    assert result.path.read_bytes() == _files()[asset.path]
    assert result.verified_by == ["size", "dandi-etag"]
    assert http_server.gets(f"/blobs/{asset.asset_id}")


def test_wrong_etag_is_a_checksum_error_and_leaves_nothing(http_server, tmp_path):
    fixture = DandiFixture(http_server)
    fixture.add("sub-1/sub-1_ses-2.nwb", b"x" * 1000, sha256=False, etag="0" * 32 + "-1")
    asset = list_assets("000021", api_url=fixture.api, **FAST)[0]
    with pytest.raises(ChecksumError, match="allen_neuropixels: sub-1/sub-1_ses-2.nwb .*"
                                            "dandi-etag expected 0{32}-1"):
        fetch(asset.remote(), tmp_path, dataset="allen_neuropixels", **FAST)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_missing_etag_is_refused(http_server):
    fixture = DandiFixture(http_server)
    fixture.add("sub-1/sub-1_ses-2.nwb", b"x", etag="not-an-etag")
    with pytest.raises(DownloadError, match="sub-1/sub-1_ses-2.nwb.*dandi-etag.*'not-an-etag'"):
        list_assets("000021", api_url=fixture.api, **FAST)
