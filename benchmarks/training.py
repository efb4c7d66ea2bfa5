"""Throughput of pipeline.train and pipeline.activations.extract against bare PyTorch loops.

Per architecture, in a fresh process (as each Snakemake job is), same model, data, batch size
and threads:

- training: `train()` continuing a run from its epoch-1 checkpoint for `--epochs` more epochs
  (loading the stimulus sets, rebuilding and resuming the model, shuffled and flipped
  batches, per-batch preprocessing, test evaluation, alignment diagnostics, a checkpoint per
  epoch, metrics.csv) against a bare SGD loop over pre-normalised tensors with the same test
  evaluation and nothing saved;
- extraction: `extract()` of all the run's checkpoints (content key, stimuli read, weights
  loaded, forward hooks on every compared layer, Zarr write) against bare forward passes over
  the same uint8 images, one per checkpoint, standardised per batch, outputs discarded. Each
  timed `extract()` checks the checkpoints against their records again, as a job's first
  read of them does (`pipeline.checkpoints.forget_verified`).

Prints seconds and throughput ratios (bare time / pipeline time: 1.0 = no overhead). Both
sides run with malloc keeping freed memory, as the pipeline's jobs do
(`pipeline.runtime.keep_freed_memory`); `--malloc-default` leaves glibc's default, to measure
what that setting saves.
Usage: `python benchmarks/training.py [--archs ventral_cnn alexnet64 ...] [--threads 2]`.

`--extraction`: the extraction columns only (the run is trained once, untimed, to make the same
checkpoints); wall and CPU (process_time) seconds of both sides, best of `--repeats`, their
wall-clock difference and the bytes the store holds. The difference splits into a fixed part
per store (content key, weights, metadata, manifest) and a part that grows with the stimuli:
`--scale` multiplies the stimulus count, so two scales separate them. `--spatial-pool G ...`
adds a row per grid side G: `extract` with convolutional maps average-pooled to G × G before
they are written (config `models.extract.spatial_pool`), against the same bare forward passes.
A second baseline, *bare forward + write*, also takes every compared layer's output through
forward hooks (pooled alike) and writes its bytes to a plain file per layer and batch from one
background thread, with no checks and no store: what writing the same bytes costs on the
machine, which the ratio to it sets aside.

`--loader`: images/s of the streaming loader (pipeline.data.loader: random batches of a shard
store read by 0 and 2 worker processes) against a bare loop indexing the same batches out of
the same uint8 images in memory. `--memory N ...`: peak RSS (ru_maxrss of a fresh process) of
one training epoch (lenet seeing 16 px, 64-px stored images) for each training-set size N,
streamed (`memory_mb: 0`) and held in memory. These two skip the per-architecture table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from pipeline.activations import MAX_PENDING, extract, pool_maps
from pipeline.checkpoints import forget_verified
from pipeline.data.loader import (EpochBatches, LoaderSettings, StreamedImages, batch_loader,
                                  stream_images)
from pipeline.data.stimuli import read_stimuli
from pipeline.io import write_zarr
from pipeline.models import build_model, layer_outputs
from pipeline.runtime import keep_freed_memory, set_num_threads
from pipeline.train import TrainSettings, train

# arch -> (input px, training images, test images, probe images, batch size)
SETUPS = {
    "ventral_cnn": (32, 3200, 640, 1200, 128),
    "lenet": (32, 3200, 640, 1200, 128),
    "convrnn": (32, 640, 128, 240, 64),
    "streamnet_dual": (64, 640, 128, 480, 64),
    "alexnet64": (64, 640, 128, 480, 64),
    "resnet18": (64, 128, 64, 128, 32),
    "vgg16": (64, 256, 64, 128, 32),
}
N_CLASSES = 32


def write_set(path, n, size, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, N_CLASSES, n)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"),
                   rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))},
        coords={"stimulus_id": ("stimulus", [f"{seed}-{i}" for i in range(n)]),
                "superordinate": ("stimulus", [f"s{c % 2}" for c in label]),
                "basic": ("stimulus", [f"b{c % 8}" for c in label]),
                "subordinate": ("stimulus", [f"b{c % 8}/c{c}" for c in label])},
        attrs={"sha256": f"bench-{seed}-{n}-{size}"},
    )
    write_zarr(ds, path)
    return ds


def tensors(ds):
    x = torch.from_numpy(ds["image"].values).permute(0, 3, 1, 2).float() / 255
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    classes = {c: i for i, c in enumerate(sorted(set(ds["subordinate"].values.tolist())))}
    y = torch.tensor([classes[c] for c in ds["subordinate"].values.tolist()])
    return ((x - mean) / std).contiguous(), y


def bare_training(arch, x, y, x_test, epochs, batch_size):
    """Bare SGD epochs, each followed by a test-set forward pass; returns seconds."""
    torch.manual_seed(0)
    model = build_model(arch, N_CLASSES, x.shape[-1])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for xb in x_test.split(batch_size):
                model(xb)
    return time.perf_counter() - start


def bare_forward(arch, images, mean, std, n_checkpoints, batch_size):
    """Forward passes over the stored uint8 images (scaled and standardised per batch), once
    per checkpoint, outputs discarded; returns seconds."""
    model = build_model(arch, N_CLASSES, images.shape[-1]).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(n_checkpoints):
            for xb in images.split(batch_size):
                model((xb.float() / 255 - mean) / std)
    return time.perf_counter() - start


def bare_forward_and_write(arch, images, mean, std, n_checkpoints, batch_size, directory,
                           spatial_pool=None):
    """`bare_forward`, with every compared layer's output (pooled to `spatial_pool` if given)
    written to a file of its own per batch by one background thread, at most MAX_PENDING
    batches waiting; returns seconds."""
    model = build_model(arch, N_CLASSES, images.shape[-1]).eval()
    recurrent = getattr(model, "time_steps", None) is not None
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()

    def write(path, array):
        with open(path, "wb", buffering=0) as file:
            file.write(memoryview(array).cast("B"))

    start = time.perf_counter()
    with ThreadPoolExecutor(1) as writer, torch.no_grad():
        pending = deque()
        for checkpoint in range(n_checkpoints):
            for batch, xb in enumerate(images.split(batch_size)):
                outputs = layer_outputs(model, (xb.float() / 255 - mean) / std)
                for name, out in outputs.items():
                    if spatial_pool is not None:
                        out = pool_maps(out, spatial_pool, recurrent)
                    pending.append(writer.submit(write, directory / f"{checkpoint}-{batch}-{name}",
                                                 out.contiguous().numpy()))
                while len(pending) > MAX_PENDING * len(outputs):
                    pending.popleft().result()
        for future in pending:
            future.result()
    return time.perf_counter() - start


def bench(arch, root, args):
    size, n_train, n_test, n_probe, batch_size = SETUPS[arch]
    scale = args.scale
    n_train, n_test, n_probe = (max(batch_size, int(n * scale)) for n in (n_train, n_test, n_probe))
    paths = {name: root / f"{arch}_{name}.zarr" for name in ("train", "test", "probe")}
    sets = {name: write_set(paths[name], n, size, seed)
            for seed, (name, n) in enumerate([("train", n_train), ("test", n_test), ("probe", n_probe)])}
    x, y = tensors(sets["train"])
    x_test, _ = tensors(sets["test"])
    probe = torch.from_numpy(sets["probe"]["image"].values).permute(0, 3, 1, 2).contiguous()
    mean = probe.float().mean((0, 2, 3), keepdim=True) / 255
    std = (probe.float() / 255).std((0, 2, 3), keepdim=True)
    model = f"{arch}-supervised-bp-s0"
    settings = dict(batch_size=batch_size, lr=0.01)

    if args.extraction:
        train(model, paths["train"], paths["test"], root / f"{model}-0",
              TrainSettings(epochs=1 + args.epochs, **settings), device="cpu")
        bench_extraction(arch, root, paths["probe"], probe, mean, std, args)
        return
    bare_training(arch, x[:batch_size * 2], y[:batch_size * 2], x_test[:batch_size], 1, batch_size)
    bare_train, ours_train = [], []
    for repeat in range(args.repeats):
        out = root / f"{model}-{repeat}"
        train(model, paths["train"], paths["test"], out, TrainSettings(epochs=1, **settings),
              device="cpu")
        start = time.perf_counter()
        train(model, paths["train"], paths["test"], out,
              TrainSettings(epochs=1 + args.epochs, **settings), device="cpu")
        ours_train.append(time.perf_counter() - start)
        bare_train.append(bare_training(arch, x, y, x_test, args.epochs, batch_size))

    checkpoints = sorted((root / f"{model}-0").glob("epoch_*.pt"))
    bare_extract, ours_extract = [], []
    for repeat in range(args.repeats):
        bare_extract.append(bare_forward(arch, probe, mean, std, len(checkpoints), 256))
        forget_verified()                    # checkpoints checked again, as by a fresh job
        start = time.perf_counter()
        extract(checkpoints, paths["probe"], root / f"{model}-act{repeat}.zarr", device="cpu")
        ours_extract.append(time.perf_counter() - start)
    bt, ot, be, oe = (min(v) for v in (bare_train, ours_train, bare_extract, ours_extract))
    print(f"| {arch} | {size} px, {n_train} train / {n_test} test, batch {batch_size}, "
          f"{args.epochs} epochs | {bt:.2f} s | {ot:.2f} s | {bt / ot:.2f} "
          f"| {n_probe} stimuli × {len(checkpoints)} checkpoints | {be:.2f} s | {oe:.2f} s "
          f"| {be / oe:.2f} |", flush=True)


def wall_and_cpu(function, *args, **kwargs):
    """(wall, CPU) seconds of one call; CPU is this process's, all threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_extraction(arch, root, probe_path, probe, mean, std, args):
    """The extraction columns alone, wall and CPU: bare forward passes, and bare forward passes
    that write the layers' bytes, against `extract()`, with full maps and with each
    `--spatial-pool` grid."""
    model = f"{arch}-supervised-bp-s0"
    checkpoints = sorted((root / f"{model}-0").glob("epoch_*.pt"))
    for grid in [None, *args.spatial_pool]:
        bare, written, ours = [], [], []
        out = root / f"{model}-act-{grid}.zarr"
        for repeat in range(args.repeats):
            shutil.rmtree(out, ignore_errors=True)       # a fresh store each time, not a skip
            bare.append(wall_and_cpu(bare_forward, arch, probe, mean, std, len(checkpoints), 256))
            written.append(wall_and_cpu(bare_forward_and_write, arch, probe, mean, std,
                                        len(checkpoints), 256, root / "bare-write", grid))
            forget_verified()                # checkpoints checked again, as by a fresh job
            ours.append(wall_and_cpu(extract, checkpoints, probe_path, out, device="cpu",
                                     spatial_pool=grid))
        shutil.rmtree(root / "bare-write")
        stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
        (bw, bc), (ww, wc), (ow, oc) = (tuple(min(v) for v in zip(*side))
                                        for side in (bare, written, ours))
        maps = "full" if grid is None else f"{grid} × {grid}"
        print(f"| {arch} | {maps} | {len(probe)} stimuli × {len(checkpoints)} checkpoints "
              f"| {stored:.0f} MB | {bw:.2f} s | {ww:.2f} s | {ow:.2f} s | {ow - bw:.2f} s "
              f"| {bw / ow:.2f} | {ww / ow:.2f} | {bc:.2f} s | {oc:.2f} s | {bc / oc:.2f} |",
              flush=True)


