"""Supervised classification: cross-entropy on the class labels at the run's label level.

Training views are the preprocessed images mirrored left-right with probability 1/2; the
task accuracy is top-1 classification accuracy (spec §2.4, "Supervised ImageNet").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.learning.diagnostics import alignment_table
from pipeline.objectives.augment import flip, preprocess
from pipeline.objectives.base import Objective, mean_over_batches, readout_features


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

    def fit_readout(self, net, data, *, weight_decay: float, iterations: int) -> None:
        """Refit the backbone's readout to convergence on the frozen features of `data`.

        The features are the readout's inputs in eval mode on the unmirrored images; L-BFGS
        (strong Wolfe line search, at most `iterations` steps) from the current weights
        minimises the mean cross-entropy + ½·weight_decay·‖W‖². For rules whose lower layers
        learn without labels (hebb: SoftHebb's classifier trained on frozen Hebbian features).
        Holds the split's features in memory (images × readout inputs).
        """
        readout = net.backbone.readout
        if not isinstance(readout, nn.Linear):
            raise TypeError(f"fit_readout needs the backbone's readout to be nn.Linear; got "
                            f"{type(readout).__name__}")
        training = net.training
        net.eval()
        features, labels = [], []
        with torch.no_grad():
            for _index, images, y in data.batches():
                x, _ = readout_features(net.backbone, preprocess(images, data.preprocessing))
                features.append(x.float())
                labels.append(y)
        x, y = torch.cat(features), torch.cat(labels)
        optimizer = torch.optim.LBFGS(readout.parameters(), max_iter=iterations,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = (F.cross_entropy(readout(x), y)
                    + 0.5 * weight_decay * readout.weight.pow(2).sum())
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        optimizer.zero_grad(set_to_none=True)
        net.train(training)
