"""Missing and non-finite values in the comparison engine, each with its exact outcome.

Issue 19, item 2 and its ratio-score item. The policy (`pipeline.compare.scoring`,
`pipeline.compare.sources`, `pipeline.compare.tasks` docstrings): every target unit is
scored on the stimuli it has; a stimulus is dropped from a fit where the source or that
unit has no value there; dead units (no valid trial) give NaN rows and leave the sources;
stimuli that no unit has are removed before the splits are drawn. Each case below checks
which rows are NaN and that every other row equals a run on the data with the unit or
stimulus removed (the same train/test splits, renumbered). ±inf is refused by
`validate_assembly`, NaN/inf activations by `layer_sources`, both naming where.
"""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.compare import consistency
from pipeline.compare.consistency import interanimal, predictivity
from pipeline.compare.curves import interanimal_curve
from pipeline.compare.scoring import QUANTITIES
from pipeline.compare.splits import stimulus_splits
from pipeline.data.assembly import read_assembly, validate_assembly, write_assembly
from pipeline.data.reliability import trial_halves
from pipeline.io import write_zarr

N_STIMULI, N_TRIALS, N_UNITS, N_SPLITS, N_HALVES, SEED = 30, 6, 5, 3, 4, 0
KW = dict(n_halves=N_HALVES, n_splits=N_SPLITS, n_components=3, seed=SEED, scheduler="synchronous")
FITTED = ["ridge", "pls", "one_to_one", "ridge_cv"]
POPULATION = ["rsa", "cka", "cka_unbiased"]
MAPPINGS = FITTED + POPULATION
MODES = ["pooled", "pairwise"]
KEYS = ["area", "animal", "source", "neuroid_id", "mapping", "split"]
TOL = dict(rtol=1e-7, atol=1e-9)


def make_assembly(n_animals=3, seed=0):
    """Three animals of one area reading out one shared latent, with trial noise."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((N_STIMULI, 4))
    blocks, animal, ids = [], [], []
    for k in range(n_animals):
        rate = 2.0 * np.logaddexp(0.0, Z @ rng.standard_normal((4, N_UNITS)))
        blocks.append(rate[:, None, :] + 0.5 * rng.standard_normal((N_STIMULI, N_TRIALS, N_UNITS)))
        animal += [f"m{k}"] * N_UNITS
        ids += [f"m{k}-u{u}" for u in range(N_UNITS)]
    return xr.DataArray(
        np.concatenate(blocks, axis=2), dims=("stimulus", "trial", "neuroid"), name="response",
        coords={"stimulus_id": ("stimulus", [f"s{i:02d}" for i in range(N_STIMULI)]),
                "neuroid_id": ("neuroid", ids), "animal": ("neuroid", animal),
                "area": ("neuroid", ["VISp"] * len(ids)), "reliability": ("neuroid", np.full(len(ids), np.nan))})


def make_activations(assembly, seed=1):
    rng = np.random.default_rng(seed)
    clean = assembly.mean("trial").values
    features = clean[:, :8] @ rng.standard_normal((8, 12)) + rng.standard_normal((N_STIMULI, 12))
    return xr.Dataset({"layer1": (("epoch", "stimulus", "unit"), features[None].astype(np.float32))},
                      coords={"epoch": [0], "stimulus_id": ("stimulus", assembly["stimulus_id"].values)})


@pytest.fixture
def assembly():
    return make_assembly()


def units(assembly, *ids):
    return np.isin(assembly["neuroid_id"].values, ids)


def without(assembly, stimuli=(), neuroids=()):
    keep_s = ~np.isin(assembly["stimulus_id"].values, stimuli)
    keep_n = ~np.isin(assembly["neuroid_id"].values, neuroids)
    return assembly.isel(stimulus=np.flatnonzero(keep_s), neuroid=np.flatnonzero(keep_n))


def renumbered_splits(dropped):
    """The analysis' splits over all stimuli, with `dropped` positions removed and renumbered."""
    keep = ~np.isin(np.arange(N_STIMULI), dropped)
    new = np.cumsum(keep) - 1
    return [(new[tr[keep[tr]]], new[te[keep[te]]]) for tr, te in stimulus_splits(N_STIMULI, N_SPLITS, 0.5, SEED)]


