"""Verified, resumable HTTP downloads into a cache under ``data/raw/``.

Every real dataset reaches the pipeline through `fetch`: the body streams into ``<name>.part``,
an interrupted transfer resumes with an HTTP Range request, transient failures are retried with
exponential backoff, and the file is renamed into place only after it matches the source's
published checksum or size (sha256, sha1, md5, the DANDI etag, an S3 ETag, or at least the
announced length). A sidecar ``<name>.verified.json`` records what was checked and the file's
sha256, so a later run re-verifies a cached file cheaply (size and mtime; a full re-hash when
either changed) and re-fetches it when it no longer matches. This answers the AllenSDK
complaints collected in spec/anchors.md §8: hanging downloads (#1214, #1436: timeouts and
retries), truncated NWB files left in the cache (#22, #1112: nothing unverified is ever renamed
into place).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import requests
import urllib3
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.data.fetch.digests import CHUNK, check_digests, file_digests
from pipeline.data.fetch.remote import (RETRY_STATUS, DownloadError, HostUnreachable, give_up,
                                        sleep_backoff, unreachable)
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["ChecksumError", "DownloadError", "FetchResult", "HostUnreachable", "Remote", "fetch",
           "fetch_all", "http_settings", "read_manifest", "read_sidecar", "sidecar_path",
           "verify_cached", "write_manifest"]

SIDECAR_SUFFIX = ".verified.json"
PART_SUFFIX = ".part"


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the published checksum or size."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch, and what the source says it must be.

    Parameters
    ----------
    url : str
        Where to GET it (redirects are followed).
    path : str
        Destination relative to the dataset's cache folder (forward slashes).
    size : int or None
        Published size in bytes, if any.
    digests : dict of str to str
        Published checksums, keyed by algorithm: "sha256", "sha1", "md5", "dandi-etag"
        (md5 of per-part md5s, 64 MiB parts, "-<n parts>"), "s3-etag" (an S3 ETag: a plain md5,
        or a multipart etag of unknown part size).
    """

    url: str
    path: str
    size: int | None = None
    digests: dict = field(default_factory=dict)

    def expected(self) -> dict:
        """The published facts a file must match, as recorded in its sidecar."""
        return {"size": self.size, **{k: v for k, v in sorted(self.digests.items())}}


@dataclass
class FetchResult:
    """Outcome of `fetch`: the verified file and how it was verified."""

    path: Path
    sha256: str
    size: int
    verified_by: list[str]
    downloaded: bool


# ---------------------------------------------------------------------------- the cache

def sidecar_path(path) -> Path:
    """Where the verification record of `path` lives: ``<name>.verified.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _write_sidecar(path: Path, remote: Remote, sha256: str, verified_by: list[str]) -> None:
    stat = path.stat()
    record = {"url": remote.url, "expected": remote.expected(), "size": stat.st_size,
              "mtime_ns": stat.st_mtime_ns, "sha256": sha256, "verified_by": verified_by}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))


def read_sidecar(path) -> dict | None:
    """The verification record of a cached file, or None when absent or unreadable."""
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def _verify_file(path: Path, remote: Remote, *, total: int | None) -> tuple[str, list[str]]:
    """Check `path` against `remote`; returns (sha256, what verified it) or raises ChecksumError.

    `total` is the length the server announced, used only when the source publishes neither a
    size nor a checksum.
    """
    size = path.stat().st_size
    verified_by = []
    if remote.size is not None:
        if size != remote.size:
            raise ChecksumError(f"size {size} bytes, expected {remote.size}")
        verified_by.append("size")
    elif not remote.digests:
        if total is None:
            raise ChecksumError("the source publishes no checksum or size and the server sent "
                                "no Content-Length, so the file cannot be verified")
        if size != total:
            raise ChecksumError(f"size {size} bytes, the server announced {total}")
        verified_by.append("content-length")
    digests = file_digests(path, remote.digests)
    matched, wrong = check_digests(digests, remote.digests)
    if wrong:
        raise ChecksumError("; ".join(wrong))
    return digests["sha256"], verified_by + matched


def _reverify(path: Path, remote: Remote) -> bool:
    """Check a cached file in full against `remote`'s published facts; record it when it passes."""
    try:
        sha256, verified_by = _verify_file(path, remote, total=None)
    except ChecksumError:
        return False
    _write_sidecar(path, remote, sha256, verified_by)
    return True


def verify_cached(path, remote: Remote | None = None, *, full: bool = False) -> bool:
    """True when a cached file still is what was verified when it was downloaded.

    Cheap by default: the file's size and mtime must equal those in its sidecar, and the
    sidecar's published facts must equal `remote`'s (when given; a changed upstream file needs a
    full check). When size or mtime changed, or `full` is set, the file is re-hashed and must
    match the sidecar's sha256 and every published digest.
    """
    path = Path(path)
    if not path.is_file():
        return False
    record = read_sidecar(path)
    if record is None:
        if remote is None or (remote.size is None and not remote.digests):
            return False
        return _reverify(path, remote)
    stat = path.stat()
    if stat.st_size != record.get("size"):
        return False
    if remote is not None and record.get("expected") != remote.expected():
        return _reverify(path, remote)
    if not full and stat.st_mtime_ns == record.get("mtime_ns"):
        return True
    if file_digests(path)["sha256"] != record.get("sha256"):
        return False
    if stat.st_mtime_ns != record.get("mtime_ns"):
        record["mtime_ns"] = stat.st_mtime_ns
        with atomic_path(sidecar_path(path)) as tmp:
            tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    return True


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.exists():
            p.unlink()


