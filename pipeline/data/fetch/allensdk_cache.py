"""Reuse of an existing AllenSDK cache: take verified files from it instead of downloading.

Many users already hold an ``EcephysProjectCache`` or ``BrainObservatoryCache`` directory,
often hundreds of GB. Its ``manifest.json`` (AllenSDK ``ManifestBuilder``: a list of
``{key, type, spec, parent_key}`` path entries, specs joined from ``BASEDIR`` and filled with
``%`` arguments, as ``Manifest.get_path`` does) names where each file lives; its own tables
(``sessions.csv`` for ecephys, ``ophys_experiments.json`` for two-photon) say which session or
experiment ids it knows. `adopt` places such files into the pipeline's cache (a symlink or a
copy) and keeps them only when they match the checksum or size the source publishes (the same
check `pipeline.data.fetch.download.fetch` applies to a download); a file that fails is named
with the reason in the log and left to be downloaded. No AllenSDK import is needed: the cache
is read as plain JSON, CSV and files.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.data.fetch.digests import file_digests
from pipeline.data.fetch.download import (PART_SUFFIX, ChecksumError, DownloadError, Remote,
                                          _write_sidecar, destination, sidecar_path,
                                          verify_cached)
from pipeline.io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["AdoptReport", "AllenSDKCache", "CacheError", "adopt", "ecephys_sessions", "open_cache",
           "ophys_experiments", "read_report", "register", "scene_templates"]

MANIFEST_NAME = "manifest.json"
MODES = ("link", "copy")
# Manifest keys of AllenSDK 2.x (EcephysProjectCache.add_manifest_paths,
# BrainObservatoryCache.build_manifest).
ECEPHYS_SESSIONS, ECEPHYS_SESSION_NWB, ECEPHYS_SCENE = "sessions", "session_nwb", "natural_scene"
OPHYS_EXPERIMENTS, OPHYS_EXPERIMENT_NWB = "EXPERIMENTS", "EXPERIMENT_DATA"


class CacheError(DownloadError):
    """The AllenSDK cache folder or one of its tables cannot be read as AllenSDK writes it."""


@dataclass(frozen=True)
class AllenSDKCache:
    """An AllenSDK cache on disk: its manifest file and path entries by key."""

    manifest: Path
    entries: dict

    def path(self, key: str, *args) -> Path:
        """The file of manifest `key` for `args` (e.g. a session id twice for session NWBs).

        Specs of the entry and its ``parent_key`` chain are joined below the manifest's
        folder and then filled with ``%`` arguments, as AllenSDK's ``Manifest.get_path`` does.
        """
        parts, seen = [], set()
        entry = self._entry(key)
        while entry is not None:
            if entry["key"] in seen:
                raise CacheError(f"{self.manifest}: parent_key cycle at {entry['key']!r}")
            seen.add(entry["key"])
            parts.append(entry["spec"])
            parent = entry.get("parent_key")
            entry = self._entry(parent) if parent else None
        spec = os.path.join(*reversed(parts))
        try:
            filled = spec % args if args else spec
        except TypeError as err:
            raise CacheError(f"{self.manifest}: path spec {spec!r} of key {key!r} does not take "
                             f"{len(args)} arguments ({err})") from err
        return Path(os.path.normpath(self.manifest.parent / filled))

    def _entry(self, key: str) -> dict:
        if key not in self.entries:
            raise CacheError(f"{self.manifest}: no manifest entry {key!r}; expected an AllenSDK "
                             f"cache manifest with keys like {sorted(self.entries)[:6]}")
        return self.entries[key]

    def has(self, key: str) -> bool:
        return key in self.entries


def open_cache(location, *, dataset: str) -> AllenSDKCache:
    """Read the AllenSDK manifest at `location` (its folder, or the manifest file itself).

    Raises
    ------
    CacheError
        Naming the path and what was expected, when there is no readable manifest.
    """
    location = Path(location).expanduser()
    manifest = location / MANIFEST_NAME if location.is_dir() else location
    try:
        record = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise CacheError(f"{dataset}: allensdk_cache {location}: no AllenSDK manifest "
                         f"({manifest} not found); point the key at the folder holding the "
                         f"manifest.json that EcephysProjectCache/BrainObservatoryCache wrote"
                         ) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"{dataset}: allensdk_cache {manifest} is not a JSON manifest ({err})"
                         ) from err
    rows = record.get("manifest") if isinstance(record, dict) else None
    if not isinstance(rows, list):
        raise CacheError(f"{dataset}: {manifest} has no 'manifest' list of path entries; not an "
                         f"AllenSDK cache manifest")
    entries = {row["key"]: row for row in rows
               if isinstance(row, dict) and "key" in row and "spec" in row}
    return AllenSDKCache(manifest=manifest, entries=entries)


def _existing(cache: AllenSDKCache, ids, key: str, *, dataset: str, n_args: int) -> dict:
    """id -> file for the ids whose file of manifest `key` exists; the others are logged."""
    found, absent = {}, []
    for i in ids:
        path = cache.path(key, *([int(i)] * n_args))
        if path.is_file():
            found[str(i)] = path
        else:
            absent.append(str(i))
    log.info("%s: the AllenSDK cache %s lists %d ids; %d have their file there%s", dataset,
             cache.manifest.parent, len(found) + len(absent), len(found),
             f" (not downloaded there: {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''})"
             if absent else "")
    return found


def ecephys_sessions(cache: AllenSDKCache, *, dataset: str) -> dict[str, Path]:
    """Session id -> ``session_<id>/session_<id>.nwb`` for the sessions ``sessions.csv`` lists.

    Sessions are matched by the ``id`` column of the cache's own table, never by file names;
    a listed session whose file is absent is left out (and logged).
    """
    table = cache.path(ECEPHYS_SESSIONS)
    try:
        with open(table, newline="") as f:
            reader = csv.DictReader(f)
            if "id" not in (reader.fieldnames or []):
                raise CacheError(f"{dataset}: {table} has no 'id' column (found "
                                 f"{reader.fieldnames}); not an EcephysProjectCache sessions table")
            ids = [row["id"] for row in reader]
    except FileNotFoundError:
        log.info("%s: the AllenSDK cache has no %s; nothing to reuse", dataset, table)
        return {}
    bad = [i for i in ids if not i.isdigit()]
    if bad:
        raise CacheError(f"{dataset}: {table}: id {bad[0]!r} is not an integer session id")
    return _existing(cache, ids, ECEPHYS_SESSION_NWB, dataset=dataset, n_args=2)


def ophys_experiments(cache: AllenSDKCache, *, dataset: str) -> dict[str, Path]:
    """Experiment id -> ``ophys_experiment_data/<id>.nwb`` for ``ophys_experiments.json``'s ids."""
    table = cache.path(OPHYS_EXPERIMENTS)
    try:
        records = json.loads(table.read_text())
    except FileNotFoundError:
        log.info("%s: the AllenSDK cache has no %s; nothing to reuse", dataset, table)
        return {}
    except ValueError as err:
        raise CacheError(f"{dataset}: {table} is not JSON ({err})") from err
    if not isinstance(records, list) or not all(isinstance(r, dict) and "id" in r
                                                for r in records):
        raise CacheError(f"{dataset}: {table} is not a list of experiment records with 'id'; "
                         f"not a BrainObservatoryCache experiment table")
    return _existing(cache, [int(r["id"]) for r in records], OPHYS_EXPERIMENT_NWB,
                     dataset=dataset, n_args=1)