def bench_loader(root, n=20000, size=64, batch_size=256, epochs=2):
    """Images/s of the streamed loader (0 and 2 workers) and of a bare in-memory loop."""
    write_set(root / "loader.zarr", n, size, 7)
    ds = read_stimuli(root / "loader.zarr", load=False)
    images = stream_images(ds, root / "loader.zarr", root / "shards")
    in_memory = np.ascontiguousarray(ds["image"].values.transpose(0, 3, 1, 2))
    labels = torch.zeros(n, dtype=torch.long)
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(e)) for e in range(epochs)]

    def bare():
        start = time.perf_counter()
        for order in orders:
            for idx in order.split(batch_size):
                torch.from_numpy(in_memory[idx.numpy()])
        return n * epochs / (time.perf_counter() - start)

    def streamed(workers):
        sampler = EpochBatches(batch_size)
        loader = batch_loader(images, labels, sampler, LoaderSettings(workers=workers),
                              torch.device("cpu"))
        start = time.perf_counter()
        for order in orders:
            sampler.set_epoch(order)
            for _ in loader:
                pass
        return n * epochs / (time.perf_counter() - start)

    base = bare()
    print(f"{n} images of {size} px, batch {batch_size}, {epochs} shuffled epochs (page cache "
          f"warm after the first read)\n")
    print("| reader | images/s | ratio to bare |")
    print("|---|---|---|")
    print(f"| bare: in-memory uint8, same batches | {base:.0f} | 1.00 |")
    for workers in (0, 2):
        rate = streamed(workers)
        print(f"| streamed shard store, {workers} workers | {rate:.0f} | {rate / base:.2f} |",
              flush=True)


