"""Model × stimulus set → activations of every layer at every checkpoint, in one Zarr store.

Each layer is one variable (epoch, stimulus, unit_{layer}) float32, chunked by epoch and stimulus.
Layers differ in width, and one xarray Dataset cannot give a dimension two lengths, so the unit
dimension carries the layer name in the store; `read_layer` returns it renamed to `unit`.
A recurrent model (one with `time_steps`, e.g. `convrnn`) stores every layer at every time step,
dims (epoch, time, stimulus, unit_{layer}) with an int coord `time`; feedforward stores have no
`time` dim.
attrs["content_key"] records the sha256 of every checkpoint file, the preprocessing, the
stimulus set's sha256 and the layers, so a store is reused only for identical inputs.
Checkpoints are checked against their sha256 records as they are read
(`pipeline.checkpoints.read_checkpoint`), and `extract` first removes the hidden temporaries
(`.<store>.tmp-*`) an interrupted extraction of the same store left behind. The finished
store is sealed (`pipeline.io.seal_store`), so `read_zarr` checks its files as it reads them.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array
import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.checkpoints import build_backbone, load_backbone, read_checkpoint, verified_sha256
from pipeline.data.stimuli import read_stimuli, stimulus_sha256, to_tensor
from pipeline.io import atomic_path, read_zarr, remove_stale_temporaries, seal_store
from pipeline.models import layer_outputs
from pipeline.objectives.augment import preprocess
from pipeline.runtime import resolve_device

log = logging.getLogger(__name__)

# Stimuli per Zarr chunk along `stimulus`.
CHUNK = 256


def _model_args(checkpoint: dict) -> tuple:
    """What fixes a checkpoint's layers: arch, n_classes, input_size and the rule (bp before
    rules)."""
    return (checkpoint["arch"], checkpoint["n_classes"], checkpoint["input_size"],
            checkpoint.get("rule", "bp"))


def unit_dim(layer: str) -> str:
    """Name of a layer's unit dimension in the activations store."""
    return f"unit_{layer}"


def content_key(checkpoints, stimuli_path) -> dict:
    """What an activations store depends on: checkpoint bytes, preprocessing, stimuli, layers.

    Parameters
    ----------
    checkpoints : list of path-like
        Checkpoints written by `pipeline.train.train`, all of one model.
    stimuli_path : path-like
        Stimulus-set Zarr store.

    Returns
    -------
    dict
        Keys weights_sha256 (list, one per checkpoint), preprocessing, stimulus_sha256, layers,
        and, for a recurrent model only, time_steps.
    """
    if not checkpoints:
        raise ValueError("content_key needs at least one checkpoint; got none")
    first = read_checkpoint(checkpoints[0])
    for path in checkpoints[1:]:
        other = read_checkpoint(path)
        if (_model_args(other) != _model_args(first)
                or other["preprocessing"] != first["preprocessing"]):
            raise ValueError(
                f"{path}: arch/n_classes/input_size/rule/preprocessing differ from "
                f"{checkpoints[0]}; "
                "one activations store holds checkpoints of one model"
            )
    with torch.device("meta"):                    # layer names only: no weights drawn
        model = build_backbone(first)
    key = {
        "weights_sha256": [verified_sha256(p) for p in checkpoints],
        "preprocessing": first["preprocessing"],
        "stimulus_sha256": stimulus_sha256(read_zarr(stimuli_path)),
        "layers": list(model.layer_names),
    }
    if getattr(model, "time_steps", None) is not None:   # absent for feedforward: old keys stay valid
        key["time_steps"] = int(model.time_steps)
    return key


def _stored_key(out_path: Path):
    """The content key of an existing store, or None when absent or unreadable."""
    if not out_path.exists():
        return None
    try:
        return json.loads(read_zarr(out_path).attrs["content_key"])
    except (OSError, KeyError, ValueError) as err:
        log.warning("%s: cannot read its content key (%s); recomputing", out_path, err)
        return None


@torch.no_grad()
def _forward_all(model, images, preprocessing, batch_size, device, bar, buffers=None
                 ) -> dict[str, np.ndarray]:
    """Flattened outputs (stimulus, unit), or (stimulus, time, unit) if recurrent, of every layer.

    Written batch by batch into `buffers` (layer -> float32 array) when they have the right
    shapes, else into new arrays: reusing the memory of an earlier checkpoint saves the page
    faults of fresh arrays, which cost as much as the copies themselves.
    """
    leading = 2 if getattr(model, "time_steps", None) is not None else 1
    outputs = {}
    for start in range(0, len(images), batch_size):
        # preprocess resizes to the model's input size (bilinear, antialiased), as in training
        x = preprocess(images[start:start + batch_size].to(device), preprocessing)
        for name, out in layer_outputs(model, x).items():
            out = out.flatten(leading)
            if name not in outputs:
                shape = (len(images), *out.shape[1:])
                reuse = buffers is not None and name in buffers and buffers[name].shape == shape
                outputs[name] = buffers[name] if reuse else np.empty(shape, dtype=np.float32)
            outputs[name][start:start + len(out)] = out.float().cpu().numpy()
        bar.update(1)
    return outputs