def scene_templates(cache: AllenSDKCache, numbers) -> dict[int, Path]:
    """Scene number -> ``natural_scene_templates/natural_scene_<n>.tiff`` where it exists."""
    if not cache.has(ECEPHYS_SCENE):
        return {}
    paths = {int(n): cache.path(ECEPHYS_SCENE, int(n)) for n in numbers}
    return {n: p for n, p in paths.items() if p.is_file()}


# ---------------------------------------------------------------------------- adoption

@dataclass
class AdoptReport:
    """What `adopt` did: files taken from the cache, and files that failed with their reason."""

    reused: dict = field(default_factory=dict)        # remote path -> cache file
    failed: list = field(default_factory=list)        # (cache file, reason)
    present: int = 0                                  # already verified in the pipeline cache


def _remove(*paths: Path) -> None:
    for p in paths:
        if p.is_symlink() or p.exists():
            p.unlink()


def _place(source: Path, dest: Path, mode: str) -> None:
    """Symlink (absolute) or copy `source` onto `dest`, atomically."""
    with atomic_path(dest) as tmp:
        if mode == "link":
            os.symlink(source.resolve(), tmp)
        else:
            shutil.copyfile(source, tmp)


def _adopt_one(remote: Remote, source, root: Path, mode: str, dataset: str,
               report: AdoptReport) -> int:
    """`adopt` for one file; returns 1 when it cannot be verified offline, else 0."""
    dest = destination(root, remote.path, dataset=dataset)
    if dest.exists() and verify_cached(dest, remote):
        report.present += 1
        return 0
    if source is None:
        return 0
    source = Path(source)
    if remote.size is None and not remote.digests:
        return 1
    size = source.stat().st_size
    if remote.size is not None and size != remote.size:
        report.failed.append((source, f"size {size} bytes, expected {remote.size}"))
        return 0
    _remove(dest, sidecar_path(dest), dest.with_name(dest.name + PART_SUFFIX))
    _place(source, dest, mode)
    if verify_cached(dest, remote):               # no sidecar yet: a full check, then recorded
        report.reused[remote.path] = source
        log.info("%s: %s taken from the AllenSDK cache (%s, verified by %s)", dataset,
                 remote.path, mode, ", ".join(["size"] * (remote.size is not None)
                                              + sorted(remote.digests)))
        return 0
    _remove(dest, sidecar_path(dest))
    report.failed.append((source, f"content does not match the published "
                                  f"{', '.join(sorted(remote.digests)) or 'size'}"))
    return 0


