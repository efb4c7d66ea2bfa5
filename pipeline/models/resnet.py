"""ResNet-18/34/50 in torchvision's layout, written in plain torch.nn, with a small-input stem.

Stem conv → BN → ReLU (→ max-pool), four stages of residual blocks (base widths 64, 128,
256, 512; stages 2–4 halve the resolution), global average pool, linear readout. ResNet-18
and -34 stack (2, 2, 2, 2) and (3, 4, 6, 3) BasicBlocks; ResNet-50 stacks (3, 4, 6, 3)
Bottlenecks (1×1, 3×3, 1×1 convs, 4× wider output, stride on the 3×3 as torchvision's "v1.5").
Module names and initialisation follow torchvision (kaiming-normal fan-out convs, BN at 1/0),
with `fc` named `readout`; parameter counts equal torchvision's (11,689,512 / 21,797,672 /
25,557,032 at 1000 classes). Inputs under 112 px get the CIFAR stem (3×3 stride-1 conv, no
max-pool) so that 32 px images still reach layer4 at 4×4; larger ones the ImageNet stem
(7×7 stride-2 conv and 3×3 stride-2 max-pool).
"""

from __future__ import annotations

from torch import nn

STAGES = ("layer1", "layer2", "layer3", "layer4")
SMALL_INPUT = 112


def _shortcut(n_in: int, n_out: int, stride: int) -> nn.Module | None:
    """1×1 conv-BN projection where the block changes shape, else None (identity)."""
    if stride == 1 and n_in == n_out:
        return None
    return nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride, bias=False), nn.BatchNorm2d(n_out))


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and an identity (or 1×1 conv-BN) shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, n_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(n_in, width, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand conv-BN layers and a shortcut, ReLU after the sum."""

    expansion = 4

    def __init__(self, n_in: int, width: int, stride: int = 1):
        super().__init__()
        n_out = width * self.expansion
        self.conv1 = nn.Conv2d(n_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, n_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(n_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(n_in, n_out, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# Depth -> (block type, blocks per stage), as torchvision's resnet18/34/50.
DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet (He et al. 2016) of a given depth with a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 8; below 112 px the small-input stem is used.
    depth : {18, 34, 50}
        Number of weighted layers (`DEPTHS`).
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        `layer1`..`layer4` (stage outputs) and `readout` (logits).
    feature_dim : int
        Input size of the readout (512 × the block's expansion).
    """

    def __init__(self, n_classes: int, input_size: int, *, depth: int = 18,
                 in_channels: int = 3):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {', '.join(map(str, DEPTHS))}; got {depth!r}")
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
        block, counts = DEPTHS[depth]
        n_in = 64
        for name, width, count in zip(STAGES, (64, 128, 256, 512), counts):
            stride = 1 if name == "layer1" else 2
            blocks = [block(n_in, width, stride)]
            n_in = width * block.expansion
            blocks += [block(n_in, width) for _ in range(count - 1)]
            self.add_module(name, nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = n_in
        self.readout = nn.Linear(n_in, n_classes)
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


def resnet18(n_classes: int, input_size: int, **kwargs) -> ResNet:
    """ResNet-18: (2, 2, 2, 2) BasicBlocks."""
    return ResNet(n_classes, input_size, depth=18, **kwargs)


def resnet34(n_classes: int, input_size: int, **kwargs) -> ResNet:
    """ResNet-34: (3, 4, 6, 3) BasicBlocks."""
    return ResNet(n_classes, input_size, depth=34, **kwargs)


def resnet50(n_classes: int, input_size: int, **kwargs) -> ResNet:
    """ResNet-50: (3, 4, 6, 3) Bottlenecks."""
    return ResNet(n_classes, input_size, depth=50, **kwargs)
