import copy
import gc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.stats import binom

from pipeline.learning import (RULE_DEFAULTS, RULE_FACTORIES, feedback_layers, make_rule,
                               resolve_rule_settings)
from pipeline.models import RULES, build_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def test_every_registered_rule_has_defaults_and_a_factory():
    assert list(RULE_DEFAULTS) == list(RULES)
    assert list(RULE_FACTORIES) == list(RULES)
    for rule in RULES:
        assert make_rule(rule).name == rule


def test_schema_defaults_equal_rule_defaults():
    schema = yaml.safe_load(SCHEMA.read_text())
    block = schema["properties"]["models"]["properties"]["rule_settings"]
    assert block["additionalProperties"] is False
    assert list(block["properties"]) == list(RULES)
    for rule, sub in block["properties"].items():
        assert sub["additionalProperties"] is False and sub["default"] == {}
        assert {k: v["default"] for k, v in sub["properties"].items()} == RULE_DEFAULTS[rule]
        assert all(v.get("description") for v in sub["properties"].values())


def test_settings_override_defaults_key_by_key():
    assert resolve_rule_settings("wm") == RULE_DEFAULTS["wm"]
    assert resolve_rule_settings("wm") is not RULE_DEFAULTS["wm"]
    resolved = resolve_rule_settings("wm", {"lr": 0.1})
    assert resolved == {**RULE_DEFAULTS["wm"], "lr": 0.1}
    assert RULE_DEFAULTS["wm"]["lr"] == 0.0053                  # defaults left alone


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match=r"rule 'sa' have unknown key\(s\) \['alpha', 'beta'\]; "
                                         r"the rule's hyperparameters are: self, decay"):
        resolve_rule_settings("sa", {"alpha": 1, "beta": 2, "decay": 0.1})
    with pytest.raises(ValueError, match="hyperparameters are: none"):
        resolve_rule_settings("fa", {"lr": 1})
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd; got 'rmsprop'"):
        resolve_rule_settings("aa", {"optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="unknown learning rule 'zz'"):
        resolve_rule_settings("zz")


def test_kolen_pollack_decay_defaults_to_half_the_weight_decay():
    assert make_rule("kp", weight_decay=0.02).alignment.decay == 0.01
    assert make_rule("kp", {"decay": 0.3}, weight_decay=0.02).alignment.decay == 0.3


@pytest.mark.parametrize("rule", RULES)
def test_one_step_of_every_rule(rule):
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    r = make_rule(rule)
    model = r.convert(build_model("ventral_cnn", 3, 16)).train()
    before = copy.deepcopy(model.state_dict())
    task, alignment = r.optimizers(model, lr=0.1, momentum=0.9, weight_decay=5e-4)
    learns_b = rule in ("wm", "ia", "sa", "aa", "kp", "burstprop_kp", "ddtp")   # ddtp: Q
    assert (alignment is not None) == learns_b
    fb = {id(layer.weight_fb) for _, layer in feedback_layers(model)}
    assert not fb & {id(p) for group in task.param_groups for p in group["params"]}
    logits, loss = r.step(model, x, y, (task, alignment), torch.Generator().manual_seed(0))
    assert logits.shape == (8, 3) and torch.isfinite(loss)
    after = model.state_dict()
    # ddtp's Q appear at the first forward pass (their shape needs the layer's output size)
    changed = {k for k in after if k not in before or not torch.equal(after[k], before[k])}
    first = "nmf.components" if rule == "nmf" else "area1.0.weight"   # nmf replaces the backbone
    assert "readout.weight" in changed and first in changed
    fb_changed = {k for k in changed if k.endswith("weight_fb")}
    assert len(fb_changed) == (9 if learns_b and rule != "ddtp" else 0)   # ss re-derives B
    if rule == "ddtp":
        assert len({k for k in changed if k.endswith("feedback_q")}) == 8
    assert all(layer.cache is None for _, layer in feedback_layers(model))


def _live_tensors():
    gc.collect()
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


@pytest.mark.parametrize("rule", RULES)
def test_training_steps_keep_no_tensors_alive(rule):
    """Memory stays flat over training: after warm-up steps (optimizer state, lazily built
    feedback), more steps leave no more live tensors (a rule that kept each step's activations
    grew by an epoch's worth every epoch)."""
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 3, (8,))
    r = make_rule(rule)
    model = r.convert(build_model("ventral_cnn", 3, 16)).train()
    optimizers = r.optimizers(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        r.step(model, x, y, optimizers, generator)
    before = _live_tensors()
    for _ in range(4):
        r.step(model, x, y, optimizers, generator)
    assert _live_tensors() == before


# The embedded default: 32 px images of 32 subordinate classes, 3200 train / 640 test,
# 5 epochs of batch 128 at lr 0.01.
@pytest.fixture(scope="module")
def default_stimuli(tmp_path_factory):
    from pipeline.data.stimuli import make_stimulus_sets
    from pipeline.io import write_zarr

    root = tmp_path_factory.mktemp("default_stimuli")
    sets = make_stimulus_sets(size=32, train_per_class=100, test_per_class=20, probe=8)
    for name in ("train", "test"):
        write_zarr(sets[name], root / f"{name}.zarr")
    return root / "train.zarr", root / "test.zarr"


# Test accuracies after the 5 default epochs as README.md's "Learning rules" section states them.
README_ACCURACY = {"bp": 0.28, "ss": 0.31, "sa": 0.25, "wm": 0.23, "aa": 0.16, "kp": 0.14, "ia": 0.11,
                   "fa": 0.08, "hebb": 0.18, "burstprop": 0.06, "burstprop_kp": 0.07, "ddtp": 0.07,
                   "nmf": 0.06}


# pc: 20 relaxations a step (11x bp); its bp limit is a fast test. CI trains bp and fa; every other
# rule is `long` too (5 epochs of the embedded default each).
@pytest.mark.slow
@pytest.mark.parametrize("rule", [r if r in ("bp", "fa") else pytest.param(r, marks=pytest.mark.long)
                                  for r in RULES if r != "pc"])
def test_every_rule_trains_the_backbone_above_chance(rule, default_stimuli, tmp_path):
    from pipeline.train import TrainSettings, train

    torch.set_num_threads(2)
    metrics = train(f"ventral_cnn-supervised-{rule}-s0", *default_stimuli, tmp_path,
                    TrainSettings(), device="cpu")
    n_test, chance = 640, 1 / 32
    # above chance: fewer than 1% of guessers would score this well (one-sided binomial)
    threshold = binom.ppf(0.99, n_test, chance) / n_test
    accuracy = metrics["test_acc"].iloc[-1]
    print(f"{rule}: test accuracy {accuracy:.3f} (chance {chance:.3f}, threshold "
          f"{threshold:.3f}), {np.mean(metrics['seconds'].iloc[1:]):.1f} s/epoch")
    assert accuracy > threshold
    assert accuracy == pytest.approx(README_ACCURACY[rule], abs=0.03)


def _correct(metrics, n_test):
    """Number of test images the final epoch got right."""
    return round(metrics["test_acc"].iloc[-1] * n_test)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.long)])   # CI: seed 0
