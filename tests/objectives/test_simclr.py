import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.objectives.simclr import nt_xent


def nt_xent_direct(z, tau):
    """Chen et al. 2020 Alg. 1 by an explicit double loop over ordered pairs."""
    n2 = len(z)
    n = n2 // 2
    sim = [[float(F.cosine_similarity(z[i], z[j], dim=0)) for j in range(n2)] for i in range(n2)]
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denominator = sum(math.exp(sim[i][k] / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim[i][j] / tau) / denominator)
    return total / n2


@pytest.mark.parametrize(("seed", "n", "tau"), [(0, 3, 0.1), (1, 5, 0.5), (2, 2, 1.0)])
def test_nt_xent_equals_the_direct_formula(seed, n, tau):
    z = torch.randn(2 * n, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss, _ = nt_xent(z, tau)
    assert loss.item() == pytest.approx(nt_xent_direct(z, tau), rel=1e-10)


def test_nt_xent_accuracy_and_minimum():
    base = torch.eye(4, dtype=torch.float64)
    loss, accuracy = nt_xent(torch.cat([base, base]), 0.05)       # views agree exactly
    assert accuracy.item() == 1.0 and loss.item() < 1e-6 * 100
    swapped = torch.cat([base, base[[1, 0, 3, 2]]])               # every positive is wrong
    assert nt_xent(swapped, 0.05)[1].item() == 0.0
    with pytest.raises(ValueError, match="even number of views"):
        nt_xent(torch.randn(5, 3), 0.1)
