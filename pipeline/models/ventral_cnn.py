"""A small ventral-stream CNN: four "area" blocks, global average pool, linear readout.

Each area block is two 3×3 convolutions (each followed by batch normalisation and ReLU) and a
2×2 max-pool, so a 32×32 input reaches area4 at 2×2. The widths default to 16/32/64/128, small
enough to train a few epochs of ~3000 images on two CPU cores in seconds.
"""

from __future__ import annotations

from torch import nn

AREAS = ("area1", "area2", "area3", "area4")


def _conv_bn_relu(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Conv2d(n_in, n_out, 3, padding=1, bias=False), nn.BatchNorm2d(n_out),
            nn.ReLU(inplace=True)]


def check_areas(widths, input_size: int) -> None:
    """Raise ValueError unless `widths` gives one channel count per area and `input_size`
    survives one 2×2 pool per area."""
    if len(widths) != len(AREAS):
        raise ValueError(f"widths must give {len(AREAS)} channel counts; got {widths!r}")
    if input_size < 2 ** len(AREAS):
        raise ValueError(
            f"input_size must be at least {2 ** len(AREAS)} (one 2×2 pool per area); "
            f"got {input_size}"
        )


class VentralCNN(nn.Module):
    """Four conv area blocks and a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 2**4 so area4 still has one position.
    widths : tuple of int
        Channels of area1..area4.
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        Modules whose outputs are the model's "layers" for activations:
        `area1`..`area4` (after pooling) and `readout` (logits).
    """

    def __init__(self, n_classes: int, input_size: int, *, widths=(16, 32, 64, 128),
                 in_channels: int = 3):
        super().__init__()
        check_areas(widths, input_size)
        channels = (in_channels, *widths)
        for name, n_in, n_out in zip(AREAS, channels[:-1], channels[1:]):
            block = nn.Sequential(*_conv_bn_relu(n_in, n_out), *_conv_bn_relu(n_out, n_out),
                                  nn.MaxPool2d(2))
            self.add_module(name, block)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.readout = nn.Linear(widths[-1], n_classes)
        self.layer_names = (*AREAS, "readout")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        for name in AREAS:
            x = getattr(self, name)(x)
        return self.readout(self.pool(x).flatten(1))