def test_hebbian_features_beat_the_untrained_features(seed, default_stimuli, tmp_path):
    """Issue 16: a readout on the Hebbian ventral CNN beats one trained the same way on the
    same net whose kernels never learn (the hebb rule at lr 0: random kernels, same readout,
    same data order), by a one-sided binomial test at 1% on the same test images."""
    from pipeline.train import TrainSettings, train

    torch.set_num_threads(2)
    name, n_test = f"ventral_cnn-supervised-hebb-s{seed}", 640
    hebbian = train(name, *default_stimuli, tmp_path / "hebbian", TrainSettings(), device="cpu")
    untrained = train(name, *default_stimuli, tmp_path / "untrained",
                      TrainSettings(rule_settings={"lr": 0.0}), device="cpu")
    k, k_untrained = _correct(hebbian, n_test), _correct(untrained, n_test)
    # P(X >= k) for X ~ Bin(n, the untrained readout's accuracy)
    p_value = binom.sf(k - 1, n_test, k_untrained / n_test)
    print(f"seed {seed}: hebb {k / n_test:.3f}, untrained kernels {k_untrained / n_test:.3f}, "
          f"p = {p_value:.2g}")
    assert p_value < 0.01


# P3's digits task as configs/rules_comparison.yaml sets it (stimuli, training and rule settings).
COMPARISON = yaml.safe_load((SCHEMA.parents[2] / "configs" / "rules_comparison.yaml").read_text())
# The rules that learn the digits task at the comparison's settings (burstprop 0.58 and 0.67,
# burstprop_kp 0.66 and 0.68 at the config's gain 4 and p_baseline 0.5). Left out, measured at
# those settings (test accuracy, seeds 0 and 1, chance 0.10): sa 0.17 and 0.13, aa 0.10 and 0.11.
# Both learn and then diverge (sa 0.63 at epoch 3, loss 1e4 at epoch 5): their B chases W, and in
# the small-weight layers (fc1, readout) Adam's per-element steps make it track W a few steps
# behind, B ≈ W + lr·(W's momentum buffer). That error lies along the layer's own recent update,
# and under momentum SGD on this unnormalised net it drives training past its stability edge: B set
# to W of one step before (no alignment loss) diverges on both seeds, while B = W plus a fixed
# random perturbation of 30% of its norm trains like bp (0.80-0.84). Slower alignment (Adam lr
# 1e-4) keeps sa stable only by leaving B at FA's angle (fc1 86°); aa at 1e-4 and sa at 3e-4 still
# diverge.
NOT_LEARNING_DIGITS = {"sa", "aa"}
DIGIT_RULES = [rule for rule in RULES if rule not in NOT_LEARNING_DIGITS]