# ---------------------------------------------------------------------------- fetch

def _content_total(response: requests.Response, start: int) -> int | None:
    """Full file length from Content-Range (206) or Content-Length (200)."""
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + start if length and length.isdigit() else None


def _range_start(response: requests.Response) -> int | None:
    """First byte of a 206 response, from its Content-Range header."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class _Transient(Exception):
    """The server answered, but the attempt failed in a way a retry can fix."""


def _transfer(session, remote: Remote, part: Path, state: dict, *, dataset: str,
              timeout: float, chunk_size: int) -> int | None:
    """One GET, resuming from the bytes already in `part`; returns the announced total length.

    Sets ``state["connected"]`` once the server has answered. Raises `_Transient` for retryable
    HTTP statuses, requests exceptions for transport failures (the caller retries both) and
    DownloadError for HTTP errors that retrying cannot fix.
    """
    start = part.stat().st_size if part.exists() else 0
    # Identity encoding: offsets and checksums refer to the file's own bytes.
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={start}-"} if start else {})}
    with session.get(remote.url, headers=headers, stream=True, timeout=timeout) as response:
        state["connected"] = True
        if response.status_code == 416 and start:
            # Nothing left to send: the part already holds the whole body (or more).
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            return int(total) if total.isdigit() else remote.size
        if response.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code not in (200, 206):
            raise DownloadError(f"{dataset}: HTTP {response.status_code} for {remote.url} "
                                f"({remote.path})")
        if response.status_code == 206 and _range_start(response) != start:
            raise DownloadError(f"{dataset}: {remote.url} answered Range bytes={start}- with "
                                f"{response.headers.get('Content-Range')!r}")
        if response.status_code == 200 and start:
            log.info("%s: server ignored the Range request; restarting %s", dataset, remote.path)
            start = 0
        total = _content_total(response, start)
        with open(part, "ab" if start else "wb") as f, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, leave=False,
                     desc=f"{dataset} {Path(remote.path).name}", disable=None) as bar:
            # read1 hands over whatever has arrived, so bytes received before a connection
            # drops are kept and the retry resumes after them.
            while chunk := response.raw.read1(chunk_size):
                f.write(chunk)
                bar.update(len(chunk))
    return total


def destination(root, path: str, *, dataset: str) -> Path:
    """``root/path``, refused unless it stays inside the cache folder `root`.

    Remote paths come from the source's listing (e.g. a DANDI asset path); an absolute path or
    one whose ``..`` parts climb out of `root` would write anywhere on the disk.

    Raises
    ------
    DownloadError
        Naming the dataset, the remote path and the cache folder.
    """
    root = Path(root)
    dest = root / path
    # Where the entry itself lives, not a symlink's target: a file may be a link into an
    # AllenSDK cache (allensdk_cache_mode: link, pipeline.data.fetch.allensdk_cache).
    inside = (dest.parent.resolve() / dest.name).is_relative_to(root.resolve())
    if PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts or not inside:
        raise DownloadError(f"{dataset}: remote path {path!r} leads outside the cache folder {root}; "
                            "refusing to write it (the source's listing is malformed or hostile)")
    return dest


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def fetch(remote: Remote, root, *, dataset: str, session: requests.Session | None = None,
          retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
          chunk_size: int = CHUNK, full_verify: bool = False) -> FetchResult:
    """Download `remote` into ``root/remote.path`` unless a verified copy is already cached.

    Parameters
    ----------
    remote : Remote
        What to fetch and what it must match.
    root : path-like
        The dataset's cache folder (e.g. ``data/raw/allen_neuropixels``).
    dataset : str
        Dataset name, used in every log line and error.
    session : requests.Session, optional
        Shared connection pool.
    retries : int
        Retries after a failed attempt that made no progress; an attempt that received bytes
        resets the count, so a long file on a flaky link still completes.
    backoff : float
        Seconds before the first retry; doubled on each further retry (capped at 60 s).
    timeout : float
        Seconds to wait for a connection or for the next bytes.
    chunk_size : int
        Bytes per read.
    full_verify : bool
        Re-hash a cached file even when its size and mtime are unchanged.

    Returns
    -------
    FetchResult

    Raises
    ------
    HostUnreachable
        No connection could be made (one line naming the dataset and host, and the offline
        default).
    ChecksumError
        The bytes do not match the published checksum or size; the partial file is deleted.
    DownloadError
        Any other failure that retrying did not fix.
    """
    root = Path(root)
    dest = destination(root, remote.path, dataset=dataset)
    if dest.exists():
        if verify_cached(dest, remote, full=full_verify):
            record = read_sidecar(dest)
            log.debug("%s: %s cached and verified", dataset, remote.path)
            return FetchResult(dest, record["sha256"], record["size"], record["verified_by"],
                               downloaded=False)
        log.warning("%s: cached %s failed verification; fetching it again", dataset, remote.path)
        _remove(dest, sidecar_path(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    session = session or requests.Session()
    resumed = _size(part) > 0
    if resumed:
        log.info("%s: resuming %s from byte %d", dataset, remote.path, _size(part))
    state = {"connected": False}
    failures, total, restarted = 0, None, False
    while True:
        before = _size(part)
        if remote.size is not None and before > remote.size:
            log.warning("%s: %s is longer than the published size; restarting", dataset,
                        part.name)
            _remove(part)
            before = 0
        try:
            if remote.size is None or before < remote.size:
                total = _transfer(session, remote, part, state, dataset=dataset,
                                  timeout=timeout, chunk_size=chunk_size)
            expected_total = remote.size if remote.size is not None else total
            if expected_total is not None and _size(part) < expected_total:
                raise _Transient(f"body ended at byte {_size(part)} of {expected_total}")
        except (_Transient, requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError,
                ConnectionError, TimeoutError) as err:
            have = _size(part)
            failures = 0 if have > before else failures + 1
            if failures and give_up(err, failures - 1, retries, state["connected"]):
                if not state["connected"]:
                    raise unreachable(dataset, remote.url, err) from err
                raise DownloadError(f"{dataset}: {remote.path} from {remote.url}: {err} after "
                                    f"{retries + 1} attempts without progress; {part.name} is "
                                    f"kept, so a rerun resumes at byte {have}") from err
            log.warning("%s: %s interrupted at byte %d (%s); retry %d of %d", dataset,
                        remote.path, have, err, max(failures, 1), retries)
            sleep_backoff(backoff, max(failures - 1, 0))
            continue
        try:
            sha256, verified_by = _verify_file(part, remote, total=total)
        except ChecksumError as err:
            _remove(part)
            if resumed and not restarted:
                # Bytes from an earlier run may be stale; one clean download decides.
                log.warning("%s: %s failed verification after resuming (%s); downloading it "
                            "again from the start", dataset, remote.path, err)
                restarted = True
                continue
            raise ChecksumError(f"{dataset}: {remote.path} from {remote.url} failed "
                                f"verification: {err}; the download was deleted") from None
        os.replace(part, dest)
        _write_sidecar(dest, remote, sha256, verified_by)
        log.info("%s: fetched %s (%d bytes; verified by %s)", dataset, remote.path,
                 _size(dest), ", ".join(verified_by))
        return FetchResult(dest, sha256, _size(dest), verified_by, downloaded=True)


def http_settings(*, retries: int, backoff: float, timeout: float) -> dict:
    """Keyword arguments shared by every request of one download run (`fetch`, `get_json`, ...).

    One `requests.Session` (connections are reused across files) and the config block's retry
    settings: `retries` after an attempt that made no progress, `backoff` seconds before the
    first (doubled per retry), `timeout` seconds without bytes.
    """
    return {"session": requests.Session(), "retries": retries, "backoff": backoff,
            "timeout": timeout}


def fetch_all(remotes, root, *, dataset: str, **kwargs) -> list[FetchResult]:
    """`fetch` each remote in turn (one download at a time; Snakemake bounds concurrent jobs)."""
    session = kwargs.pop("session", None) or requests.Session()
    results = []
    remotes = list(remotes)
    with logging_redirect_tqdm():
        for i, remote in enumerate(remotes, 1):
            log.info("%s: file %d of %d: %s", dataset, i, len(remotes), remote.path)
            results.append(fetch(remote, root, dataset=dataset, session=session, **kwargs))
    fetched = sum(r.downloaded for r in results)
    log.info("%s: %d files verified (%d downloaded, %d from the cache)", dataset, len(results),
             fetched, len(results) - fetched)
    return results


# ---------------------------------------------------------------------------- manifests

def write_manifest(path, dataset: str, source: dict, files: list[dict]) -> None:
    """Write the list of verified files a download produced (paths relative to its folder)."""
    record = {"dataset": dataset, "source": source, "files": files}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))


def read_manifest(path, *, role: str | None = None) -> tuple[dict, list[dict]]:
    """Read a download manifest and re-check each listed file cheaply against its sidecar.

    Parameters
    ----------
    path : path-like
        ``manifest.json`` written by a download verb.
    role : str, optional
        Return only files with this role (e.g. "session", "template").

    Returns
    -------
    (dict, list of dict)
        The manifest and its file entries, each with an absolute ``local`` path added.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the manifest and the file that is missing or no longer verifies.
    """
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no download manifest; run the download rule first") \
            from None
    except ValueError as err:
        raise ValueError(f"{path}: not a JSON download manifest ({err})") from err
    files = []
    for entry in manifest.get("files", []):
        if role is not None and entry.get("role") != role:
            continue
        local = path.parent / entry["path"]
        if not verify_cached(local):
            raise ValueError(f"{path}: listed file {entry['path']} is missing or changed since "
                             f"it was verified; rerun the download (it re-fetches only that file)")
        files.append({**entry, "local": local})
    return manifest, files
