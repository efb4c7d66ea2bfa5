"""Tiny Allen-format files whose unit selection is known by construction.

Neuropixels sessions are NWB 2 written with pynwb (the synthetic writer's file and
presentation helpers), two-photon experiments are NWB 1-style HDF5 written with h5py, and
``serve_allen`` publishes them on a `FixtureServer` the way DANDI, the Allen warehouse and the
S3 bucket do. Every unit or cell has a role that fixes whether the spec's filters keep it:

- ``reliable``: image-dependent response, identical on every trial but for a 0/1 jitter that
  alternates with the trial number, so split-half reliability is ~1 and running trials (the
  first half of each image's trials) and stationary trials have equal means;
- ``flat``: the same response to every image (no stimulus information: reliability undefined,
  so never kept);
- ``running``: reliable, plus a large extra response on the running trials of its preferred
  image (running p-value ~0: dropped by the running filter);
- ``noise`` quality, failing amplitude cutoff, on an invalid channel, or in CA1 (Neuropixels
  only): dropped before any statistics.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from hdmf.common import VectorData, VectorIndex
from PIL import Image
from pynwb import TimeSeries
from pynwb.misc import Units

from pipeline.data.synthetic_mouse import _nwb_file, _presentations, _write_nwb
from tests.data.http_server import DandiFixture, FixtureServer

N_IMAGES, N_TRIALS = 8, 12
RESPONSE_BINS = (5, 6, 7)             # 50-80 ms
DURATION = 0.25


@dataclass(frozen=True)
class Unit:
    name: str
    area: str
    role: str                          # reliable | flat | running | noise | qc | invalid
    gain: int = 1


def _schedule(rng, n_images=N_IMAGES, n_trials=N_TRIALS):
    """Frames in random order (blank = -1), onsets, and whether the mouse runs."""
    frames = rng.permutation(np.repeat(np.arange(-1, n_images), n_trials))
    start = 10.0 + DURATION * np.arange(frames.size)
    rank = np.zeros(frames.size, dtype=int)
    for f in np.unique(frames):
        rank[frames == f] = np.arange((frames == f).sum())
    running = rank < n_trials // 2                 # first half of each image's trials
    return frames, start, rank, running


def _counts(unit: Unit, frames, rank, running, preferred: int) -> np.ndarray:
    """Spikes per presentation in each response bin (presentation, bin)."""
    base = image_ranking(unit)
    counts = np.zeros((frames.size, len(RESPONSE_BINS)), dtype=int)
    shown = frames >= 0
    if unit.role == "flat":
        counts[:, :] = 2
        return counts
    per_image = unit.gain * (base[frames[shown]] + 1)
    counts[shown, :] = per_image[:, None]
    counts[shown, 1] += rank[shown] % 2                             # trial jitter
    if unit.role == "running":
        boost = shown & (frames == preferred) & running
        counts[boost, :] += 6
    return counts


def image_ranking(unit: Unit) -> np.ndarray:
    """The unit's image ranking: a permutation of 0..N_IMAGES-1 fixed by its name."""
    return (np.arange(N_IMAGES) * 7 + sum(map(ord, unit.name))) % N_IMAGES


def preferred_image(unit: Unit) -> int:
    return int(np.argmax(image_ranking(unit)))


