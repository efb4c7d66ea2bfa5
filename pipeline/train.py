"""One training run: a named model on a stimulus set → checkpoints and metrics.csv.

`train("ventral_cnn-supervised-fa-s0", train.zarr, test.zarr, out_dir, TrainSettings(epochs=5))`
writes `epoch_000.pt` (initial weights) … `epoch_{epochs:03d}.pt` (pipeline.checkpoints),
`metrics.csv` and `alignment.csv`; with `checkpoint_every=k` only epoch 0, every k-th epoch and
the last get a checkpoint (`pipeline.checkpoints.checkpoint_epochs`), while metrics.csv and
alignment.csv keep a row for every epoch. The `{objective}` part of the name picks the training
objective (pipeline.objectives), the `{rule}` part the learning rule (pipeline.learning), and
`TrainSettings` holds the rest: the config's `models.train` block and the rule's and
objective's hyperparameters. Every epoch, the untrained epoch 0 included, runs through one step
(`_epoch`). A rerun with the same model name and settings resumes after the last intact
checkpoint (the epochs trained after it and not checkpointed are trained again) and gives the
same weights, checkpoint bytes and metrics as an uninterrupted run.

A folder holds one run. `run.json` (pipeline.checkpoints) records its settings, its epochs and
whether it finished; it says complete: false from the start of training until every checkpoint
is written. Rerunning in a folder trained with other settings (another lr, fewer epochs, …)
starts it clean: the checkpoints the new settings would not reproduce are removed, with a
warning naming the folder and the differing settings, and those they would are resumed from.
Wall-clock seconds go to run.json and metrics.csv, never into a checkpoint, so two clean runs
write byte-identical checkpoints.

Training stops with FloatingPointError, naming the model, epoch and batch, at the first
non-finite training loss (checked every step; the loss is read every step anyway) or weight
(checked once per epoch, before the epoch's checkpoint is written).

Data: batches come through `torch.utils.data` (pipeline.data.loader): a set larger than
`LoaderSettings.memory_mb` is streamed from a shard store by worker processes instead of
being held in memory; the batches, and so the weights, do not depend on that choice or on the
number of workers. On a GPU the net and batches are channels-last, copies are non-blocking,
`precision` picks bf16 autocast where the rule allows it (pipeline.runtime.BF16_RULES), and
`deterministic` trades speed for bit-reproducible kernels.

Preemption: SIGTERM or SIGUSR1 stops the run after the current batch; it writes a mid-epoch
checkpoint to the run's resume folder and exits with status 75 (pipeline.checkpoints:
`Preempted`). The rerun continues from it and ends with the weights of an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields
from functools import partial
from numbers import Real
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline import checkpoints
from pipeline.data.loader import (EpochBatches, LoaderSettings, StreamedSplit, batch_loader, images_per_read,
                                  read_images, stream_images)
from pipeline.data.stimuli import (check_label_level, class_indices, class_names, read_stimuli,
                                   stimulus_sha256, to_tensor)
from pipeline.io import write_csv
from pipeline.learning import Rule, make_rule
from pipeline.learning.diagnostics import COLUMNS as ALIGNMENT_COLUMNS
from pipeline.learning.rules import TASK_OPTIMIZERS
from pipeline.models import ModelSpec, build_model, parse_model_name
from pipeline.objectives import Objective, ObjectiveNet, Split, make_objective
from pipeline.runtime import (PRECISIONS, StopRequest, autocast, resolve_device,
                              resolve_precision, seed_everything, set_deterministic,
                              set_num_threads)

log = logging.getLogger(__name__)

METRICS = ("epoch", "loss", "train_acc", "test_acc", "test_loss", "seconds")

__all__ = ["METRICS", "TrainSettings", "train"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainSettings:
    """The settings of one training run, checked on construction (errors name the field).

    The config's `models.train` block with the model's override (`from_dict`), plus the
    hyperparameters of its rule and objective; workflow/schemas/config.schema.yaml documents
    the same keys.

    Attributes
    ----------
    epochs : int
        Training epochs (≥ 0); a checkpoint is written for epochs 0 … epochs as
        `checkpoint_every` says.
    checkpoint_every : int
        Checkpoint period k ≥ 1: checkpoints of epoch 0, every k-th epoch and the last epoch
        (epochs=5, k=2: 0, 2, 4, 5); 1 writes every epoch. Part of the checkpoint settings
        when k > 1, so changing it retrains from scratch.
    batch_size, lr, momentum, weight_decay : numbers
        Settings of the task optimizer (on W, biases and BatchNorm; for `hebb` on the
        linear layers only).
    optimizer : {"sgd", "nesterov", "adam"}
        The task optimizer (`pipeline.learning.rules.TASK_OPTIMIZERS`): SGD with `momentum`, SGD
        with Nesterov momentum, or Adam (`momentum` unused); `weight_decay` is L2 in all
        three. Spec_ch5-6 B.2's SGDM and Adam classes are bp under nesterov and adam.
    data_seed : int or None
        Seed of the data order and the objective's random views; None = the model name's
        seed, which also fixes initialisation (spec_ch5-6 B.3 varies the two apart).
    lr_milestones, lr_gamma : tuple of int, float
        Step schedule: the task learning rate of epoch e is lr · lr_gamma^k, k the number of
        milestones below e (PyTorch's MultiStepLR stepped per epoch). Set per epoch from the
        epoch number, so a resumed run follows the same schedule.
    label_level : str
        Label coord used as classes ("superordinate", "basic" or "subordinate"); classes are
        the sorted unique names in the training set. The supervised objective classifies them;
        instance recognition's kNN evaluation reads them.
    input_size : int or None
        Height = width the network sees; None = the stimuli's own size. Other sizes are
        reached by bilinear, antialiased resizing of every batch (`preprocess`), and the
        checkpoint's `preprocessing` makes extraction resize the same way.
    rule_settings : dict
        Hyperparameters of the rule, overriding `pipeline.learning.RULE_DEFAULTS[rule]` key by
        key. Unknown keys raise ValueError when the run starts. The resolved dict is part of
        the checkpoint settings, so changing it retrains from scratch.
    objective_settings : dict
        Hyperparameters of the objective over its `DEFAULTS` (pipeline.objectives), likewise.
    precision : str
        "auto" (bf16 autocast on a CUDA GPU, fp32 elsewhere), "fp32" or "bf16"; rules outside
        `pipeline.runtime.BF16_RULES` train in fp32 whatever is asked. A bf16 run's header
        says so, so it never resumes an fp32 run or the reverse.
    """

    epochs: int = 5
    checkpoint_every: int = 1
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    data_seed: int | None = None
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    label_level: str = "subordinate"
    input_size: int | None = None
    rule_settings: dict = field(default_factory=dict)
    objective_settings: dict = field(default_factory=dict)
    precision: str = "auto"

    @classmethod
    def from_dict(cls, block: dict) -> TrainSettings:
        """Settings from a config block (JSON object); unknown keys raise ValueError."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(block) - set(known))
        if unknown:
            raise ValueError(f"train settings have unknown key(s) {unknown}; known keys: "
                             f"{', '.join(known)}")
        return cls(**block)

    def __post_init__(self):
        def need(name, ok, expected):
            if not ok:
                raise ValueError(f"{name} must be {expected}; got {getattr(self, name)!r}")

        need("epochs", _is_int(self.epochs) and self.epochs >= 0, "a non-negative int")
        need("checkpoint_every", _is_int(self.checkpoint_every) and self.checkpoint_every >= 1,
             "a positive int")
        need("batch_size", _is_int(self.batch_size) and self.batch_size >= 1, "a positive int")
        need("lr", _is_number(self.lr) and self.lr > 0, "a number > 0")
        need("momentum", _is_number(self.momentum) and 0 <= self.momentum <= 1,
             "a number in [0, 1]")
        need("weight_decay", _is_number(self.weight_decay) and self.weight_decay >= 0,
             "a number ≥ 0")
        need("optimizer", self.optimizer in TASK_OPTIMIZERS,
             f"one of {', '.join(TASK_OPTIMIZERS)}")
        need("data_seed", self.data_seed is None
             or (_is_int(self.data_seed) and self.data_seed >= 0), "a non-negative int or None")
        need("lr_milestones", isinstance(self.lr_milestones, (list, tuple))
             and all(_is_int(m) and m >= 1 for m in self.lr_milestones)
             and len(set(self.lr_milestones)) == len(self.lr_milestones),
             "a list of distinct positive ints")
        need("lr_gamma", _is_number(self.lr_gamma) and 0 < self.lr_gamma <= 1,
             "a number in (0, 1]")
        check_label_level(self.label_level)
        need("input_size", self.input_size is None
             or (_is_int(self.input_size) and self.input_size >= 1), "a positive int or None")
        need("precision", self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}")
        for name in ("rule_settings", "objective_settings"):
            value = getattr(self, name)
            need(name, value is None or isinstance(value, dict), "a dict or None")
            object.__setattr__(self, name, dict(value or {}))
        object.__setattr__(self, "lr_milestones", tuple(self.lr_milestones))


def _channel_stats(images, chunk: int | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (stimulus, y, x, channel) scaled to [0, 1].

    Exact integer sums over chunks of images (`chunk` images, by default as many as
    `loader.READ_BYTES` holds), so memory stays small and flat for any number of images (a
    float64 copy of ImageNet at 64 px would take 126 GB); `images` may be a lazy array (a
    Zarr-backed DataArray), read one chunk at a time.
    """
    chunk = images_per_read(images) if chunk is None else chunk
    n_channels = images.shape[-1]
    s1 = np.zeros(n_channels, dtype=np.int64)
    s2 = np.zeros(n_channels, dtype=np.int64)
    for start in range(0, len(images), chunk):
        pixels = read_images(images, start, start + chunk).reshape(-1, n_channels).astype(np.uint16)
        s1 += pixels.sum(axis=0, dtype=np.int64)
        s2 += np.square(pixels).sum(axis=0, dtype=np.int64)     # 255² fits uint16
    n = images.size // n_channels
    mean = [int(a) / n / 255 for a in s1]
    # n·Σx² − (Σx)² in Python ints: exact, no cancellation
    std = [np.sqrt((n * int(b) - int(a) ** 2) / n ** 2) / 255 for a, b in zip(s1, s2)]
    return mean, [float(v) if v > 0 else 1.0 for v in std]


@dataclass
class _Run:
    """A run built and seeded, ready for its first epoch.

    Attributes
    ----------
    name : str
        The model name.
    settings : TrainSettings
    rule : pipeline.learning.Rule
    objective : pipeline.objectives.Objective
    net : ObjectiveNet
        Backbone and heads, converted by the rule, on the training device.
    optimizers : tuple
        (task optimizer, alignment optimizer or None).
    generators : tuple of torch.Generator
        (data order and the objective's random views on the CPU, alignment-loss input noise
        on the device).
    data, test : Split or StreamedSplit
        Training and test stimuli, in memory on the device or streamed (pipeline.data.loader).
    probe : tuple
        (index, images, labels) of the fixed batch alignment.csv is measured on.
    header : dict
        The checkpoints' identity and settings (`pipeline.checkpoints`).
    device : torch.device
    dtype : torch.dtype or None
        bf16 when the forward pass runs under autocast, None for fp32.
    sampler : EpochBatches
        The training batches' order; `loader` reads them.
    loader : torch.utils.data.DataLoader
    stop : StopRequest
        Set by SIGTERM/SIGUSR1; checked after every batch and epoch.
    epoch : int
        The epoch being trained (for error messages).
    """

    name: str
    settings: TrainSettings
    rule: Rule
    objective: Objective
    net: ObjectiveNet
    optimizers: tuple
    generators: tuple
    data: Split
    test: Split
    probe: tuple
    header: dict
    device: torch.device
    dtype: torch.dtype | None
    sampler: EpochBatches
    loader: object
    stop: StopRequest
    epoch: int = 0


def _split(ds, path, labels, preprocessing, settings: TrainSettings, is_train: bool, device,
           loader: LoaderSettings):
    """One split: held in memory (on the device) when its images fit `loader.memory_mb`,
    else streamed from its shard store."""
    megabytes = ds["image"].size / 2 ** 20
    if megabytes > loader.memory_mb:
        log.info("%s: %.0f MB of images > models.train.loader.memory_mb = %g: streamed by %d "
                 "worker(s)", path, megabytes, loader.memory_mb, loader.workers)
        return StreamedSplit(stream_images(ds, path, loader.shards), labels, preprocessing,
                             settings.batch_size, is_train, device, loader)
    images = to_tensor(ds["image"].values)
    if device.type == "cuda":
        images, labels = images.to(device), labels.to(device)
    return Split(images, labels, preprocessing, settings.batch_size, is_train=is_train)


def _read_splits(name: str, settings: TrainSettings, train_path, test_path, device,
                 loader: LoaderSettings) -> tuple[Split, Split, dict]:
    """The training and test splits (`_split`), and what the header records of them:
    classes, preprocessing (channel mean and std, input size) and the sets' sha256."""
    level = settings.label_level
    train_ds = read_stimuli(train_path, level, load=False)
    test_ds = read_stimuli(test_path, level, load=False)
    size_y, size_x = train_ds.sizes["y"], train_ds.sizes["x"]
    if size_y != size_x:
        raise ValueError(f"{train_path}: images must be square; found {size_y}×{size_x}")
    if (test_ds.sizes["y"], test_ds.sizes["x"]) != (size_y, size_x):
        raise ValueError(
            f"{test_path}: images are {test_ds.sizes['y']}×{test_ds.sizes['x']}, "
            f"the training set {train_path} has {size_y}×{size_x}"
        )
    size = int(size_y) if settings.input_size is None else settings.input_size
    classes = class_names(train_ds, level)
    mean, std = _channel_stats(train_ds["image"])
    preprocessing = {"mean": mean, "std": std, "input_size": size}
    log.info("%s: %d train / %d test stimuli, %d %s classes, %d×%d images seen at %d×%d, "
             "channel mean %s std %s", name, train_ds.sizes["stimulus"],
             test_ds.sizes["stimulus"], len(classes), level, size_y, size_x, size, size,
             np.round(mean, 3).tolist(), np.round(std, 3).tolist())
    labels = class_indices(train_ds, level, classes, train_path)
    test_labels = class_indices(test_ds, level, classes, test_path)
    described = {"classes": classes, "preprocessing": preprocessing,
                 "train_sha256": stimulus_sha256(train_ds),
                 "test_sha256": stimulus_sha256(test_ds)}
    return (_split(train_ds, train_path, labels, preprocessing, settings, True, device, loader),
            _split(test_ds, test_path, test_labels, preprocessing, settings, False, device,
                   loader),
            described)


def _header(name: str, spec: ModelSpec, settings: TrainSettings, rule: Rule,
            objective: Objective, readout: int, described: dict, dtype=None) -> dict:
    """The checkpoints' identity: a resumed run continues only from an identical header."""
    s = settings
    preprocessing = described["preprocessing"]
    return {
        "model_name": name, "arch": spec.arch, "objective": spec.objective,
        "rule": spec.rule, "n_classes": readout, "input_size": preprocessing["input_size"],
        "classes": described["classes"], "label_level": s.label_level,
        "preprocessing": preprocessing,
        "settings": {"batch_size": s.batch_size, "lr": s.lr, "momentum": s.momentum,
                     "weight_decay": s.weight_decay, "rule_settings": rule.settings,
                     "objective_settings": objective.settings,
                     # only when set, so checkpoints of constant-rate runs stay valid
                     **({"optimizer": s.optimizer} if s.optimizer != "sgd" else {}),
                     **({"checkpoint_every": s.checkpoint_every}
                        if s.checkpoint_every != 1 else {}),
                     **({"data_seed": s.data_seed} if s.data_seed is not None else {}),
                     **({"lr_schedule": {"milestones": sorted(s.lr_milestones),
                                         "gamma": s.lr_gamma}}
                        if s.lr_milestones else {}),
                     # only under autocast, so fp32 checkpoints stay valid
                     **({"precision": "bf16"} if dtype == torch.bfloat16 else {}),
                     "train_sha256": described["train_sha256"],
                     "test_sha256": described["test_sha256"]},
    }


def _prepare(name: str, spec: ModelSpec, settings: TrainSettings, rule: Rule,
             objective: Objective, train_path, test_path, device, loader: LoaderSettings,
             deterministic: bool) -> _Run:
    """Read the stimuli, then seed and build the net, its optimizers, generators and loader."""
    data, test, described = _read_splits(name, settings, train_path, test_path, device, loader)
    readout = objective.readout_size(len(described["classes"]))
    size = described["preprocessing"]["input_size"]
    dtype = resolve_precision(settings.precision, device, spec.rule)
    seed_everything(spec.seed)
    set_deterministic(deterministic, device)
    backbone = build_model(spec.arch, readout, size)
    heads = objective.heads(backbone, input_size=size, n_train=len(data.images))
    net = rule.convert(ObjectiveNet(backbone, heads)).to(device)
    if device.type == "cuda":        # NHWC convolutions are cuDNN's fast path (tensor cores)
        net = net.to(memory_format=torch.channels_last)
    optimizers = rule.optimizers(net, lr=settings.lr, momentum=settings.momentum,
                                 weight_decay=settings.weight_decay)
    data_seed = spec.seed if settings.data_seed is None else settings.data_seed
    generators = (torch.Generator().manual_seed(data_seed),
                  torch.Generator(device=device).manual_seed(spec.seed))
    # Fixed diagnostic batch for alignment.csv: evenly spaced training images, so every
    # class is present even when the stored order is sorted by class.
    images, labels = data.images, data.labels
    probe_idx = torch.arange(0, len(images), max(1, len(images) // settings.batch_size)
                             )[:settings.batch_size]
    probe = (probe_idx, images[probe_idx.to(images.device)].to(device),
             labels[probe_idx.to(labels.device)].to(device))
    sampler = EpochBatches(settings.batch_size)
    return _Run(name, settings, rule, objective, net, optimizers, generators, data, test,
                probe, _header(name, spec, settings, rule, objective, readout, described, dtype),
                device, dtype, sampler, batch_loader(images, labels, sampler, loader, device),
                StopRequest())


class _Stopped(Exception):
    """A stop signal honoured after a batch; `position` is where the epoch stands."""

    def __init__(self, position: dict):
        super().__init__(f"stopped after batch {position['batch']} of epoch {position['epoch']}")
        self.position = position


def _autocast_loss(loss_fn, run: _Run):
    """`loss_fn` with its forward pass under the run's autocast (none in fp32); the loss comes
    back in fp32, and the backward pass runs outside autocast, as PyTorch prescribes."""
    if run.dtype is None:
        return loss_fn

    def loss(*args, **kwargs):
        with autocast(run.device, run.dtype):
            output, value = loss_fn(*args, **kwargs)
        return output, value.float()
    return loss


def _order(run: _Run) -> torch.Tensor:
    """The next epoch's order of the training images, drawn from the data-order generator."""
    return torch.randperm(len(run.data.images), generator=run.generators[0])


def _train_epoch(run: _Run, bar, position: dict | None = None) -> tuple[float, float]:
    """One pass of the rule's steps over shuffled batches, the objective's loss in each;
    returns the running mean loss and task accuracy. The data-order generator also draws the
    objective's random views, the noise generator the alignment losses' input noise.

    `position` (a mid-epoch checkpoint's: the epoch's order, batches done, running sums)
    continues an interrupted epoch. A stop signal seen after a batch that is not the epoch's
    last raises `_Stopped` with the position reached.
    """
    net, data = run.net, run.data
    generator, noise = run.generators
    net.train()
    if position is None:
        order = _order(run)
        start, loss_sum, accuracy_sum = 0, 0.0, 0.0
    else:
        order, start = position["order"], int(position["batch"])
        loss_sum, accuracy_sum = float(position["loss_sum"]), float(position["accuracy_sum"])
    n_batches = -(-len(order) // data.batch_size)
    run.sampler.set_epoch(order, start)
    for batch, (idx, images, labels) in enumerate(run.loader, start=start + 1):
        images = images.to(run.device, non_blocking=True)
        labels = labels.to(run.device, non_blocking=True)
        if run.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        loss_fn = _autocast_loss(partial(run.objective.loss, index=idx,
                                         preprocessing=data.preprocessing, generator=generator),
                                 run)
        accuracy, loss = run.rule.step(net, images, labels, run.optimizers, noise,
                                       loss_fn=loss_fn)
        loss = loss.item()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"model {run.name!r}, epoch {run.epoch}, batch {batch} of {n_batches}: the "
                f"training loss is {loss} "
                f"(lr {run.optimizers[0].param_groups[0]['lr']}); training stopped before "
                f"this epoch's checkpoint. Lower models.train.lr or the rule's settings.")
        loss_sum += loss * len(idx)
        accuracy_sum += accuracy.item() * len(idx)
        bar.update(1)
        log.debug("%s epoch %d: batch %d of %d done", run.name, run.epoch, batch, n_batches)
        if run.stop.requested and batch < n_batches:
            raise _Stopped({"epoch": run.epoch, "batch": batch, "order": order,
                            "loss_sum": loss_sum, "accuracy_sum": accuracy_sum})
    return loss_sum / len(order), accuracy_sum / len(order)


def _check_finite(run: _Run, epoch: int) -> None:
    """Raise FloatingPointError naming the first parameter or buffer of the net (backbone and
    heads) holding NaN or inf after an epoch of training. One device sync for the whole net."""
    tensors = [(name, t) for name, t in run.net.state_dict().items() if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors]).cpu()
    if not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0])][0]
        raise FloatingPointError(
            f"model {run.name!r}, epoch {epoch}: weights {name!r} hold NaN or inf after "
            f"training (lr {run.settings.lr}); training stopped before this epoch's "
            f"checkpoint. Lower models.train.lr or the rule's settings.")


