"""Checksums the data sources publish, computed in one pass over a file.

sha256, sha1 and md5 as usual; the DANDI etag (dandischema ``DandiETag``: md5 of the
concatenated per-part md5 digests, 64 MiB parts, suffixed ``-<n parts>``); and S3 ETags, which
are a plain md5 for single-part uploads and the same multipart construction, with a part size
the bucket does not publish, otherwise (common part sizes are tried).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 1 << 18
DIGESTS = ("sha256", "sha1", "md5", "dandi-etag", "s3-etag")
S3_PART_SIZES_MIB = (8, 16, 5, 10, 15, 32, 50, 64, 100, 128, 256, 512, 1024)


class MultipartMD5:
    """Etag of S3 multipart uploads and DANDI: md5 of the concatenated per-part md5 digests.

    The result is ``"<hex>-<n parts>"``; an empty file gives ``md5(b"").hexdigest() + "-0"``.
    """

    def __init__(self, part_size: int):
        self.part_size = int(part_size)
        self._parts: list[bytes] = []
        self._current = hashlib.md5()
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), self.part_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self._parts.append(self._current.digest())
                self._current, self._filled = hashlib.md5(), 0

    def hexdigest(self) -> str:
        parts = self._parts + ([self._current.digest()] if self._filled else [])
        if not parts:
            return f"{hashlib.md5(b'').hexdigest()}-0"
        return f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def dandi_part_size(size: int) -> int:
    """Part size of the DANDI etag for a file of `size` bytes (dandischema DandiETag).

    64 MiB, or ceil(size / 10000) when 64 MiB parts would number 10,000 or more; clipped to the
    S3 limits of 5 MiB and 5 GiB.
    """
    part = 64 * 2**20
    if math.ceil(size / part) >= 10_000:
        part = math.ceil(size / 10_000)
    return min(max(part, 5 * 2**20), 5 * 2**30)


def _s3_candidates(etag: str, size: int) -> list[int]:
    """Part sizes that could have produced multipart ETag `etag` for a file of `size` bytes."""
    n_parts = int(etag.rsplit("-", 1)[1])
    return [mib * 2**20 for mib in S3_PART_SIZES_MIB if math.ceil(size / (mib * 2**20)) == n_parts]


def _hashers(expected: dict, size: int) -> dict:
    """One hasher per digest to compute: sha256 always, plus each published digest."""
    hashers = {"sha256": hashlib.sha256()}
    for algorithm, value in expected.items():
        if algorithm in ("sha1", "md5"):
            hashers[algorithm] = hashlib.new(algorithm)
        elif algorithm == "dandi-etag":
            hashers[algorithm] = MultipartMD5(dandi_part_size(size))
        elif algorithm == "s3-etag":
            if "-" not in value:
                hashers.setdefault("md5", hashlib.md5())
            else:
                for part in _s3_candidates(value.strip('"'), size):
                    hashers[f"s3-etag@{part}"] = MultipartMD5(part)
        elif algorithm != "sha256":
            raise ValueError(f"unknown digest algorithm {algorithm!r}; expected one of {DIGESTS}")
    return hashers


def file_digests(path, expected: dict | None = None) -> dict[str, str]:
    """Hex digests of a file in one read: sha256, plus whatever `expected` names.

    Parameters
    ----------
    path : path-like
        File to hash.
    expected : dict of str to str, optional
        Published digests (see `pipeline.data.fetch.download.Remote`); their algorithms are
        computed too.

    Returns
    -------
    dict of str to str
        "sha256" and every algorithm of `expected`; an S3 multipart etag is returned under the
        key "s3-etag@<part size>" for each part size consistent with it.
    """
    path = Path(path)
    hashers = _hashers(dict(expected or {}), path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {name: h.hexdigest() for name, h in hashers.items()}


def check_digests(computed: dict, expected: dict) -> tuple[list[str], list[str]]:
    """Compare computed digests with published ones; returns (matched, mismatch messages)."""
    matched, wrong = [], []
    for algorithm, value in expected.items():
        value = value.strip('"').lower()
        if algorithm == "s3-etag":
            if "-" not in value:
                ok = computed.get("md5") == value
            else:
                ok = any(computed[k] == value for k in computed if k.startswith("s3-etag@"))
                if not any(k.startswith("s3-etag@") for k in computed):
                    log.warning("S3 ETag %s: no standard part size fits; verified by size only",
                                value)
                    continue
        else:
            ok = computed.get(algorithm) == value
        if ok:
            matched.append(algorithm)
        else:
            found = computed.get(algorithm) or computed.get("md5") or "(no part size matches)"
            wrong.append(f"{algorithm} expected {value}, got {found}")
    return matched, wrong
