import copy
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.learning import make_rule
from pipeline.models import ARCHS, OBJECTIVES, RULES, build_model
from pipeline.models.names import OBJECTIVE_UNSUPPORTED_RULES
from pipeline.objectives import OBJECTIVE_CLASSES, OBJECTIVE_DEFAULTS, ObjectiveNet, make_objective

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
# Small heads keep the parametrised tests fast; the defaults are checked against the schema.
SMALL = {"simclr": {"hidden_dim": 32, "projection_dim": 16}, "instance": {"embedding_dim": 16},
         "autoencoder": {"embedding_dim": 16, "channels": 16}}
PREPROCESSING = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def test_registry_is_the_model_name_registry():
    assert tuple(OBJECTIVE_CLASSES) == OBJECTIVES
    assert all(make_objective(name).name == name for name in OBJECTIVES)


def test_schema_defaults_equal_objective_defaults():
    schema = yaml.safe_load(SCHEMA.read_text())
    models = schema["properties"]["models"]["properties"]
    assert models["objectives"]["items"]["enum"] == list(OBJECTIVES)
    block = models["objective_settings"]
    assert block["additionalProperties"] is False and list(block["properties"]) == list(OBJECTIVES)
    for name, sub in block["properties"].items():
        assert sub["additionalProperties"] is False and sub["default"] == {}
        assert {k: v["default"] for k, v in sub["properties"].items()} == OBJECTIVE_DEFAULTS[name]


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match=r"objective 'simclr' have unknown key\(s\) \['tau'\]"):
        make_objective("simclr", {"tau": 0.5})
    with pytest.raises(ValueError, match="unknown objective 'moco'"):
        make_objective("moco")


def build_net(arch, objective, size, rule="bp", n_classes=3, n_train=4):
    backbone = build_model(arch, objective.readout_size(n_classes), size)
    heads = objective.heads(backbone, input_size=size, n_train=n_train)
    return make_rule(rule).convert(ObjectiveNet(backbone, heads))


def smallest_size(arch):
    """(the smallest of 16, 32, 64 px the architecture accepts, its parameter count there);
    built on the meta device, so no memory or time is spent on weights."""
    for size in (16, 32, 64):
        try:
            with torch.device("meta"):
                model = build_model(arch, 2, size)
            return size, sum(p.numel() for p in model.parameters())
        except ValueError:
            continue
    return None, 0


def arch_cases():
    """Every registered arch at its smallest size; nets over 12 M parameters are marked slow."""
    cases = []
    for arch in ARCHS:
        size, n_params = smallest_size(arch)
        marks = [pytest.mark.slow] if n_params > 12e6 else []
        if size is None:
            marks = [pytest.mark.skip(reason=f"{arch} needs inputs above 64 px")]
        cases.append(pytest.param(arch, size, marks=marks, id=arch))
    return cases


def batch(size, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("objective_name", OBJECTIVES)
@pytest.mark.parametrize(("arch", "size"), arch_cases())
def test_every_arch_and_objective_runs_forward_and_backward(arch, size, objective_name):
    torch.manual_seed(0)
    objective = make_objective(objective_name, SMALL.get(objective_name))
    net = build_net(arch, objective, size).train()
    images, labels = batch(size)
    accuracy, loss = objective.loss(net, images, labels, index=torch.arange(4),
                                    preprocessing={**PREPROCESSING, "input_size": size},
                                    generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.ndim == 0 and accuracy.ndim == 0
    loss.backward()
    assert net.backbone.readout.weight.grad is not None
    for head in net.heads.values():
        for p in head.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("objective_name", OBJECTIVES)
@pytest.mark.parametrize("rule", RULES)
def test_every_rule_takes_a_step_on_every_objective(rule, objective_name):
    torch.manual_seed(0)
    objective = make_objective(objective_name, SMALL.get(objective_name))
    if rule in OBJECTIVE_UNSUPPORTED_RULES.get(objective_name, {}):
        with pytest.raises(ValueError, match=f"cannot be trained with rule '{rule}'"):
            objective.check_rule(rule)
        return
    r = make_rule(rule)
    net = build_net("ventral_cnn", objective, 16, rule, n_train=8).train()
    before = copy.deepcopy(net.state_dict())
    optimizers = r.optimizers(net, lr=0.1, momentum=0.9, weight_decay=5e-4)
    images, labels = batch(16, n=8)
    preprocessing = {**PREPROCESSING, "input_size": 16}
    loss_fn = lambda model, x, y: objective.loss(model, x, y, index=torch.arange(8),  # noqa: E731
                                                 preprocessing=preprocessing,
                                                 generator=torch.Generator().manual_seed(0))
    _, loss = r.step(net, images, labels, optimizers, torch.Generator().manual_seed(0),
                     loss_fn=loss_fn)
    assert torch.isfinite(loss)
    after = net.state_dict()
    # ddtp's feedback maps Q appear at the first forward pass: new keys count as changed
    changed = {k for k in after if k not in before or not torch.equal(after[k], before[k])}
    first = "backbone.nmf.components" if rule == "nmf" else "backbone.area1.0.weight"  # nmf's own backbone
    assert "backbone.readout.weight" in changed and first in changed
    head_weights = [k for k in after if k.startswith("heads.") and k.endswith("weight")]
    assert set(head_weights) <= changed


@pytest.mark.parametrize("objective_name", OBJECTIVES)
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(objective_name):
    """Loss measured on a copy of the net in training mode with views of one fixed seed.

    Contrastive objectives get mild views here (crops of half the area or more, no colour
    changes): the spec's views are too hard to learn from 8 images in a few steps."""
    torch.manual_seed(0)
    settings = dict(SMALL.get(objective_name, {}))
    if objective_name in ("simclr", "instance"):
        settings.update(crop_scale=[0.5, 1.0], jitter_p=0.0, grayscale_p=0.0)
    objective = make_objective(objective_name, settings)
    rule = make_rule("bp")
    net = build_net("ventral_cnn", objective, 16, n_train=8).train()
    optimizers = rule.optimizers(net, lr=0.01, momentum=0.9, weight_decay=0.0)
    # Images with structure to learn: a bright square at a random place on a dark background.
    images = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    for i, (y, x) in enumerate(torch.randint(0, 10, (8, 2)).tolist()):
        images[i, i % 3, y:y + 6, x:x + 6] = 255
    labels = torch.arange(8) % 3
    preprocessing = {**PREPROCESSING, "input_size": 16}
    generator = torch.Generator().manual_seed(1)

    def loss_fn(model, x, y, seed=None):
        g = generator if seed is None else torch.Generator().manual_seed(seed)
        return objective.loss(model, x, y, index=torch.arange(8), preprocessing=preprocessing,
                              generator=g)

    def measured():
        return loss_fn(copy.deepcopy(net), images, labels, seed=123)[1].item()

    before = measured()
    for _ in range(40):
        rule.step(net, images, labels, optimizers, None, loss_fn=loss_fn)
    after = measured()
    print(f"{objective_name}: loss {before:.3f} -> {after:.3f}")
    assert after < 0.8 * before