def run_with_splits(monkeypatch, func, splits, *args, **kwargs):
    """`func` run once per given split (splits of unequal sizes), rows relabelled with its index."""
    frames = []
    for i, split in enumerate(splits):
        monkeypatch.setattr(consistency, "stimulus_splits", lambda *a, split=split, **k: [split])
        frame = func(*args, **{**KW, **kwargs, "n_splits": 1})
        frames.append(frame.assign(split=i))
    monkeypatch.undo()
    return pd.concat(frames, ignore_index=True)


def rows(frame, mask=None):
    frame = frame if mask is None else frame[mask]
    keys = [k for k in KEYS + ["stage"] if k in frame.columns]
    return frame.sort_values(keys).reset_index(drop=True)


def assert_rows_equal(got, want, exact=False):
    got, want = rows(got), rows(want)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got[KEYS], want[KEYS])
    for q in [*QUANTITIES, "n_source_units"]:
        if exact:
            np.testing.assert_array_equal(got[q].to_numpy(), want[q].to_numpy(), err_msg=q)
        else:
            np.testing.assert_allclose(got[q].to_numpy(float), want[q].to_numpy(float), **TOL, err_msg=q)


def involves(frame, animal):
    """Rows whose fit uses `animal`: as the target, the source, or a member of the pooled source."""
    return (frame["animal"] == animal) | frame["source"].isin([animal, "pooled"])


# ---------------------------------------------------------------- one animal lacks one stimulus

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_stimulus_missing_in_one_animal(assembly, monkeypatch, mapping, mode):
    """Was: LinAlgError under PLS, a 100 % NaN table under ridge and RSA."""
    clean = interanimal(assembly, mappings=[mapping], mode=mode, **KW)
    broken = assembly.copy()
    broken[4, :, units(assembly, *[f"m1-u{u}" for u in range(N_UNITS)])] = np.nan
    out = interanimal(broken, mappings=[mapping], mode=mode, **KW)
    assert out["r_full"].notna().all()
    hit = involves(out, "m1")
    # fits without animal m1 (pairwise) are the clean run's, bit for bit
    if mode == "pairwise":
        assert_rows_equal(out[~hit], clean[~involves(clean, "m1")], exact=True)
    else:
        assert hit.all()
    # fits with m1 drop stimulus 4: a run without it, on the same splits
    if mapping in FITTED:
        want = run_with_splits(monkeypatch, interanimal, renumbered_splits([4]), without(assembly, ["s04"]),
                               mappings=[mapping], mode=mode)
    else:
        want = interanimal(without(assembly, ["s04"]), mappings=[mapping], mode=mode, **KW)
    assert_rows_equal(out[hit], want[involves(want, "m1")])
    if mapping == "rsa":                 # the area's RSA ceilings use the stimuli every animal has
        np.testing.assert_allclose(rows(out)[["nc_lower", "nc_upper"]], rows(
            interanimal(without(assembly, ["s04"]), mappings=["rsa"], mode=mode, **KW))[["nc_lower", "nc_upper"]],
            **TOL)


# ---------------------------------------------------------------- dead units

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_dead_unit(assembly, mapping, mode):
    """An all-NaN unit: its rows NaN; as a source it is left out; every other row as without it."""
    broken = assembly.copy()
    broken[:, :, units(assembly, "m0-u2")] = np.nan
    out = interanimal(broken, mappings=[mapping], mode=mode, **KW)
    dead = out["neuroid_id"] == "m0-u2"
    if mapping in FITTED:
        assert dead.sum() == (2 if mode == "pairwise" else 1) * N_SPLITS
        assert out.loc[dead, list(QUANTITIES)].isna().all().all() and not out.loc[dead, "defined"].any()
    else:
        assert not dead.any()
    want = interanimal(without(assembly, neuroids=["m0-u2"]), mappings=[mapping], mode=mode, **KW)
    assert_rows_equal(out[~dead], want)
    assert out[~dead]["r_full"].notna().all()


