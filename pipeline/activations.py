"""Model × stimulus set → activations of every layer at every checkpoint, in one Zarr store.

Each layer is one variable (epoch, stimulus, unit_{layer}) float32, chunked by epoch and stimulus.
Layers differ in width, and one xarray Dataset cannot give a dimension two lengths, so the unit
dimension carries the layer name in the store; `read_layer` returns it renamed to `unit`.
A recurrent model (one with `time_steps`, e.g. `convrnn`) stores every layer at every time step,
dims (epoch, time, stimulus, unit_{layer}) with an int coord `time`; feedforward stores have no
`time` dim.
attrs["content_key"] records the sha256 of every checkpoint file, the preprocessing, the
stimulus set's sha256 and the layers, so a store is reused only for identical inputs.
With `spatial_pool` (config `models.extract.spatial_pool`), each convolutional layer's maps are
average-pooled to a grid of that side before they are written, and the key records the grid.
Checkpoints are keyed by their sha256 records and checked against them (size, then crc32c,
`pipeline.checkpoints.verified_sha256`) by a thread of their own while the forward passes run,
before the store is published; a store that is up to date is reused without reading the
checkpoints' bytes. `extract` first removes the hidden temporaries
(`.<store>.tmp-*`) an interrupted extraction of the same store left behind. The finished
store is sealed (`pipeline.io.seal_store`), so `read_zarr` checks its files as it reads them.

Throughput: each batch's layer outputs go to a background writer thread as they are (views of
the layers' own tensors, never copied into an epoch-sized buffer), a batch per Zarr chunk
along `stimulus`, so writing overlaps the next batches' forward passes and no chunk is read
back to be merged; at most `MAX_PENDING` batches wait. Chunks are stored uncompressed and
written as files straight from those arrays (`pipeline.io.write_chunk`), their crc32c taken as
they are written so sealing reads nothing back: Zarr's write path and LZ4 cost more CPU than
the forward pass of a small model while saving ~10 % of the bytes (float32 mantissas do
not compress). The store's metadata are written by the same thread, through zarr directly,
while the second batch runs forward; the stimulus set is opened once, for its key and its
images. `benchmarks/training.py --extraction` measures the ratio to a bare forward pass.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import xarray as xr
import zarr
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.checkpoints import (build_backbone, load_backbone, read_checkpoint, recorded_sha256,
                                  verified_sha256)
from pipeline.data.stimuli import read_stimuli, stimulus_sha256, to_tensor
from pipeline.io import atomic_path, read_zarr, remove_stale_temporaries, seal_store, write_chunk
from pipeline.models import layer_outputs
from pipeline.objectives.augment import preprocess
from pipeline.runtime import resolve_device

log = logging.getLogger(__name__)

# Batches of layer outputs waiting for the writer thread (memory: that many batches).
MAX_PENDING = 4


def _model_args(checkpoint: dict) -> tuple:
    """What fixes a checkpoint's layers: arch, n_classes, input_size and the rule (bp before
    rules)."""
    return (checkpoint["arch"], checkpoint["n_classes"], checkpoint["input_size"],
            checkpoint.get("rule", "bp"))


def unit_dim(layer: str) -> str:
    """Name of a layer's unit dimension in the activations store."""
    return f"unit_{layer}"


def content_key(checkpoints, stimuli_path, spatial_pool: int | None = None) -> dict:
    """What an activations store depends on: checkpoint bytes, preprocessing, stimuli, layers.

    Parameters
    ----------
    checkpoints : list of path-like
        Checkpoints written by `pipeline.train.train`, all of one model.
    stimuli_path : path-like
        Stimulus-set Zarr store.
    spatial_pool : int, optional
        Side of the grid convolutional maps are pooled to (`extract`); None for full maps.

    Returns
    -------
    dict
        Keys weights_sha256 (list, one per checkpoint), preprocessing, stimulus_sha256, layers;
        for a recurrent model only, time_steps; for pooled maps only, spatial_pool.
    """
    return _key_and_epochs(checkpoints, read_zarr(stimuli_path), spatial_pool)[0]


