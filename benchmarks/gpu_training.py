"""GPU training throughput of pipeline.train against a bare autocast loop (one short script).

For ResNet-18 at 64 px and the ConvRNN at 224 px, rules bp and fa, precision fp32 and bf16:

- *pipeline*: `train()` for 2 epochs on synthetic stimulus sets, images/s of epoch 2 (epoch 1
  warms up cuDNN autotuning); the set in GPU memory, and, for ResNet-18, streamed from a shard
  store by 4 loader workers (`--streamed`);
- *bare*: the same net (converted by the rule), SGD, the same batches already on the GPU,
  forward under `torch.autocast` (bf16) or not, backward, step; images/s after a warm-up.

Prints images/s, the ratio pipeline / bare, mean GPU utilisation (nvidia-smi, sampled every
0.2 s) and peak GPU memory. bp and fa both train under bf16 autocast (pipeline.runtime.
BF16_RULES); the bare loop reports the error instead of a rate if a rule's backward cannot run
under it. Exits with a message when no CUDA GPU is present.
Usage: `python benchmarks/gpu_training.py [--quick]` (about 3 minutes on one H100).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from pipeline.data.loader import LoaderSettings
from pipeline.io import write_zarr
from pipeline.learning import make_rule
from pipeline.models import build_model
from pipeline.objectives.augment import preprocess
from pipeline.train import TrainSettings, train

# arch -> (px, training images, batch size)
SETUPS = {"resnet18": (64, 16384, 256), "convrnn": (224, 1024, 64)}
N_CLASSES = 100


class Utilisation:
    """Mean GPU utilisation (%) from nvidia-smi, sampled in a thread while the block runs."""

    def __enter__(self):
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits", "-i", "0"],
                                     capture_output=True, text=True, timeout=2).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def write_set(path, n, size, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, N_CLASSES, n)
    names = [f"c{c}" for c in label]
    ds = xr.Dataset(
        {"image": (("stimulus", "y", "x", "channel"),
                   rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))},
        coords={"stimulus_id": ("stimulus", [f"{seed}-{i}" for i in range(n)]),
                **{level: ("stimulus", names) for level in ("superordinate", "basic",
                                                            "subordinate")}},
        attrs={"sha256": f"gpu-bench-{seed}-{n}-{size}"},
    )
    write_zarr(ds, path)


def bare(arch, rule_name, size, n, batch_size, bf16):
    """Images/s of a bare loop (see the module docstring), or the error it raised."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = make_rule(rule_name).convert(build_model(arch, N_CLASSES, size)).to(device)
    net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, N_CLASSES, (n,), device=device)
    prep = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": size}

    def epoch(steps=None):
        for k, start in enumerate(range(0, n, batch_size)):
            if steps is not None and k >= steps:
                break
            x = preprocess(images[start:start + batch_size], prep).contiguous(
                memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), labels[start:start + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    try:
        epoch(steps=3)
        torch.cuda.synchronize()
        start = time.perf_counter()
        epoch()
        torch.cuda.synchronize()
        return n / (time.perf_counter() - start)
    except RuntimeError as err:
        return f"fails: {str(err).splitlines()[0][:80]}"


def pipeline(arch, rule_name, size, n, batch_size, precision, root, streamed):
    torch.cuda.reset_peak_memory_stats()
    out = root / f"{arch}-{rule_name}-{precision}-{streamed}"
    loader = LoaderSettings(workers=4, memory_mb=0, shards=str(root / "shards")) if streamed \
        else LoaderSettings()
    table = train(f"{arch}-supervised-{rule_name}-s0", root / f"{arch}_train.zarr",
                  root / f"{arch}_test.zarr", out,
                  TrainSettings(epochs=2, batch_size=batch_size, lr=0.01, precision=precision,
                                label_level="subordinate"), device="cuda", loader=loader)
    return n / float(table["seconds"].iloc[2]), torch.cuda.max_memory_allocated() / 2 ** 30


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the images")
    parser.add_argument("--streamed", action="store_true",
                        help="also ResNet-18 streamed from a shard store by 4 workers")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu_training.py: no CUDA GPU visible to torch "
                 f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing measured")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; images/s of epoch 2\n")
    print("| arch | rule | precision | pipeline img/s | bare img/s | ratio | GPU util % "
          "| peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for arch, (size, n, batch_size) in SETUPS.items():
            n = n // 4 if args.quick else n
            write_set(root / f"{arch}_train.zarr", n, size, 0)
            write_set(root / f"{arch}_test.zarr", batch_size, size, 1)
            for rule_name in ("bp", "fa"):
                for precision in ("fp32", "bf16"):
                    runs = [False, True] if (args.streamed and arch == "resnet18") else [False]
                    for streamed in runs:
                        with Utilisation() as util:
                            ours, peak = pipeline(arch, rule_name, size, n, batch_size,
                                                  precision, root, streamed)
                        base = bare(arch, rule_name, size, n, batch_size, precision == "bf16")
                        ratio = f"{ours / base:.2f}" if isinstance(base, float) else "—"
                        base = f"{base:.0f}" if isinstance(base, float) else base
                        label = f"{precision}{' streamed' if streamed else ''}"
                        print(f"| {arch} {size} px | {rule_name} | {label} | {ours:.0f} | {base} "
                              f"| {ratio} | {util.mean:.0f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