def write_neuropixels_session(path, units: list[Unit], *, subject: str, session: str,
                              seed: int = 0) -> Path:
    """An Allen-layout session NWB (units, electrodes, presentations, running speed)."""
    rng = np.random.default_rng(seed)
    frames, start, rank, running = _schedule(rng)
    nwb = _nwb_file(subject, session, seed)
    device = nwb.create_device(name="probeA", description="Neuropixels 1.0")
    group = nwb.create_electrode_group(name="probeA", device=device, description="probe",
                                       location="brain")
    spikes, columns = [], {"peak_channel_id": [], "quality": [], "amplitude_cutoff": [],
                           "presence_ratio": [], "isi_violations": [], "firing_rate": []}
    for u, unit in enumerate(units):
        channel = 5000 + u
        nwb.add_electrode(id=channel, location=unit.area, group=group, probe_id=0,
                          local_index=u, probe_vertical_position=20 * u,
                          valid_data=unit.role != "invalid")
        counts = _counts(unit, frames, rank, running, preferred_image(unit))
        times = []
        for p in range(frames.size):
            for b, n in zip(RESPONSE_BINS, counts[p]):
                times += list(start[p] + 0.01 * b + 0.001 + 0.008 * np.arange(n) / max(n, 1))
        spikes.append(np.sort(np.array(times)))
        columns["peak_channel_id"].append(channel)
        columns["quality"].append("noise" if unit.role == "noise" else "good")
        columns["amplitude_cutoff"].append(0.3 if unit.role == "qc" else 0.01)
        columns["presence_ratio"].append(0.99)
        columns["isi_violations"].append(0.0)
        columns["firing_rate"].append(len(times) / (start[-1] - start[0]))
    times = VectorData(name="spike_times", description="spike times (s)",
                       data=np.concatenate(spikes))
    index = VectorIndex(name="spike_times_index", target=times,
                        data=np.cumsum([s.size for s in spikes]).astype(np.int64))
    data_columns = [VectorData(name=k, description=k, data=np.asarray(v, dtype=object)
                               if k == "quality" else np.asarray(v))
                    for k, v in columns.items()]
    nwb.units = Units(name="units", description="sorted units",
                      id=np.arange(len(units), dtype=np.int64) + 900,
                      columns=[times, index] + data_columns)
    nwb.add_time_intervals(_presentations(frames, start, start + DURATION))
    # Running: one sample per 50 ms, 20 cm/s during running presentations, 0 otherwise.
    t = np.arange(start[0] - 1, start[-1] + 1, 0.05)
    which = np.clip(np.searchsorted(start, t, side="right") - 1, 0, frames.size - 1)
    inside = (t >= start[which]) & (t < start[which] + DURATION)
    velocity = np.where(inside & running[which] & (frames[which] >= 0), 20.0, 0.0)
    module = nwb.create_processing_module(name="running", description="running speed")
    module.add(TimeSeries(name="running_speed", data=velocity, timestamps=t, unit="cm/s",
                          description="wheel speed"))
    module.add(TimeSeries(name="running_speed_end_times", data=t + 0.05, timestamps=t,
                          unit="s", description="interval ends"))
    path = Path(path)
    _write_nwb(path, nwb)
    return path


# Two sessions: the expected selection is written down beside them.
SESSIONS = {
    ("700001", "800001"): [Unit("a1", "VISp", "reliable"), Unit("a2", "VISp", "reliable", 2),
                           Unit("a3", "VISp", "reliable"), Unit("a4", "VISp", "running"),
                           Unit("a5", "VISp", "flat"), Unit("a6", "VISl", "reliable"),
                           Unit("a7", "VISl", "reliable", 2), Unit("a8", "VISl", "noise"),
                           Unit("a9", "VISl", "qc"), Unit("a10", "VISp", "invalid"),
                           Unit("a11", "CA1", "reliable")],
    ("700002", "800002"): [Unit("b1", "VISp", "reliable"), Unit("b2", "VISl", "reliable"),
                           Unit("b3", "VISl", "reliable", 2), Unit("b4", "VISl", "flat")],
}


def expected_neuropixels(specimen_quantile=0.75) -> set[str]:
    """neuroid_ids the spec's selection keeps from `SESSIONS` (units ids are 900 + index).

    VISp: animal 700001 keeps 3 units (a1-a3), 700002 keeps 1; ceil(quantile([3, 1], 0.75))
    = 3, so only 700001 stays. VISl: 2 and 2 units; both stay.
    """
    kept = {}
    for (subject, session), units in SESSIONS.items():
        for i, u in enumerate(units):
            if u.role == "reliable" and u.area in ("VISp", "VISl"):
                kept.setdefault((subject, u.area), []).append(f"{session}_{900 + i}")
    if specimen_quantile is not None:
        for area in ("VISp", "VISl"):
            counts = {k: len(v) for k, v in kept.items() if k[1] == area}
            threshold = int(np.ceil(np.quantile(list(counts.values()), specimen_quantile)))
            for key, n in counts.items():
                if n < threshold:
                    del kept[key]
    return {n for ids in kept.values() for n in ids}