@pytest.mark.parametrize("options", [dict(per_half=True), dict(splits_per_task=1), dict(noise_correction=False)],
                         ids=["per_half", "splits_per_task", "raw"])
@pytest.mark.parametrize("mapping", ["ridge", "pls", "rsa"])
def test_dead_unit_other_layouts(assembly, mapping, options):
    broken = assembly.copy()
    broken[:, :, units(assembly, "m0-u2")] = np.nan
    out = interanimal(broken, mappings=[mapping], **options, **KW)
    dead = out["neuroid_id"] == "m0-u2"
    assert out.loc[dead, list(QUANTITIES)].isna().all().all()
    want = interanimal(without(assembly, neuroids=["m0-u2"]), mappings=[mapping], **options, **KW)
    keys = KEYS + (["half"] if "half" in out.columns else [])
    got, want = out[~dead].sort_values(keys), want.sort_values(keys)
    for q in QUANTITIES:
        np.testing.assert_allclose(got[q].to_numpy(float), want[q].to_numpy(float), **TOL, err_msg=q)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("mapping", ["ridge", "pls", "rsa", "cka"])
def test_dead_animal(assembly, mapping, mode):
    """Every unit of m2 dead: its target rows and the rows with it as the source are NaN, the rest as without it."""
    broken = assembly.copy()
    broken[:, :, units(assembly, *[f"m2-u{u}" for u in range(N_UNITS)])] = np.nan
    out = interanimal(broken, mappings=[mapping], mode=mode, **KW)
    gone = (out["animal"] == "m2") | (out["source"] == "m2")
    assert gone.any() and out.loc[gone, ["r", "r_full", "score"]].isna().all().all()
    want = interanimal(without(assembly, neuroids=[f"m2-u{u}" for u in range(N_UNITS)]), mappings=[mapping],
                       mode=mode, **KW)
    assert_rows_equal(out[~gone], want)
    if mapping == "rsa":
        np.testing.assert_allclose(rows(out[~gone])[["nc_lower", "nc_upper"]], rows(want)[["nc_lower", "nc_upper"]],
                                   **TOL)


def test_split_too_small_after_drops(assembly):
    """A unit with values on 6 stimuli only: NaN in the splits left with < 3 test or < 2 training stimuli."""
    splits = stimulus_splits(N_STIMULI, N_SPLITS, 0.5, SEED)

    def too_small(have):
        return [tr[np.isin(tr, have)].size < 2 or te[np.isin(te, have)].size < 3 for tr, te in splits]

    # the first seeded draw of 6 stimuli that leaves some splits too small and others not
    have = next(h for h in (np.random.default_rng(k).choice(N_STIMULI, 6, replace=False) for k in range(100))
                if 0 < sum(too_small(h)) < N_SPLITS)
    small = too_small(have)
    broken = assembly.copy()
    broken[np.setdiff1d(np.arange(N_STIMULI), have), :, units(assembly, "m0-u1")] = np.nan
    out = interanimal(broken, mappings=["ridge"], **KW)
    # the unit, and every target whose (pooled) source holds it, keep the same 6 stimuli
    kept = (out["neuroid_id"] == "m0-u1") | (out["animal"] != "m0")
    np.testing.assert_array_equal(out.loc[kept, "r_full"].isna().to_numpy(), np.take(small, out.loc[kept, "split"]))
    assert out.loc[~kept, "r_full"].notna().all()        # its neighbours' source is clean


def test_curve_stimulus_missing_in_one_animal(assembly):
    broken = assembly.copy()
    broken[4, :, units(assembly, *[f"m1-u{u}" for u in range(N_UNITS)])] = np.nan
    out = interanimal_curve(broken, mappings=["ridge", "pls", "rsa"], sizes=(12, None), **KW)
    assert out["r_full"].notna().all()