def _key_and_epochs(checkpoints, stimuli: xr.Dataset, spatial_pool=None, verify=True
                    ) -> tuple[dict, list[int], list[dict]]:
    """`content_key` of the opened stimulus set, the checkpoints' epochs and the checkpoints
    themselves (memory-mapped), each checkpoint read once. With `verify` False, checkpoints
    whose records can be checked later (`recorded_sha256`) are keyed by their records and not
    yet checked: the caller checks them (`verified_sha256`) before it writes anything."""
    if not checkpoints:
        raise ValueError("content_key needs at least one checkpoint; got none")
    digests = [None if verify else recorded_sha256(path) for path in checkpoints]
    loaded = [read_checkpoint(path, verify=digest is None)
              for path, digest in zip(checkpoints, digests)]
    first = loaded[0]
    epochs = [int(first["epoch"])]
    for path, other in zip(checkpoints[1:], loaded[1:]):
        epochs.append(int(other["epoch"]))
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
        "weights_sha256": [digest or verified_sha256(path)
                           for path, digest in zip(checkpoints, digests)],
        "preprocessing": first["preprocessing"],
        "stimulus_sha256": stimulus_sha256(stimuli),
        "layers": list(model.layer_names),
    }
    if getattr(model, "time_steps", None) is not None:   # absent for feedforward: old keys stay valid
        key["time_steps"] = int(model.time_steps)
    if spatial_pool is not None:                  # absent for full maps: old keys stay valid
        if int(spatial_pool) < 1:
            raise ValueError(f"spatial_pool must be an integer >= 1 or None; got {spatial_pool!r}")
        key["spatial_pool"] = int(spatial_pool)
    return key, epochs, loaded


def _stored_key(out_path: Path):
    """The content key of an existing store, or None when absent or unreadable."""
    if not out_path.exists():
        return None
    try:
        return json.loads(read_zarr(out_path).attrs["content_key"])
    except (OSError, KeyError, ValueError) as err:
        log.warning("%s: cannot read its content key (%s); recomputing", out_path, err)
        return None


