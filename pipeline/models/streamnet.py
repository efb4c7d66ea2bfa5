"""The shallow parallel-stream mouse networks ("StreamNets") of spec §2.4 (thesis §3.6.4).

AlexNet-derived, longest path four convs, with batch norm after every conv as the released
`simplified_mousenet_{single_stream,dual_stream_visp_3x3_bn,six_stream_visp_3x3_bn}`:

- VISp (shallow): conv 11×11 stride 4 pad 2, 64 ch → BN → ReLU → max-pool 3/2.
- one intermediate module per stream: conv 5×5 pad 2, 192 ch → BN → ReLU → max-pool 3/2 →
  conv 3×3 pad 1, 384 ch → BN → ReLU.
- deep modules VISpor and VISam: each input (every stream, and VISp through a 3×3 stride-2
  conv with 256 ch) passes its own conv → BN → ReLU; the results are summed.
- VISpor and VISam are concatenated along channels → adaptive 6×6 average pool → dropout →
  the linear readout. The single stream has one intermediate module ("ventral") and VISpor only.

Backbone parameter and unit counts (Table 3.4, 64 px, readout excluded): single 2,029,632 /
8,896; dual 5,806,848 / 14,656; six 16,780,800 / 28,480.
"""

from __future__ import annotations

import torch
from torch import nn

STREAMS = {
    "single": ("ventral",),
    "dual": ("ventral", "dorsal"),
    "six": ("VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl"),
}
POOL_SIZE = 6
DEEP_WIDTH = 256
MIN_INPUT_SIZE = 31  # the stride-4 conv must leave 7×7 so that two 3/2 max-pools fit


def _conv_bn_relu(n_in: int, n_out: int, kernel: int, stride: int = 1, padding: int = 0):
    return [nn.Conv2d(n_in, n_out, kernel, stride, padding), nn.BatchNorm2d(n_out), nn.ReLU()]


class Convergence(nn.Module):
    """A deep area: one conv → BN → ReLU path per source area, outputs summed.

    Parameters
    ----------
    paths : dict of str to nn.Module
        Source area name → the path its output takes into this area.
    """

    def __init__(self, paths: dict[str, nn.Module]):
        super().__init__()
        self.paths = nn.ModuleDict(paths)

    def forward(self, areas: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of every path applied to its source area's output."""
        return sum(path(areas[source]) for source, path in self.paths.items())


class StreamNet(nn.Module):
    """VISp, N parallel intermediate streams, and the deep areas VISpor (and VISam).

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 31 (the thesis trains the dual stream
        from 32 px up).
    streams : {"single", "dual", "six"}
        Number and names of the intermediate modules (`STREAMS`).
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        VISp, the intermediate streams, VISpor, VISam (not in the single stream), `readout`.
    feature_dim : int
        Input size of the readout: deep areas × 256 channels × 6 × 6.
    """

    def __init__(self, n_classes: int, input_size: int, *, streams: str = "dual",
                 in_channels: int = 3):
        super().__init__()
        if streams not in STREAMS:
            raise ValueError(f"streams must be one of {', '.join(STREAMS)}; got {streams!r}")
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} for a StreamNet "
                             f"(stride-4 conv and two 3×3 stride-2 max-pools); got {input_size}")
        self.streams = STREAMS[streams]
        self.deep = ("VISpor",) if streams == "single" else ("VISpor", "VISam")
        self.VISp = nn.Sequential(*_conv_bn_relu(in_channels, 64, 11, 4, 2), nn.MaxPool2d(3, 2))
        for name in self.streams:
            self.add_module(name, nn.Sequential(*_conv_bn_relu(64, 192, 5, padding=2),
                                                nn.MaxPool2d(3, 2),
                                                *_conv_bn_relu(192, 384, 3, padding=1)))
        for name in self.deep:
            paths = {"VISp": nn.Sequential(*_conv_bn_relu(64, DEEP_WIDTH, 3, stride=2))}
            paths.update({stream: nn.Sequential(*_conv_bn_relu(384, DEEP_WIDTH, 3, padding=1))
                          for stream in self.streams})
            self.add_module(name, Convergence(paths))
        self.avgpool = nn.AdaptiveAvgPool2d(POOL_SIZE)
        self.dropout = nn.Dropout()
        self.feature_dim = len(self.deep) * DEEP_WIDTH * POOL_SIZE * POOL_SIZE
        self.readout = nn.Linear(self.feature_dim, n_classes)
        self.layer_names = ("VISp", *self.streams, *self.deep, "readout")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        areas = {"VISp": self.VISp(x)}
        for name in self.streams:
            areas[name] = getattr(self, name)(areas["VISp"])
        deep = torch.cat([getattr(self, name)(areas) for name in self.deep], dim=1)
        return self.readout(self.dropout(self.avgpool(deep).flatten(1)))


def streamnet_single(n_classes: int, input_size: int, **kwargs) -> StreamNet:
    """Single-stream StreamNet: VISp → ventral → VISpor."""
    return StreamNet(n_classes, input_size, streams="single", **kwargs)


def streamnet_dual(n_classes: int, input_size: int, **kwargs) -> StreamNet:
    """Dual-stream StreamNet: VISp → {ventral, dorsal} → {VISpor, VISam}."""
    return StreamNet(n_classes, input_size, streams="dual", **kwargs)


def streamnet_six(n_classes: int, input_size: int, **kwargs) -> StreamNet:
    """Six-stream StreamNet: VISp → {VISl, VISrl, VISal, VISli, VISpm, VISpl} → {VISpor, VISam}."""
    return StreamNet(n_classes, input_size, streams="six", **kwargs)