@pytest.fixture(scope="module")
def digit_stimuli(tmp_path_factory):
    from pipeline.data.stimuli import make_stimulus_sets
    from pipeline.io import write_zarr

    root = tmp_path_factory.mktemp("digits")
    sets = make_stimulus_sets(**COMPARISON["stimuli"])
    for name in ("train", "test"):
        write_zarr(sets[name], root / f"{name}.zarr")
    return root / "train.zarr", root / "test.zarr", sets["test"].sizes["stimulus"]


def test_digit_rules_are_registered_and_compared():
    assert set(COMPARISON["models"]["rules"]) == set(RULES)          # every rule is compared
    assert NOT_LEARNING_DIGITS < set(RULES) and set(DIGIT_RULES) | NOT_LEARNING_DIGITS == set(RULES)
    assert "lenet" in COMPARISON["models"]["archs"] and COMPARISON["stimuli"]["name"] == "digits"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.long)])   # CI: seed 0
@pytest.mark.parametrize("rule", DIGIT_RULES)
def test_every_rule_trains_lenet_on_digits_above_chance(rule, seed, digit_stimuli, tmp_path):
    """P3's comparison means something only if every rule learns its task: LeNet's final test
    accuracy on the digits beats chance (1/10) by a one-sided binomial test at 1%."""
    from pipeline.train import TrainSettings, train

    torch.set_num_threads(2)
    train_path, test_path, n_test = digit_stimuli
    rule_settings = COMPARISON["models"].get("rule_settings", {}).get(rule, {})
    settings = TrainSettings(**COMPARISON["models"]["train"], rule_settings=rule_settings)
    metrics = train(f"lenet-supervised-{rule}-s{seed}", train_path, test_path, tmp_path, settings,
                    device="cpu")
    k, chance = _correct(metrics, n_test), 1 / 10
    p_value = binom.sf(k - 1, n_test, chance)
    print(f"lenet {rule} s{seed}: digits test accuracy {k / n_test:.3f} (chance {chance}), "
          f"p = {p_value:.2g}")
    assert p_value < 0.01
