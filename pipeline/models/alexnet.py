"""AlexNet adapted to 64 px inputs, the mouse-vision AlexNet of spec §2.4.

torchvision's AlexNet layout ("one weird trick" widths 64-192-384-256-256) with batch
normalisation after every conv and hidden fc layer, as the released `alexnet_bn_ir_64x64_input_pool_6`
(the thesis' best mouse model): five convs (11×11 stride 4, 5×5, 3×3, 3×3, 3×3) with 3×3 stride-2
max-pools after conv1, conv2 and conv5, an adaptive 6×6 average pool (at 64 px the pool5 map is
1×1 and is replicated), two 4096-unit fc layers, and a linear readout. At 64 px the
stride-4 conv leaves 15×15, and the third max-pool needs at least 3×3, so 63 px is the smallest
input (spec §2.4: "64 px is AlexNet's minimum because of its extra max-pool").
"""

from __future__ import annotations

from torch import nn

POOL_SIZE = 6
FC_WIDTH = 4096
# (out channels, kernel, stride, padding, max-pool after) of conv1..conv5.
CONVS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
         (256, 3, 1, 1, False), (256, 3, 1, 1, True))


def _side_after(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output side of a conv or pool on a size×size input (floor convention; < 1 if too small)."""
    return (size + 2 * padding - kernel) // stride + 1


def pool5_side(input_size: int) -> int:
    """Side of the pool5 map for a square input; < 1 when some conv or pool has no room."""
    side = input_size
    for _, kernel, stride, padding, pool in CONVS:
        side = _side_after(side, kernel, stride, padding)
        if pool:
            side = _side_after(side, 3, 2) if side >= 3 else 0
    return side


def min_input_size() -> int:
    """Smallest square input for which every conv and max-pool keeps at least one position."""
    return next(size for size in range(1, 512) if pool5_side(size) >= 1)


class AlexNet64(nn.Module):
    """AlexNet (BN) for small inputs, with torchvision's module names and a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least `min_input_size()` (63).
    in_channels : int
        Input channels (3 for RGB).
    batch_norm : bool
        BatchNorm after every conv and hidden fc layer (the released BN variant, default);
        False gives torchvision's plain AlexNet layout (`alexnet_64x64_input_pool_6`).

    Attributes
    ----------
    layer_names : tuple of str
        The layers the thesis compares with mouse visual cortex (mouse-vision `model_layers.py`):
        pool1, pool2, relu3, relu4, pool5 (`features.*`), relu6, relu7 (`classifier.*`), and
        `readout`. Without batch norm the same layers have torchvision's smaller indices.
    feature_dim : int
        Input size of the readout (4096).
    """

    def __init__(self, n_classes: int, input_size: int, *, in_channels: int = 3,
                 batch_norm: bool = True):
        super().__init__()
        smallest = min_input_size()
        if input_size < smallest:
            raise ValueError(f"input_size must be at least {smallest} for alexnet64 "
                             f"(three 3×3 stride-2 max-pools after a stride-4 conv); got {input_size}")
        features, exposed, n_in = [], [], in_channels
        for n_out, kernel, stride, padding, pool in CONVS:
            features.append(nn.Conv2d(n_in, n_out, kernel, stride, padding))
            if batch_norm:
                features.append(nn.BatchNorm2d(n_out))
            features.append(nn.ReLU(inplace=True))
            if pool:
                features.append(nn.MaxPool2d(3, 2))
            exposed.append(f"features.{len(features) - 1}")
            n_in = n_out
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(POOL_SIZE)
        hidden = []
        for n_in_fc in (n_in * POOL_SIZE * POOL_SIZE, FC_WIDTH):
            hidden += [nn.Dropout(), nn.Linear(n_in_fc, FC_WIDTH)]
            hidden += [nn.BatchNorm1d(FC_WIDTH)] if batch_norm else []
            hidden.append(nn.ReLU(inplace=True))
            exposed.append(f"classifier.{len(hidden) - 1}")
        self.classifier = nn.Sequential(*hidden)
        self.feature_dim = FC_WIDTH
        self.readout = nn.Linear(FC_WIDTH, n_classes)
        self.layer_names = (*exposed, "readout")

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        x = self.avgpool(self.features(x)).flatten(1)
        return self.readout(self.classifier(x))
