import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.objectives.instance import MemoryBank, instance_loss, knn_predict


def setup(seed, n_items=12, batch=4, dim=5):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(n_items, dim, generator=g, dtype=torch.float64), dim=1)
    f = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    index = torch.randperm(n_items, generator=g)[:batch]
    return f, bank, index


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whole_bank_loss_equals_the_non_parametric_softmax(seed):
    f, bank, index = setup(seed)
    tau = 0.07
    direct = 0.0
    for b in range(len(f)):
        scores = [math.exp(float(f[b] @ bank[j]) / tau) for j in range(len(bank))]
        direct += -math.log(scores[index[b]] / sum(scores))
    loss, _ = instance_loss(f, bank, index, tau)
    assert loss.item() == pytest.approx(direct / len(f), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_loss_equals_positive_against_the_drawn_negatives(seed):
    f, bank, index = setup(seed)
    negatives = torch.tensor([3, 7, 7, 0, 11])
    tau = 0.2
    direct = 0.0
    for b in range(len(f)):
        positive = math.exp(float(f[b] @ bank[index[b]]) / tau)
        others = sum(math.exp(float(f[b] @ bank[j]) / tau) for j in negatives.tolist())
        direct += -math.log(positive / (positive + others))
    loss, accuracy = instance_loss(f, bank, index, tau, negatives)
    assert loss.item() == pytest.approx(direct / len(f), rel=1e-10)
    assert instance_loss(bank[index], bank, index, tau)[1].item() == 1.0   # own entry wins


def test_bank_update_is_a_normalised_momentum_average():
    torch.manual_seed(0)
    memory = MemoryBank(6, 3)
    old = memory.bank.clone()
    f = F.normalize(torch.randn(2, 3), dim=1)
    memory.update(torch.tensor([4, 1]), f, 0.5)
    expected = F.normalize(0.5 * old[[4, 1]] + 0.5 * f, dim=1)
    torch.testing.assert_close(memory.bank[[4, 1]], expected)
    torch.testing.assert_close(memory.bank[[0, 2, 3, 5]], old[[0, 2, 3, 5]])
    torch.testing.assert_close(memory.bank.norm(dim=1), torch.ones(6))


def test_knn_votes_by_weighted_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    bank = F.normalize(bank, dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    queries = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    assert knn_predict(queries, bank, labels, 3, 0.07, 2).tolist() == [0, 1]