@pytest.mark.parametrize("mapping", ["ridge", "pls"])
def test_dead_unit_with_equalized_sources(assembly, mapping):
    """A dead unit drawn into an equalised source counts nowhere: the other rows stay finite."""
    broken = assembly.copy()
    broken[:, :, units(assembly, "m0-u2")] = np.nan
    out = interanimal(broken, mappings=[mapping], equalize_sources=8, **KW)
    dead = out["neuroid_id"] == "m0-u2"
    assert out.loc[dead, "r_full"].isna().all() and out.loc[~dead, "r_full"].notna().all()
    assert (out.loc[out["animal"] != "m0", "n_source_units"] <= 8).all()


# ---------------------------------------------------------------- partly missing units

@pytest.mark.parametrize("mapping", ["ridge", "pls", "one_to_one"])
def test_missing_trials_keep_every_stimulus(assembly, mapping):
    """Some NaN trials, every stimulus still with a valid trial in each half: the nan-mean, nothing dropped."""
    broken = assembly.copy()
    broken[::3, 0, units(assembly, "m0-u1")] = np.nan
    out = interanimal(broken, mappings=[mapping], mode="pairwise", **KW)
    clean = interanimal(assembly, mappings=[mapping], mode="pairwise", **KW)
    assert out["r_full"].notna().all()
    assert_rows_equal(out[~involves(out, "m0")], clean[~involves(clean, "m0")], exact=True)
    if mapping != "pls":              # per-unit maps: the unit's neighbours as targets are untouched
        other = (out["animal"] == "m0") & (out["neuroid_id"] != "m0-u1")
        assert_rows_equal(out[other], clean[(clean["animal"] == "m0") & (clean["neuroid_id"] != "m0-u1")],
                          exact=True)


@pytest.mark.parametrize("mapping", FITTED)
def test_unit_missing_some_stimuli(assembly, monkeypatch, mapping):
    """A unit without any trial of stimuli 3 and 7 is scored on the others; its neighbours as without it."""
    broken = assembly.copy()
    broken[[3, 7], :, units(assembly, "m0-u1")] = np.nan
    out = interanimal(broken, mappings=[mapping], **KW)
    assert out["r_full"].notna().all()
    unit = out["neuroid_id"] == "m0-u1"
    neighbours = (out["animal"] == "m0") & ~unit
    # the unit itself and every target whose source holds it: stimuli 3 and 7 dropped
    dropped = run_with_splits(monkeypatch, interanimal, renumbered_splits([3, 7]),
                              without(assembly, ["s03", "s07"]), mappings=[mapping])
    assert_rows_equal(out[out["animal"] != "m0"], dropped[dropped["animal"] != "m0"])
    # the unit is fitted on its own (PLS is joint): as the only unit of its animal
    others = [f"m0-u{u}" for u in range(N_UNITS) if u != 1]
    alone = run_with_splits(monkeypatch, interanimal, renumbered_splits([3, 7]),
                            without(assembly, ["s03", "s07"], others), mappings=[mapping])
    assert_rows_equal(out[unit], alone[alone["animal"] == "m0"])
    # its neighbours (same animal, clean source) see neither the unit nor a dropped stimulus
    alone = interanimal(without(assembly, neuroids=["m0-u1"]), mappings=[mapping], **KW)
    assert_rows_equal(out[neighbours], alone[alone["animal"] == "m0"])


@pytest.mark.parametrize("mapping", ["ridge", "pls"])
def test_unit_missing_in_one_split_half(assembly, monkeypatch, mapping):
    """Valid trials of stimulus 5 all in one half of split-half 0: the unit drops stimulus 5 in every half."""
    first, second = trial_halves(N_TRIALS, N_HALVES, SEED)[0]
    broken = assembly.copy()
    unit = units(assembly, "m2-u0")
    broken[5, first, unit] = np.nan                # half 1 of split-half 0 has no trial of stimulus 5
    out = interanimal(broken, mappings=[mapping], **KW)
    assert out["r_full"].notna().all()
    target = out["neuroid_id"] == "m2-u0"
    others = [f"m2-u{u}" for u in range(1, N_UNITS)]
    dropped = run_with_splits(monkeypatch, interanimal, renumbered_splits([5]), without(assembly, ["s05"], others),
                              mappings=[mapping])
    # the unit's own rows, fitted alone: its values on the other stimuli are unchanged, stimulus 5 is gone
    assert_rows_equal(out[target], dropped[dropped["animal"] == "m2"])
    alone = interanimal(without(assembly, neuroids=["m2-u0"]), mappings=[mapping], **KW)
    neighbours = (out["animal"] == "m2") & ~target
    assert_rows_equal(out[neighbours], alone[alone["animal"] == "m2"])


