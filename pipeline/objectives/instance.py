"""Instance recognition (Wu et al. 2018): every training image is its own class, scored
against a memory bank of L2-normalised embeddings.

The backbone's readout gives a `embedding_dim` embedding f (128 in the spec, §2.4), L2-
normalised. Image i's bank entry v_i is its positive; the loss is the non-parametric softmax

    −log( exp(f·v_i/τ) / (exp(f·v_i/τ) + Σ_{j∈S} exp(f·v_j/τ)) )

with S = `negatives` bank entries drawn uniformly (shared by the batch, drawn with the data
generator), or the exact softmax over the whole bank, Σ_j exp(f·v_j/τ) with v_i among them,
when `negatives` is null or not smaller than the bank (Wu et al. eq. 2; their NCE estimate of
it is not used). After each batch, v_i ← normalise(m·v_i + (1 − m)·f_i) (bank momentum m,
0.5 in the spec). Views are augmented as the spec's IR recipe (crop scale 0.2–1, flip, colour
jitter 0.4 on all four, greyscale p 0.2).

Task accuracy: on training batches (and the training set at epoch 0), the fraction whose
positive beats every candidate; on the test set, weighted k-nearest-neighbour top-1 at the
run's label level with the bank as the labelled reference (Wu et al. §3.4: k = 200, weights
exp(f·v/τ)). The test loss is undefined (test images have no bank entry) and left NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.objectives.augment import augment, preprocess
from pipeline.objectives.base import Objective, mean_over_batches


class MemoryBank(nn.Module):
    """One L2-normalised embedding per training image, a buffer (saved with the heads)."""

    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.randn(n_items, dim), dim=1))

    @torch.no_grad()
    def update(self, index: torch.Tensor, f: torch.Tensor, momentum: float) -> None:
        """v_i ← normalise(m·v_i + (1 − m)·f_i) for the batch's images."""
        index = index.to(self.bank.device)
        mixed = momentum * self.bank[index] + (1 - momentum) * f.detach()
        self.bank[index] = F.normalize(mixed, dim=1)


def instance_loss(f: torch.Tensor, bank: torch.Tensor, index: torch.Tensor, temperature: float,
                  negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory-bank softmax loss and accuracy of normalised embeddings f (batch, dim).

    Parameters
    ----------
    bank : torch.Tensor
        (item, dim) normalised entries; `index` (batch,) the images' own entries.
    negatives : torch.Tensor, optional
        Bank indices of the sampled negatives (shared by the batch); None scores against the
        whole bank.

    Returns
    -------
    (loss, accuracy) : 0-dim tensors; accuracy = positive scored above every candidate.
    """
    index = index.to(bank.device)
    if negatives is None:
        logits = f @ bank.T / temperature
        target = index
    else:
        positive = (f * bank[index]).sum(1, keepdim=True)
        logits = torch.cat([positive, f @ bank[negatives.to(bank.device)].T], 1) / temperature
        target = torch.zeros(len(f), dtype=torch.long, device=f.device)
    loss = F.cross_entropy(logits, target)
    return loss, (logits.argmax(1) == target).float().mean()


def knn_predict(f: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, k: int,
                temperature: float, n_classes: int) -> torch.Tensor:
    """Weighted kNN classes of normalised queries f: the k most similar bank entries vote with
    weight exp(similarity / τ) (Wu et al. 2018 §3.4)."""
    similarity, neighbours = (f @ bank.T).topk(min(k, len(bank)), dim=1)
    votes = torch.zeros(len(f), n_classes, device=f.device, dtype=f.dtype)
    votes.scatter_add_(1, bank_labels[neighbours], (similarity / temperature).exp())
    return votes.argmax(1)


class InstanceRecognition(Objective):
    """Non-parametric instance discrimination against a momentum memory bank."""

    name = "instance"
    DEFAULTS = {"embedding_dim": 128, "temperature": 0.07, "negatives": 4096,
                "bank_momentum": 0.5, "knn": 200, "crop_scale": [0.2, 1.0],
                "jitter": [0.4, 0.4, 0.4, 0.4], "jitter_p": 1.0, "grayscale_p": 0.2}

    def readout_size(self, n_classes):
        return self.settings["embedding_dim"]

    def heads(self, backbone, *, input_size, n_train):
        return {"memory": MemoryBank(n_train, self.settings["embedding_dim"])}

    def _negatives(self, n_items, generator):
        m = self.settings["negatives"]
        if m is None or m >= n_items:
            return None
        return torch.randint(n_items, (m,), generator=generator)

    def loss(self, net, images, labels, *, index, preprocessing, generator):
        memory = net.heads["memory"]
        f = F.normalize(net(augment(images, preprocessing, self.settings, generator)), dim=1)
        negatives = self._negatives(len(memory.bank), generator)
        # The loss reads the bank as it was before this batch's update (a copy autograd keeps).
        loss, accuracy = instance_loss(f, memory.bank.clone(), index,
                                       self.settings["temperature"], negatives)
        if net.training:
            memory.update(index, f, self.settings["bank_momentum"])
        return accuracy, loss

    @torch.no_grad()
    def evaluate(self, net, data, train):
        bank = net.heads["memory"].bank
        n_classes = int(train.labels.max()) + 1
        tau = self.settings["temperature"]

        def metrics(index, images, labels):
            f = F.normalize(net(preprocess(images, data.preprocessing)), dim=1)
            if data.is_train:
                loss, accuracy = instance_loss(f, bank, index, tau)
                return loss.item(), accuracy.item()
            predicted = knn_predict(f, bank, train.labels.to(bank.device), self.settings["knn"],
                                    tau, n_classes)
            return math.nan, (predicted == labels).float().mean().item()

        return mean_over_batches(net, data, metrics)
