import torch
import torch.nn.functional as F

from pipeline.objectives.augment import (augment, color_jitter, grayscale, preprocess,
                                         random_resized_crop, to_unit)

PRE = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "input_size": 8}


def images(n=6, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_full_crop_without_flip_is_the_identity():
    x = to_unit(images())
    out = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                              ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    flipped = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0),
                                  ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(flipped, x.flip(3), atol=1e-5, rtol=0)


def test_zero_jitter_is_the_identity_and_greyscale_has_equal_channels():
    x = to_unit(images())
    same = color_jitter(x, torch.Generator().manual_seed(0), brightness=0, contrast=0,
                        saturation=0, hue=0)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    gray = grayscale(x)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    jittered = color_jitter(x, torch.Generator().manual_seed(0), brightness=0.4, contrast=0.4,
                            saturation=0.4, hue=0.4)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, x)


def test_views_repeat_with_the_seed_and_differ_between_draws():
    settings = {"crop_scale": [0.2, 1.0], "jitter": [0.4, 0.4, 0.4, 0.4], "jitter_p": 1.0,
                "grayscale_p": 0.2}
    a = augment(images(), PRE, settings, torch.Generator().manual_seed(3))
    b = augment(images(), PRE, settings, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (6, 3, 8, 8)
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(augment(images(), PRE, settings, g), augment(images(), PRE, settings, g))


def test_preprocess_resizes_bilinearly_then_standardises():
    x = images(size=12)
    out = preprocess(x, PRE)
    resized = F.interpolate(x.float() / 255, size=(8, 8), mode="bilinear", antialias=True)
    mean, std = torch.tensor(PRE["mean"]).view(1, 3, 1, 1), torch.tensor(PRE["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (resized - mean) / std)
    assert preprocess(images(size=8), PRE).shape == (6, 3, 8, 8)