# ---------------------------------------------------------------- a stimulus nobody has

@pytest.mark.parametrize("mapping", MAPPINGS)
def test_stimulus_missing_everywhere(assembly, mapping):
    """A stimulus with no valid trial in any unit is removed before the splits: the run without it, exactly."""
    broken = assembly.copy()
    broken[11] = np.nan
    out = interanimal(broken, mappings=[mapping], **KW)
    pd.testing.assert_frame_equal(out, interanimal(without(assembly, ["s11"]), mappings=[mapping], **KW),
                                  check_exact=True)


def test_stimulus_missing_everywhere_curve(assembly):
    broken = assembly.copy()
    broken[11] = np.nan
    kw = dict(mappings=["ridge", "rsa"], sizes=(12, None), **KW)
    pd.testing.assert_frame_equal(interanimal_curve(broken, **kw), interanimal_curve(without(assembly, ["s11"]), **kw),
                                  check_exact=True)


def test_all_nan_assembly_is_an_error(assembly):
    with pytest.raises(ValueError, match="interanimal assembly: every value is NaN"):
        interanimal(assembly * np.nan, mappings=["ridge"], **KW)


# ---------------------------------------------------------------- predictivity

@pytest.mark.parametrize("mapping", MAPPINGS)
def test_predictivity_dead_unit(assembly, mapping):
    """Was: one all-NaN unit turned its neighbours' PLS scores NaN."""
    activations = make_activations(assembly)
    broken = assembly.copy()
    broken[:, :, units(assembly, "m1-u3")] = np.nan
    out = predictivity(activations, broken, mappings=[mapping], **KW)
    dead = out["neuroid_id"] == "m1-u3"
    assert out.loc[dead, list(QUANTITIES)].isna().all().all()
    assert dead.sum() == (2 * N_SPLITS if mapping in FITTED else 0)    # test and select stages
    want = predictivity(activations, without(assembly, neuroids=["m1-u3"]), mappings=[mapping], **KW)
    assert_rows_equal(out[~dead], want)


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_predictivity_stimulus_missing_in_one_animal(assembly, monkeypatch, mapping):
    activations = make_activations(assembly)
    kw = dict(mappings=[mapping], select_layers=False)
    broken = assembly.copy()
    broken[4, :, units(assembly, *[f"m1-u{u}" for u in range(N_UNITS)])] = np.nan
    out = predictivity(activations, broken, **kw, **KW)
    assert out["r_full"].notna().all()
    hit = out["animal"] == "m1"
    clean = predictivity(activations, assembly, **kw, **KW)
    assert_rows_equal(out[~hit], clean[clean["animal"] != "m1"], exact=True)
    if mapping in FITTED:
        want = run_with_splits(monkeypatch, predictivity, renumbered_splits([4]), activations,
                               without(assembly, ["s04"]), **kw)
    else:
        want = predictivity(activations, without(assembly, ["s04"]), **kw, **KW)
    assert_rows_equal(out[hit], want[want["animal"] == "m1"])


