"""Sparse autoencoder: reconstruct the input from the readout's code (spec §2.4).

The backbone's readout is the code z (`embedding_dim` wide); the `decoder` head mirrors a
convolutional encoder: Linear → ReLU → reshape to `channels` × s × s (s ≈ 4), then
[2× nearest upsampling → 3×3 conv → ReLU] until the input size, and a 3×3 conv to RGB.
Loss = mean squared error between the reconstruction and the (standardised, flipped) input,
plus λ·mean over images of ‖z‖₁ (λ = 5e-4 in the spec). There is no task accuracy
(train_acc and test_acc are NaN); the test loss is the same loss on the test set.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.objectives.augment import flip, preprocess
from pipeline.objectives.base import Objective, mean_over_batches


class Decoder(nn.Module):
    """Code (batch, in_features) → image (batch, out_channels, input_size, input_size)."""

    def __init__(self, in_features: int, input_size: int, *, channels: int = 64,
                 out_channels: int = 3):
        super().__init__()
        n_up = max(0, int(math.floor(math.log2(input_size / 4))))
        start = math.ceil(input_size / 2 ** n_up)
        self.shape = (channels, start, start)
        self.project = nn.Linear(in_features, channels * start * start)
        layers, width = [], channels
        for _ in range(n_up):
            narrower = max(width // 2, 16)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(width, narrower, 3, padding=1), nn.ReLU()]
            width = narrower
        if start * 2 ** n_up != input_size:
            layers.append(nn.Upsample(size=(input_size, input_size), mode="bilinear"))
        layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        return self.body(F.relu(self.project(z)).view(-1, *self.shape))


class Autoencoder(Objective):
    """Reconstruction MSE plus an L1 penalty on the code."""

    name = "autoencoder"
    DEFAULTS = {"embedding_dim": 128, "l1": 5e-4, "channels": 64}

    def readout_size(self, n_classes):
        return self.settings["embedding_dim"]

    def heads(self, backbone, *, input_size, n_train):
        return {"decoder": Decoder(self.settings["embedding_dim"], input_size,
                                   channels=self.settings["channels"])}

    def _loss(self, net, x):
        z = net(x)
        reconstruction = net.heads["decoder"](z)
        return F.mse_loss(reconstruction, x) + self.settings["l1"] * z.abs().sum(1).mean()

    def loss(self, net, images, labels, *, index, preprocessing, generator):
        x = flip(preprocess(images, preprocessing), generator)
        return torch.tensor(math.nan), self._loss(net, x)

    @torch.no_grad()
    def evaluate(self, net, data, train):
        def metrics(_index, images, _labels):
            return self._loss(net, preprocess(images, data.preprocessing)).item(), math.nan

        return mean_over_batches(net, data, metrics)
