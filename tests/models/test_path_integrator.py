"""Path-integrator architectures: names, shapes, cell equations, a peer (torch LSTMCell), and
conversion by learning rules."""

import pytest
import torch
from torch import nn

from pipeline.learning import FBLinear, make_rule
from pipeline.models.names import PATH_ARCHS, parse_model_name
from pipeline.models.path_integrator import PathIntegrator, split_arch


@pytest.mark.parametrize("arch", PATH_ARCHS)
def test_every_arch_runs_and_exposes_its_layers(arch):
    torch.manual_seed(0)
    net = PathIntegrator(arch, n_init=16, n_out=16, n_units=12, n_input=5)
    layers = net.run(torch.randn(3, 7, 2), torch.rand(3, 16))
    assert tuple(layers) == net.layer_names
    widths = {"pre_g": 12, "g": 12, "dc": 16}
    for name, value in layers.items():
        assert value.shape == (3, 7, widths[name])
    assert net.recurrent_weights()                       # the L2 penalty has matrices
    assert all(w.shape[1] == 12 for w in net.recurrent_weights())
    assert parse_model_name(f"{arch}-placecell-bp-s0").arch == arch


def test_ugrnn_step_follows_its_equation():
    torch.manual_seed(1)
    net = PathIntegrator("ugrnn_relu", n_init=4, n_out=4, n_units=6, n_input=3)
    x, h = torch.randn(2, 3), torch.randn(2, 6)
    g, c = (net.cell.x_proj(x) + net.cell.h_proj(h)).chunk(2, -1)
    u = torch.sigmoid(g + 1.0)
    expected = u * h + (1 - u) * torch.relu(c)
    assert torch.allclose(net.cell(x, h)[0], expected)


def test_lstm_tanh_equals_torch_lstm_cell():
    """Gate order (i, f, o, candidate) and the +1 forget bias mapped onto torch's (i, f, g, o)."""
    torch.manual_seed(2)
    net = PathIntegrator("lstm_tanh", n_init=4, n_out=4, n_units=5, n_input=3)
    peer = nn.LSTMCell(3, 5)
    Wx, Wh, b = net.cell.x_proj.weight, net.cell.h_proj.weight, net.cell.x_proj.bias
    i, f, o, g = range(4)
    order = [i, f, g, o]
    blocks = lambda w: torch.cat([w[k * 5:(k + 1) * 5] for k in order])
    with torch.no_grad():
        peer.weight_ih.copy_(blocks(Wx))
        peer.weight_hh.copy_(blocks(Wh))
        bias = blocks(b).clone()
        bias[5:10] += 1.0
        peer.bias_ih.copy_(bias)
        peer.bias_hh.zero_()
    x, h, c = torch.randn(2, 3), torch.randn(2, 5), torch.randn(2, 5)
    out, state = net.cell(x, torch.cat([h, c], -1))
    h2, c2 = peer(x, (h, c))
    assert torch.allclose(out, h2, atol=1e-6) and torch.allclose(state[:, 5:], c2, atol=1e-6)


def test_rnn_is_the_two_layer_form():
    net = PathIntegrator("rnn_tanh", n_init=4, n_out=4, n_units=8)
    assert net.layer_names == ("g", "dc") and net.input is None and net.g is None


@pytest.mark.parametrize("rule", ["fa", "kp"])
def test_learning_rules_convert_every_weight_and_keep_the_function(rule):
    torch.manual_seed(3)
    net = PathIntegrator("gru_relu", n_init=8, n_out=8, n_units=10, n_input=4)
    v, init = torch.randn(2, 5, 2), torch.rand(2, 8)
    before = net(v, init)
    make_rule(rule).convert(net)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, FBLinear) for m in linears)
    assert torch.allclose(net(v, init), before, atol=1e-6)


def test_names_reject_mixtures_and_bad_archs():
    with pytest.raises(ValueError, match="cannot be trained on objective"):
        parse_model_name("ugrnn_relu-supervised-bp-s0")
    with pytest.raises(ValueError, match="Hebbian"):
        parse_model_name("lstm_relu-placecell-hebb-s0")
    with pytest.raises(ValueError, match="unknown path-integrator arch"):
        split_arch("ugrnn_softplus")


def test_the_image_zoo_refuses_a_path_integrator():
    from pipeline.models.names import check_model

    with pytest.raises(ValueError, match="list it under mec.models"):
        check_model("ugrnn_relu-placecell-bp-s0", input_size=32, epochs=1)