def template_tiff(number: int, shape=(20, 24)) -> bytes:
    rng = np.random.default_rng(number)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="TIFF")
    return buffer.getvalue()


def serve_neuropixels(server: FixtureServer, folder) -> dict:
    """Write the sessions, publish them as DANDI 000021 and the templates in the warehouse.

    Returns the dataset settings pointing at the server.
    """
    folder = Path(folder)
    dandi = DandiFixture(server, page_size=2)
    for (subject, session), units in SESSIONS.items():
        name = f"sub-{subject}/sub-{subject}_ses-{session}.nwb"
        path = write_neuropixels_session(folder / name, units, subject=subject, session=session,
                                         seed=int(session))
        dandi.add(name, path.read_bytes(), sha256=session.endswith("1"))
        dandi.add(f"sub-{subject}/sub-{subject}_ses-{session}_probe-1_ecephys.nwb", b"lfp")
    records = [{"id": 10 + n, "path": f"/external/natural_scenes/{n}.tiff",
                "download_link": f"/api/v2/well_known_file_download/{10 + n}"}
               for n in range(N_IMAGES)]
    records.append({"id": 99, "path": "/external/movies/natural_movie_1.npy",
                    "download_link": "/api/v2/well_known_file_download/99"})
    for n in range(N_IMAGES):
        server.add_file(f"/api/v2/well_known_file_download/{10 + n}", template_tiff(n))

    def rma(query, _server):
        criteria = query.get("criteria", "")
        if "attachable_id$eq714914585" not in criteria:      # not the ecephys product
            return {"success": False, "msg": f"unexpected criteria {criteria!r}"}
        start = int(re.search(r"start_row\$eq(\d+)", criteria)[1])
        rows = int(re.search(r"num_rows\$eq(\d+)", criteria)[1])
        rows = min(rows, 4)                        # the warehouse pages by 4 here
        return {"success": True, "start_row": start, "num_rows": len(records[start:start + rows]),
                "total_rows": len(records), "msg": records[start:start + rows]}
    server.add_json("/api/v2/data/query.json", rma)
    return {"dandiset": "000021", "version": "draft", "api_url": dandi.api,
            "templates_url": server.base, "sessions": None, "retries": 2, "backoff": 0.01,
            "timeout": 10}


# ---------------------------------------------------------------------------- two-photon

SWEEP, GAP, FIRST = 7, 35, 40          # frames: stimulus, gray after each, first onset
F0 = 200.0


@dataclass(frozen=True)
class Cell:
    cell_id: int
    role: str                           # reliable | flat | running


def _ophys_schedule(rng, n_images, n_trials):
    frames = rng.permutation(np.repeat(np.arange(-1, n_images), n_trials))
    onset = FIRST + (SWEEP + GAP) * np.arange(frames.size)
    rank = np.zeros(frames.size, dtype=int)
    for f in np.unique(frames):
        rank[frames == f] = np.arange((frames == f).sum())
    return frames, onset, rank, rank < n_trials // 2


