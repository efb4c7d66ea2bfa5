import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF

from pipeline.learning import make_rule
from pipeline.learning.nmf import (NMFLayer, NMFNet, beta_divergence, fit_nmf,
                                   nonnegative_split, transform)
from pipeline.models import build_model, layer_outputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")
LOSSES = ["frobenius", "kullback-leibler"]


def _data(seed=0, n=60, pixels=40, k=6):
    """Non-negative data of rank k plus noise, and random non-negative starting factors."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, k)) @ rng.random((k, pixels)) + 0.05 * rng.random((n, pixels))
    X[rng.random(X.shape) < 0.1] = 0.0                  # exact zeros, as in images
    return X, rng.random((n, k)) + 0.1, rng.random((k, pixels)) + 0.1


@pytest.mark.parametrize("beta_loss", LOSSES)
def test_multiplicative_updates_never_increase_the_objective(beta_loss):
    X, W, H = (torch.from_numpy(a) for a in _data())
    _, _, losses = fit_nmf(X, W, H, beta_loss=beta_loss, max_iter=150, tol=0, loss_every=1)
    losses = np.array(losses)
    assert len(losses) == 151 and losses[-1] < 0.5 * losses[0]
    assert (np.diff(losses) <= 1e-12 * losses[:-1]).all()


@pytest.mark.parametrize("beta_loss", LOSSES)
@pytest.mark.parametrize("tol", [0.0, 1e-3])
def test_fit_equals_sklearn_mu(beta_loss, tol):
    X, W, H = _data(seed=1)
    ours_w, ours_h, losses = fit_nmf(torch.from_numpy(X), torch.from_numpy(W.copy()),
                                     torch.from_numpy(H.copy()), beta_loss=beta_loss,
                                     max_iter=120, tol=tol)
    model = NMF(6, init="custom", solver="mu", beta_loss=beta_loss, max_iter=120, tol=tol)
    theirs_w = model.fit_transform(X, W=W.copy(), H=H.copy())
    assert (len(losses) - 1) * 10 == model.n_iter_
    np.testing.assert_allclose(ours_w.numpy(), theirs_w, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours_h.numpy(), model.components_, rtol=1e-7, atol=1e-10)
    assert 2 * losses[-1] == pytest.approx(model.reconstruction_err_ ** 2, rel=1e-8)


@pytest.mark.parametrize("beta_loss", LOSSES)
def test_transform_solves_codes_for_fixed_components(beta_loss):
    """Codes of new data with the components fixed: the objective beats the starting codes,
    and one image's code does not depend on the others in its batch."""
    X, _, H = (torch.from_numpy(a) for a in _data(seed=2))
    losses = [float(beta_divergence(X, transform(X, H, beta_loss=beta_loss, n_iter=n), H,
                                    beta_loss)) for n in (0, 1, 10, 200)]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    codes = transform(X, H, beta_loss=beta_loss, n_iter=200)
    torch.testing.assert_close(transform(X[:5], H, beta_loss=beta_loss, n_iter=200), codes[:5])


def test_nonnegative_split_keeps_the_signed_image():
    x = torch.randn(4, 3, 8, 8)
    X = nonnegative_split(x, 8)
    assert X.shape == (4, 384) and (X >= 0).all()
    torch.testing.assert_close(X[:, :192] - X[:, 192:], x.flatten(1))
    assert nonnegative_split(x, 4).shape == (4, 96)


@pytest.mark.parametrize("arch", ["lenet", "ventral_cnn"])
def test_rule_turns_any_arch_into_one_nmf_layer_and_a_readout(arch):
    torch.manual_seed(0)
    rule = make_rule("nmf")
    model = rule.convert(build_model(arch, 7, 32)).train()
    assert isinstance(model, NMFNet) and model.layer_names == ("nmf", "readout")
    assert model.nmf.components.shape == (128, 2 * 3 * 32 * 32)      # the arch's readout width
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 7
    before = model.nmf.components.clone()
    optimizers = rule.optimizers(model, lr=0.1, momentum=0.0, weight_decay=0.0)
    assert {id(p) for p in optimizers[0].param_groups[0]["params"]} == {
        id(model.readout.weight), id(model.readout.bias)}
    logits, loss = rule.step(model, x, y, optimizers)
    assert logits.shape == (16, 7) and torch.isfinite(loss)
    assert model.nmf.components.grad is None and (model.nmf.components >= 0).all()
    assert not torch.equal(model.nmf.components, before) and model.nmf.cache is None
    outputs = layer_outputs(model.eval(), x)
    assert outputs["nmf"].shape == (16, 128) and (outputs["nmf"] >= 0).all()


def test_online_updates_lower_the_objective_on_the_data():
    """A pass of mini-batch steps fits the data better than the random components did."""
    torch.manual_seed(0)
    rule = make_rule("nmf", {"n_components": 16, "resolution": 8})
    model = rule.convert(build_model("lenet", 3, 8)).train()
    images = torch.rand(256, 3, 8, 8) * torch.rand(256, 1, 1, 1)
    X = nonnegative_split(images, 8)

    def objective():
        H = model.nmf.components
        return float(beta_divergence(X, transform(X, H, n_iter=50), H))

    start = objective()
    optimizers = rule.optimizers(model, lr=0.01, momentum=0.0, weight_decay=0.0)
    for _ in range(3):
        for batch in images.split(32):
            rule.step(model, batch, torch.zeros(len(batch), dtype=torch.long), optimizers)
    assert objective() < 0.5 * start


def test_checkpoint_of_other_settings_loads_into_a_default_build():
    """Extraction rebuilds the backbone with default settings: shapes and settings come from
    the stored tensors."""
    torch.manual_seed(0)
    trained = make_rule("nmf", {"n_components": 12, "resolution": 16, "transform_iter": 7,
                                "beta_loss": "kullback-leibler"}).convert(
        build_model("lenet", 5, 32))
    with torch.device("meta"):
        rebuilt = make_rule("nmf").convert(build_model("lenet", 5, 32))
    rebuilt.load_state_dict(trained.state_dict(), assign=True)
    assert rebuilt.nmf.settings == ("kullback-leibler", 7, 16)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(rebuilt.eval()(x), trained.eval()(x))


def test_nmf_settings_are_checked():
    with pytest.raises(ValueError, match="beta_loss must be one of frobenius, kullback-leibler"):
        make_rule("nmf", {"beta_loss": "itakura-saito"})
    with pytest.raises(ValueError, match="n_components must be a positive int or null"):
        make_rule("nmf", {"n_components": 0})
    with pytest.raises(ValueError, match="needs non-negative data"):
        fit_nmf(-torch.ones(2, 2), torch.ones(2, 1), torch.ones(1, 2))
    assert isinstance(NMFLayer(4, 8).settings, tuple)
