"""Rule × rule RDM similarity: the comparison equals rsa.compare_rdms, the bootstrap equals
rsatoolbox's pattern bootstrap, and seeds of one rule are more alike than two rules."""

import numpy as np
import pytest
import xarray as xr
from rsatoolbox.rdm import RDMs, compare

from pipeline.compare.rsa import COMPARE_METHODS, compare_rdms, rdm
from pipeline.compare.rule_similarity import model_similarity, rule_cells, rule_similarity

PEER_METHODS = {"pearson": "corr", "spearman": "spearman", "cosine": "cosine"}


def random_rdms(m=4, n=15, seed=0):
    rng = np.random.default_rng(seed)
    return rdm(rng.standard_normal((m, n, 8)))


@pytest.mark.parametrize("method", COMPARE_METHODS)
def test_point_similarity_is_compare_rdms(method):
    rdms = random_rdms()
    point, boot = model_similarity(rdms, method, n_boot=0)
    assert boot.shape == (0, 4, 4)
    expected = compare_rdms(rdms[:, None], rdms[None, :], method)
    np.testing.assert_allclose(point, expected, atol=1e-10)


@pytest.mark.parametrize("method", sorted(PEER_METHODS))
def test_each_draw_equals_rsatoolbox_on_the_resampled_patterns(method):
    """rsatoolbox's subsample_pattern keeps repeated patterns and sets the pairs of a pattern
    with its own copy to NaN, which compare() leaves out: the same pairs as ours."""
    rdms = random_rdms(m=3, n=12, seed=1)
    draws = np.random.default_rng(2).integers(0, 12, size=(4, 12))
    _, boot = model_similarity(rdms, method, draws=draws)
    peer = RDMs(rdms, pattern_descriptors={"index": np.arange(12)})
    for b, idx in enumerate(draws):
        sub = peer.subsample_pattern("index", idx)
        theirs = compare(sub[0], sub[[1, 2]], method=PEER_METHODS[method])[0]
        np.testing.assert_allclose(boot[b, 0, 1:], theirs, atol=1e-10)


@pytest.mark.parametrize("method", ["pearson", "cosine", "dot", "kendall_tau_a"])
def test_each_draw_equals_compare_rdms_on_the_kept_pairs(method, monkeypatch):
    """The weighted sums (pearson, cosine, dot; in blocks of draws) and the per-draw loop
    (kendall_tau_a) against `compare_rdms` of explicitly resampled pairs."""
    import pipeline.compare.rule_similarity as module

    monkeypatch.setattr(module, "_BLOCK_ELEMENTS", 200)              # several blocks of draws
    rdms = random_rdms(m=3, n=10, seed=4)
    draws = np.random.default_rng(5).integers(0, 10, size=(7, 10))
    _, boot = model_similarity(rdms, method, draws=draws)
    for b, idx in enumerate(draws):
        i, j = np.triu_indices(10, k=1)
        i, j = idx[i], idx[j]
        kept = rdms[:, i[i != j], j[i != j]]
        expected = compare_rdms(kept[:, None], kept[None, :], method, condensed=True)
        np.testing.assert_allclose(boot[b], expected, rtol=1e-9, atol=1e-9)


def test_identical_rdms_are_similar_in_every_draw():
    one = random_rdms(m=1, n=20)[0]
    point, boot = model_similarity(np.stack([one, one]), "pearson", n_boot=50, seed=3)
    assert point[0, 1] == pytest.approx(1.0)
    np.testing.assert_allclose(boot[:, 0, 1], 1.0, atol=1e-12)


def test_rule_cells_average_distinct_model_pairs():
    S = np.arange(16, dtype=float).reshape(4, 4)
    S = (S + S.T) / 2
    cells, names, n_pairs = rule_cells(S, ["bp", "bp", "fa", "hebb"])
    assert names == ["bp", "fa", "hebb"]
    assert cells[0, 0] == S[0, 1]                       # the two bp seeds, not a model with itself
    assert cells[0, 1] == pytest.approx(np.mean([S[0, 2], S[1, 2]]))
    assert np.isnan(cells[1, 1]) and n_pairs[1, 1] == 0  # one seed: no within-rule pair
    assert n_pairs[0, 1] == 2 and n_pairs[0, 0] == 2
    # models 0 and 2 share seed 0 (the same initial weights): left out with seed_pairs="distinct"
    cells, _, n_pairs = rule_cells(S, ["bp", "bp", "fa", "hebb"], [0, 1, 0, 1], seed_pairs="distinct")
    assert cells[0, 1] == S[1, 2] and n_pairs[0, 1] == 1
    assert cells[2, 0] == S[3, 0] and n_pairs[2, 0] == 1 and cells[0, 0] == S[0, 1]


def activations(rule_latent, n=40, seed=0):
    """Models whose layer is a noisy readout of their rule's latent (two seeds per rule)."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:02d}" for i in range(n)]
    out = {}
    for rule, latent in rule_latent.items():
        for s in (0, 1):
            X = latent @ rng.standard_normal((latent.shape[1], 30)) + 0.3 * rng.standard_normal((n, 30))
            out[f"lenet-supervised-{rule}-s{s}"] = xr.Dataset(
                {"layer1": (("epoch", "stimulus", "unit_layer1"), np.stack([rng.standard_normal((n, 30)), X]))},
                coords={"epoch": [0, 3], "stimulus_id": ("stimulus", ids)})
    return out


def test_seeds_of_a_rule_are_more_alike_than_two_rules():
    rng = np.random.default_rng(4)
    latents = {"bp": rng.standard_normal((40, 5)), "hebb": rng.standard_normal((40, 5))}
    table = rule_similarity(activations(latents), n_boot=200, ci=0.9, seed=0)
    assert set(table["epoch"]) == {3}                  # "final" by default
    cell = table.set_index(["rule_a", "rule_b"])
    assert len(table) == 4 and (table["n_pairs"] == [2, 4, 4, 2]).all()
    assert cell.loc[("bp", "bp"), "ci_low"] > cell.loc[("bp", "hebb"), "ci_high"]
    assert cell.loc[("bp", "hebb"), "similarity"] == pytest.approx(cell.loc[("hebb", "bp"), "similarity"])
    assert ((table["ci_low"] <= table["similarity"]) & (table["similarity"] <= table["ci_high"])).all()
    again = rule_similarity(activations(latents), n_boot=200, ci=0.9, seed=0)
    assert again.equals(table)                          # seeded draws
    other = rule_similarity(activations(latents), n_boot=200, ci=0.9, seed=1)
    assert not np.allclose(other["ci_low"], table["ci_low"])


def test_models_must_share_their_stimuli():
    rng = np.random.default_rng(5)
    models = activations({"bp": rng.standard_normal((40, 3))})
    name = "lenet-supervised-bp-s1"
    models[name] = models[name].assign_coords(stimulus_id=("stimulus", [f"t{i}" for i in range(40)]))
    with pytest.raises(ValueError, match="other stimuli"):
        rule_similarity(models, n_boot=2)
    with pytest.raises(ValueError, match="compare must be"):
        rule_similarity(models, compare="kendall", n_boot=2)