def extract(checkpoints, stimuli_path, out_path, *, device: str = "auto",
            batch_size: int = 256) -> None:
    """Write the activations of every layer of every checkpoint to one Zarr store.

    Parameters
    ----------
    checkpoints : list of path-like
        One model's checkpoints, in epoch order.
    stimuli_path : path-like
        Stimulus-set Zarr store (stimulus, y, x, channel) uint8.
    out_path : path-like
        Output store: one var per layer, dims (epoch, stimulus, unit_{layer}) float32, coords
        epoch (int) and stimulus_id; a recurrent model's are (epoch, time, stimulus,
        unit_{layer}) with coord time (int, 0-based step); attrs["content_key"] as
        `content_key` returns. Skipped
        when it exists with the same content key; recomputed when the key differs.
    device : str
        "auto", "cpu" or "cuda".
    batch_size : int
        Stimuli per forward pass.
    """
    checkpoints = [Path(p) for p in checkpoints]
    out_path = Path(out_path)
    remove_stale_temporaries(out_path)
    key = content_key(checkpoints, stimuli_path)
    stored = _stored_key(out_path)
    if stored == key:
        log.info("%s is up to date (same checkpoints, preprocessing and stimuli); skipping",
                 out_path)
        return
    if stored is not None:
        log.info("%s is stale (content key differs); recomputing", out_path)

    device = resolve_device(device)
    stimuli = read_stimuli(stimuli_path)
    images = to_tensor(stimuli["image"].values)
    size = key["preprocessing"]["input_size"]
    if images.shape[-2:] != (size, size):
        log.info("resizing stimuli from %s to the model's input size %d×%d (bilinear, antialiased)",
                 tuple(images.shape[-2:]), size, size)
    n_batches = -(-len(images) // batch_size)
    epochs = [int(read_checkpoint(path)["epoch"]) for path in checkpoints]
    stimulus_ids = stimuli["stimulus_id"].values.astype(str)
    with (atomic_path(out_path) as tmp, ThreadPoolExecutor(1) as writer,
          logging_redirect_tqdm(),
          tqdm(total=len(checkpoints) * n_batches, unit="batch",
               desc=f"extract {out_path.parent.name}/{out_path.stem}", disable=None) as bar):
        written, buffers = [], [None, None]      # two output sets: one fills, one is written
        for index, path in enumerate(checkpoints):
            # mapped, not read: only the weights are touched (not the optimizer state)
            checkpoint = read_checkpoint(path)
            model = load_backbone(checkpoint, device)
            outputs = _forward_all(model, images, checkpoint["preprocessing"], batch_size,
                                   device, bar, buffers[index % 2])
            buffers[index % 2] = outputs
            if index == 0:
                widths = {layer: outputs[layer].shape[-1] for layer in key["layers"]}
                _create_store(tmp, key, widths, epochs, stimulus_ids)
            # the next checkpoint's forward pass runs while this epoch is written
            written.append(writer.submit(_write_epoch, tmp, outputs, index, key.get("time_steps")))
            for previous in written[:-1]:
                previous.result()                 # surface a write error early
        for future in written:
            future.result()
        seal_store(tmp)                          # manifest last: read_zarr checks it
    log.info("wrote %s: %d epochs × %d stimuli, layers %s", out_path, len(epochs),
             len(stimulus_ids), ", ".join(f"{k} ({v} units)" for k, v in widths.items()))


def _layer_dims(layer: str, time_steps) -> tuple[str, ...]:
    if time_steps is None:
        return ("epoch", "stimulus", unit_dim(layer))
    return ("epoch", "time", "stimulus", unit_dim(layer))


def _create_store(path, key, widths, epochs, stimulus_ids) -> None:
    """Write the store's metadata and coords; layer data follow one epoch at a time.

    Chunks hold one epoch (so epochs are written independently) and `CHUNK` stimuli.
    """
    time_steps = key.get("time_steps")
    n_stimuli = len(stimulus_ids)
    data_vars = {}
    for layer, width in widths.items():
        lead = (len(epochs),) if time_steps is None else (len(epochs), time_steps)
        chunks = (1,) + lead[1:] + (min(CHUNK, n_stimuli), width)
        data_vars[layer] = (_layer_dims(layer, time_steps),
                            dask.array.zeros(lead + (n_stimuli, width), chunks=chunks,
                                             dtype=np.float32))
    coords = {"epoch": ("epoch", np.array(epochs, dtype=np.int64)),
              "stimulus_id": ("stimulus", stimulus_ids)}
    if time_steps is not None:
        coords["time"] = ("time", np.arange(time_steps, dtype=np.int64))
    ds = xr.Dataset(data_vars, coords=coords, attrs={"content_key": json.dumps(key)})
    ds.to_zarr(path, mode="w", compute=False, consolidated=True, zarr_format=2)


def _write_epoch(path, outputs, index, time_steps) -> None:
    """Write one checkpoint's layer outputs into epoch slot `index` of the store at `path`."""
    data_vars = {}
    for layer, values in outputs.items():
        values = values.astype(np.float32, copy=False)
        if time_steps is not None:                 # (stimulus, time, unit) -> time first
            values = np.ascontiguousarray(values.transpose(1, 0, 2))
        data_vars[layer] = (_layer_dims(layer, time_steps), values[None])
    xr.Dataset(data_vars).to_zarr(path, mode="r+", region={"epoch": slice(index, index + 1)})


def read_layer(path, layer: str) -> xr.DataArray:
    """One layer's activations, loaded, with coords epoch and stimulus_id.

    Dims (epoch, stimulus, unit) for a feedforward model; (epoch, time, stimulus, unit), with
    coord time, for a recurrent one.
    """
    ds = read_zarr(path)
    if layer not in ds:
        raise KeyError(f"{path}: no layer {layer!r}; layers: {', '.join(map(str, ds.data_vars))}")
    return ds[layer].rename({unit_dim(layer): "unit"}).load()
