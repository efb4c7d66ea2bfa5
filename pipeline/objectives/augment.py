"""Image batches → network inputs: preprocessing, flips and the contrastive augmentations.

Everything runs in torch on whole batches (torchvision is not available). Random draws come
from a CPU `torch.Generator` and are moved to the batch's device, so a seed gives the same
views on CPU and GPU. Augmentations act on images scaled to [0, 1], before standardisation.
The contrastive recipe (`augment`) follows the spec §2.4 table: RandomResizedCrop, horizontal
flip, colour jitter (brightness, contrast, saturation, hue), random greyscale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RGB → YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def to_unit(batch: torch.Tensor, input_size: int | None = None) -> torch.Tensor:
    """uint8 (batch, channel, y, x) → float32 in [0, 1], resized to input_size² if it differs.

    Resizing is bilinear with antialiasing (torchvision's Resize on tensors), so a model
    trained at another resolution sees its stimuli as in training (spec §2.4 resolution sweep).
    """
    x = batch.float() / 255
    if input_size is not None and tuple(x.shape[-2:]) != (input_size, input_size):
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x


def standardise(x: torch.Tensor, preprocessing: dict) -> torch.Tensor:
    """Subtract the per-channel mean and divide by the std of `preprocessing`."""
    mean = torch.tensor(preprocessing["mean"], device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"], device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def preprocess(batch: torch.Tensor, preprocessing: dict) -> torch.Tensor:
    """uint8 (batch, channel, y, x) → float32 resized to `preprocessing["input_size"]` (when
    given) and standardised per channel."""
    return standardise(to_unit(batch, preprocessing.get("input_size")), preprocessing)


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (mask drawn on CPU for determinism)."""
    mask = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def _uniform(n, low, high, generator):
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, *,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip_p: float = 0.5
                        ) -> torch.Tensor:
    """A random crop of each image, resized back to the input size, mirrored with flip_p.

    The crop covers a fraction U(scale) of the image area with aspect ratio log-uniform in
    `ratio` (sides clipped to the image, where torchvision would redraw), at a uniform position;
    it is resampled bilinearly through an affine grid.
    """
    n = len(x)
    area = _uniform(n, *scale, generator)
    log_ratio = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator)
    width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)       # fractions of the side
    height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (1 - width) * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    cy = (1 - height) * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    mirror = torch.where(torch.rand(n, generator=generator) < flip_p, -1.0, 1.0).double()
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images (batch, 3, y, x), repeated over the three channels."""
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


def _per_image(values, x):
    return values.to(x.device, x.dtype).view(-1, 1, 1, 1)


def color_jitter(x: torch.Tensor, generator: torch.Generator, *, brightness: float,
                 contrast: float, saturation: float, hue: float, p: float = 1.0
                 ) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue of RGB images in [0, 1], applied (in
    that fixed order) to each image with probability p.

    Factors are U(max(0, 1 − s), 1 + s) as in torchvision's ColorJitter; the hue shift is
    U(−hue, hue) of a full turn, a rotation of the YIQ chroma plane (an approximation of
    torchvision's HSV shift that keeps the luma).
    """
    if x.shape[1] != 3:
        raise ValueError(f"colour jitter needs RGB images; got {x.shape[1]} channels")
    n = len(x)
    apply = _per_image((torch.rand(n, generator=generator) < p).float(), x)
    factors = [_uniform(n, max(0.0, 1 - s), 1 + s, generator) for s in
               (brightness, contrast, saturation)]
    angle = 2 * math.pi * _uniform(n, -hue, hue, generator)
    out = (x * _per_image(factors[0], x)).clamp(0, 1)
    mean = grayscale(out).mean((1, 2, 3), keepdim=True)
    out = ((out - mean) * _per_image(factors[1], x) + mean).clamp(0, 1)
    gray = grayscale(out)
    out = ((out - gray) * _per_image(factors[2], x) + gray).clamp(0, 1)
    yiq = torch.einsum("ij,bjyx->biyx", _YIQ.to(x.device, x.dtype), out)
    cos, sin = _per_image(angle.cos(), x)[:, 0], _per_image(angle.sin(), x)[:, 0]
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    out = torch.einsum("ij,bjyx->biyx", torch.linalg.inv(_YIQ).to(x.device, x.dtype), yiq)
    out = out.clamp(0, 1)
    return apply * out + (1 - apply) * x


def random_grayscale(x: torch.Tensor, generator: torch.Generator, p: float) -> torch.Tensor:
    """Greyscale each image with probability p."""
    mask = _per_image((torch.rand(len(x), generator=generator) < p).float(), x)
    return mask * grayscale(x) + (1 - mask) * x


def augment(batch: torch.Tensor, preprocessing: dict, settings: dict,
            generator: torch.Generator) -> torch.Tensor:
    """One random view of each uint8 image: crop + flip, colour jitter, greyscale, standardise.

    Parameters
    ----------
    batch : torch.Tensor
        uint8 (image, channel, y, x).
    preprocessing : dict
        mean, std and input_size (see `preprocess`).
    settings : dict
        crop_scale [min, max] area fraction, jitter [brightness, contrast, saturation, hue],
        jitter_p, grayscale_p.
    """
    x = to_unit(batch, preprocessing.get("input_size"))
    x = random_resized_crop(x, generator, scale=tuple(settings["crop_scale"]))
    b, c, s, h = settings["jitter"]
    x = color_jitter(x, generator, brightness=b, contrast=c, saturation=s, hue=h,
                     p=settings["jitter_p"])
    x = random_grayscale(x, generator, settings["grayscale_p"])
    return standardise(x, preprocessing)
