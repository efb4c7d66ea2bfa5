"""Overhead of pipeline.train and pipeline.activations against bare PyTorch loops.

Same model, same data, same batch size and threads in one run. Prints the seconds per
training epoch of `pipeline.train` (shuffle, flip, per-batch preprocessing, test evaluation,
checkpoint) and of a bare SGD loop over pre-normalised tensors with the same test evaluation,
and the seconds of `pipeline.activations.extract` for one checkpoint against a bare forward
pass. Usage: `python benchmarks/training.py [--n-train 3200] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from pipeline.activations import extract
from pipeline.io import write_zarr
from pipeline.models import build_model
from pipeline.runtime import set_num_threads
from pipeline.train import train

MODEL = "ventral_cnn-supervised-bp-s0"


def write_set(path, n, n_classes, size, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, n)
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"),
                   rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))},
        coords={"stimulus_id": ("stimulus", [f"{seed}-{i}" for i in range(n)]),
                "superordinate": ("stimulus", [f"s{c % 2}" for c in label]),
                "basic": ("stimulus", [f"b{c % 8}" for c in label]),
                "subordinate": ("stimulus", [f"b{c % 8}/c{c}" for c in label])},
        attrs={"sha256": f"bench-{seed}"},
    )
    write_zarr(ds, path)
    return ds


def tensors(ds):
    x = torch.from_numpy(ds["image"].values).permute(0, 3, 1, 2).float() / 255
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    classes = {c: i for i, c in enumerate(sorted(set(ds["subordinate"].values.tolist())))}
    y = torch.tensor([classes[c] for c in ds["subordinate"].values.tolist()])
    return ((x - mean) / std).contiguous(), y


def bare_epoch(x, y, x_test, y_test, n_classes, size, batch_size):
    """Bare SGD epoch plus test evaluation; returns seconds."""
    torch.manual_seed(0)
    model = build_model("ventral_cnn", n_classes, size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
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


def bare_forward(x, n_classes, size, batch_size):
    model = build_model("ventral_cnn", n_classes, size).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for xb in x.split(batch_size):
            model(xb)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=3200)
    parser.add_argument("--n-test", type=int, default=640)
    parser.add_argument("--n-probe", type=int, default=1200)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train_ds = write_set(root / "train.zarr", args.n_train, args.classes, args.size, 0)
        test_ds = write_set(root / "test.zarr", args.n_test, args.classes, args.size, 1)
        probe_ds = write_set(root / "probe.zarr", args.n_probe, args.classes, args.size, 2)
        x, y = tensors(train_ds)
        x_test, y_test = tensors(test_ds)
        x_probe, _ = tensors(probe_ds)
        n_classes = len(set(train_ds["subordinate"].values.tolist()))

        # Warm-up: oneDNN builds its kernels for these shapes on first use.
        bare_epoch(x[:512], y[:512], x_test[:128], y_test[:128], n_classes, args.size,
                   args.batch_size)
        bare, ours, total = [], [], []
        for repeat in range(args.repeats):
            bare.append(bare_epoch(x, y, x_test, y_test, n_classes, args.size, args.batch_size))
            out = root / f"model{repeat}"
            start = time.perf_counter()
            metrics = train(MODEL, root / "train.zarr", root / "test.zarr", out, epochs=1,
                            batch_size=args.batch_size, device="cpu")
            total.append(time.perf_counter() - start)
            ours.append(float(metrics["seconds"].iloc[1]))
        print(f"training epoch ({args.n_train} × {args.size}px, batch {args.batch_size}, "
              f"{args.threads} threads): bare {min(bare):.2f}s  pipeline.train {min(ours):.2f}s  "
              f"ratio {min(ours) / min(bare):.2f}  (whole train(epochs=1) call {min(total):.2f}s)")

        checkpoint = [root / "model0" / "epoch_001.pt"]
        bare, ours = [], []
        for repeat in range(args.repeats):
            bare.append(bare_forward(x_probe, n_classes, args.size, 256))
            start = time.perf_counter()
            extract(checkpoint, root / "probe.zarr", root / f"act{repeat}.zarr", device="cpu")
            ours.append(time.perf_counter() - start)
        print(f"extraction ({args.n_probe} stimuli, 1 checkpoint, 5 layers): bare forward "
              f"{min(bare):.2f}s  pipeline.activations.extract {min(ours):.2f}s  "
              f"ratio {min(ours) / min(bare):.2f}")


if __name__ == "__main__":
    main()