@contextlib.contextmanager
def _collection_paused():
    """Python's cyclic garbage collector off for the block (back on only if it was on).

    Extraction makes few reference cycles (collected once it is back on), while a full
    collection walks every object of the process (torch, xarray, dask: ~0.1 s each) and the
    forward passes wait for it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pool_maps(out: torch.Tensor, grid: int, recurrent: bool) -> torch.Tensor:
    """A layer output with its spatial maps average-pooled to at most `grid` × `grid`.

    `out` is (stimulus[, time], channel, y, x) for a convolutional layer; each side larger
    than `grid` is pooled to `grid` (adaptive average pooling, as `torch.nn.AdaptiveAvgPool2d`),
    a side already that small is kept. Outputs without spatial dims are returned unchanged.
    """
    if out.dim() - recurrent < 4:
        return out
    size = (min(grid, out.shape[-2]), min(grid, out.shape[-1]))
    if size == tuple(out.shape[-2:]):
        return out
    return torch.nn.functional.adaptive_avg_pool2d(out.flatten(0, out.dim() - 4), size
                                                   ).unflatten(0, out.shape[:-3])


@torch.no_grad()
def _forward_all(model, images, preprocessing, batch_size, device, bar, write,
                 spatial_pool=None) -> None:
    """Run every batch through the model and hand its layer outputs to `write(start, outputs)`.

    `outputs` maps layer -> float32 CPU array of the batch, (stimulus, unit), or (time,
    stimulus, unit) if recurrent. They are the layers' own output tensors (flattened views,
    not copies), so writing them is the only pass over the activations after the forward;
    with `spatial_pool`, the pooled maps (`pool_maps`, on the model's device).
    """
    recurrent = getattr(model, "time_steps", None) is not None
    for start in range(0, len(images), batch_size):
        # preprocess resizes to the model's input size (bilinear, antialiased), as in training
        x = preprocess(images[start:start + batch_size].to(device), preprocessing)
        outputs = {}
        for name, out in layer_outputs(model, x).items():
            if spatial_pool is not None:
                out = pool_maps(out, spatial_pool, recurrent)
            out = out.flatten(2 if recurrent else 1).float().cpu()
            outputs[name] = (out.transpose(0, 1) if recurrent else out).numpy()
        write(start, outputs)
        bar.update(1)


@_collection_paused()
def extract(checkpoints, stimuli_path, out_path, *, device: str = "auto",
            batch_size: int = 256, spatial_pool: int | None = None) -> None:
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
    spatial_pool : int, optional
        Average-pool each convolutional layer's maps to at most this side (`pool_maps`) before
        they are written, so a layer stores channels × grid² units; None keeps full maps.
    """
    checkpoints = [Path(p) for p in checkpoints]
    out_path = Path(out_path)
    remove_stale_temporaries(out_path)
    stimuli = read_stimuli(stimuli_path, load=False)   # images read only if extracting
    key, epochs, loaded = _key_and_epochs(checkpoints, stimuli, spatial_pool, verify=False)
    stored = _stored_key(out_path)
    if stored == key:
        log.info("%s is up to date (same checkpoints, preprocessing, stimuli and pooling); skipping",
                 out_path)
        return
    if stored is not None:
        log.info("%s is stale (content key differs); recomputing", out_path)

    device = resolve_device(device)
    images = to_tensor(stimuli["image"].values)
    size = key["preprocessing"]["input_size"]
    if images.shape[-2:] != (size, size):
        log.info("resizing stimuli from %s to the model's input size %d×%d (bilinear, antialiased)",
                 tuple(images.shape[-2:]), size, size)
    n_batches = -(-len(images) // batch_size)
    stimulus_ids = stimuli["stimulus_id"].values.astype(str)
    with (atomic_path(out_path) as tmp, ThreadPoolExecutor(1) as writer,
          ThreadPoolExecutor(1) as checker, logging_redirect_tqdm(),
          tqdm(total=len(checkpoints) * n_batches, unit="batch",
               desc=f"extract {out_path.parent.name}/{out_path.stem}", disable=None) as bar):
        # the checkpoints' bytes are checked against their records while the forward runs
        checked = checker.submit(lambda: [verified_sha256(path) for path in checkpoints])
        arrays, pending, written = {}, deque(), {}
        for index, checkpoint in enumerate(loaded):
            def write(start, outputs, index=index):
                if index == start == 0:          # first batch: the layers' widths are known
                    # created by the writer, overlapping the next forward pass, before any batch
                    widths = {layer: outputs[layer].shape[-1] for layer in key["layers"]}
                    pending.append(writer.submit(
                        lambda: arrays.update(_create_store(tmp, key, widths, epochs, stimulus_ids,
                                                           min(batch_size, len(stimulus_ids))))))
                while len(pending) >= MAX_PENDING:
                    pending.popleft().result()   # bounded memory; errors surface early
                pending.append(writer.submit(_write_batch, tmp, arrays, outputs, index, start,
                                             key.get("time_steps"), written))

            # mapped, not read: only the weights are touched (not the optimizer state)
            model = load_backbone(checkpoint, device)
            _forward_all(model, images, checkpoint["preprocessing"], batch_size, device, bar,
                         write, spatial_pool)
        while pending:
            pending.popleft().result()
        checked.result()                         # a corrupt checkpoint raises: nothing published
        seal_store(tmp, written)                 # manifest last: read_zarr checks it
    widths = {layer: array.shape[-1] for layer, array in arrays.items()}
    log.info("wrote %s: %d epochs × %d stimuli, layers %s", out_path, len(epochs),
             len(stimulus_ids), ", ".join(f"{k} ({v} units)" for k, v in widths.items()))


def _layer_dims(layer: str, time_steps) -> tuple[str, ...]:
    if time_steps is None:
        return ("epoch", "stimulus", unit_dim(layer))
    return ("epoch", "time", "stimulus", unit_dim(layer))


def _create_store(path, key, widths, epochs, stimulus_ids, chunk: int
                  ) -> dict[str, zarr.Array]:
    """Write the store's metadata and coords; returns the layer arrays, whose data follow a
    batch at a time (`_write_batch`).

    The layout is what `xarray.Dataset.to_zarr` writes for the same Dataset (dims in
    `_ARRAY_DIMENSIONS`, NaN fill, consolidated metadata), made through zarr directly: xarray
    and dask would first build a lazy Dataset of zeros, which costs more.
    Chunks hold one epoch (so epochs are written independently) and `chunk` stimuli (the
    batch size, so each batch fills whole chunks and is never read back to be merged).
    """
    time_steps = key.get("time_steps")
    lead = (len(epochs),) if time_steps is None else (len(epochs), time_steps)
    group = zarr.open_group(path, mode="w", zarr_format=2,
                            attributes={"content_key": json.dumps(key)})
    arrays = {
        layer: group.create_array(
            layer, shape=lead + (len(stimulus_ids), width), chunks=(1,) + lead[1:] + (chunk, width),
            dtype=np.float32, fill_value=np.nan, compressors=None,
            attributes={"coordinates": "stimulus_id",
                        "_ARRAY_DIMENSIONS": list(_layer_dims(layer, time_steps))})
        for layer, width in widths.items()
    }
    coords = {"epoch": ("epoch", np.array(epochs, dtype=np.int64)),
              "stimulus_id": ("stimulus", stimulus_ids)}
    if time_steps is not None:
        coords["time"] = ("time", np.arange(time_steps, dtype=np.int64))
    for name, (dim, values) in coords.items():
        group.create_array(name, shape=values.shape, chunks=values.shape, dtype=values.dtype,
                           fill_value=None, attributes={"_ARRAY_DIMENSIONS": [dim]})[...] = values
    zarr.consolidate_metadata(path, zarr_format=2)
    return arrays


def _write_batch(path, arrays, outputs, index, start, time_steps, written) -> None:
    """Write one batch of one checkpoint's layer outputs, a whole chunk per layer, into epoch
    slot `index`; records each file's (size, checksum) in `written` for `seal_store`."""
    for layer, array in arrays.items():
        values = outputs[layer]
        chunk = array.chunks[-2]                   # stimuli per chunk: the batch size
        if time_steps is None:                     # (stimulus, unit)
            parts = [np.ascontiguousarray(values), *_padding(array, chunk - len(values))]
            position = (index, start // chunk, 0)
        else:                                      # (time, stimulus, unit): chunk is time-major
            pad = _padding(array, chunk - values.shape[1])
            parts = [part for step in values for part in (np.ascontiguousarray(step), *pad)]
            position = (index, 0, start // chunk, 0)
        key, size, crc = write_chunk(path, array, position, parts)
        written[key] = (size, crc)


def _padding(array, rows: int) -> list[np.ndarray]:
    """The fill-value rows that complete a partial last chunk (Zarr v2 stores edge chunks at
    full size); none for a whole chunk."""
    if rows == 0:
        return []
    return [np.full((rows, array.shape[-1]), array.fill_value, dtype=array.dtype)]


def read_layer(path, layer: str) -> xr.DataArray:
    """One layer's activations, loaded, with coords epoch and stimulus_id.

    Dims (epoch, stimulus, unit) for a feedforward model; (epoch, time, stimulus, unit), with
    coord time, for a recurrent one.
    """
    ds = read_zarr(path)
    if layer not in ds:
        raise KeyError(f"{path}: no layer {layer!r}; layers: {', '.join(map(str, ds.data_vars))}")
    return ds[layer].rename({unit_dim(layer): "unit"}).load()