def adopt(pairs, root, *, mode: str = "link", dataset: str) -> AdoptReport:
    """Place each cache file at its remote's path in `root` when it matches the remote.

    Parameters
    ----------
    pairs : iterable of (Remote, path-like or None)
        A file to be fetched and its counterpart in the AllenSDK cache (None: not there).
    root : path-like
        The dataset's cache folder (``data/raw/<dataset>``).
    mode : {"link", "copy"}
        ``link`` makes a symlink to the AllenSDK file (no extra disk; the AllenSDK cache must
        stay where it is); ``copy`` copies the bytes.
    dataset : str
        Name in log lines.

    Returns
    -------
    AdoptReport
        A reused file is verified in full (size, then every published digest) and gets the
        usual sidecar, so `fetch` later takes it without a request; a failing one is removed
        again and reported, and `fetch` downloads it. Remotes with neither a size nor a
        checksum cannot be verified offline and are never taken from the cache.
    """
    if mode not in MODES:
        raise ValueError(f"allensdk_cache_mode must be one of {MODES}; got {mode!r}")
    root, report = Path(root), AdoptReport()
    unverifiable, pairs = 0, list(pairs)
    with logging_redirect_tqdm():
        for remote, source in tqdm(pairs, desc=f"{dataset} AllenSDK cache", unit="file",
                                   disable=None):
            unverifiable += _adopt_one(remote, source, root, mode, dataset, report)
    for source, reason in report.failed:
        log.warning("%s: AllenSDK cache file %s failed verification (%s); not used, it is "
                    "downloaded instead", dataset, source, reason)
    if unverifiable:
        log.info("%s: %d AllenSDK cache files have no published size or checksum to check "
                 "them against; they are downloaded instead", dataset, unverifiable)
    log.info("%s: AllenSDK cache: %d files reused, %d failed verification, %d already in %s",
             dataset, len(report.reused), len(report.failed), report.present, root)
    return report


# ---------------------------------------------------------------------------- backend output

def register(items, root, *, mode: str = "link", dataset: str) -> list[dict]:
    """Place files AllenSDK fetched (backend ``allensdk``) in `root`, each after its check.

    AllenSDK publishes no checksum for its warehouse files and its writer does not verify
    what it streamed, so each file must pass `check` (e.g. it opens as HDF5, whose superblock
    records the end-of-file address, so a truncated file is refused, and names the expected
    session). The file's sha256 goes into the usual sidecar: a later change is caught by
    `pipeline.data.fetch.download.read_manifest` as for any download.

    Parameters
    ----------
    items : iterable of (str, path-like, callable)
        Destination relative to `root`, the AllenSDK file, and ``check(path) -> list of str``
        (what verified it) that raises `ChecksumError` (naming the problem) otherwise.
    root : path-like
        The dataset's cache folder.
    mode : {"link", "copy"}
    dataset : str

    Returns
    -------
    list of dict
        Per file: ``path``, ``sha256``, ``size``, ``verified_by``, ``reused_from``.

    Raises
    ------
    ChecksumError
        Listing every file that failed its check (none of them is registered).
    """
    if mode not in MODES:
        raise ValueError(f"allensdk_cache_mode must be one of {MODES}; got {mode!r}")
    root, out, failed = Path(root), [], []
    for rel, source, check in items:
        source = Path(source)
        if not source.is_file():
            failed.append(f"{source}: missing")
            continue
        try:
            verified_by = ["allensdk"] + list(check(source))
        except ChecksumError as err:
            failed.append(f"{source}: {err}")
            continue
        dest = destination(root, rel, dataset=dataset)
        _remove(dest, sidecar_path(dest))
        _place(source, dest, mode)
        sha256 = file_digests(dest)["sha256"]
        _write_sidecar(dest, Remote(url=source.resolve().as_uri(), path=rel,
                                    size=dest.stat().st_size), sha256, verified_by)
        out.append({"path": rel, "sha256": sha256, "size": dest.stat().st_size,
                    "verified_by": verified_by, "reused_from": str(source)})
    if failed:
        raise ChecksumError(f"{dataset}: {len(failed)} files AllenSDK fetched failed their "
                            f"check and were not registered: " + "; ".join(failed)
                            + "; delete them from the AllenSDK cache and rerun with "
                            "`snakemake --forcerun fetch_allensdk ...`")
    log.info("%s: %d files AllenSDK fetched registered in %s (%s)", dataset, len(out), root, mode)
    return out


def read_report(path, *, kind: str, dataset: str) -> dict:
    """The JSON report `pipeline/data/allensdk_backend.py` wrote, checked for its `kind`."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CacheError(f"{dataset}: backend 'allensdk' needs {path}, written by the rule "
                         f"fetch_allensdk (AllenSDK in its own interpreter); run it first, or "
                         f"run the workflow, which does") from None
    except ValueError as err:
        raise CacheError(f"{path}: not a JSON report of the allensdk backend ({err})") from err
    if report.get("kind") != kind:
        raise CacheError(f"{path}: a report of kind {report.get('kind')!r}; {kind!r} expected")
    return report
