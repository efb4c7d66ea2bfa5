"""`MIN_INPUT_SIZE`, which `check_model` reads at start-up, agrees with the builders."""

import pytest
import torch

from pipeline.models import ARCHS, MIN_INPUT_SIZE, build_model


def test_every_arch_has_a_minimum():
    assert set(MIN_INPUT_SIZE) == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_min_input_size_is_the_builders_minimum(arch):
    smallest = MIN_INPUT_SIZE[arch]
    with torch.device("meta"):               # shapes only: no weights drawn
        model = build_model(arch, 10, smallest)
        model(torch.zeros(2, 3, smallest, smallest))
        with pytest.raises(ValueError, match=f"input_size must be at least {smallest}"):
            build_model(arch, 10, smallest - 1)