def _epoch(run: _Run, epoch: int, bar, position: dict | None = None
           ) -> tuple[dict, list[dict]]:
    """One epoch's metrics.csv row and alignment.csv rows.

    Epoch 0 evaluates the untrained net (loss and train_acc on the training set in eval
    mode); a later epoch sets its scheduled learning rate and trains one pass (loss and
    train_acc the running means over its batches), continuing from `position` when given,
    then runs the rule's `end_epoch` (hebb refits its readout), the weights checked finite
    before and after.
    Then both measure the test set and the alignment on the fixed probe batch.
    """
    s, net, objective = run.settings, run.net, run.objective
    start = time.perf_counter()
    if epoch == 0:
        with autocast(run.device, run.dtype):
            loss, train_acc = objective.evaluate(net, run.data, run.data)
    else:
        for group in run.optimizers[0].param_groups:
            group["lr"] = s.lr * s.lr_gamma ** sum(m < epoch for m in s.lr_milestones)
        run.epoch = epoch
        loss, train_acc = _train_epoch(run, bar, position)
        _check_finite(run, epoch)
        run.rule.end_epoch(run.net, run.data, objective, weight_decay=s.weight_decay)
        _check_finite(run, epoch)                # what end_epoch changed (hebb's readout)
    with autocast(run.device, run.dtype):
        test_loss, test_acc = objective.evaluate(net, run.test, run.data)
    metrics = {"loss": loss, "train_acc": train_acc, "test_acc": test_acc,
               "test_loss": test_loss, "seconds": time.perf_counter() - start}
    index, images, labels = run.probe
    rows = objective.alignment_rows(net, images, labels, index=index,
                                    preprocessing=run.data.preprocessing)
    return metrics, [{"epoch": epoch, **row} for row in rows]


