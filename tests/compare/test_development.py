"""Representational development: RDMs against scipy, half-times against closed forms on synthetic
trajectories, brain similarity against rsatoolbox, the command line on a trained model, and the
stage through Snakemake on the tiny run."""

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml
from rsatoolbox.data import Dataset
from rsatoolbox.inference import boot_noise_ceiling
from rsatoolbox.rdm import calc_rdm, compare, concat
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr

from pipeline.cli import main
from pipeline.compare.development import (
    category_rdms,
    development,
    half_time,
    layer_curves,
    layer_kinds,
    response_rdm,
)
from pipeline.compare.rsa import upper_tri

LEVELS = ("superordinate", "basic", "subordinate")
# 64 stimuli: 2 superordinate classes x 4 basic x 4 subordinate, two stimuli per subordinate class
N_CLASSES = {"superordinate": 2, "basic": 8, "subordinate": 32}


def hierarchy(n=64, seed=0):
    """Nested labels (level -> class per stimulus) in a shuffled stimulus order."""
    sub = np.random.default_rng(seed).permutation(np.arange(n) // (n // 32))
    return {"superordinate": sub // 16, "basic": sub // 4, "subordinate": sub}


def pair_fractions(n=64):
    """Share of stimulus pairs whose labels differ, per level, from the class counts alone."""
    pairs = n * (n - 1) / 2
    return {level: 1 - k * (n // k) * (n // k - 1) / 2 / pairs for level, k in N_CLASSES.items()}


def pair_covariance(p, a, b):
    """Covariance over pairs of two category-model RDMs: nested levels, so D_a·D_b = D_coarser."""
    coarser = a if LEVELS.index(a) <= LEVELS.index(b) else b
    return p[coarser] - p[a] * p[b]


def first_crossing(epochs, curve, target):
    """The first epoch at which `curve` reaches `target`, linear between checkpoints."""
    for k, value in enumerate(curve):
        if value >= target:
            if k == 0:
                return epochs[0]
            return epochs[k - 1] + (target - curve[k - 1]) / (value - curve[k - 1]) * (epochs[k] - epochs[k - 1])
    raise AssertionError("the curve never reaches its target")


# ---------------------------------------------------------------- RDMs

@pytest.mark.parametrize("metric,peer", [("correlation", "correlation"), ("euclidean", "euclidean"),
                                         ("dot", lambda u, v: -np.dot(u, v)), ("cosine", "cosine")])
def test_rdms_equal_scipy_pdist(metric, peer):
    X = np.random.default_rng(1).standard_normal((25, 40)) + 3.0
    np.testing.assert_allclose(upper_tri(response_rdm(X, metric)), pdist(X, peer), rtol=1e-10, atol=1e-10)


def test_category_rdms_are_hamming_distances_of_the_labels():
    labels = hierarchy(n=32)
    square = category_rdms(np.stack([labels[level] for level in LEVELS]))
    for k, level in enumerate(LEVELS):
        np.testing.assert_array_equal(square[k], squareform(pdist(labels[level][:, None], "hamming")))


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="metric must be one of"):
        response_rdm(np.ones((4, 3)), "manhattan")


# ---------------------------------------------------------------- half-times

def test_half_time_interpolates_between_checkpoints():
    epochs = [0, 1, 2, 4]
    curves = np.array([[0.0, 0.2, 0.6, 1.0],      # zero and initial: target 0.5, between epochs 1 and 2
                       [0.4, 0.5, 0.8, 1.0],      # zero: 0.5 reached at epoch 1; initial: 0.7
                       [0.9, 0.2, 0.3, 0.6],      # zero: starts above half of its final value
                       [0.5, 0.4, 0.3, 0.2],      # initial: falls, never develops
                       [0.2, 0.1, 0.3, 0.6]])     # initial: target 0.4, between epochs 2 and 4
    np.testing.assert_allclose(half_time(epochs, curves, "zero"), [1.75, 1.0, 0.0, 0.0, 2.0])
    np.testing.assert_allclose(half_time(epochs, curves, "initial"),
                               [1.75, 1 + 0.2 / 0.3, np.nan, np.nan, 2 + 0.1 / 0.3 * 2])
    assert half_time([0, 2, 6], [0.1, 0.1, 0.9], "zero") == pytest.approx(2 + 0.35 / 0.8 * 4)


def test_half_time_is_nan_without_growth_or_with_nan_values():
    np.testing.assert_array_equal(half_time([0, 1], [[0.0, -0.3], [np.nan, 0.4]]), [np.nan, np.nan])


def _blend_activations(weights, labels):
    """Per epoch, responses whose dot-product RDM is (1 - w) D_sup + w D_sub minus 1: one-hot codes of
    the superordinate and subordinate classes scaled by sqrt(1 - w) and sqrt(w)."""
    sup = np.eye(2)[labels["superordinate"]]
    sub = np.eye(32)[labels["subordinate"]]
    data = np.stack([np.hstack([np.sqrt(1 - w) * sup, np.sqrt(w) * sub]) for w in weights])
    return xr.Dataset({"layer": (("epoch", "stimulus", "unit"), data)},
                      coords={"epoch": np.arange(len(weights)),
                              "stimulus_id": ("stimulus", [f"s{i:02d}" for i in range(data.shape[1])])})


def test_a_blend_from_superordinate_into_subordinate_gives_the_closed_form_half_times():
    """RDM(w) = (1 - w) D_sup + w D_sub with w = epoch / 10. Pearson r with each level's model follows
    from the nested labels' pair fractions alone; sup and basic start above half of their final
    correlation (half-time 0), subordinate rises to 1 and crosses 1/2 at the root of a quadratic."""
    labels = hierarchy()
    T = 10
    epochs = np.arange(T + 1)
    tables = development(_blend_activations(epochs / T, labels), labels, metric="dot", n_boot=50)
    halftimes = tables.halftimes.set_index("level")
    p = pair_fractions()

    def correlation(w, level):
        num = (1 - w) * pair_covariance(p, "superordinate", level) + w * pair_covariance(p, "subordinate", level)
        var = ((1 - w) ** 2 * pair_covariance(p, "superordinate", "superordinate")
               + 2 * w * (1 - w) * pair_covariance(p, "superordinate", "subordinate")
               + w ** 2 * pair_covariance(p, "subordinate", "subordinate"))
        return num / np.sqrt(var * pair_covariance(p, level, level))

    trajectory = tables.trajectory.set_index(["reference", "epoch"])["similarity"]
    for level in LEVELS:
        expected = np.array([correlation(w, level) for w in epochs / T])
        np.testing.assert_allclose(trajectory.loc[level].to_numpy(), expected, atol=1e-12)
        assert halftimes.loc[level, "half_time"] == pytest.approx(first_crossing(epochs, expected, expected[-1] / 2),
                                                                  abs=1e-12)
    assert halftimes.loc["superordinate", "half_time"] == 0 == halftimes.loc["basic", "half_time"]
    assert halftimes.loc["subordinate", "half_time"] > 1
    assert halftimes.loc["subordinate", "delay"] == halftimes.loc["subordinate", "half_time"]
    # the continuous crossing of r_sub(w) = 1/2: 4 num^2 = var V_sub, a quadratic in w
    a, v1, v2 = (pair_covariance(p, "superordinate", "subordinate"),
                 pair_covariance(p, "superordinate", "superordinate"),
                 pair_covariance(p, "subordinate", "subordinate"))
    roots = np.roots([4 * (v2 - a) ** 2 - v2 * (v1 - 2 * a + v2), 8 * a * (v2 - a) - 2 * v2 * (a - v1),
                      4 * a ** 2 - v1 * v2])
    w_half = roots[(roots.real > 0) & (roots.real < 1)].real.item()
    assert halftimes.loc["subordinate", "half_time"] == pytest.approx(T * w_half, abs=0.05)
    # an exact trajectory: every bootstrap draw agrees on sup and basic
    assert halftimes.loc["superordinate", "ci_low"] == halftimes.loc["superordinate", "ci_high"] == 0
    assert halftimes.loc["subordinate", "ci_low"] <= halftimes.loc["subordinate", "half_time"] \
        <= halftimes.loc["subordinate", "ci_high"]


def test_coarse_to_fine_emergence_from_noise_gives_ordered_closed_form_half_times():
    """RDM(e) = sum_L alpha_L(e) D_L + N, N orthogonal to the constant and to every category model,
    levels switched on one after another over unevenly spaced checkpoints. The correlations follow
    from the pair fractions, the alphas and var(N); with the initial baseline the half-times come out
    coarse before fine and equal the interpolated closed form."""
    labels = hierarchy()
    n = 64
    epochs = [0, 1, 2, 3, 5, 8, 12]
    alpha = {"superordinate": [0, 0.5, 1, 1, 1, 1, 1],
             "basic": [0, 0, 0.5, 1.5, 2, 2, 2],
             "subordinate": [0, 0, 0, 0, 2, 4, 6]}
    models = {level: pdist(labels[level][:, None], "hamming") for level in LEVELS}
    basis = np.column_stack([np.ones(n * (n - 1) // 2), *models.values()])
    noise = np.random.default_rng(5).standard_normal(basis.shape[0])
    noise -= basis @ np.linalg.lstsq(basis, noise, rcond=None)[0]
    noise *= 0.3 / noise.std()                                  # var(N) = 0.09 over pairs
    rdms = np.stack([squareform(sum(alpha[level][e] * models[level] for level in LEVELS) + noise)
                     for e in range(len(epochs))])
    categories = category_rdms(np.stack([labels[level] for level in LEVELS]))
    curves = layer_curves(rdms, categories, epochs, baseline="initial")
    p = pair_fractions()
    for j, level in enumerate(LEVELS):
        expected = []
        for e in range(len(epochs)):
            a = np.array([alpha[k][e] for k in LEVELS])
            C = np.array([[pair_covariance(p, k, m) for m in LEVELS] for k in LEVELS])
            num = a @ C[:, j]
            expected.append(num / np.sqrt((a @ C @ a + 0.09) * C[j, j]))
        np.testing.assert_allclose(curves.correlation[:, j], expected, atol=1e-10)
        assert curves.half[j] == pytest.approx(first_crossing(epochs, expected, expected[-1] / 2), abs=1e-9)
    assert curves.half[0] < curves.half[1] < curves.half[2]
    assert curves.to_final[-1] == pytest.approx(1.0)


def test_bootstrap_draw_equals_the_correlation_on_explicitly_resampled_stimuli():
    labels = hierarchy()
    rng = np.random.default_rng(2)
    basic = np.eye(8)[labels["basic"]] @ rng.standard_normal((8, 10))      # basic-level structure
    X = np.stack([rng.standard_normal((64, 10)) + scale * basic for scale in (0.0, 1.0, 3.0)])
    rdms = np.stack([response_rdm(x) for x in X])
    categories = category_rdms(np.stack([labels[level] for level in LEVELS]))
    draw = rng.integers(0, 64, 64)
    curves = layer_curves(rdms, categories, [0, 1, 2], draws=draw[None])
    i, j = np.triu_indices(64, k=1)
    keep = draw[i] != draw[j]                                   # a stimulus against its own copy is left out
    a, b = draw[i[keep]], draw[j[keep]]
    for e in range(3):
        for k in range(3):
            expected = pearsonr(rdms[e][a, b], categories[k][a, b])[0]
            assert curves.correlation_boot[0, e, k] == pytest.approx(expected, abs=1e-10)


def test_same_seed_same_intervals_and_no_interval_without_draws():
    labels = hierarchy(n=32)
    activations = _blend_activations(np.linspace(0, 1, 4), labels)
    activations["layer"] = activations["layer"] + 0.3 * np.random.default_rng(0).standard_normal(
        activations["layer"].shape)
    first = development(activations, labels, n_boot=40, seed=3).halftimes
    again = development(activations, labels, n_boot=40, seed=3).halftimes
    pd.testing.assert_frame_equal(first, again)
    none = development(activations, labels, n_boot=0).halftimes
    assert none[["ci_low", "ci_high", "boot_defined"]].isna().all().all()
    np.testing.assert_allclose(none["half_time"], first["half_time"])


def test_missing_level_and_bad_baseline_are_refused():
    labels = hierarchy(n=32)
    activations = _blend_activations([0.0, 1.0], labels)
    with pytest.raises(ValueError, match="levels \\['category'\\] have no labels"):
        development(activations, labels, levels=["category"])
    with pytest.raises(ValueError, match="baseline must be one of"):
        development(activations, labels, baseline="first")


# ---------------------------------------------------------------- brain similarity

@pytest.mark.parametrize("method,peer", [("pearson", "corr"), ("spearman", "spearman")])
def test_brain_similarity_equals_rsatoolbox(simulate, method, peer):
    assembly, _ = simulate(n_animals=3, units_per_animal=12, n_stimuli=30, n_trials=6, areas=("VISp", "VISl"),
                           seed=4)
    values = assembly.values.copy()
    values[2, :3, 5] = np.nan                                   # missing trials are skipped in the means
    assembly = assembly.copy(data=values)
    rng = np.random.default_rng(8)
    order = rng.permutation(30)                                 # the activations hold another order
    features = rng.standard_normal((2, 30, 20))
    activations = xr.Dataset({"conv": (("epoch", "stimulus", "unit"), features[:, order])},
                             coords={"epoch": [0, 3], "stimulus_id": ("stimulus",
                                                                      assembly["stimulus_id"].values[order])})
    labels = {level: np.arange(30)[order] % 3 for level in LEVELS}
    brain = development(activations, labels, {"virtual": assembly}, compare=method, n_boot=0).brain
    model = calc_rdm(Dataset(features[1]), method="correlation")          # assembly order
    for area in ("VISp", "VISl"):
        in_area = assembly.where(assembly["area"] == area, drop=True)
        data = concat([calc_rdm(Dataset(np.nanmean(in_area.where(in_area["animal"] == animal, drop=True).values,
                                                   axis=1)), method="correlation")
                       for animal in dict.fromkeys(in_area["animal"].values)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lower, upper = boot_noise_ceiling(data, method=peer)
        row = brain[(brain["area"] == area) & (brain["epoch"] == 3)].iloc[0]
        assert row["similarity"] == pytest.approx(compare(model, data, method=peer).mean(), abs=1e-12)
        assert (row["nc_lower"], row["nc_upper"]) == (pytest.approx(lower, abs=1e-12), pytest.approx(upper, abs=1e-12))
        assert row["n_animals"] == 3 and row["n_stimuli"] == 30 and row["dataset"] == "virtual"


def test_assembly_stimuli_outside_the_activations_are_refused(simulate):
    assembly, _ = simulate(n_animals=2, units_per_animal=5, n_stimuli=12, n_trials=4, seed=1)
    activations = xr.Dataset({"conv": (("epoch", "stimulus", "unit"), np.ones((1, 11, 3)))},
                             coords={"epoch": [0], "stimulus_id": ("stimulus", assembly["stimulus_id"].values[:11])})
    labels = {level: np.arange(11) % 2 for level in LEVELS}
    with pytest.raises(ValueError, match="virtual: 1 stimulus_id values are not in the activations"):
        development(activations, labels, {"virtual": assembly})


# ---------------------------------------------------------------- command line on trained models

@pytest.fixture(scope="module")
def trained(tmp_path_factory, torch_one_thread):
    from pipeline.activations import extract
    from pipeline.train import TrainSettings, train
    from tests.stimulus_sets import write_stimuli

    root = tmp_path_factory.mktemp("development")
    write_stimuli(root / "train.zarr", 24, 0, "train")
    write_stimuli(root / "test.zarr", 6, 1, "test")
    write_stimuli(root / "probe.zarr", 18, 2, "probe", labels=np.arange(18) % 3)
    for model in ("ventral_cnn-supervised-bp-s0", "lenet-supervised-bp-s0"):
        train(model, root / "train.zarr", root / "test.zarr", root / model, TrainSettings(epochs=1, batch_size=8),
              device="cpu")
    extract(sorted((root / "ventral_cnn-supervised-bp-s0").glob("epoch_*.pt")), root / "probe.zarr",
            root / "probe_activations.zarr", device="cpu")
    return root


def test_layer_kinds_mark_the_convolutional_layers(trained):
    assert layer_kinds(trained / "ventral_cnn-supervised-bp-s0") == {
        "area1": "conv", "area2": "conv", "area3": "conv", "area4": "conv", "readout": "dense"}
    assert layer_kinds(trained / "lenet-supervised-bp-s0") == {
        "conv1": "conv", "conv2": "conv", "fc1": "dense", "readout": "dense"}


def test_command_line_writes_the_four_tables(trained, simulate, tmp_path):
    from pipeline.data.assembly import write_assembly

    assembly, _ = simulate(n_animals=2, units_per_animal=6, n_stimuli=18, n_trials=4, seed=2)
    assembly = assembly.assign_coords(stimulus_id=("stimulus", [f"probe{i:03d}" for i in range(18)]))
    write_assembly(assembly, tmp_path / "virtual.zarr")
    out = {name: tmp_path / f"{name}.parquet" for name in ("rdms", "trajectory", "halftimes", "brain")}
    main(["development", str(trained / "probe_activations.zarr"), str(trained / "probe.zarr"),
          str(trained / "ventral_cnn-supervised-bp-s0"), "--neural", str(tmp_path / "virtual.zarr"),
          "--model", "ventral_cnn-supervised-bp-s0", "--stimulus-set", "probe",
          *[arg for name, path in out.items() for arg in (f"--{name}", str(path))],
          "--settings", '{"n_boot": 20, "levels": ["superordinate", "basic"]}', "--threads", "1"])
    tables = {name: pd.read_parquet(path) for name, path in out.items()}
    for table in tables.values():
        assert {"model", "rule", "seed", "stimulus_set", "layer", "layer_kind"} <= set(table.columns)
    assert len(tables["rdms"]) == 5 * 2 * 18 * 17 // 2                 # layers x epochs x pairs
    assert set(tables["halftimes"]["level"]) == {"superordinate", "basic"}
    assert set(tables["trajectory"]["reference"]) == {"superordinate", "basic", "final"}
    assert set(tables["brain"]["dataset"]) == {"virtual"} and set(tables["brain"]["epoch"]) == {0, 1}
    assert tables["rdms"].query("layer == 'readout'")["layer_kind"].eq("dense").all()


# ---------------------------------------------------------------- the stage through Snakemake

# Not slow: it reuses the tiny run the default `pytest` makes anyway (4 min), and takes 30 s itself.
@pytest.mark.timeout(30 * 60)
def test_development_stage_runs_through_snakemake(tiny_run, tmp_path):
    """The complete tiny run with the stage turned on: every development table and figure of the
    probe set, from the models the run already trained (none is trained again)."""
    from tests.workflow.runner import snakemake

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, symlinks=True)           # copy2 keeps the outputs' times
    (run / "development.yaml").write_text(yaml.safe_dump(
        {"development": {"stimulus_sets": ["probe"], "analysis": {"n_boot": 50}}}))
    targets = ["results/development/halftimes_shapes_probe.csv", "results/development/predictivity_synthetic_mouse.csv",
               "results/figures/development/rdms_shapes_probe.gif",
               "results/figures/development/hierarchy_shapes_probe.png",
               "results/figures/development/brain_shapes_probe.png"]
    done = snakemake(run, *targets, "--cores", "2", "--configfile", run / "tiny.yaml",
                     run / "development.yaml", timeout=25 * 60)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "rule train:" not in done.stdout + done.stderr
    halftimes = pd.read_csv(run / targets[0])
    assert halftimes["model"].nunique() == 6 and set(halftimes["level"]) == set(LEVELS)
    brain = pd.read_parquet(run / "results/development/brain/ventral_cnn-supervised-bp-s0/shapes_probe.parquet")
    assert brain["area"].nunique() == 6 and brain["similarity"].notna().any()
    from PIL import Image

    with Image.open(run / targets[2]) as gif:
        assert gif.n_frames == 2                                 # the tiny run trains one epoch
