"""A fully connected network on flattened images: the zoo's architecture without convolutions.

flatten → fc1 → ReLU → fc2 → ReLU → fc3 → ReLU → readout, hidden widths 256, 256, 128 by
default, on any input size (the first layer has 3 · size² inputs). Its family differs from the
convolutional nets', so the identification grid's architecture holdout (spec_ch5-6 B.7.3) can
leave out a net that shares no layer type but Linear with the rest; B.9's scaled-down
replication trains MLPs. Under a feedback rule its layers are all `FBLinear`. Hebbian learning
needs conv layers, so `check_model` refuses mlp × hebb.
Logits, not softmax: the training loss applies the softmax.
"""

from __future__ import annotations

from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Hidden Linear + ReLU layers over the flattened image, then a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 1.
    in_channels : int
        Input channels (3 for RGB).
    widths : tuple of int
        Units of the hidden layers fc1, fc2, ….

    Attributes
    ----------
    layer_names : tuple of str
        `fc1`, `fc2`, … (each after its ReLU) and `readout`.
    """

    def __init__(self, n_classes: int, input_size: int, *, in_channels: int = 3,
                 widths: tuple[int, ...] = (256, 256, 128)):
        super().__init__()
        if input_size < 1:
            raise ValueError(f"input_size must be at least 1; got {input_size}")
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be one or more positive ints; got {widths!r}")
        self.flatten = nn.Flatten()
        sizes = (in_channels * input_size * input_size, *widths)
        names = [f"fc{i}" for i in range(1, len(widths) + 1)]
        for name, n_in, n_out in zip(names, sizes[:-1], sizes[1:]):
            self.add_module(name, nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU()))
        self.readout = nn.Linear(widths[-1], n_classes)
        self.layer_names = (*names, "readout")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        x = self.flatten(x)
        for name in self.layer_names[:-1]:
            x = getattr(self, name)(x)
        return self.readout(x)
