"""AllenSDK cache folders written the way AllenSDK 2.16 writes them, from the Allen fixtures.

`write_ecephys_cache` lays out an ``EcephysProjectCache`` folder: the ``manifest.json`` of
``ManifestBuilder`` (version entry, then ``{key, type, spec, parent_key}`` rows, the keys and
specs of ``EcephysProjectCache.add_manifest_paths``), the warehouse tables ``sessions.csv``,
``probes.csv``, ``channels.csv`` and ``units.csv`` (indexed by ``id``, as ``write_csv``
stores them), ``session_<id>/session_<id>.nwb`` and
``natural_scene_templates/natural_scene_<n>.tiff``. `write_ophys_cache` does the same for a
``BrainObservatoryCache`` (``ophys_experiments.json``, the warehouse records as
``get_ophys_experiments`` caches them before simplifying, and
``ophys_experiment_data/<id>.nwb``). Callers choose which files to damage.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py

ECEPHYS_MANIFEST = [
    {"type": "manifest_version", "value": "0.3.0"},
    {"key": "BASEDIR", "type": "dir", "spec": "."},
    {"key": "sessions", "type": "file", "spec": "sessions.csv", "parent_key": "BASEDIR"},
    {"key": "probes", "type": "file", "spec": "probes.csv", "parent_key": "BASEDIR"},
    {"key": "channels", "type": "file", "spec": "channels.csv", "parent_key": "BASEDIR"},
    {"key": "units", "type": "file", "spec": "units.csv", "parent_key": "BASEDIR"},
    {"key": "session_data", "type": "dir", "spec": "session_%d", "parent_key": "BASEDIR"},
    {"key": "session_nwb", "type": "file", "spec": "session_%d.nwb",
     "parent_key": "session_data"},
    {"key": "session_analysis_metrics", "type": "file",
     "spec": "session_%d_analysis_metrics.csv", "parent_key": "session_data"},
    {"key": "probe_lfp_nwb", "type": "file", "spec": "probe_%d_lfp.nwb",
     "parent_key": "session_data"},
    {"key": "movie_dir", "type": "dir", "spec": "natural_movie_templates",
     "parent_key": "BASEDIR"},
    {"key": "typewise_analysis_metrics", "type": "file", "spec": "%s_analysis_metrics.csv",
     "parent_key": "BASEDIR"},
    {"key": "natural_movie", "type": "file", "spec": "natural_movie_%d.h5",
     "parent_key": "movie_dir"},
    {"key": "natural_scene_dir", "type": "dir", "spec": "natural_scene_templates",
     "parent_key": "BASEDIR"},
    {"key": "natural_scene", "type": "file", "spec": "natural_scene_%d.tiff",
     "parent_key": "natural_scene_dir"},
]

OPHYS_MANIFEST = [
    {"type": "manifest_version", "value": "1.3"},
    {"key": "BASEDIR", "type": "dir", "spec": "."},
    {"key": "EXPERIMENT_CONTAINERS", "type": "file", "spec": "experiment_containers.json",
     "parent_key": "BASEDIR"},
    {"key": "EXPERIMENTS", "type": "file", "spec": "ophys_experiments.json",
     "parent_key": "BASEDIR"},
    {"key": "EXPERIMENT_DATA", "type": "file", "spec": "ophys_experiment_data/%d.nwb",
     "parent_key": "BASEDIR"},
]


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _units_and_channels(nwb: Path, probe_id: int):
    """Warehouse-style unit and channel rows of a fixture session NWB."""
    with h5py.File(nwb, "r") as f:
        electrodes = f["general/extracellular_ephys/electrodes"]
        channels = [{"id": int(c), "ecephys_probe_id": probe_id,
                     "ecephys_structure_acronym": loc.decode() if isinstance(loc, bytes) else loc,
                     "ecephys_structure_id": 1}
                    for c, loc in zip(electrodes["id"][:], electrodes["location"][:])]
        u = f["units"]
        quality = [q.decode() if isinstance(q, bytes) else q for q in u["quality"][:]]
        units = [{"id": int(i), "ecephys_channel_id": int(c), "amplitude_cutoff": float(a),
                  "presence_ratio": float(p), "isi_violations": float(v), "quality": q}
                 for i, c, a, p, v, q in zip(u["id"][:], u["peak_channel_id"][:],
                                             u["amplitude_cutoff"][:], u["presence_ratio"][:],
                                             u["isi_violations"][:], quality)]
    return units, channels


def write_ecephys_cache(root, sessions: dict, *, templates: dict | None = None,
                        listed_only=(), session_type="brain_observatory_1.1") -> Path:
    """An EcephysProjectCache folder holding `sessions` ({(specimen, session): nwb bytes}).

    `templates` ({number: tiff bytes}) go to natural_scene_templates/; `listed_only` are
    (specimen, session) pairs in sessions.csv whose NWB was never downloaded. Returns the
    folder (its manifest.json inside).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"manifest": ECEPHYS_MANIFEST}, indent=2))
    rows, probes, channels, units = [], [], [], []
    for k, ((specimen, session), data) in enumerate(list(sessions.items())
                                                   + [(p, None) for p in listed_only]):
        rows.append({"id": int(session), "published_at": "2019-10-03T00:00:00Z",
                     "specimen_id": int(specimen), "session_type": session_type,
                     "age_in_days": 100.0, "sex": "M", "full_genotype": "wt/wt"})
        if data is None:
            continue
        nwb = root / f"session_{session}" / f"session_{session}.nwb"
        nwb.parent.mkdir(parents=True, exist_ok=True)
        nwb.write_bytes(data)
        probe_id = 7000 + k
        probes.append({"id": probe_id, "ecephys_session_id": int(session), "name": "probeA"})
        try:
            u, c = _units_and_channels(nwb, probe_id)
        except OSError:                       # a damaged file: its tables are not needed
            continue
        units += u
        channels += c
    _write_csv(root / "sessions.csv", rows)
    if probes:
        _write_csv(root / "probes.csv", probes)
    if channels:
        _write_csv(root / "channels.csv", channels)
        _write_csv(root / "units.csv", units)
    for number, data in (templates or {}).items():
        path = root / "natural_scene_templates" / f"natural_scene_{number}.tiff"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_ophys_cache(root, experiments: dict, records: list[dict]) -> Path:
    """A BrainObservatoryCache folder: `experiments` ({id: nwb bytes}) and the table `records`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"manifest": OPHYS_MANIFEST}, indent=2))
    (root / "ophys_experiments.json").write_text(json.dumps(records))
    for eid, data in experiments.items():
        path = root / "ophys_experiment_data" / f"{eid}.nwb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
