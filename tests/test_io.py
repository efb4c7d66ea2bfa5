"""Atomic writes and file digests."""

import hashlib
import json
import os

import torch

from pipeline.io import file_sha256, save_torch


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_torch_records_the_digest_of_the_bytes_written(tmp_path):
    path = tmp_path / "epoch_001.pt"
    save_torch({"w": torch.arange(10.0), "epoch": 1}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    record = json.loads((tmp_path / "epoch_001.pt.sha256").read_text())
    assert record["sha256"] == sha256_of(path) == file_sha256(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporaries


def test_the_record_is_used_only_while_the_file_is_unchanged(tmp_path):
    path = tmp_path / "epoch_001.pt"
    save_torch({"w": torch.zeros(3)}, path)
    sidecar = tmp_path / "epoch_001.pt.sha256"
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "sha256": "recorded"}))
    assert file_sha256(path) == "recorded"                # same size and mtime: not re-read
    torch.save({"w": torch.ones(3)}, path)                # rewritten behind the record's back
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert file_sha256(path) == sha256_of(path)
    sidecar.write_text("not json")
    assert file_sha256(path) == sha256_of(path)
