import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm

from pipeline.compare.ost import (decoder_probabilities, default_layers, i1_dprime, model_ost,
                                  model_time_course, ost_consistency, read_reference,
                                  solution_times, two_afc_choices)


# ---------------------------------------------------------------- OST from d′ over time
def test_linearly_rising_dprime_reaches_the_reference_at_the_analytic_time():
    rng = np.random.default_rng(0)
    times = np.arange(70.0, 260.0, 10.0)
    start, slope = rng.uniform(-1, 1, 30), rng.uniform(0.01, 0.05, 30)       # d′ per ms
    truth = rng.uniform(times[0], times[-1], 30)                             # ms
    reference = start + slope * truth
    dprime = start[None] + slope[None] * times[:, None]                      # (time, image)
    np.testing.assert_allclose(solution_times(dprime, reference, times), truth, rtol=1e-12)


def test_never_reaching_is_nan_and_reaching_at_once_is_the_first_time():
    times = np.array([0.0, 10.0, 20.0])
    dprime = np.array([[0.0, 3.0], [1.0, 3.5], [2.0, 4.0]])
    ost = solution_times(dprime, np.array([2.5, 2.0]), times)
    assert np.isnan(ost[0]) and ost[1] == 0.0


def _logistic_courses(rng, n, times):
    low, high = rng.uniform(0.0, 0.5, n), rng.uniform(2.0, 4.0, n)
    middle, width = rng.uniform(100.0, 200.0, n), rng.uniform(5.0, 20.0, n)
    level = rng.uniform(0.1, 0.9, n)
    reference = low + level * (high - low)
    truth = middle - width * np.log(1.0 / level - 1.0)
    dprime = low + (high - low) / (1.0 + np.exp(-(times[:, None] - middle) / width))
    return dprime, reference, truth


def test_logistic_crossing_recovers_the_analytic_time_where_linear_interpolation_does_not():
    rng = np.random.default_rng(1)
    times = np.arange(70.0, 260.0, 10.0)
    dprime, reference, truth = _logistic_courses(rng, 25, times)
    keep = (truth > times[0]) & (truth < times[-1])
    logistic = solution_times(dprime, reference, times, crossing="logistic")
    np.testing.assert_allclose(logistic[keep], truth[keep], atol=1e-3)
    linear = solution_times(dprime, reference, times)
    assert np.abs(linear[keep] - truth[keep]).max() > 1.0            # ms: the chord misses the curve
    noisy = solution_times(dprime + rng.normal(0.0, 0.05, dprime.shape), reference, times, "logistic")
    assert np.abs(noisy[keep] - truth[keep]).max() < 5.0


def test_logistic_crossing_edge_cases_and_a_flat_course_falls_back_to_linear():
    times = np.arange(0.0, 100.0, 10.0)
    rising = 3.0 / (1.0 + np.exp(-(times - 50.0) / 8.0))
    dprime = np.stack([rising, rising, rising + 5.0, np.full_like(times, 2.0)], axis=1)
    ost = solution_times(dprime, np.array([4.0, 1.5, 1.0, 2.0]), times, crossing="logistic")
    assert np.isnan(ost[0])                                           # above the fitted ceiling
    assert ost[1] == pytest.approx(50.0, abs=1e-3)                    # the midpoint
    assert ost[2] == 0.0 and ost[3] == 0.0                            # above from the start; flat
    with pytest.raises(ValueError, match="crossing must be one of"):
        solution_times(dprime, np.ones(4), times, crossing="spline")


# ---------------------------------------------------------------- consistency
def test_shuffled_images_fall_inside_the_null_interval_at_its_coverage():
    """Independent OSTs: ρ lies in the 90% shuffle interval for about 90% of draws."""
    inside = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        model, reference = rng.uniform(80, 250, 40), rng.uniform(80, 250, 40)
        result = ost_consistency(model, reference, n_shuffles=200, ci=0.9, seed=seed)
        inside.append(result["null_low"] <= result["rho"] <= result["null_high"])
    assert sum(inside) >= binom.ppf(0.001, 40, 0.9)          # fails if the null is too narrow
    assert sum(inside) <= binom.ppf(0.999, 40, 0.9)          # or too wide


