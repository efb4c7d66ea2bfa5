"""One training run: a named model on a stimulus set → a checkpoint per epoch and metrics.csv.

`train("ventral_cnn-supervised-fa-s0", train.zarr, test.zarr, out_dir)` writes
`epoch_000.pt` (initial weights) … `epoch_{epochs:03d}.pt`, `metrics.csv` and
`alignment.csv`. The `{objective}` part of the name picks the training objective
(pipeline.objectives), the `{rule}` part the learning rule (pipeline.learning).
Every checkpoint holds only tensors and primitives, so `torch.load(path, weights_only=True)`
reads it, and it carries everything needed to continue: both optimizers' state, the
data-order and alignment-noise generators' states and the run's settings, the rule's and the
objective's resolved hyperparameters included. `state_dict` holds the backbone (the
architecture, rebuilt by `build_model(arch, n_classes, input_size, rule)` for extraction) and
`heads` the objective's extra modules (projection head, decoder, memory bank). A rerun with the same model name and settings resumes after the
last intact checkpoint and gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.data.stimuli import stimulus_set_sha256
from pipeline.io import read_zarr, save_torch, write_csv
from pipeline.learning import alignment_table, make_rule
from pipeline.learning.diagnostics import COLUMNS as ALIGNMENT_COLUMNS
from pipeline.models import build_model, parse_model_name
from pipeline.objectives import ObjectiveNet, Split, make_objective
from pipeline.objectives.augment import preprocess
from pipeline.runtime import resolve_device, seed_everything, set_num_threads

log = logging.getLogger(__name__)

LABEL_LEVELS = ("superordinate", "basic", "subordinate")
METRICS = ("epoch", "loss", "train_acc", "test_acc", "test_loss", "seconds")

__all__ = ["LABEL_LEVELS", "METRICS", "preprocess", "read_stimuli", "stimulus_sha256",
           "to_tensor", "train"]


def read_stimuli(path, label_level: str | None = None):
    """Load a stimulus set into memory and check its layout.

    Parameters
    ----------
    path : path-like
        Zarr store with var `image` (stimulus, y, x, channel) uint8 and coord `stimulus_id`.
    label_level : str, optional
        Label coord that must be present too.

    Returns
    -------
    xarray.Dataset
    """
    ds = read_zarr(path).load()
    if "image" not in ds:
        raise ValueError(f"{path}: stimulus set needs data var 'image'; found {list(ds.data_vars)}")
    dims = ("stimulus", "y", "x", "channel")
    if ds["image"].dims != dims or ds["image"].dtype != np.uint8:
        raise ValueError(
            f"{path}: 'image' must be uint8 with dims {dims}; "
            f"found {ds['image'].dtype} with dims {ds['image'].dims}"
        )
    needed = ["stimulus_id"] + ([label_level] if label_level else [])
    missing = [c for c in needed if c not in ds.coords]
    if missing:
        raise ValueError(f"{path}: stimulus set lacks coord(s) {missing}; found {list(ds.coords)}")
    return ds


def stimulus_sha256(ds) -> str:
    """The stimulus set's `sha256` attr, or the digest of its image bytes and stimulus_ids."""
    if "sha256" in ds.attrs:
        return str(ds.attrs["sha256"])
    return stimulus_set_sha256(ds)


def to_tensor(images) -> torch.Tensor:
    """uint8 images (stimulus, y, x, channel) → uint8 tensor (stimulus, channel, y, x)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))


def _channel_stats(images: np.ndarray, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (stimulus, y, x, channel) scaled to [0, 1].

    Exact integer sums over chunks of images, so memory stays small for any number of images
    (a float64 copy of ImageNet at 64 px would take 126 GB).
    """
    n_channels = images.shape[-1]
    s1 = np.zeros(n_channels, dtype=np.int64)
    s2 = np.zeros(n_channels, dtype=np.int64)
    for start in range(0, len(images), chunk):
        pixels = images[start:start + chunk].reshape(-1, n_channels).astype(np.uint16)
        s1 += pixels.sum(axis=0, dtype=np.int64)
        s2 += np.square(pixels).sum(axis=0, dtype=np.int64)     # 255² fits uint16
    n = images.size // n_channels
    mean = [int(a) / n / 255 for a in s1]
    # n·Σx² − (Σx)² in Python ints: exact, no cancellation
    std = [np.sqrt((n * int(b) - int(a) ** 2) / n ** 2) / 255 for a, b in zip(s1, s2)]
    return mean, [float(v) if v > 0 else 1.0 for v in std]


