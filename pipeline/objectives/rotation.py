"""Rotation prediction (RotNet, Gidaris et al. 2018): classify which of 0°, 90°, 180°, 270° an
image was rotated by.

Each batch is presented in all four rotations (4× the images, as the spec's effective batch
192 × 4 = 768), after a random left-right flip; the task accuracy is the fraction of rotated
images whose rotation is predicted (chance 1/4). Class labels are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.objectives.augment import flip, preprocess
from pipeline.objectives.base import Objective, mean_over_batches

N_ROTATIONS = 4


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images rotated by k·90° counter-clockwise for k = 0…3, stacked k-major; labels k)."""
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(N_ROTATIONS)])
    labels = torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(len(x))
    return rotated, labels


class Rotation(Objective):
    """Four-way rotation classification by the readout; no hyperparameters."""

    name = "rotation"

    def readout_size(self, n_classes):
        return N_ROTATIONS

    def loss(self, net, images, labels, *, index, preprocessing, generator):
        x, target = rotations(flip(preprocess(images, preprocessing), generator))
        logits = net(x)
        return (logits.argmax(1) == target).float().mean(), F.cross_entropy(logits, target)

    @torch.no_grad()
    def evaluate(self, net, data, train):
        def metrics(_index, images, _labels):
            x, target = rotations(preprocess(images, data.preprocessing))
            logits = net(x)
            return (F.cross_entropy(logits, target).item(),
                    (logits.argmax(1) == target).float().mean().item())

        return mean_over_batches(net, data, metrics)
