"""ResNet-18 in torchvision's layout, written in plain torch.nn, with a small-input stem.

Stem conv → BN → ReLU (→ max-pool), four stages of two BasicBlocks (64, 128, 256, 512
channels; stages 2–4 halve the resolution), global average pool, linear readout. Module names
and initialisation follow torchvision's `resnet18` (kaiming-normal fan-out convs, BN at 1/0),
with `fc` named `readout`. Inputs under 112 px get the CIFAR stem (3×3 stride-1 conv, no
max-pool) so that 32 px images still reach layer4 at 4×4; larger ones the ImageNet stem
(7×7 stride-2 conv and 3×3 stride-2 max-pool).
"""

from __future__ import annotations

from torch import nn

STAGES = ("layer1", "layer2", "layer3", "layer4")
SMALL_INPUT = 112


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and an identity (or 1×1 conv-BN) shortcut, ReLU after the sum."""

    def __init__(self, n_in: int, n_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.downsample = None
        if stride != 1 or n_in != n_out:
            self.downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(n_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; below 112 px the small-input stem is used.
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        `layer1`..`layer4` (stage outputs) and `readout` (logits).
    """

    def __init__(self, n_classes: int, input_size: int, *, in_channels: int = 3):
        super().__init__()
        if input_size < 8:
            raise ValueError(f"input_size must be at least 8; got {input_size}")
        if input_size < SMALL_INPUT:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        widths = (64, 128, 256, 512)
        n_in = 64
        for name, width in zip(STAGES, widths):
            stride = 1 if name == "layer1" else 2
            self.add_module(name, nn.Sequential(BasicBlock(n_in, width, stride),
                                                BasicBlock(width, width)))
            n_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.readout = nn.Linear(512, n_classes)
        self.layer_names = (*STAGES, "readout")
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in STAGES:
            x = getattr(self, name)(x)
        return self.readout(self.avgpool(x).flatten(1))