def write_ophys_experiment(path, cells: list[Cell], *, experiment_id: int, container_id: int,
                           specimen: str, area: str, n_images: int = 6, n_trials: int = 10,
                           legacy: bool = False, seed: int = 0) -> Path:
    """A Visual Coding 2p NWB 1-style file (h5py) with designed traces.

    Corrected fluorescence is F0 at rest and F0 · (1 + a / 100) during the 2·SWEEP frames from
    each onset, a = the cell's response (percent) to that trial; gray gaps of GAP frames keep
    each baseline (the 4·SWEEP frames before onset) clean, so mean_sweep_response = a
    exactly. legacy=True writes the pre-2.0 layout (neuropil under imaging_plane_1).
    """
    rng = np.random.default_rng(seed)
    frames, onset, rank, running = _ophys_schedule(rng, n_images, n_trials)
    n_frames = int(onset[-1] + 2 * SWEEP + GAP)
    timestamps = 5.0 + np.arange(n_frames) / 30.0
    corrected = np.full((len(cells), n_frames), F0)
    for c, cell in enumerate(cells):
        amplitude = 10.0 * (np.arange(n_images)[::-1 if c % 2 else 1] + 1)
        for p in np.flatnonzero(frames >= 0):
            a = 25.0 if cell.role == "flat" else amplitude[frames[p]] + 2.0 * (rank[p] % 2)
            if cell.role == "running" and frames[p] == np.argmax(amplitude) and running[p]:
                a += 60.0
            corrected[c, onset[p]:onset[p] + 2 * SWEEP] = F0 * (1 + a / 100.0)
    neuropil = 50.0 + 5.0 * rng.random((len(cells), n_frames))
    r = np.full(len(cells), 0.7)
    raw = corrected + r[:, None] * neuropil
    speed = np.zeros(n_frames)
    for p in np.flatnonzero(running & (frames >= 0)):
        speed[onset[p]:onset[p] + 2 * SWEEP] = 15.0
    pipe = "processing/brain_observatory_pipeline"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["general/session_id"] = str(experiment_id)
        f["general/experiment_container_id"] = str(container_id)
        f["general/specimen_name"] = specimen
        f["general/session_type"] = "three_session_B"
        f["general/optophysiology/imaging_plane_1/location"] = area
        fl = f"{pipe}/Fluorescence"
        f[f"{fl}/imaging_plane_1/timestamps"] = timestamps
        if legacy:
            f[f"{fl}/imaging_plane_1/data"] = raw
            f[f"{fl}/imaging_plane_1/neuropil_traces"] = neuropil
            f[f"{fl}/imaging_plane_1/r"] = r
        else:
            f[f"{fl}/imaging_plane_1/data"] = corrected + 1000.0      # not what is analysed
            f[f"{fl}/imaging_plane_1_demixed_signal/data"] = raw
            f[f"{fl}/imaging_plane_1_demixed_signal/timestamps"] = timestamps
            f[f"{fl}/imaging_plane_1_neuropil_response/data"] = neuropil
            f[f"{fl}/imaging_plane_1_neuropil_response/r"] = r
        f[f"{pipe}/DfOverF/imaging_plane_1/data"] = corrected / F0 - 1
        f[f"{pipe}/DfOverF/imaging_plane_1/timestamps"] = timestamps
        f[f"{pipe}/ImageSegmentation/cell_specimen_ids"] = np.array([c.cell_id for c in cells])
        f[f"{pipe}/ImageSegmentation/roi_ids"] = np.array([str(i) for i in range(len(cells))],
                                                           dtype="S")
        f[f"{pipe}/BehavioralTimeSeries/running_speed/data"] = speed[2:, None]   # N × 1
        f[f"{pipe}/BehavioralTimeSeries/running_speed/timestamps"] = timestamps[2:]
        stim = "stimulus/presentation/natural_scenes_stimulus"
        f[f"{stim}/data"] = frames.astype(np.int32)
        f[f"{stim}/frame_duration"] = np.stack([onset, onset + SWEEP], axis=1).astype(float)
        f["stimulus/templates/natural_scenes_image_stack/data"] = \
            np.random.default_rng(1).integers(0, 256, (n_images, 12, 16), dtype=np.uint8)
    return path


