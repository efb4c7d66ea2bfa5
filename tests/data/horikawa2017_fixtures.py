"""Small BData HDF5 files in the layout of Horikawa & Kamitani 2017, and a figshare listing.

Each subject file has 60 voxel columns (FFA inside LOC) and label columns (DataType, Run,
stimulus_id) marked in ``metaData`` (or ``metadata``) as bdpy writes them: 1 on the key's own
columns, NaN elsewhere; voxel_x holds a value per voxel. Voxel responses to the test images (DataType 2,
one presentation per run) are a shared 8-D image latent read out by each voxel, plus noise,
so subjects' RDMs agree up to noise; training (1) and imagery (3) samples are also present
and must be left out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np

ARTICLE = 7387130
# Ids in the GOD format <WordNet number>.<6-digit image number>.
TEST_IDS = (1443537.022563, 1621127.019020, 1677366.018182, 1846331.017038, 1858441.011077,
            1943899.024131, 1976957.013223, 2071294.046212, 2128385.020264, 2139199.010398)
TRAIN_IDS = (1518878.010042, 1639765.052902, 1645776.009743)
IMAGERY_IDS = (1443537.0, 1621127.0)
RUNS = 5
ROI_COLUMNS = {"V1": range(0, 20), "V4": range(20, 40), "LOC": range(40, 60),
               "FFA": range(50, 60)}
N_VOXELS = 60


def subject_samples(subject: int, *, shared: bool = True, drop_one: bool = False,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(voxels, data_type, run, stimulus_id) per sample, samples in a shuffled order.

    `shared` False draws each subject's image latent independently. `drop_one` removes the
    last run of the first test image.
    """
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((len(TEST_IDS), 8))
    if not shared:
        latent = np.random.default_rng(seed + 100 * subject).standard_normal(latent.shape)
    own = np.random.default_rng(seed + subject)
    weights = own.standard_normal((8, N_VOXELS))
    rows = [(2, run, i) for run in range(1, RUNS + 1) for i in range(len(TEST_IDS))]
    if drop_one:
        rows.remove((2, RUNS, 0))
    rows += [(1, 0, i) for i in range(len(TRAIN_IDS))] + [(3, 6, i) for i in range(2)]
    rows = [rows[i] for i in own.permutation(len(rows))]
    voxels = np.array([latent[i] @ weights if kind == 2 else own.standard_normal(N_VOXELS)
                       for kind, _, i in rows]) + 0.3 * own.standard_normal((len(rows), N_VOXELS))
    ids = np.array([{1: TRAIN_IDS, 2: TEST_IDS, 3: IMAGERY_IDS}[k][i] for k, _, i in rows])
    return (voxels, np.array([k for k, _, _ in rows], float), np.array([r for _, r, _ in rows],
                                                                         float), ids)


def write_bdata(path, subject: int, *, lower_case: bool = False, label_key: str = "stimulus_id",
                **kwargs) -> Path:
    """One subject's BData file (``dataSet``/``metaData``, or bdpy's newer lower-case names)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    voxels, kind, run, ids = subject_samples(subject, **kwargs)
    data = np.column_stack([voxels, kind, run, ids])
    n_columns = data.shape[1]

    def marks(columns):
        row = np.full(n_columns, np.nan)
        row[list(columns)] = 1
        return row

    keys, descriptions, values = [], [], []
    for key, row, text in [
        ("VoxelData", marks(range(N_VOXELS)), "1 = voxel data"),
        *[(f"ROI_{roi}", marks(cols), f"1 = ROI {roi}") for roi, cols in ROI_COLUMNS.items()],
        ("voxel_x", np.r_[np.arange(N_VOXELS) * 3.0, np.full(3, np.nan)], "x (mm)"),
        ("DataType", marks([N_VOXELS]), "1 = training; 2 = test; 3 = imagery"),
        ("Run", marks([N_VOXELS + 1]), "1 = run number"),
        (label_key, marks([N_VOXELS + 2]), "1 = stimulus id"),
    ]:
        keys.append(key)
        descriptions.append(text)
        values.append(row)
    data_name, meta_name = ("dataset", "metadata") if lower_case else ("dataSet", "metaData")
    with h5py.File(path, "w") as f:
        f.create_dataset(data_name, data=data)
        f.create_dataset(f"{meta_name}/key", data=np.array(keys, dtype="S"))
        f.create_dataset(f"{meta_name}/description", data=np.array(descriptions, dtype="S"))
        f.create_dataset(f"{meta_name}/value", data=np.array(values))
    return path


def serve_figshare(server, folder, subjects=(1, 2, 3), **kwargs) -> dict:
    """Write the subjects' files (the second in lower case, missing one trial) and serve them
    with a figshare ``/v2/articles/{id}/files`` listing; returns a config block."""
    folder = Path(folder)
    records = []
    for k, subject in enumerate(subjects):
        path = write_bdata(folder / f"Subject{subject}.h5", subject, lower_case=k == 1,
                           drop_one=k == 1, **kwargs)
        body = path.read_bytes()
        file_id = 24080120 + 3 * (subject - 1)
        url = server.add_file(f"/files/{file_id}", body)
        md5 = hashlib.md5(body).hexdigest()
        records.append({"id": file_id, "name": path.name, "size": len(body),
                        "is_link_only": False, "download_url": url, "supplied_md5": md5,
                        "computed_md5": md5, "mimetype": "application/x-hdf5"})
    records.append({"id": 15015971, "name": "ImageFeatures.h5", "size": 3,
                    "download_url": server.url("/files/15015971"), "computed_md5": "0" * 32})
    server.add_json(f"/v2/articles/{ARTICLE}/files", records)
    return {"api_url": server.url("/v2"), "article": ARTICLE, "subjects": list(subjects),
            "retries": 1, "backoff": 0.0, "timeout": 10}
