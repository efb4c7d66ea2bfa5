"""The LeNet-style net of the PyTorch MNIST example (project P3, spec §C.2), any input size.

conv(c→32, 3×3) → ReLU → conv(32→64, 3×3) → ReLU → 2×2 max-pool → flatten → fc 128 → ReLU →
fc n_classes, without dropout. The flattened width follows from the input size
(64 · ((size − 4) // 2)², 9216 for 28 px MNIST). Logits, not log-softmax: the training loss
applies the softmax.
"""

from __future__ import annotations

from torch import nn


class LeNet(nn.Module):
    """Two conv layers and two fully connected layers.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 6.
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        `conv1` (after ReLU), `conv2` (after ReLU and pooling), `fc1` (after ReLU), `readout`.
    """

    def __init__(self, n_classes: int, input_size: int, *, in_channels: int = 3):
        super().__init__()
        if input_size < 6:
            raise ValueError(f"input_size must be at least 6 (two 3×3 convs and a 2×2 pool); "
                             f"got {input_size}")
        side = (input_size - 4) // 2
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, 32, 3), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU())
        self.readout = nn.Linear(128, n_classes)
        self.layer_names = ("conv1", "conv2", "fc1", "readout")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        return self.readout(self.fc1(self.conv2(self.conv1(x))))
