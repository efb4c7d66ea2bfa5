"""VGG-16 in torchvision's layout, written in plain torch.nn (spec §2.4, supervised at 64 px).

Thirteen 3×3 convs (pad 1) in five stages of 64, 128, 256, 512, 512 channels, each stage
ended by a 2×2 max-pool; an adaptive 7×7 average pool; fc 4096 → ReLU → dropout twice; a
linear readout. Without batch norm, as torchvision's `vgg16` that the thesis' `vgg16_64x64_input`
uses. Module names follow torchvision (`features.*`, `classifier.*`) except that its last fc,
`classifier.6`, is `readout`; 138,357,544 parameters at 1000 classes. Five 2×2 pools need
inputs of at least 32 px; at 64 px the last map is 2×2 and the average pool replicates it.
"""

from __future__ import annotations

from torch import nn

# Conv widths per stage of VGG-16 (configuration "D").
STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
POOL_SIZE = 7
FC_WIDTH = 4096
MIN_INPUT_SIZE = 2 ** len(STAGES)


class VGG16(nn.Module):
    """VGG-16 (Simonyan & Zisserman 2015) with a linear readout.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    input_size : int
        Height = width of the input images; at least 32.
    in_channels : int
        Input channels (3 for RGB).

    Attributes
    ----------
    layer_names : tuple of str
        The five pool outputs (`features.4, .9, .16, .23, .30`), the two fc ReLUs
        (`classifier.1, .4`), as mouse-vision `model_layers.py` compares them, and `readout`.
    feature_dim : int
        Input size of the readout (4096).
    """

    def __init__(self, n_classes: int, input_size: int, *, in_channels: int = 3):
        super().__init__()
        if input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} for vgg16 "
                             f"(five 2×2 max-pools); got {input_size}")
        features, exposed, n_in = [], [], in_channels
        for widths in STAGES:
            for width in widths:
                features += [nn.Conv2d(n_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                n_in = width
            features.append(nn.MaxPool2d(2))
            exposed.append(f"features.{len(features) - 1}")
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(POOL_SIZE)
        self.classifier = nn.Sequential(
            nn.Linear(n_in * POOL_SIZE * POOL_SIZE, FC_WIDTH), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(FC_WIDTH, FC_WIDTH), nn.ReLU(inplace=True), nn.Dropout(),
        )
        self.feature_dim = FC_WIDTH
        self.readout = nn.Linear(FC_WIDTH, n_classes)
        self.layer_names = (*exposed, "classifier.1", "classifier.4", "readout")
        # torchvision's initialisation: kaiming-normal fan-out convs, N(0, 0.01) fc, zero biases.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        """Logits (batch, n_classes) for images (batch, channel, y, x)."""
        x = self.avgpool(self.features(x)).flatten(1)
        return self.readout(self.classifier(x))