def _labels(ds, level: str, classes: list[str], path) -> torch.Tensor:
    names = ds[level].values.astype(str)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise ValueError(
            f"{path}: {len(unknown)} {level} class(es) absent from the training set "
            f"(first: {unknown[0]!r})"
        )
    return torch.tensor([index[n] for n in names], dtype=torch.long)


def _train_epoch(net, objective, rule, optimizers, data: Split, generator, noise, bar):
    """One pass of the rule's steps over shuffled batches, the objective's loss in each;
    returns the running mean loss and task accuracy. `noise` draws the alignment losses'
    input noise, `generator` the data order and the objective's random views."""
    net.train()
    loss_sum, accuracy_sum = 0.0, 0.0
    order = torch.randperm(len(data.images), generator=generator)
    for start in range(0, len(data.images), data.batch_size):
        idx = order[start:start + data.batch_size]
        loss_fn = partial(objective.loss, index=idx, preprocessing=data.preprocessing,
                          generator=generator)
        accuracy, loss = rule.step(net, data.images[idx.to(data.images.device)],
                                   data.labels[idx.to(data.labels.device)], optimizers, noise,
                                   loss_fn=loss_fn)
        loss_sum += loss.item() * len(idx)
        accuracy_sum += accuracy.item() * len(idx)
        bar.update(1)
    return loss_sum / len(data.images), accuracy_sum / len(data.images)


def _checkpoint_path(out_dir: Path, epoch: int) -> Path:
    return out_dir / f"epoch_{epoch:03d}.pt"


