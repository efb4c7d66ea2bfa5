"""What every objective provides, and the network it trains: a backbone plus its heads.

An objective sets the width of the backbone's `readout` (classes, 4 rotations, an embedding),
adds head modules around it (a projection MLP, a decoder, a memory bank), computes its loss on
a batch and reports a task accuracy. The backbone is any architecture of `pipeline.models`
(constructor `(n_classes, input_size)`, final `nn.Linear` named `readout`, `layer_names`);
heads are not brain layers, so extraction rebuilds and exposes the backbone only.
"""

from __future__ import annotations

import abc
import copy
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.learning.diagnostics import alignment_table
from pipeline.models.names import OBJECTIVE_UNSUPPORTED_RULES


class ObjectiveNet(nn.Module):
    """The trained network: `backbone` and a ModuleDict of `heads` (empty for supervised).

    The learning rule converts both, and the optimizers see both, backbone parameters first.
    `forward` is the backbone's, so the net reads out like the architecture alone.
    """

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads or {})
        self.layer_names = backbone.layer_names

    def forward(self, x):
        return self.backbone(x)


def readout_features(backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features, readout output): the readout's input (batch, features), read by
    a forward hook, and the backbone's output (batch, readout width)."""
    seen = {}

    def keep(_module, args, _output):
        seen["x"] = args[0]

    handle = backbone.readout.register_forward_hook(keep)
    try:
        out = backbone(x)
    finally:
        handle.remove()
    return seen["x"].flatten(1), out


@dataclass
class Split:
    """A stimulus split held in memory for training or evaluation.

    Attributes
    ----------
    images : torch.Tensor
        uint8 (stimulus, channel, y, x) on the training device.
    labels : torch.Tensor
        Class indices (stimulus,) at the run's label level.
    preprocessing : dict
        mean, std and input_size (`pipeline.objectives.augment.preprocess`).
    batch_size : int
    is_train : bool
        The training set (its stimulus index is the memory-bank index).
    """

    images: torch.Tensor
    labels: torch.Tensor
    preprocessing: dict
    batch_size: int
    is_train: bool

    def batches(self):
        """(index, images, labels) of consecutive batches, index on CPU."""
        for start in range(0, len(self.images), self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, len(self.images)))
            yield index, self.images[start:start + self.batch_size], \
                self.labels[start:start + self.batch_size]


def resolve_settings(name: str, defaults: dict, settings: dict | None) -> dict:
    """`defaults` overridden key by key by `settings`; unknown keys raise ValueError."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(
            f"objective_settings for objective {name!r} have unknown key(s) {unknown}; "
            f"the objective's hyperparameters are: {', '.join(defaults) or 'none'}"
        )
    return {**copy.deepcopy(defaults), **settings}


class Objective(abc.ABC):
    """Base class: subclasses define `readout_size`, `loss` and `evaluate`; `heads`,
    `check_rule` and `alignment_rows` when needed.

    Parameters
    ----------
    settings : dict
        Resolved hyperparameters (see `DEFAULTS` of each subclass).
    """

    name = ""
    DEFAULTS: dict = {}

    def __init__(self, settings: dict | None = None):
        self.settings = resolve_settings(self.name, self.DEFAULTS, settings)

    def __repr__(self):
        return f"{type(self).__name__}({self.settings!r})"

    def check_rule(self, rule: str) -> None:
        """Raise ValueError if the learning rule cannot train this objective
        (`pipeline.models.names.OBJECTIVE_UNSUPPORTED_RULES` says which cannot, and why)."""
        reason = OBJECTIVE_UNSUPPORTED_RULES.get(self.name, {}).get(rule)
        if reason is not None:
            raise ValueError(f"objective {self.name!r} cannot be trained with rule {rule!r}: "
                             f"{reason}")

    @abc.abstractmethod
    def readout_size(self, n_classes: int) -> int:
        """Width of the backbone's readout, given the classes at the run's label level."""

    def heads(self, backbone: nn.Module, *, input_size: int, n_train: int
              ) -> dict[str, nn.Module]:
        """Extra modules around the backbone (drawn from torch's global generator)."""
        return {}

    @abc.abstractmethod
    def loss(self, net: ObjectiveNet, images: torch.Tensor, labels: torch.Tensor, *,
             index: torch.Tensor, preprocessing: dict, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(task accuracy on the batch as a 0-dim tensor (NaN if none), loss) of one batch.

        `images` are uint8 (batch, channel, y, x); `index` their positions in the training
        set; random views are drawn from `generator`. Called by `Rule.step` as its loss.
        """

    @abc.abstractmethod
    def evaluate(self, net: ObjectiveNet, data: Split, train: Split) -> tuple[float, float]:
        """(mean loss, task accuracy) of `net` in eval mode on `data`; NaN where undefined.

        `train` is the training split (kNN evaluation reads its labels)."""

    def alignment_rows(self, net: ObjectiveNet, images: torch.Tensor, labels: torch.Tensor, *,
                       index: torch.Tensor, preprocessing: dict) -> list[dict]:
        """`pipeline.learning.alignment_table` rows of `net` on one fixed batch, measured on
        this objective's loss (alignment.csv, spec §A.9).

        The loss is differentiated through `_LossAsLogits`, its random views drawn from a
        generator seeded 0 so every epoch sees the same views; head layers are named
        `heads.<module>`, backbone layers by their module path in the backbone.
        """
        def loss_of(module):
            generator = torch.Generator().manual_seed(0)
            return self.loss(module, images, labels, index=index,
                             preprocessing=preprocessing, generator=generator)[1]

        target = torch.zeros(1, dtype=torch.long, device=images.device)
        rows = alignment_table(_LossAsLogits(net, loss_of), images, target)
        for row in rows:
            row["layer"] = row["layer"].removeprefix("net.").removeprefix("backbone.")
        return rows


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


def mean_over_batches(net, data: Split, batch_metrics) -> tuple[float, float]:
    """Image-weighted means of (loss, accuracy) returned by batch_metrics(index, images,
    labels) over `data`'s batches, in eval mode."""
    net.eval()
    loss, acc = 0.0, 0.0
    for index, images, labels in data.batches():
        batch_loss, batch_acc = batch_metrics(index, images, labels)
        loss += float(batch_loss) * len(index)
        acc += float(batch_acc) * len(index)
    n = len(data.images)
    return loss / n, acc / n

