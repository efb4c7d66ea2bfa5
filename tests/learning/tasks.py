"""Tiny tasks for the learning-rule tests: Gaussian clusters and a small MLP."""

import torch
from torch import nn

N_CLASSES = 4


def clusters(n, seed, dim=20, spread=1.0):
    """n points of N_CLASSES Gaussian clusters in `dim` dims (fixed centres), and labels."""
    centres = torch.randn(N_CLASSES, dim, generator=torch.Generator().manual_seed(123)) * 2
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=generator)
    x = centres[y] + spread * torch.randn(n, dim, generator=generator)
    return x, y


def mlp(seed, dim=20, hidden=64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, N_CLASSES))


def accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()