@pytest.mark.parametrize("mapping", ["ridge", "pls", "one_to_one"])
def test_predictivity_missing_with_layer_selection(assembly, mapping):
    """With validation rows too: the test rows are those of a run without them, nothing is NaN."""
    activations = make_activations(assembly)
    broken = assembly.copy()
    broken[4, :, units(assembly, *[f"m1-u{u}" for u in range(N_UNITS)])] = np.nan
    broken[[2, 9], :, units(assembly, "m0-u0")] = np.nan
    out = predictivity(activations, broken, mappings=[mapping], **KW)
    assert out["r_full"].notna().all() and set(out["stage"]) == {"test", "select"}
    plain = predictivity(activations, broken, mappings=[mapping], select_layers=False, **KW)
    assert_rows_equal(out[out["stage"] == "test"].drop(columns="stage"), plain.drop(columns="stage"), exact=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predictivity_non_finite_activations(assembly, bad):
    activations = make_activations(assembly)
    activations["layer1"][0, 6, 2] = bad
    with pytest.raises(ValueError, match=r"activations 'layer1'.*NaN or inf.*epoch 0, stimulus_id 's06', unit 2"):
        predictivity(activations, assembly, mappings=["ridge"], **KW)


# ---------------------------------------------------------------- ±inf in an assembly

@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_validate_assembly_rejects_inf(assembly, bad):
    broken = assembly.copy()
    broken[3, 2, 7] = bad
    with pytest.raises(ValueError, match=r"recordings\.zarr: .*finite or NaN.*1 infinite.*stimulus_id='s03', "
                                         r"trial=2, neuroid_id='m1-u2'"):
        validate_assembly(broken, "recordings.zarr")


def test_validate_assembly_allows_nan(assembly):
    broken = assembly.copy()
    broken[3, 2, 7] = np.nan
    assert validate_assembly(broken, "recordings.zarr") is broken


def test_read_assembly_names_the_store(assembly, tmp_path):
    path = tmp_path / "neural.zarr"
    broken = assembly.copy()
    broken[0, 5, 1] = np.inf
    write_zarr(broken.rename("response"), path, name="response")
    with pytest.raises(ValueError, match=rf"{path}: .*stimulus_id='s00', trial=5, neuroid_id='m0-u1'"):
        read_assembly(path)
    with pytest.raises(ValueError, match=r"out\.zarr: .*infinite"):
        write_assembly(broken, tmp_path / "out.zarr")


def test_interanimal_rejects_inf(assembly):
    broken = assembly.copy()
    broken[1, 1, 1] = -np.inf
    with pytest.raises(ValueError, match=r"interanimal assembly: .*stimulus_id='s01', trial=1, neuroid_id='m0-u1'"):
        interanimal(broken, mappings=["ridge"], **KW)


# ---------------------------------------------------------------- undefined ratio scores

def noisy_assembly():
    """Animal m0's units are pure noise: reliabilities near 0, ratio scores of any size."""
    assembly = make_assembly()
    rng = np.random.default_rng(5)
    noise = units(assembly, *[f"m0-u{u}" for u in range(N_UNITS)])
    assembly[:, :, noise] = rng.standard_normal((N_STIMULI, N_TRIALS, int(noise.sum())))
    return assembly


@pytest.mark.parametrize("mapping", ["ridge", "rsa"])
def test_defined_flags_splits_with_an_undefined_half(mapping):
    """``defined``: the score was defined (r_mapping > 0, r_target > 0) in every split-half of the row."""
    assembly = noisy_assembly()
    kw = dict(mappings=[mapping], **{**KW, "n_halves": 10})
    out = rows(interanimal(assembly, **kw))
    halves = interanimal(assembly, per_half=True, **kw)
    assert halves["defined"].equals(np.isfinite(halves["score"]))
    every = rows(halves.groupby(KEYS, as_index=False)["defined"].all())
    np.testing.assert_array_equal(out["defined"].to_numpy(), every["defined"].to_numpy())
    # rows are kept: undefined ones keep whatever halves were defined
    assert out["defined"].dtype == bool and len(out) == len(every)
    if mapping == "ridge":
        noisy = out["animal"] == "m0"
        assert (~out.loc[noisy, "defined"]).any() and out.loc[~out["defined"], "score"].notna().any()
        assert out.loc[out["defined"], "score"].notna().all()
        # the unstable ratios are the flagged ones (this seed: up to |score| ~ 10 against <= 1.6)
        assert out.loc[~out["defined"], "score"].abs().max() > 2 * out.loc[out["defined"], "score"].abs().max()


def test_defined_is_false_without_split_halves(assembly):
    out = interanimal(assembly, mappings=["ridge", "rsa"], noise_correction=False, **KW)
    assert not out["defined"].any() and out["r_full"].notna().all()