def _snapshot(value):
    """A copy of a nested dict/list of tensors on the CPU that later training steps cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value


def _checkpoint(net, optimizers, generators, *, header, epoch, metrics, alignment) -> dict:
    """Everything a resumed run needs, copied off the live model and optimizers."""
    task, align = optimizers
    return _snapshot({**header, "state_dict": net.backbone.state_dict(),
                      "heads": net.heads.state_dict(), "epoch": epoch, "metrics": metrics,
                      "alignment": alignment, "optimizer": task.state_dict(),
                      "alignment_optimizer": None if align is None else align.state_dict(),
                      "generator": generators[0].get_state(),
                      "noise_generator": generators[1].get_state()})


class _CheckpointWriter:
    """Writes checkpoints atomically in a background thread while training goes on.

    At most one write is in flight (memory: one extra copy of the state), and leaving the
    context waits for the last one, so every checkpoint exists when `train` returns and a
    failed write raises in the training process.
    """

    def __enter__(self):
        self._pool = ThreadPoolExecutor(1)
        self._pending = None
        return self

    def save(self, path, checkpoint: dict) -> None:
        self.wait()
        self._pending = self._pool.submit(self._write, path, checkpoint)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    @staticmethod
    def _write(path, checkpoint):
        save_torch(checkpoint, path)

    def __exit__(self, *exc):
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def _resumable(out_dir: Path, header: dict, epochs: int) -> list[dict]:
    """Intact checkpoints epoch_000, epoch_001, … written for the same model and settings.

    Stops at the first missing, unreadable or mismatching file (or after `epochs`).
    """
    found = []
    for epoch in range(epochs + 1):
        path = _checkpoint_path(out_dir, epoch)
        if not path.exists():
            break
        try:
            # mapped: only the header is read here, and only the last checkpoint's tensors later
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:  # truncated or corrupt file: retrain from the one before
            log.warning("%s unreadable (%s); training resumes before it", path, err)
            break
        same = all(checkpoint.get(k) == v for k, v in header.items())
        if not same or checkpoint.get("epoch") != epoch:
            log.info("%s was written with other settings; training starts afresh", path)
            return []
        found.append(checkpoint)
    return found


class _LossAsLogits(nn.Module):
    """One row of logits [0, L], L the objective's loss on a fixed batch.

    Their cross-entropy against class 0 is softplus(L), whose gradient σ(L)·∇L is the
    objective's gradient times one positive number, so every layer receives the objective's δ
    up to scale and `alignment_table` (which differentiates a cross-entropy) measures the
    objective's gradient angles, which are scale-free.
    """

    def __init__(self, net: ObjectiveNet, loss_of):
        super().__init__()
        self.net = net
        self.loss_of = loss_of

    def forward(self, _x):
        loss = self.loss_of(self.net)
        return torch.stack([torch.zeros_like(loss), loss]).view(1, 2)


def _alignment_rows(net, objective, probe, epoch):
    """alignment.csv rows of one epoch (pipeline.learning.alignment_table on a fixed batch).

    Supervised nets are measured on the backbone's cross-entropy; other objectives through
    `_LossAsLogits` with views from a fixed seed, their head layers named `heads.<module>`.
    """
    index, images, labels, preprocessing = probe
    if objective.name == "supervised":
        rows = alignment_table(net.backbone, preprocess(images, preprocessing), labels)
    else:
        def loss_of(module):
            generator = torch.Generator().manual_seed(0)
            return objective.loss(module, images, labels, index=index,
                                  preprocessing=preprocessing, generator=generator)[1]

        target = torch.zeros(1, dtype=torch.long, device=images.device)
        rows = alignment_table(_LossAsLogits(net, loss_of), images, target)
        for row in rows:
            row["layer"] = row["layer"].removeprefix("net.").removeprefix("backbone.")
    return [{"epoch": epoch, **row} for row in rows]


def train(model_name: str, train_path, test_path, out_dir, *, epochs: int = 5,
          batch_size: int = 128, lr: float = 0.01, momentum: float = 0.9,
          weight_decay: float = 5e-4, lr_milestones=(), lr_gamma: float = 0.1,
          label_level: str = "subordinate",
          input_size: int | None = None, rule_settings: dict | None = None,
          objective_settings: dict | None = None, device: str = "auto",
          num_threads: int | None = None) -> pd.DataFrame:
    """Train a named model on its objective under its learning rule.

    Parameters
    ----------
    model_name : str
        `{arch}-{objective}-{rule}-s{seed}`; the seed fixes initialisation (W, the heads, then
        B), data order, augmentations and the alignment losses' input noise.
    train_path, test_path : path-like
        Stimulus-set Zarr stores (stimulus, y, x, channel) uint8 with label coords.
    out_dir : path-like
        Receives `epoch_{e:03d}.pt` for e = 0 … epochs, `metrics.csv` and `alignment.csv`.
    epochs, batch_size, lr, momentum, weight_decay : numbers
        Settings of the task optimizer (SGD on W, biases and BatchNorm; for `hebb` on the
        linear layers only).
    lr_milestones, lr_gamma : sequence of int, float
        Step schedule: the task learning rate of epoch e is lr · lr_gamma^k, k the number of
        milestones below e (PyTorch's MultiStepLR stepped per epoch). Set per epoch from the
        epoch number, so a resumed run follows the same schedule.
    label_level : str
        Label coord used as classes ("superordinate", "basic" or "subordinate"); classes are
        the sorted unique names in the training set. The supervised objective classifies them;
        instance recognition's kNN evaluation reads them.
    input_size : int, optional
        Height = width the network sees; None = the stimuli's own size. Other sizes are
        reached by bilinear, antialiased resizing of every batch (`preprocess`), and the
        checkpoint's `preprocessing` makes extraction resize the same way.
    rule_settings : dict, optional
        Hyperparameters of the rule, overriding `pipeline.learning.RULE_DEFAULTS[rule]` key by
        key; None uses the defaults. Unknown keys raise ValueError. The resolved dict is part
        of the checkpoint settings, so changing it retrains from scratch.
    objective_settings : dict, optional
        Hyperparameters of the objective over its `DEFAULTS` (pipeline.objectives), likewise.
    device : str
        "auto", "cpu" or "cuda".
    num_threads : int, optional
        Pin torch and BLAS threads.

    Returns
    -------
    pandas.DataFrame
        Columns epoch, loss, train_acc, test_acc, test_loss, seconds; one row per epoch, row 0
        the untrained model (loss and train_acc evaluated on the training set). Later rows
        hold the running mean loss and task accuracy over the epoch's training batches.
        Accuracies are the objective's task accuracy (class, rotation, contrastive top-1;
        instance recognition: own-entry top-1 in training, weighted kNN class top-1 on the
        test set) and NaN where it has none (autoencoder); test_loss is the objective's loss
        on the test set in eval mode (NaN for instance recognition).

    Notes
    -----
    `alignment.csv` has columns epoch, layer, weight_angle, norm_ratio, gradient_angle: one
    row per epoch 0 … epochs and weight layer (module path, e.g. `area1.0`, `readout`; head
    layers `heads.<name>.<i>`), measured by `pipeline.learning.alignment_table` on a fixed
    batch (`batch_size` evenly spaced training images, unflipped) in eval mode, with the
    objective's loss. Angles are in degrees, between vec(W) and vec(B) and between the
    downward signals Bᵀδ and Wᵀδ. Layers that train by exact gradients (all of `bp`, the
    linear layers of `hebb`) show 0°, 1, 0°; Hebbian conv layers have no B and show NaN, as
    does gradient_angle wherever no gradient reaches a layer.
    """
    spec = parse_model_name(model_name)
    try:
        rule = make_rule(spec.rule, rule_settings, weight_decay=weight_decay)
        objective = make_objective(spec.objective, objective_settings)
        objective.check_rule(spec.rule)
    except ValueError as err:
        raise ValueError(f"model {model_name!r}: {err}") from err
    if label_level not in LABEL_LEVELS:
        raise ValueError(f"label_level must be one of {', '.join(LABEL_LEVELS)}; got {label_level!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int; got {epochs!r}")
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                   or input_size < 1):
        raise ValueError(f"input_size must be a positive int or None; got {input_size!r}")
    if num_threads is not None:
        set_num_threads(num_threads)
    device = resolve_device(device)
    out_dir = Path(out_dir)

    train_ds = read_stimuli(train_path, label_level)
    test_ds = read_stimuli(test_path, label_level)
    size_y, size_x = train_ds.sizes["y"], train_ds.sizes["x"]
    if size_y != size_x:
        raise ValueError(f"{train_path}: images must be square; found {size_y}×{size_x}")
    if (test_ds.sizes["y"], test_ds.sizes["x"]) != (size_y, size_x):
        raise ValueError(
            f"{test_path}: images are {test_ds.sizes['y']}×{test_ds.sizes['x']}, "
            f"the training set {train_path} has {size_y}×{size_x}"
        )
    size = int(size_y) if input_size is None else input_size
    classes = sorted(set(train_ds[label_level].values.astype(str).tolist()))
    mean, std = _channel_stats(train_ds["image"].values)
    preprocessing = {"mean": mean, "std": std, "input_size": size}
    log.info("%s: %d train / %d test stimuli, %d %s classes, %d×%d images seen at %d×%d, "
             "channel mean %s std %s", model_name, train_ds.sizes["stimulus"],
             test_ds.sizes["stimulus"], len(classes), label_level, size_y, size_x, size, size,
             np.round(mean, 3).tolist(), np.round(std, 3).tolist())

    readout = objective.readout_size(len(classes))
    header = {
        "model_name": model_name, "arch": spec.arch, "objective": spec.objective,
        "rule": spec.rule, "n_classes": readout, "input_size": size, "classes": classes,
        "label_level": label_level, "preprocessing": preprocessing,
        "settings": {"batch_size": batch_size, "lr": lr, "momentum": momentum,
                     "weight_decay": weight_decay, "rule_settings": rule.settings,
                     "objective_settings": objective.settings,
                     # only when set, so checkpoints of constant-rate runs stay valid
                     **({"lr_schedule": {"milestones": sorted(lr_milestones), "gamma": lr_gamma}}
                        if lr_milestones else {}),
                     "train_sha256": stimulus_sha256(train_ds),
                     "test_sha256": stimulus_sha256(test_ds)},
    }
    images, labels = to_tensor(train_ds["image"].values), _labels(train_ds, label_level, classes,
                                                                  train_path)
    test_images = to_tensor(test_ds["image"].values)
    test_labels = _labels(test_ds, label_level, classes, test_path)
    if device.type == "cuda":
        images, labels = images.to(device), labels.to(device)
        test_images, test_labels = test_images.to(device), test_labels.to(device)
    data = Split(images, labels, preprocessing, batch_size, is_train=True)
    test = Split(test_images, test_labels, preprocessing, batch_size, is_train=False)

    seed_everything(spec.seed)
    backbone = build_model(spec.arch, readout, size)
    heads = objective.heads(backbone, input_size=size, n_train=len(images))
    net = rule.convert(ObjectiveNet(backbone, heads)).to(device)
    optimizers = rule.optimizers(net, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(spec.seed)
    noise = torch.Generator(device=device).manual_seed(spec.seed)
    # Fixed diagnostic batch for alignment.csv: evenly spaced training images, so every
    # class is present even when the stored order is sorted by class.
    probe_idx = torch.arange(0, len(images), max(1, len(images) // batch_size))[:batch_size]
    probe = (probe_idx, images[probe_idx.to(images.device)].to(device),
             labels[probe_idx.to(labels.device)].to(device), preprocessing)

    done = _resumable(out_dir, header, epochs)
    if done:
        last = done[-1]
        net.backbone.load_state_dict(last["state_dict"])
        net.heads.load_state_dict(last["heads"])
        optimizers[0].load_state_dict(last["optimizer"])
        if optimizers[1] is not None:
            optimizers[1].load_state_dict(last["alignment_optimizer"])
        generator.set_state(last["generator"])
        noise.set_state(last["noise_generator"])
        log.info("%s: resuming from %s", model_name, _checkpoint_path(out_dir, last["epoch"]))
    rows = [{"epoch": c["epoch"], **c["metrics"]} for c in done]
    alignment = [row for c in done for row in c["alignment"]]

    if not done:
        start = time.perf_counter()
        loss, train_acc = objective.evaluate(net, data, data)
        test_loss, test_acc = objective.evaluate(net, test, data)
        metrics = {"loss": loss, "train_acc": train_acc, "test_acc": test_acc,
                   "test_loss": test_loss, "seconds": time.perf_counter() - start}
        epoch_rows = _alignment_rows(net, objective, probe, 0)
        with _CheckpointWriter() as writer:
            writer.save(_checkpoint_path(out_dir, 0),
                        _checkpoint(net, optimizers, (generator, noise), header=header, epoch=0,
                                    metrics=metrics, alignment=epoch_rows))
        rows.append({"epoch": 0, **metrics})
        alignment += epoch_rows

    first = rows[-1]["epoch"] + 1
    n_batches = -(-len(images) // batch_size)
    with (_CheckpointWriter() as writer, logging_redirect_tqdm(),
          tqdm(total=(epochs - first + 1) * n_batches, unit="batch", desc=f"train {model_name}",
               disable=None) as bar):
        for epoch in range(first, epochs + 1):
            start = time.perf_counter()
            for group in optimizers[0].param_groups:
                group["lr"] = lr * lr_gamma ** sum(m < epoch for m in lr_milestones)
            loss, train_acc = _train_epoch(net, objective, rule, optimizers, data, generator,
                                           noise, bar)
            test_loss, test_acc = objective.evaluate(net, test, data)
            metrics = {"loss": loss, "train_acc": train_acc, "test_acc": test_acc,
                       "test_loss": test_loss, "seconds": time.perf_counter() - start}
            epoch_rows = _alignment_rows(net, objective, probe, epoch)
            # written while the next epoch trains
            writer.save(_checkpoint_path(out_dir, epoch),
                        _checkpoint(net, optimizers, (generator, noise), header=header,
                                    epoch=epoch, metrics=metrics, alignment=epoch_rows))
            rows.append({"epoch": epoch, **metrics})
            alignment += epoch_rows
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{test_acc:.3f}")
            log.info("%s epoch %d: loss %.4f train_acc %.3f test_acc %.3f test_loss %.4f "
                     "(%.1f s)", model_name, epoch, loss, train_acc, test_acc, test_loss,
                     metrics["seconds"])

    table = pd.DataFrame(rows, columns=list(METRICS))
    write_csv(table, out_dir / "metrics.csv")
    write_csv(pd.DataFrame(alignment, columns=list(ALIGNMENT_COLUMNS)), out_dir / "alignment.csv")
    return table