def train(model_name: str, train_path, test_path, out_dir, settings: TrainSettings | None = None,
          *, device: str = "auto", num_threads: int | None = None,
          loader: LoaderSettings | None = None, deterministic: bool = False) -> pd.DataFrame:
    """Train a named model on its objective under its learning rule.

    Parameters
    ----------
    model_name : str
        `{arch}-{objective}-{rule}-s{seed}`; the seed fixes initialisation (W, the heads, then
        B), data order, augmentations and the alignment losses' input noise.
    train_path, test_path : path-like
        Stimulus-set Zarr stores (stimulus, y, x, channel) uint8 with label coords.
    out_dir : path-like
        Receives `epoch_{e:03d}.pt` for e = 0 … epochs, `metrics.csv`, `alignment.csv` and
        the run record `run.json`; checkpoints of an earlier run with other settings are
        removed first (see the module docstring).
    settings : TrainSettings, optional
        None uses the defaults.
    device : str
        "auto", "cpu" or "cuda".
    num_threads : int, optional
        Pin torch and BLAS threads.
    loader : LoaderSettings, optional
        How batches are read (in memory or streamed, workers); never changes the weights.
    deterministic : bool
        Deterministic GPU kernels (`pipeline.runtime.set_deterministic`); no effect on CPU.

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
    layers `heads.<name>.<i>`), measured by `Objective.alignment_rows` on a fixed batch
    (`batch_size` evenly spaced training images, unflipped) in eval mode, with the
    objective's loss. Angles are in degrees, between vec(W) and vec(B) and between the
    downward signals Bᵀδ and Wᵀδ. Layers that train by exact gradients (all of `bp`, the
    linear layers of `hebb`) show 0°, 1, 0°; Hebbian conv layers have no B and show NaN, as
    does gradient_angle wherever no gradient reaches a layer.

    Raises
    ------
    FloatingPointError
        At the first non-finite training loss (naming model, epoch and batch) or, after an
        epoch, non-finite weight (naming the tensor); run.json then says complete: false.
    pipeline.checkpoints.Preempted
        After SIGTERM or SIGUSR1, once the resume state is written (a SystemExit with status
        75); calling train again continues the run.
    """
    settings = TrainSettings() if settings is None else settings
    spec = parse_model_name(model_name)
    try:
        rule = make_rule(spec.rule, settings.rule_settings, weight_decay=settings.weight_decay,
                         optimizer=settings.optimizer)
        objective = make_objective(spec.objective, settings.objective_settings)
        objective.check_rule(spec.rule)
    except ValueError as err:
        raise ValueError(f"model {model_name!r}: {err}") from err
    if num_threads is not None:
        set_num_threads(num_threads)
    run = _prepare(model_name, spec, settings, rule, objective, train_path, test_path,
                   resolve_device(device), LoaderSettings() if loader is None else loader,
                   deterministic)
    out_dir = Path(out_dir)

    checkpoints.recover_epochs(out_dir)      # a failed job's output, deleted by Snakemake
    saved = checkpoints.checkpoint_epochs(settings.epochs, settings.checkpoint_every)
    done = checkpoints.resumable(out_dir, run.header, settings.epochs)
    first = done[-1]["epoch"] + 1 if done else 0      # the epochs before have checkpoints
    resumed = (checkpoints.latest_partial(out_dir, run.header, first)
               if 0 < first <= settings.epochs else None)
    pending = []                  # {epoch, metrics, alignment} trained since the last checkpoint
    if resumed is not None:
        checkpoints.restore(resumed, run.net, run.optimizers, run.generators)
        torch.set_rng_state(resumed["torch_rng"])
        pending = list(resumed.get("pending", []))
        first = int(resumed["position"]["epoch"])
        log.info("%s: resuming epoch %d after batch %d (mid-epoch checkpoint in %s)",
                 model_name, first, resumed["position"]["batch"],
                 checkpoints.resume_dir(out_dir))
    elif done:
        checkpoints.restore(done[-1], run.net, run.optimizers, run.generators)
        log.info("%s: resuming from %s", model_name,
                 checkpoints.epoch_path(out_dir, done[-1]["epoch"]))
    trained = [*(e for c in done for e in (*c.get("skipped", []), c)), *pending]
    seconds = _recorded_seconds(out_dir, trained)
    record = partial(checkpoints.write_run_record, out_dir, run.header, settings.epochs)
    record(complete=False, seconds=seconds)        # before anything in the folder changes
    checkpoints.clear_stale(out_dir, run.header, settings.epochs, keep=len(done))
    rows = [{"epoch": e["epoch"], **e["metrics"], "seconds": seconds.get(e["epoch"], math.nan)}
            for e in trained]
    alignment = [row for e in trained for row in e["alignment"]]

    n_batches = -(-len(run.data.images) // settings.batch_size)
    skipped = 0 if resumed is None else int(resumed["position"]["batch"])
    with (run.stop.installed(), checkpoints.CheckpointWriter() as writer,
          logging_redirect_tqdm(),
          tqdm(total=(settings.epochs - max(first, 1) + 1) * n_batches - skipped, unit="batch",
               desc=f"train {model_name}", disable=None) as bar):
        for epoch in range(first, settings.epochs + 1):
            position = resumed["position"] if resumed is not None and epoch == first else None
            try:
                metrics, epoch_rows = _epoch(run, epoch, bar, position)
            except _Stopped as stopped:
                writer.wait()                    # the last epoch checkpoint is complete
                path = checkpoints.save_partial(out_dir,
                                                _partial_checkpoint(run, stopped, pending))
                _preempted(run, f"after batch {stopped.position['batch']} of {n_batches} of "
                                f"epoch {epoch}; its state is in {path}")
            seconds[epoch] = metrics.pop("seconds")           # kept out of the checkpoint
            if epoch in saved:           # written while the next epoch trains
                writer.save(checkpoints.epoch_path(out_dir, epoch),
                            checkpoints.capture(run.net, run.optimizers, run.generators,
                                                header=run.header, epoch=epoch, metrics=metrics,
                                                alignment=epoch_rows, skipped=pending))
                pending = []
            else:
                pending.append({"epoch": epoch, "metrics": metrics, "alignment": epoch_rows})
            rows.append({"epoch": epoch, **metrics, "seconds": seconds[epoch]})
            record(complete=False, seconds=seconds)
            alignment += epoch_rows
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", test_acc=f"{metrics['test_acc']:.3f}")
            log.info("%s epoch %d: loss %.4f train_acc %.3f test_acc %.3f test_loss %.4f "
                     "(%.1f s)", model_name, epoch, metrics["loss"], metrics["train_acc"],
                     metrics["test_acc"], metrics["test_loss"], seconds[epoch])
            if run.stop.requested and epoch < settings.epochs and epoch in saved:
                writer.wait()
                checkpoints.preserve(out_dir)
                _preempted(run, f"at the end of epoch {epoch}; its checkpoint "
                                f"{checkpoints.epoch_path(out_dir, epoch)} is kept in "
                                f"{checkpoints.resume_dir(out_dir)}")
            if run.stop.requested and epoch < settings.epochs:
                # no checkpoint of this epoch: its state is saved as batch 0 of the next one
                writer.wait()
                stopped = _Stopped({"epoch": epoch + 1, "batch": 0, "order": _order(run),
                                    "loss_sum": 0.0, "accuracy_sum": 0.0})
                path = checkpoints.save_partial(out_dir,
                                                _partial_checkpoint(run, stopped, pending))
                _preempted(run, f"at the end of epoch {epoch}, which has no checkpoint of its "
                                f"own; its state is in {path}")

    table = pd.DataFrame(rows, columns=list(METRICS))
    write_csv(table, out_dir / "metrics.csv")
    write_csv(pd.DataFrame(alignment, columns=list(ALIGNMENT_COLUMNS)), out_dir / "alignment.csv")
    record(complete=True, seconds=seconds)
    checkpoints.remove_resume_dir(out_dir)
    return table


def _partial_checkpoint(run: _Run, stopped: _Stopped, pending: list[dict]) -> dict:
    """The mid-epoch checkpoint of a stopped run: `capture`'s keys (epoch = the epoch in
    progress, no metrics), its `position`, torch's global RNG states and the `pending` rows of
    the epochs trained since the last epoch checkpoint."""
    state = checkpoints.capture(run.net, run.optimizers, run.generators, header=run.header,
                                epoch=stopped.position["epoch"], metrics={}, alignment=[])
    state["position"] = {**stopped.position, "order": stopped.position["order"].clone()}
    state["torch_rng"] = torch.get_rng_state()
    state["pending"] = list(pending)
    return state


def _preempted(run: _Run, where: str) -> None:
    """Log where a signalled run stopped and raise `Preempted` (exit status 75)."""
    message = (f"{run.name}: {run.stop.signal} received; stopped {where}. Rerun the same "
               f"command (or the `train` rule) to continue; the result equals an "
               f"uninterrupted run's")
    log.warning(message)
    raise checkpoints.Preempted(message)


def _recorded_seconds(out_dir: Path, done: list[dict]) -> dict[int, float]:
    """Seconds of the resumed epochs `done` ({epoch, metrics, …} each): from run.json (or, for
    checkpoints written before run records, their own metrics); NaN where neither has them."""
    try:
        stored = (checkpoints.read_run_record(out_dir) or {}).get("seconds", {})
    except checkpoints.CheckpointError as err:
        log.warning("%s; the resumed epochs' seconds are unknown", err)
        stored = {}
    seconds = {}
    for c in done:
        value = c["metrics"].get("seconds", stored.get(str(c["epoch"]), math.nan))
        seconds[c["epoch"]] = float(value)
    return seconds