EXPERIMENTS = [  # (id, container, specimen, area, cells, legacy)
    (501, 601, "Cux2-1", "VISp", [Cell(1, "reliable"), Cell(2, "reliable"), Cell(3, "reliable"),
                                  Cell(4, "flat"), Cell(5, "running")], False),
    (502, 602, "Cux2-2", "VISp", [Cell(11, "reliable"), Cell(12, "flat")], True),
    (503, 603, "Cux2-2", "VISl", [Cell(21, "reliable"), Cell(22, "reliable")], False),
    (504, 604, "Cux2-3", "VISrl", [Cell(31, "reliable")], False),
]


def expected_ophys(areas=("VISp", "VISl"), specimen_quantile=0.75) -> set[str]:
    """VISp: Cux2-1 keeps 3 cells, Cux2-2 keeps 1; ceil(quantile([3, 1], .75)) = 3: Cux2-1."""
    kept = {}
    for eid, _, specimen, area, cells, _ in EXPERIMENTS:
        if area in areas:
            ids = [str(c.cell_id) for c in cells if c.role == "reliable"]
            kept.setdefault((specimen, area), []).extend(ids)
    if specimen_quantile is not None:
        for area in areas:
            counts = {k: len(v) for k, v in kept.items() if k[1] == area}
            threshold = int(np.ceil(np.quantile(list(counts.values()), specimen_quantile)))
            kept = {k: v for k, v in kept.items() if k[1] != area or len(v) >= threshold}
    return {n for ids in kept.values() for n in ids}


def _s3_xml(objects: list[tuple[str, int, str]], token_next: str | None) -> bytes:
    items = "".join(f"<Contents><Key>{k}</Key><Size>{s}</Size><ETag>&quot;{e}&quot;</ETag>"
                    f"<StorageClass>STANDARD</StorageClass></Contents>" for k, s, e in objects)
    more = (f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token_next}"
            f"</NextContinuationToken>" if token_next else "<IsTruncated>false</IsTruncated>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
            f'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>allen-brain-observatory'
            f'</Name>{more}{items}</ListBucketResult>').encode()


def serve_ophys(server: FixtureServer, folder) -> dict:
    """Write the experiments and the experiment table; publish them as the 2p S3 bucket."""
    folder = Path(folder)
    records, objects = [], {}
    for eid, container, specimen, area, cells, legacy in EXPERIMENTS:
        path = write_ophys_experiment(folder / f"{eid}.nwb", cells, experiment_id=eid,
                                      container_id=container, specimen=specimen, area=area,
                                      legacy=legacy, seed=eid)
        objects[f"visual-coding-2p/ophys_experiment_data/{eid}.nwb"] = path.read_bytes()
        records.append({"id": eid, "experiment_container_id": container, "imaging_depth": 275,
                        "targeted_structure": {"acronym": area}, "stimulus_name":
                        "three_session_B", "specimen": {"name": specimen},
                        "experiment_container": {"failed": False}})
    records.append({"id": 505, "experiment_container_id": 601, "stimulus_name": "three_session_A",
                    "targeted_structure": {"acronym": "VISp"}, "specimen": {"name": "Cux2-1"}})
    records.append({"id": 506, "experiment_container_id": 699, "stimulus_name": "three_session_B",
                    "targeted_structure": {"acronym": "VISp"}, "specimen": {"name": "Cux2-9"},
                    "experiment_container": {"failed": True}})
    objects["visual-coding-2p/ophys_experiments.json"] = json.dumps(records).encode()
    for key, body in objects.items():
        server.add_file(f"/{key}", body, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})
    listing = sorted((k, len(b), hashlib.md5(b).hexdigest()) for k, b in objects.items())

    def s3(query, _server):
        chosen = [o for o in listing if o[0].startswith(query.get("prefix", ""))]
        page = int(query.get("continuation-token", "0"))
        return _s3_xml(chosen[page:page + 2], str(page + 2) if page + 2 < len(chosen) else None)
    server.add_dynamic("/", s3, "application/xml")
    return {"s3_url": server.base, "areas": ["VISp", "VISl"], "session_type": "three_session_B",
            "experiments": None, "retries": 2, "backoff": 0.01, "timeout": 10}