def test_consistent_osts_lie_above_the_null_and_unsolved_images_are_left_out():
    rng = np.random.default_rng(1)
    reference = rng.uniform(80, 250, 50)
    model = 2 * reference + 5 + rng.normal(0, 5, 50)
    model[:5] = np.nan                                       # unsolved by the model
    result = ost_consistency(model, reference, n_shuffles=300, seed=0)
    assert result["n_images"] == 45
    assert result["rho"] > 0.9 > result["null_high"]
    assert result["p_value"] == pytest.approx(1 / 301)


def test_consistency_is_undefined_with_fewer_than_three_images():
    result = ost_consistency([1.0, np.nan, 3.0], [1.0, 2.0, np.nan])
    assert result["n_images"] == 1 and np.isnan(result["rho"])


# ---------------------------------------------------------------- I1 d′
def test_i1_equals_norm_ppf_on_hit_and_false_alarm_rates_of_a_confusion_example():
    # Two-alternative trials (image, distractor category, chosen category); three categories.
    labels = np.array([0, 0, 1, 1, 2, 2])
    trials = [(0, 1, 0), (0, 1, 0), (0, 2, 0), (0, 2, 2),
              (1, 1, 0), (1, 2, 0), (1, 2, 0), (1, 1, 1),
              (2, 0, 1), (2, 0, 0), (2, 2, 1), (2, 2, 1), (2, 2, 2),
              (3, 0, 1), (3, 2, 2),
              (4, 0, 2), (4, 1, 2), (4, 1, 1),
              (5, 0, 0), (5, 1, 2), (5, 0, 2), (5, 0, 2)]
    n_images, n_categories = len(labels), 3
    counts = np.zeros((n_images, n_categories))
    for image, _, chosen in trials:
        counts[image, chosen] += 1
    choices = counts / counts.sum(1, keepdims=True)
    expected = []
    for i in range(n_images):                     # independent bookkeeping, one image at a time
        own = [t for t in trials if t[0] == i]
        hit = sum(t[2] == labels[i] for t in own) / len(own)
        rates = []
        for j in range(n_images):
            if labels[j] != labels[i]:
                theirs = [t for t in trials if t[0] == j]
                rates.append(sum(t[2] == labels[i] for t in theirs) / len(theirs))
        expected.append(np.clip(norm.ppf(hit) - norm.ppf(np.mean(rates)), -5, 5))
    np.testing.assert_allclose(i1_dprime(choices, labels), expected, rtol=1e-12)


def test_i1_clips_at_plus_and_minus_five():
    labels = np.array([0, 1])
    perfect = np.eye(2)                           # hits 1, false alarms 0: +inf before the clip
    np.testing.assert_array_equal(i1_dprime(perfect, labels), [5.0, 5.0])
    np.testing.assert_array_equal(i1_dprime(1 - perfect, labels), [-5.0, -5.0])
    np.testing.assert_array_equal(i1_dprime(perfect, labels, cap=2.0), [2.0, 2.0])
    mild = np.array([[0.9, 0.1], [0.2, 0.8]])     # inside the clip: untouched
    np.testing.assert_allclose(i1_dprime(mild, labels),
                               [norm.ppf(0.9) - norm.ppf(0.2), norm.ppf(0.8) - norm.ppf(0.1)])


def test_two_afc_choices_by_hand():
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    choices = two_afc_choices(p, np.array([0, 2]))
    wrong_01, wrong_02 = 0.5 * 0.3 / 0.9, 0.5 * 0.1 / 0.7
    np.testing.assert_allclose(choices[0], [1 - wrong_01 - wrong_02, wrong_01, wrong_02])
    np.testing.assert_allclose(choices[1], [0.5 * 0.2 / 0.8, 0.5 * 0.2 / 0.8, 1 - 0.25])
    np.testing.assert_allclose(choices.sum(1), 1.0)


def test_a_chance_observer_has_the_one_versus_all_floor():
    k = 8
    labels = np.repeat(np.arange(k), 3)
    dprime = i1_dprime(two_afc_choices(np.full((len(labels), k), 1 / k), labels), labels)
    np.testing.assert_allclose(dprime, -norm.ppf(1 / (2 * (k - 1))))