_EPOCH = """
import json, resource, sys
import torch
torch.set_num_threads(int(sys.argv[4]))
from pipeline.data.loader import LoaderSettings
from pipeline.train import TrainSettings, train
root, memory_mb, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
train("lenet-supervised-bp-s0", f"{root}/train.zarr", f"{root}/test.zarr", out,
      TrainSettings(epochs=1, batch_size=128, input_size=16), device="cpu",
      loader=LoaderSettings(memory_mb=memory_mb, shards=f"{root}/shards"))
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
"""


def bench_memory(root, sizes, threads):
    """Peak RSS of a training epoch per training-set size, streamed and in memory."""
    print("| training images (64 px) | uint8 MB | peak RSS streamed | peak RSS in memory |")
    print("|---|---|---|---|")
    for n in sizes:
        folder = root / f"rss{n}"
        write_set(folder / "train.zarr", n, 64, 0)
        write_set(folder / "test.zarr", 256, 64, 1)
        peaks = []
        for memory_mb in (0, 1e9):
            done = subprocess.run([sys.executable, "-c", _EPOCH, str(folder), str(memory_mb),
                                   str(folder / f"model{memory_mb:g}"), str(threads)],
                                  capture_output=True, text=True, check=True)
            peaks.append(json.loads(done.stdout.splitlines()[-1]))
        print(f"| {n} | {n * 64 * 64 * 3 / 2 ** 20:.0f} | {peaks[0]:.0f} MB | {peaks[1]:.0f} MB |",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["ventral_cnn", "lenet", "convrnn",
                                                       "streamnet_dual", "alexnet64"],
                        choices=sorted(SETUPS))
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed after the first")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the set sizes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--extraction", action="store_true",
                        help="extraction columns only (wall and CPU); training untimed")
    parser.add_argument("--spatial-pool", type=int, nargs="*", default=[], metavar="G",
                        help="with --extraction: also extract with maps pooled to G × G")
    parser.add_argument("--malloc-default", action="store_true",
                        help="leave glibc's malloc as it is (the pipeline's jobs call "
                             "pipeline.runtime.keep_freed_memory)")
    parser.add_argument("--loader", action="store_true", help="streaming loader images/s only")
    parser.add_argument("--memory", type=int, nargs="+", metavar="N",
                        help="peak RSS of a training epoch for these training-set sizes only")
    args = parser.parse_args()
    _set_up_process(args)
    if args.loader or args.memory:
        with tempfile.TemporaryDirectory() as tmp:
            if args.loader:
                bench_loader(Path(tmp))
            if args.memory:
                bench_memory(Path(tmp), args.memory, args.threads)
        return
    print(f"{args.threads} threads, CPU; throughput ratio = bare seconds / pipeline seconds\n")
    if args.extraction:
        print("| arch | maps | extraction | stored | bare forward wall | bare forward + write "
              "wall | extract wall | difference | ratio | ratio to forward + write "
              "| bare forward CPU | extract CPU | ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print("| arch | training run | bare | pipeline | ratio | extraction | bare forward "
              "| extract | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            # a fresh process per architecture, as each Snakemake job is
            child = spawn.Process(target=_bench_in_process, args=(arch, Path(tmp), args))
            child.start()
            child.join()
            if child.exitcode:
                raise SystemExit(f"{arch}: benchmark process exited with {child.exitcode}")


def _set_up_process(args):
    """Threads and malloc policy of a benchmark process, as the pipeline's jobs set them."""
    set_num_threads(args.threads)
    if not args.malloc_default:
        keep_freed_memory()


def _bench_in_process(arch, root, args):
    _set_up_process(args)
    bench(arch, root, args)


if __name__ == "__main__":
    main()
