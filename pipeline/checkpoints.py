"""Checkpoints of a training run: one file per epoch, `results/models/{model}/epoch_{e:03d}.pt`.

A checkpoint holds only tensors and primitives, so `torch.load(path, weights_only=True)` reads
it. Keys: the run's header (model_name, arch, objective, rule, n_classes, input_size, classes,
label_level, preprocessing, settings), `epoch`, `metrics` and `alignment` (that epoch's
metrics.csv and alignment.csv rows), `state_dict` (the backbone: the architecture of
`pipeline.models.build_model` converted by the rule), `heads` (the objective's extra modules),
`optimizer` and `alignment_optimizer` (None for rules without one), and `generator` and
`noise_generator` (the data-order and alignment-noise generators' states): everything a
resumed run needs to continue to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

from pipeline.io import save_torch
from pipeline.learning import make_rule
from pipeline.models import build_model

log = logging.getLogger(__name__)

__all__ = ["CheckpointWriter", "build_backbone", "capture", "epoch_path", "load_backbone",
           "read_checkpoint", "restore", "resumable", "run_epochs"]


def epoch_path(model_dir, epoch: int) -> Path:
    """Path of a run's checkpoint of one epoch: `model_dir/epoch_{epoch:03d}.pt`."""
    return Path(model_dir) / f"epoch_{epoch:03d}.pt"


def run_epochs(model_dir) -> dict[int, Path]:
    """A run's checkpoints by epoch, in epoch order; FileNotFoundError when it has none."""
    found = {int(p.stem.split("_")[-1]): p for p in Path(model_dir).glob("epoch_*.pt")}
    if not found:
        raise FileNotFoundError(f"{model_dir}: no checkpoints epoch_*.pt")
    return dict(sorted(found.items()))


def read_checkpoint(path) -> dict:
    """A checkpoint with its tensors memory-mapped: reading the header or the weights touches
    only those bytes, never the optimizer state."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def build_backbone(checkpoint: dict) -> nn.Module:
    """The untrained backbone a checkpoint's `state_dict` fits: its architecture, readout width
    and input size, layers converted for its rule (bp for checkpoints older than rules)."""
    model = build_model(checkpoint["arch"], checkpoint["n_classes"], checkpoint["input_size"])
    return make_rule(checkpoint.get("rule", "bp")).convert(model)


def load_backbone(checkpoint: dict, device) -> nn.Module:
    """A checkpoint's trained backbone on `device`, frozen and in eval mode.

    Built on the meta device and given the checkpoint's tensors as they are, so no weights
    are drawn only to be overwritten.
    """
    with torch.device("meta"):
        model = build_backbone(checkpoint)
    model.load_state_dict(checkpoint["state_dict"], assign=True)
    model.requires_grad_(False)
    return model.to(device).eval()


def _snapshot(value):
    """A copy of a nested dict/list of tensors on the CPU that later training steps cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value


def capture(net, optimizers, generators, *, header: dict, epoch: int, metrics: dict,
            alignment: list[dict]) -> dict:
    """The checkpoint of a live run, copied off the model, optimizers and generators.

    Parameters
    ----------
    net : pipeline.objectives.ObjectiveNet
        Its `backbone` and `heads` are saved.
    optimizers : tuple
        (task optimizer, alignment optimizer or None).
    generators : tuple of torch.Generator
        (data order, alignment noise).
    header : dict
        The run's identity and settings (a resumed run must match it).
    epoch, metrics, alignment
        The epoch and its metrics.csv row and alignment.csv rows.
    """
    task, align = optimizers
    return _snapshot({**header, "state_dict": net.backbone.state_dict(),
                      "heads": net.heads.state_dict(), "epoch": epoch, "metrics": metrics,
                      "alignment": alignment, "optimizer": task.state_dict(),
                      "alignment_optimizer": None if align is None else align.state_dict(),
                      "generator": generators[0].get_state(),
                      "noise_generator": generators[1].get_state()})


def restore(checkpoint: dict, net, optimizers, generators) -> None:
    """Put a checkpoint's weights, optimizer states and generator states back into a run
    built as `capture` saw it."""
    net.backbone.load_state_dict(checkpoint["state_dict"])
    net.heads.load_state_dict(checkpoint["heads"])
    optimizers[0].load_state_dict(checkpoint["optimizer"])
    if optimizers[1] is not None:
        optimizers[1].load_state_dict(checkpoint["alignment_optimizer"])
    generators[0].set_state(checkpoint["generator"])
    generators[1].set_state(checkpoint["noise_generator"])


class CheckpointWriter:
    """Writes checkpoints atomically in a background thread while training goes on.

    At most one write is in flight (memory: one extra copy of the state), and leaving the
    context waits for the last one, so every checkpoint exists when the run returns and a
    failed write raises in the training process.
    """

    def __enter__(self):
        self._pool = ThreadPoolExecutor(1)
        self._pending = None
        return self

    def save(self, path, checkpoint: dict) -> None:
        """Write `checkpoint` (as `capture` returns it) to `path` once the previous write ends."""
        self.wait()
        self._pending = self._pool.submit(save_torch, checkpoint, path)

    def wait(self) -> None:
        """Block until the write in flight, if any, has ended; raise its error."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def __exit__(self, *exc):
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def resumable(model_dir, header: dict, epochs: int) -> list[dict]:
    """Intact checkpoints epoch_000, epoch_001, … written for the same model and settings.

    Stops at the first missing, unreadable or mismatching file (or after `epochs`); returns []
    when a checkpoint was written with another header, so the run starts afresh.
    """
    found = []
    for epoch in range(epochs + 1):
        path = epoch_path(model_dir, epoch)
        if not path.exists():
            break
        try:
            # mapped: only the header is read here, and only the last checkpoint's tensors later
            checkpoint = read_checkpoint(path)
        except Exception as err:  # truncated or corrupt file: retrain from the one before
            log.warning("%s unreadable (%s); training resumes before it", path, err)
            break
        same = all(checkpoint.get(k) == v for k, v in header.items())
        if not same or checkpoint.get("epoch") != epoch:
            log.info("%s was written with other settings; training starts afresh", path)
            return []
        found.append(checkpoint)
    return found