# ---------------------------------------------------------------- decoder
def _clusters(seed, n_per_class=12, k=3, dim=20, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    labels = np.repeat(np.arange(k), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def test_decoder_reads_separable_categories_and_is_seeded():
    X, labels = _clusters(0)
    p = decoder_probabilities(X, labels, n_components=10, n_folds=3, n_repeats=2, seed=0)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert (p.argmax(1) == labels).all()
    np.testing.assert_array_equal(p, decoder_probabilities(X, labels, n_components=10, n_folds=3,
                                                           n_repeats=2, seed=0))


def test_decoder_equals_scikit_learn_linear_svc_on_the_pca_scores():
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.decomposition import PCA
    from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
    from sklearn.svm import SVC

    X, labels = _clusters(3, spread=2.5)                   # overlapping: probabilities inside (0, 1)
    ours = decoder_probabilities(X, labels, n_components=8, n_folds=3, n_repeats=2, seed=0)
    theirs = np.zeros_like(ours)
    for train, test in RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0).split(X, labels):
        pca = PCA(n_components=8, random_state=0).fit(X[train])
        scale = np.sqrt(np.mean(np.sum(pca.transform(X[train]) ** 2, axis=1)))
        svm = CalibratedClassifierCV(SVC(kernel="linear"), method="sigmoid", ensemble=False,
                                     cv=StratifiedKFold(5, shuffle=True, random_state=0))
        svm.fit(pca.transform(X[train]) / scale, labels[train])
        theirs[test] += svm.predict_proba(pca.transform(X[test]) / scale) / 2
    assert 1e-4 < ours.min() and ours.max() < 1 - 1e-4
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_a_silent_layer_decodes_at_chance():
    _, labels = _clusters(0)
    p = decoder_probabilities(np.zeros((len(labels), 5)), labels, n_folds=3, n_repeats=1)
    np.testing.assert_array_equal(p, np.full_like(p, 1 / 3))


def test_too_few_images_per_category_for_the_folds_is_refused():
    X, labels = _clusters(0, n_per_class=2)
    with pytest.raises(ValueError, match="fewer than n_folds = 3"):
        decoder_probabilities(X, labels, n_folds=3)


# ---------------------------------------------------------------- reference file
def test_read_reference_and_its_errors(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("image_id,dprime,ost_ms,extra\nim0,1.5,120\nim1,-0.5,\n")
    table = read_reference(good)
    assert list(table.columns) == ["image_id", "dprime", "ost_ms"]
    assert table["ost_ms"].iloc[0] == 120 and np.isnan(table["ost_ms"].iloc[1])
    bare = tmp_path / "bare.csv"
    bare.write_text("image_id,dprime\nim0,1.5\n")
    assert np.isnan(read_reference(bare)["ost_ms"]).all()
    cases = {"image_id,d\nim0,1\n": "missing \\['dprime'\\]",
             "image_id,dprime\nim0,1\nim0,2\n": "'im0' appears twice",
             "image_id,dprime\nim0,1\nim1,high\n": "dprime must be numeric; row 3 holds 'high'",
             "image_id,dprime\nim0,1\nim1,\n": "dprime must be finite in every row; row 3"}
    for k, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"bad{k}.csv"
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_reference(path)
    with pytest.raises(FileNotFoundError, match="OST reference file not found"):
        read_reference(tmp_path / "absent.csv")


def test_default_it_like_layers_are_the_upper_half_below_the_readout():
    assert default_layers(("area1", "area2", "area3", "area4", "readout")) == ["area3", "area4"]
    assert default_layers(("conv1", "conv2", "fc1", "readout")) == ["conv2", "fc1"]


# ---------------------------------------------------------------- a model's time course
@pytest.fixture(scope="module")
def untrained(tmp_path_factory, torch_one_thread):
    """Untrained (epoch 0) ventral_cnn and convrnn checkpoints on a 3-class random image set."""
    from pipeline.train import TrainSettings, train
    from tests.stimulus_sets import write_stimuli

    root = tmp_path_factory.mktemp("ost")
    labels = np.repeat(np.arange(3), 6)
    write_stimuli(root / "train.zarr", 18, 0, "tr", labels=labels)
    write_stimuli(root / "test.zarr", 9, 1, "te", labels=np.repeat(np.arange(3), 3))
    write_stimuli(root / "probe.zarr", 18, 2, "pr", labels=labels)
    for arch in ("ventral_cnn", "convrnn"):
        train(f"{arch}-supervised-bp-s0", root / "train.zarr", root / "test.zarr", root / arch,
              TrainSettings(epochs=0, batch_size=8, label_level="basic"), device="cpu")
    return root


def test_model_ost_over_the_presented_steps(untrained):
    root = untrained
    reference = pd.DataFrame({"image_id": [f"pr{i:03d}" for i in range(0, 18, 2)],
                              "dprime": np.linspace(1.0, 2.5, 9), "ost_ms": np.arange(9.0)})
    decoder = dict(label_level="basic", n_components=20, n_folds=3, n_repeats=1, seed=0)
    presentation = dict(image_steps=3, grey_steps=3, step_ms=10.0, window_ms=(0.0, 60.0))
    long, ost = model_ost(root / "convrnn", root / "probe.zarr", reference,
                          model="convrnn-supervised-bp-s0", presentation=presentation, **decoder)
    assert sorted(long["time_ms"].unique()) == [0, 10, 20, 30, 40, 50]
    assert long["source"].unique().tolist() == [f"step {t}" for t in range(6)]
    # area3 and area4 are silent at steps 0 and 1 (biological unrolling): chance d′ exactly
    silent = long[long["time_ms"] < 20]["dprime"]
    np.testing.assert_allclose(silent, -norm.ppf(1 / (2 * 2)))
    assert len(ost) == 9 and (ost["image_id"] == reference["image_id"]).all()
    assert ((ost["ost_ms"] >= 0) & (ost["ost_ms"] <= 50)).sum() == np.isfinite(ost["ost_ms"]).sum()
    # a feedforward model: its IT-like layers spread uniformly over the six bins
    long, _ = model_ost(root / "ventral_cnn", root / "probe.zarr", reference,
                        model="ventral_cnn-supervised-bp-s0", presentation=presentation, **decoder)
    per_time = long.drop_duplicates("time_ms")["source"].tolist()
    assert per_time == ["area3"] * 3 + ["area4"] * 3


def test_graded_pseudo_layers_move_from_the_first_to_the_last_it_like_layer(untrained):
    settings = dict(image_steps=3, grey_steps=3, step_ms=10.0, window_ms=(0.0, 60.0))
    _, uniform, _ = model_time_course(untrained / "ventral_cnn", untrained / "probe.zarr", **settings)
    times, graded, sources = model_time_course(untrained / "ventral_cnn", untrained / "probe.zarr",
                                               feedforward="graded", graded_units=16, seed=3, **settings)
    assert sources == [f"graded {k}" for k in range(6)] and len(times) == 6
    assert all(X.shape == (18, 16) for X in graded)

    def columns_of(X, layer):                 # how many columns of X are columns of the layer
        return sum(any(np.array_equal(x, y) for y in layer.T) for x in X.T)

    area3, area4 = uniform[0], uniform[-1]
    assert columns_of(graded[0], area3) == 16 and columns_of(graded[-1], area4) == 16
    assert columns_of(graded[3], area3) + columns_of(graded[3], area4) >= 16
    assert 0 < columns_of(graded[3], area4) < 16                       # a mix halfway
    with pytest.raises(ValueError, match="ost.presentation.feedforward"):
        model_time_course(untrained / "ventral_cnn", untrained / "probe.zarr", feedforward="steps")


def test_unknown_layers_and_a_window_past_the_presented_steps_are_refused(untrained):
    reference = pd.DataFrame({"image_id": ["pr000"], "dprime": [1.0], "ost_ms": [np.nan]})
    settings = dict(model="m", label_level="basic", n_folds=3, n_repeats=1)
    with pytest.raises(ValueError, match=r"layers: \['area9'\] are not layers of 'convrnn'"):
        model_ost(untrained / "convrnn", untrained / "probe.zarr", reference,
                  presentation={"layers": ["area9"]}, **settings)
    with pytest.raises(ValueError, match=r"window_ms \[0, 70\] reaches step 6, beyond the 6 steps"):
        model_ost(untrained / "convrnn", untrained / "probe.zarr", reference,
                  presentation={"image_steps": 3, "grey_steps": 3, "window_ms": [0, 70]}, **settings)


def test_reference_images_outside_the_stimulus_set_are_refused(untrained):
    reference = pd.DataFrame({"image_id": ["pr000", "elsewhere"], "dprime": [1.0, 1.0],
                              "ost_ms": [np.nan, np.nan]})
    with pytest.raises(ValueError, match="1 image_id values are not stimuli of .*'elsewhere'"):
        model_ost(untrained / "convrnn", untrained / "probe.zarr", reference, model="m",
                  label_level="basic", presentation={})


# ---------------------------------------------------------------- the stage through Snakemake
# configs/ost.yaml on top of config.yaml, shrunk: few images, one epoch, the random generator
# (no generator to train), three folds; only the OST targets are built.
SHRUNK = {
    "stimuli": {"name": "shapes", "size": 32, "train_per_class": 4, "test_per_class": 2, "probe": 48,
                "seed": 0},
    "datasets": {"synthetic_mouse": {"simulate": {"animals_per_area": 2, "units_per_animal": 10,
                                                  "trials": 10, "seed": 0, "generator": "random"}}},
    "models": {"archs": ["ventral_cnn"], "objectives": ["supervised"], "rules": ["bp"], "seeds": [0],
               "include": ["convrnn-supervised-bp-s0"], "train": {"epochs": 1, "batch_size": 32}},
    "ost": {"decoder": {"n_folds": 3, "n_repeats": 1}, "consistency": {"n_shuffles": 100}},
    "figures": {"format": "png", "dpi": 60},
}


@pytest.fixture(scope="module")
def ost_run(tmp_path_factory):
    import shutil

    import yaml

    from tests.workflow.runner import REPO, snakemake

    workdir = tmp_path_factory.mktemp("ost_run")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    (workdir / "shrunk.yaml").write_text(yaml.safe_dump(SHRUNK))
    done = snakemake(workdir, "results/figures/ost.png", "--cores", "2", "--configfile",
                     REPO / "configs/ost.yaml", workdir / "shrunk.yaml", timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


@pytest.mark.slow
@pytest.mark.timeout(15 * 60)
def test_configs_ost_runs_end_to_end(ost_run):
    results = ost_run / "results"
    reference = read_reference(results / "ost/reference.csv")
    assert len(reference) == 48 and (reference["dprime"].abs() <= 5).all()
    assert np.isfinite(reference["ost_ms"]).all()          # the whole window reaches its own d′
    consistency = pd.read_csv(results / "ost/consistency.csv")
    assert set(consistency["model"]) == {"convrnn-supervised-bp-s0", "ventral_cnn-supervised-bp-s0"}
    assert (consistency["n_reference"] == 48).all()
    assert (consistency["n_images"] <= consistency["n_solved_model"]).all()
    recurrent = pd.read_parquet(results / "ost/convrnn-supervised-bp-s0/dprime.parquet")
    assert sorted(recurrent["time_ms"].unique()) == list(np.arange(0.0, 250.0, 10.0))
    # area3 and area4 have no input before step 2: chance d′ of the 8 basic classes
    np.testing.assert_allclose(recurrent.query("time_ms < 20")["dprime"], -norm.ppf(1 / 14))
    feedforward = pd.read_parquet(results / "ost/ventral_cnn-supervised-bp-s0/dprime.parquet")
    assert set(feedforward["source"]) == {"area3", "area4"}
    assert (results / "figures/ost.png").stat().st_size > 0


ZOO_MODEL = ["ventral_cnn-supervised-bp-s0"]


@pytest.mark.slow
@pytest.mark.parametrize("ost, message", [
    ({"models": ["lenet-supervised-fa-s3"]},
     "field 'ost.models' lists 'lenet-supervised-fa-s3', which is not in the zoo"),
    ({"models": ZOO_MODEL, "reference": {"path": "absent.csv"}},
     "field 'ost.reference.path': absent.csv is not a file"),
    ({"models": ZOO_MODEL, "reference": {"dataset": "virtual_lenet_supervised_bp_s0"}},
     "field 'ost.reference.dataset' is 'virtual_lenet_supervised_bp_s0', which this run does not simulate"),
    ({"models": ZOO_MODEL, "presentation": {"window_ms": [0, 5]}},
     "field 'ost.presentation.window_ms' must span at least one step of 10.0 ms"),
])
def test_a_bad_ost_block_stops_the_run_at_start(tmp_path, ost, message):
    import shutil

    import yaml

    from tests.workflow.runner import REPO, snakemake

    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"ost": ost}))
    dry = snakemake(tmp_path, "-n", "--configfile", tmp_path / "bad.yaml")
    assert dry.returncode != 0
    assert message in dry.stdout + dry.stderr
