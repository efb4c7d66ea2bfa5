"""Tests for pipeline.data.fetch.download against a real HTTP server on 127.0.0.1."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.data.fetch.digests import MultipartMD5, dandi_part_size, file_digests
from pipeline.data.fetch.download import (ChecksumError, DownloadError, HostUnreachable, Remote,
                                          fetch, read_manifest, sidecar_path, verify_cached,
                                          write_manifest)
from tests.data.http_server import dandi_etag

FAST = {"retries": 3, "backoff": 0.01, "timeout": 5}
DATA = bytes(range(256)) * 400        # 100 KiB


def _remote(server, path="/files/data.bin", body=DATA, **kwargs):
    url = server.add_file(path, body)
    kwargs.setdefault("size", len(body))
    kwargs.setdefault("digests", {"sha256": hashlib.sha256(body).hexdigest()})
    return Remote(url=url, path="sub/data.bin", **kwargs)


def test_fetch_verifies_and_records_sidecar(http_server, tmp_path):
    remote = _remote(http_server)
    result = fetch(remote, tmp_path, dataset="toy", **FAST)
    assert result.downloaded and result.path == tmp_path / "sub/data.bin"
    assert result.path.read_bytes() == DATA
    assert result.verified_by == ["size", "sha256"]
    record = json.loads(sidecar_path(result.path).read_text())
    assert record["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert record["size"] == len(DATA)
    assert not (tmp_path / "sub/data.bin.part").exists()


def test_second_fetch_downloads_nothing(http_server, tmp_path):
    remote = _remote(http_server)
    fetch(remote, tmp_path, dataset="toy", **FAST)
    again = fetch(remote, tmp_path, dataset="toy", **FAST)
    assert not again.downloaded
    assert len(http_server.gets("/files/data.bin")) == 1


def test_interrupted_body_resumes_with_range(http_server, tmp_path):
    remote = _remote(http_server)
    http_server.cut("/files/data.bin", 30_000, 70_000)      # two GETs die mid-body
    result = fetch(remote, tmp_path, dataset="toy", **FAST)
    gets = http_server.gets("/files/data.bin")
    assert [g.range for g in gets] == [None, "bytes=30000-", "bytes=70000-"]
    assert result.path.read_bytes() == DATA


def test_leftover_part_from_a_killed_run_resumes(http_server, tmp_path):
    remote = _remote(http_server)
    part = tmp_path / "sub/data.bin.part"
    part.parent.mkdir()
    part.write_bytes(DATA[:12_345])
    fetch(remote, tmp_path, dataset="toy", **FAST)
    assert [g.range for g in http_server.gets("/files/data.bin")] == ["bytes=12345-"]
    assert (tmp_path / "sub/data.bin").read_bytes() == DATA


def test_killed_process_resumes(http_server, tmp_path):
    """A client killed mid-transfer leaves a .part; a second run fetches only the rest."""
    remote = _remote(http_server)
    http_server.throttle("/files/data.bin", 0.01)            # ~1 s for the whole body
    code = ("import sys; from pipeline.data.fetch.download import Remote, fetch; "
            f"fetch(Remote(url={remote.url!r}, path='sub/data.bin', size={len(DATA)}), "
            f"{str(tmp_path)!r}, dataset='toy')")
    repo = Path(__file__).resolve().parents[3]
    child = subprocess.Popen([sys.executable, "-c", code], cwd=repo,
                             env={**os.environ, "PYTHONPATH": str(repo)})
    part = tmp_path / "sub/data.bin.part"
    deadline = time.time() + 20
    while (not part.exists() or part.stat().st_size < 10_000) and time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    have = part.stat().st_size
    assert 0 < have < len(DATA)
    http_server.throttle("/files/data.bin", 0.0)
    fetch(remote, tmp_path, dataset="toy", **FAST)
    assert http_server.gets("/files/data.bin")[-1].range == f"bytes={have}-"
    assert (tmp_path / "sub/data.bin").read_bytes() == DATA


def test_checksum_mismatch_fails_and_leaves_nothing(http_server, tmp_path):
    remote = _remote(http_server, digests={"sha256": "0" * 64})
    with pytest.raises(ChecksumError, match=r"toy: sub/data.bin from http://127\.0\.0\.1.*"
                                            r"sha256 expected 0{64}, got [0-9a-f]{64}"):
        fetch(remote, tmp_path, dataset="toy", **FAST)
    assert list(tmp_path.rglob("*.bin*")) == []


def test_wrong_published_size_fails(http_server, tmp_path):
    remote = _remote(http_server, size=len(DATA) - 10)
    with pytest.raises(ChecksumError, match="size"):
        fetch(remote, tmp_path, dataset="toy", **FAST)
    assert list(tmp_path.rglob("*.bin*")) == []


def test_stale_part_is_discarded_and_fetched_again(http_server, tmp_path):
    """Resumed bytes that do not verify are thrown away and the file is fetched from scratch."""
    remote = _remote(http_server)
    part = tmp_path / "sub/data.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"\xff" * 5_000)                        # garbage from another version
    result = fetch(remote, tmp_path, dataset="toy", **FAST)
    assert [g.range for g in http_server.gets("/files/data.bin")] == ["bytes=5000-", None]
    assert result.path.read_bytes() == DATA


def test_truncated_cached_file_is_refetched(http_server, tmp_path):
    remote = _remote(http_server)
    path = fetch(remote, tmp_path, dataset="toy", **FAST).path
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert not verify_cached(path, remote)
    assert fetch(remote, tmp_path, dataset="toy", **FAST).downloaded
    assert path.read_bytes() == DATA


def test_corrupt_cached_file_is_detected_by_rehash(http_server, tmp_path):
    remote = _remote(http_server)
    path = fetch(remote, tmp_path, dataset="toy", **FAST).path
    stat = path.stat()
    with open(path, "r+b") as f:                               # same size, new content
        f.write(b"corrupt")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # even with the old mtime ...
    assert verify_cached(path, remote)                         # ... the cheap check trusts it,
    assert not verify_cached(path, remote, full=True)          # a full check does not,
    os.utime(path)                                             # and a touched file is re-hashed.
    assert not verify_cached(path, remote)
    assert fetch(remote, tmp_path, dataset="toy", **FAST).downloaded
    assert path.read_bytes() == DATA


def test_changed_upstream_digest_forces_a_full_check(http_server, tmp_path):
    remote = _remote(http_server)
    path = fetch(remote, tmp_path, dataset="toy", **FAST).path
    moved = Remote(url=remote.url, path=remote.path, size=remote.size,
                   digests={"sha256": "1" * 64})
    assert not verify_cached(path, moved)


def test_redirect_is_followed_with_range(http_server, tmp_path):
    http_server.add_file("/blob", DATA)
    url = http_server.add_redirect("/download/", "/blob")
    http_server.cut("/blob", 50_000)
    remote = Remote(url=url, path="x.bin", size=len(DATA), digests={"md5": hashlib.md5(DATA)
                                                                    .hexdigest()})
    fetch(remote, tmp_path, dataset="toy", **FAST)
    assert [g.range for g in http_server.gets("/blob")] == [None, "bytes=50000-"]


def test_transient_server_errors_are_retried(http_server, tmp_path):
    remote = _remote(http_server)
    route = http_server.routes["/files/data.bin"]
    route.status = 503
    route.ranges = False

    def recover():
        time.sleep(0.05)
        route.status, route.ranges = 200, True
    import threading
    threading.Thread(target=recover).start()
    fetch(remote, tmp_path, dataset="toy", retries=8, backoff=0.02, timeout=5)
    assert (tmp_path / "sub/data.bin").read_bytes() == DATA
    assert len(http_server.gets("/files/data.bin")) >= 2


def test_not_found_is_a_clear_error(http_server, tmp_path):
    remote = Remote(url=http_server.url("/missing"), path="m.bin", size=3)
    with pytest.raises(DownloadError, match=r"toy: HTTP 404 for http://127\.0\.0\.1:\d+/missing"):
        fetch(remote, tmp_path, dataset="toy", **FAST)


def test_unreachable_host_is_one_line_naming_dataset_and_offline_default(tmp_path):
    import socket
    with socket.socket() as s:                   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    remote = Remote(url=f"http://127.0.0.1:{port}/f.nwb", path="f.nwb", size=10)
    began = time.monotonic()
    with pytest.raises(HostUnreachable) as info:
        fetch(remote, tmp_path, dataset="allen_neuropixels", retries=5, backoff=0.3, timeout=2)
    assert time.monotonic() - began < 2.0          # refused twice: no full backoff schedule
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"allen_neuropixels: cannot reach 127.0.0.1:{port} "
                              "(connection refused)")
    assert "snakemake --cores all" in message and "config.yaml" in message


def test_content_length_verifies_when_nothing_is_published(http_server, tmp_path):
    url = http_server.add_file("/t.tiff", DATA)
    http_server.cut("/t.tiff", 40_000)
    result = fetch(Remote(url=url, path="t.tiff"), tmp_path, dataset="toy", **FAST)
    assert result.verified_by == ["content-length"]
    assert result.path.read_bytes() == DATA


@pytest.mark.parametrize("size", [0, 1, 5 * 2**20 + 3])
def test_multipart_md5_matches_independent_dandi_etag(size):
    data = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    hasher = MultipartMD5(dandi_part_size(size))
    for i in range(0, size, 7777):                            # odd chunking across parts
        hasher.update(data[i:i + 7777])
    assert hasher.hexdigest() == dandi_etag(data)
    if size:
        assert hasher.hexdigest() == (hashlib.md5(hashlib.md5(data).digest()).hexdigest() + "-1")


def test_s3_multipart_etag_is_verified(tmp_path):
    part = 8 * 2**20
    data = os.urandom(part + 100)
    etag = hashlib.md5(hashlib.md5(data[:part]).digest()
                       + hashlib.md5(data[part:]).digest()).hexdigest() + "-2"
    path = tmp_path / "f"
    path.write_bytes(data)
    digests = file_digests(path, {"s3-etag": etag})
    assert digests[f"s3-etag@{part}"] == etag


def test_manifest_lists_only_verified_files(http_server, tmp_path):
    remote = _remote(http_server)
    result = fetch(remote, tmp_path, dataset="toy", **FAST)
    write_manifest(tmp_path / "manifest.json", "toy", {"url": "x"},
                   [{"path": "sub/data.bin", "role": "session", "sha256": result.sha256}])
    _, files = read_manifest(tmp_path / "manifest.json", role="session")
    assert [f["local"] for f in files] == [result.path]
    os.utime(result.path)
    with open(result.path, "r+b") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="manifest.json: listed file sub/data.bin is missing or "
                                         "changed"):
        read_manifest(tmp_path / "manifest.json")
