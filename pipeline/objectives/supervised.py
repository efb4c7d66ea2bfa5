"""Supervised classification: cross-entropy on the class labels at the run's label level.

Training views are the preprocessed images mirrored left-right with probability 1/2; the
task accuracy is top-1 classification accuracy (spec §2.4, "Supervised ImageNet").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.learning.diagnostics import alignment_table
from pipeline.objectives.augment import flip, preprocess
from pipeline.objectives.base import Objective, mean_over_batches


class Supervised(Objective):
    """Cross-entropy of the readout's logits against the class labels; no hyperparameters."""

    name = "supervised"

    def readout_size(self, n_classes):
        return n_classes

    def loss(self, net, images, labels, *, index, preprocessing, generator):
        x = flip(preprocess(images, preprocessing), generator)
        logits = net(x)
        loss = F.cross_entropy(logits, labels)
        return (logits.argmax(1) == labels).float().mean(), loss

    @torch.no_grad()
    def evaluate(self, net, data, train):
        def metrics(_index, images, labels):
            logits = net(preprocess(images, data.preprocessing))
            return (F.cross_entropy(logits, labels).item(),
                    (logits.argmax(1) == labels).float().mean().item())

        return mean_over_batches(net, data, metrics)

    def alignment_rows(self, net, images, labels, *, index, preprocessing):
        """Measured on the backbone's cross-entropy of the unflipped batch (heads: none)."""
        return alignment_table(net.backbone, preprocess(images, preprocessing), labels)
