"""SimCLR (Chen et al. 2020): agree across two augmented views of each image, by NT-Xent.

The backbone's readout is the first layer of the projection MLP (penultimate features →
`hidden_dim`), and the `projection` head adds ReLU → Linear(hidden_dim, projection_dim): the
spec's "MLP 2048 → 128" (§2.4). Representations for transfer are the readout's input.
Augmentations follow SimCLR's recipe (crop scale 0.08–1, flip, colour jitter strength 1 with
p 0.8, greyscale p 0.2; no blur at these resolutions). The task accuracy is the contrastive
top-1: the fraction of views whose most similar other view in the batch is their positive
(chance 1 / (2·batch − 1)); the test set is evaluated in batches of the training batch size
with views from a fixed seed, so epochs compare.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.objectives.augment import augment
from pipeline.objectives.base import Objective, mean_over_batches

# Seed of the test-set views, fixed so every epoch is scored on the same views.
EVAL_SEED = 0


def nt_xent(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent loss and contrastive top-1 of 2N projections, rows i and i + N being the two
    views of image i.

    ℓ(i, j) = −log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) ), sim the cosine;
    the loss is the mean of ℓ over all 2N ordered positive pairs (Chen et al. 2020, Alg. 1).

    Returns
    -------
    (loss, accuracy) : 0-dim tensors
    """
    if len(z) % 2:
        raise ValueError(f"nt_xent needs an even number of views (2N); got {len(z)}")
    n = len(z) // 2
    z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    target = (torch.arange(len(z), device=z.device) + n) % len(z)
    loss = F.cross_entropy(logits, target)
    return loss, (logits.argmax(1) == target).float().mean()


class SimCLR(Objective):
    """NT-Xent on a projection MLP over two augmented views per image."""

    name = "simclr"
    DEFAULTS = {"temperature": 0.1, "hidden_dim": 2048, "projection_dim": 128,
                "crop_scale": [0.08, 1.0], "jitter": [0.8, 0.8, 0.8, 0.2], "jitter_p": 0.8,
                "grayscale_p": 0.2}

    def readout_size(self, n_classes):
        return self.settings["hidden_dim"]

    def heads(self, backbone, *, input_size, n_train):
        s = self.settings
        return {"projection": nn.Sequential(nn.ReLU(),
                                            nn.Linear(s["hidden_dim"], s["projection_dim"]))}

    def _loss(self, net, images, preprocessing, generator):
        # Both views in one forward pass: BatchNorm sees all 2N views, feedback layers cache once.
        views = torch.cat([augment(images, preprocessing, self.settings, generator),
                           augment(images, preprocessing, self.settings, generator)])
        z = net.heads["projection"](net(views))
        loss, accuracy = nt_xent(z, self.settings["temperature"])
        return accuracy, loss

    def loss(self, net, images, labels, *, index, preprocessing, generator):
        return self._loss(net, images, preprocessing, generator)

    @torch.no_grad()
    def evaluate(self, net, data, train):
        generator = torch.Generator().manual_seed(EVAL_SEED)

        def metrics(_index, images, _labels):
            accuracy, loss = self._loss(net, images, data.preprocessing, generator)
            return loss.item(), accuracy.item()

        return mean_over_batches(net, data, metrics)
