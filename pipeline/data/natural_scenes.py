"""The Allen natural scenes, shared by every Allen source: ids, preprocessing, StimulusSet.

The Brain Observatory natural-scenes set has 118 grayscale images (918 × 1174) in a fixed order;
presentation tables index them by ``frame`` 0..117 (-1 = blank). Every Allen dataset names image
``frame`` ``allen_ns_{frame:03d}``, so assemblies and stimulus sets of all Allen sources line up
by stimulus_id. Images come from the warehouse TIFFs (Neuropixels; AllenSDK
``get_natural_scene_template``; `pipeline.data.allen_neuropixels`), the two-photon NWB template
stack (`pipeline.data.allen_ophys`) or a downsampled snapshot (`pipeline.data.allen_psailamul`),
and are preprocessed as the spec's validation transform (§2.2): resize the short side to 256,
centre-crop 224, resize to `size`; grayscale is repeated to 3 channels. The layout is that of
`pipeline.data.stimuli`: ``image`` (stimulus, y, x, channel) uint8, coord stimulus_id, attrs
name and sha256.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from pipeline.data.stimuli import stimulus_set_sha256

N_SCENES = 118
TEMPLATE_RE = re.compile(r".*/(?P<num>\d+)\.tiff?$")


def natural_scene_ids(n: int = N_SCENES) -> np.ndarray:
    """stimulus_id of each natural-scene frame index 0..n-1."""
    return np.array([f"allen_ns_{i:03d}" for i in range(n)])


def preprocess(image: np.ndarray, size: int, *, resize: int = 256, crop: int = 224) -> np.ndarray:
    """Short side to `resize`, centre crop `crop` (skipped when 0), then `size` × `size`.

    Bilinear with antialiasing (PIL), as torchvision's Resize on PIL images.
    """
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if crop:
        w, h = img.size
        scale = resize / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
        w, h = img.size
        left, top = int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))
        img = img.crop((left, top, left + crop, top + crop))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def stimulus_set(images, *, name: str, size: int | None = 64, crop: int = 224,
                 resize: int = 256, attrs: dict | None = None) -> xr.Dataset:
    """A StimulusSet of natural-scene images in frame order.

    Parameters
    ----------
    images : array-like
        (n, y, x) uint8 grayscale, image i = frame i.
    name : str
        Stored as attrs["name"] (the store is ``results/stimuli/{name}.zarr``).
    size : int or None
        Output side in pixels; None keeps the images as they are (already downsampled sets).
    crop, resize : int
        The validation transform's centre crop and short-side resize; crop 0 skips both.
    attrs : dict, optional
        Provenance added to the attrs.

    Returns
    -------
    xarray.Dataset
        ``image`` (stimulus, y, x, channel) uint8 with 3 identical channels; coords stimulus_id
        and frame; attrs name, sha256, preprocessing.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"stimulus_set {name}: images must be (n, y, x) grayscale; "
                         f"got shape {images.shape}")
    if size is not None:
        images = np.stack([preprocess(im, size, resize=resize, crop=crop) for im in images])
    rgb = np.repeat(images.astype(np.uint8)[..., None], 3, axis=-1)
    ds = xr.Dataset({"image": (("stimulus", "y", "x", "channel"), rgb)},
                    coords={"stimulus_id": ("stimulus", natural_scene_ids(len(rgb))),
                            "frame": ("stimulus", np.arange(len(rgb)))})
    ds.attrs = {"name": name, **(attrs or {}),
                "preprocessing": ("as given" if size is None else
                                  f"short side {resize}, centre crop {crop}, resize {size}"
                                  if crop else f"resize {size}")}
    ds.attrs["sha256"] = stimulus_set_sha256(ds)
    return ds


def read_tiff_templates(paths) -> np.ndarray:
    """Grayscale template images from ``.../<n>.tiff`` files, ordered by scene number.

    Raises
    ------
    ValueError
        Naming the file whose number is missing, duplicated or that is not grayscale.
    """
    numbered = {}
    for path in map(Path, paths):
        match = TEMPLATE_RE.match("/" + path.as_posix())
        if match is None:
            raise ValueError(f"{path}: template name must end in /<scene number>.tiff")
        number = int(match["num"])
        if number in numbered:
            raise ValueError(f"{path}: scene {number} also in {numbered[number]}")
        numbered[number] = path
    missing = sorted(set(range(len(numbered))) - set(numbered))
    if missing:
        raise ValueError(f"natural-scene templates: scene numbers must be 0..{len(numbered) - 1};"
                         f" missing {missing[:5]}")
    images = []
    for number in range(len(numbered)):
        with Image.open(numbered[number]) as img:
            array = np.asarray(img)
        if array.ndim != 2 or array.dtype != np.uint8:
            raise ValueError(f"{numbered[number]}: expected an 8-bit grayscale image; got "
                             f"shape {array.shape}, dtype {array.dtype}")
        images.append(array)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"natural-scene templates differ in shape: {sorted(shapes)}")
    return np.stack(images)
