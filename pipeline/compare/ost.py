"""Object solution times (spec §4.3): per-image I1 d′ over model time, OST and OST consistency.

- **I1 d′** (Rajalingham et al. 2018, one versus all): in a two-alternative trial an image of
  category c is shown with c and one distractor category; HR_i is the share of image i's trials
  answered c, FAR_c the mean over images of other categories of the share of their trials
  answered c, and d′_i = Φ⁻¹(HR_i) − Φ⁻¹(FAR_c), clipped to ±5. A decoder's class probabilities p
  give its expected trials (distractors drawn uniformly): it answers c against d with
  probability p_c / (p_c + p_d), as Brain-Score's I1 builds model trials. A chance observer
  therefore has d′ = −Φ⁻¹(1 / (2 (K − 1))) > 0, the same for model and reference.
- **Decoder** at each model time point: PCA to at most `n_components` (1000 in the spec) fit on
  the training images, then a linear SVM (scikit-learn's ``SVC`` on the linear kernel) with
  Platt-scaled probabilities (``CalibratedClassifierCV(method="sigmoid", ensemble=False)``,
  seeded inner folds); each image's class probabilities are averaged over the seeded
  stratified folds that test it (`n_folds` × `n_repeats`, 5 × 2: ten splits, every image
  tested twice). Features are scaled so training rows have unit mean squared norm,
  so `C` (stripped from the thesis; 1 here) means the same for every layer and time.
- **Time.** A recurrent model's step t is the 10-ms bin starting at t · step_ms (spec: steps map
  one to one onto bins); its features at a step are its IT-like layers' outputs at that step,
  with the image shown for `image_steps` and mean grey for `grey_steps`. A feedforward model's
  IT-like layers are spread over the same bins, "uniform" (bin j reads layer ⌊j L / n_bins⌋)
  or "graded" (bin j reads a pseudo-layer of units sampled across consecutive layers, moving
  through the network bin by bin; spec §4.3). IT-like layers default to the upper half of the
  layers below the readout.
- **Model OST** of an image: the first time its d′ reaches the reference d′, NaN if it never
  does: linearly interpolated between the bins around the crossing (the default), or where a
  logistic curve fit to the image's d′ course by Levenberg–Marquardt (the fit the thesis
  names; its curve is not stated, a logistic is our choice) reaches it. The reference observer
  reads its neural OST the same way.
- **OST consistency**: Spearman ρ between model and reference OST over the images both solve,
  with a null interval from the same ρ after shuffling the model's OSTs over those images.
- **Reference** (`read_reference`): a CSV with columns image_id, dprime (behavioural I1 d′) and
  optionally ost_ms (the neural, e.g. IT, OST of each image; empty where unsolved). The embedded
  run makes one with `virtual_observer`: the same decoder reads the virtual animals' IT-like
  area, its d′ on the whole response window is the "behaviour" and the first time its
  cumulative response (onset to t) reaches that d′ is the neural OST.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri
from scipy.stats import spearmanr
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.svm import SVC
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.compare.model_time import graded_pseudo_layers

log = logging.getLogger(__name__)

CAP = 5.0                                   # d′ clip (Rajalingham et al. 2018, Kar et al. 2019)
REFERENCE_COLUMNS = ("image_id", "dprime")  # required; ost_ms optional


# ---------------------------------------------------------------- I1 d′
def two_afc_choices(probabilities, labels) -> np.ndarray:
    """Expected share of each image's two-alternative trials answered with each category.

    Parameters
    ----------
    probabilities : array (image, category)
        A decoder's class probabilities.
    labels : int array (image,)
        True category of each image, 0 … K − 1.

    Returns
    -------
    ndarray (image, category)
        Entry (i, k ≠ c_i): (1 / (K − 1)) · p_k / (p_k + p_c) (distractor k drawn with probability
        1 / (K − 1), then chosen); entry (i, c_i): the rest. Rows sum to 1.
    """
    p = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels)
    rows = np.arange(len(p))
    pair = p + p[rows, labels][:, None]
    wrong = np.divide(p, pair, out=np.full_like(p, 0.5), where=pair > 0) / (p.shape[1] - 1)
    wrong[rows, labels] = 0.0
    wrong[rows, labels] = 1.0 - wrong.sum(1)
    return wrong


def i1_dprime(choices, labels, cap: float = CAP) -> np.ndarray:
    """Per-image one-versus-all d′ (I1), Φ⁻¹(HR_i) − Φ⁻¹(FAR_c), clipped to [−cap, cap].

    Parameters
    ----------
    choices : array (image, category)
        Share of image i's trials answered k (rows sum to 1), from behaviour or
        `two_afc_choices`.
    labels : int array (image,)
        True category of each image, 0 … K − 1.
    cap : float
        Clip (spec §4.3: 5). Rates of exactly 0 or 1 give ∓∞ before clipping.

    Returns
    -------
    ndarray (image,)
    """
    choices = np.asarray(choices, dtype=float)
    labels = np.asarray(labels)
    hit = choices[np.arange(len(choices)), labels]
    far = np.array([choices[labels != c, c].mean() for c in range(choices.shape[1])])
    with np.errstate(invalid="ignore"):
        return np.clip(ndtri(hit) - ndtri(far[labels]), -cap, cap)


# ---------------------------------------------------------------- decoder
def _held_out_probabilities(X_train, y_train, X_test, n_classes, *, n_components, C, seed):
    """Class probabilities of the test rows from PCA + a Platt-scaled linear SVM."""
    if not np.ptp(X_train, axis=0).any():        # a silent layer: nothing to decode, chance
        return np.full((len(X_test), n_classes), 1.0 / n_classes)
    pca = PCA(n_components=min(n_components, *X_train.shape), random_state=seed).fit(X_train)
    train, test = pca.transform(X_train), pca.transform(X_test)
    scale = np.sqrt(np.mean(np.sum(train ** 2, axis=1))) or 1.0
    train, test = train / scale, test / scale
    fewest = np.bincount(y_train).min()
    if fewest < 2:
        raise ValueError(f"OST decoder: a category has {fewest} training image in a split; Platt "
                         f"calibration needs 2 (use fewer n_folds or more images)")
    # Platt scaling on held-out decision values: scikit-learn's replacement for SVC's deprecated
    # probability=True. A precomputed kernel gives the same probabilities (to 1e-9); it took 1.08x
    # this one's time at 660 images and 0.66x at the spec's 1320 (benchmarks/ost.py, under load).
    calibration = StratifiedKFold(n_splits=min(5, fewest), shuffle=True, random_state=seed)
    svm = CalibratedClassifierCV(SVC(kernel="linear", C=C), method="sigmoid", cv=calibration,
                                 ensemble=False)
    svm.fit(train, y_train)
    return svm.predict_proba(test)


def decoder_probabilities(features, labels, *, n_components: int = 1000, C: float = 1.0,
                          n_folds: int = 5, n_repeats: int = 2, seed: int = 0) -> np.ndarray:
    """Held-out class probabilities (image, category) of the PCA + linear SVM decoder.

    Each image's probabilities are averaged over the `n_repeats` stratified splits that test it
    (`n_folds` folds each, seeded), so every image is tested `n_repeats` times.
    """
    X = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    if counts.min() < n_folds:
        raise ValueError(f"OST decoder: category {int(counts.argmin())} has {counts.min()} images, "
                         f"fewer than n_folds = {n_folds}; lower n_folds or use more images")
    total = np.zeros((len(X), len(counts)))
    folds = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
    for train, test in folds.split(X, labels):
        total[test] += _held_out_probabilities(X[train], labels[train], X[test], len(counts),
                                               n_components=n_components, C=C, seed=seed)
    return total / n_repeats


def dprime_over_time(features, labels, *, cap: float = CAP, desc: str = "I1 d′",
                     **decoder) -> np.ndarray:
    """I1 d′ (time, image) of the decoder at each time point.

    Parameters
    ----------
    features : sequence of arrays (image, unit)
        One per time point (widths may differ between time points).
    labels : int array (image,)
    cap : float
        d′ clip.
    **decoder
        `decoder_probabilities` settings.
    """
    out = []
    with logging_redirect_tqdm():
        for X in tqdm(features, desc=desc, unit="time point", total=len(features), disable=None):
            out.append(i1_dprime(two_afc_choices(decoder_probabilities(X, labels, **decoder),
                                                 labels), labels, cap))
    return np.array(out)


# ---------------------------------------------------------------- OST and consistency
CROSSINGS = ("linear", "logistic")


def solution_times(dprime, reference, times, crossing: str = "linear") -> np.ndarray:
    """First time each image's d′ reaches its reference (NaN if never within `times`).

    Parameters
    ----------
    dprime : array (time, image)
    reference : array (image,)
    times : array (time,)
        Increasing, in ms.
    crossing : {"linear", "logistic"}
        "linear": interpolated between the two time points around the first crossing;
        "logistic": where a logistic curve fit to the image's whole d′ course
        (`logistic_crossings`) reaches the reference.

    Returns
    -------
    ndarray (image,)
        times[0] when the first time point already reaches the reference.
    """
    if crossing not in CROSSINGS:
        raise ValueError(f"crossing must be one of {CROSSINGS}; got {crossing!r}")
    dprime, reference, times = (np.asarray(a, dtype=float) for a in (dprime, reference, times))
    if crossing == "logistic":
        return logistic_crossings(dprime, reference, times)
    reached = dprime >= reference[None]
    first = reached.argmax(0)
    before = np.maximum(first - 1, 0)
    cols = np.arange(dprime.shape[1])
    d0, d1 = dprime[before, cols], dprime[first, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(first > 0, (reference - d0) / (d1 - d0), 1.0)
    ost = times[before] + frac * (times[first] - times[before])
    return np.where(reached.any(0), ost, np.nan)


def _logistic(t, low, high, middle, width):
    return low + (high - low) / (1.0 + np.exp(-(t - middle) / width))


def logistic_crossings(dprime, reference, times) -> np.ndarray:
    """Reference crossings of a logistic fit to each image's d′ over time (NaN if never).

    d′(t) ≈ low + (high − low) / (1 + exp(−(t − middle) / width)), fit by Levenberg–Marquardt
    (``scipy.optimize.curve_fit(method="lm")``, the fit the thesis names) from the data's range
    and half-rise time; the crossing t = middle − width · ln((high − low) / (reference − low) − 1)
    is kept within [times[0], times[-1]] (times[0] if the curve starts above the reference, NaN
    if it is not reached by times[-1] or not at all). A fit that does not converge, or a flat
    course, falls back to the linear crossing, and is logged.
    """
    from scipy.optimize import curve_fit

    dprime, reference, times = (np.asarray(a, dtype=float) for a in (dprime, reference, times))
    out = np.full(dprime.shape[1], np.nan)
    fallback = []
    span = times[-1] - times[0]
    for i in range(dprime.shape[1]):
        d, ref = dprime[:, i], reference[i]
        if np.ptp(d) == 0 or len(times) < 5:
            fallback.append(i)
            continue
        middle = times[np.argmax(d >= d.min() + 0.5 * np.ptp(d))]
        start = (d.min(), d.max(), middle, span / 10)
        try:
            (low, high, middle, width), _ = curve_fit(_logistic, times, d, p0=start, method="lm",
                                                      maxfev=2000)
        except RuntimeError:
            fallback.append(i)
            continue
        if width < 0:                        # a falling curve: the same curve, written rising
            low, high, width = high, low, -width
        if _logistic(times[0], low, high, middle, width) >= ref:
            out[i] = times[0]
        elif low < ref < high:
            t = middle - width * np.log((high - low) / (ref - low) - 1.0)
            out[i] = t if t <= times[-1] else np.nan
    if fallback:
        log.info("logistic OST: %d of %d images fall back to the linear crossing (flat course or "
                 "no convergence)", len(fallback), dprime.shape[1])
        out[fallback] = solution_times(dprime[:, fallback], reference[fallback], times)
    return out


def ost_consistency(model_ost, reference_ost, *, n_shuffles: int = 1000, ci: float = 0.95,
                    seed: int = 0) -> dict:
    """Spearman ρ of model vs reference OST over the images both solve, with a shuffle null.

    Returns
    -------
    dict
        rho, null_low and null_high (the central `ci` interval of ρ after permuting the model's
        OSTs over those images, `n_shuffles` times), p_value (share of shuffles with ρ at least
        as large, one-sided, counting the observed), n_images (solved by both).
    """
    model_ost, reference_ost = np.asarray(model_ost, float), np.asarray(reference_ost, float)
    both = np.isfinite(model_ost) & np.isfinite(reference_ost)
    a, b = model_ost[both], reference_ost[both]
    result = {"rho": np.nan, "null_low": np.nan, "null_high": np.nan, "p_value": np.nan,
              "n_images": int(both.sum())}
    if both.sum() < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        log.warning("OST consistency undefined: %d images solved by both (constant OSTs or "
                    "fewer than 3)", both.sum())
        return result
    rng = np.random.default_rng(seed)
    rho = spearmanr(a, b).statistic
    null = np.array([spearmanr(rng.permutation(a), b).statistic for _ in range(n_shuffles)])
    low, high = np.nanquantile(null, [(1 - ci) / 2, (1 + ci) / 2])
    p_value = (1 + np.sum(null >= rho)) / (1 + n_shuffles)
    return {**result, "rho": float(rho), "null_low": float(low), "null_high": float(high),
            "p_value": float(p_value)}


# ---------------------------------------------------------------- reference data
def read_reference(path) -> pd.DataFrame:
    """A reference table: image_id (str, unique), dprime (finite), ost_ms (float, NaN: unsolved).

    The CSV has a header row; columns other than these are ignored. Raises ValueError naming the
    file, the column and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OST reference file not found (a CSV with columns "
                                f"image_id, dprime[, ost_ms])")
    table = pd.read_csv(path, dtype={"image_id": str})
    missing = [c for c in REFERENCE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: OST reference needs columns {list(REFERENCE_COLUMNS)} "
                         f"(ost_ms optional); missing {missing}, found {list(table.columns)}")
    duplicated = table["image_id"][table["image_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: image_id must be unique; {duplicated.iloc[0]!r} appears twice")
    for column in ("dprime", "ost_ms"):
        if column not in table:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & table[column].notna()
        if bad.any():
            raise ValueError(f"{path}: column {column} must be numeric; row {int(bad.idxmax()) + 2} "
                             f"holds {table[column][bad].iloc[0]!r}")
        table[column] = values.astype(float)
    if not np.isfinite(table["dprime"]).all():
        row = int((~np.isfinite(table["dprime"])).to_numpy().argmax()) + 2
        raise ValueError(f"{path}: column dprime must be finite in every row; row {row} is not "
                         f"(an unsolved image belongs in ost_ms, left empty)")
    if "ost_ms" not in table:
        table["ost_ms"] = np.nan
    return table[["image_id", "dprime", "ost_ms"]]


def _stimulus_labels(stimuli, label_level: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """stimulus_id, integer category labels and category names of a stimulus set."""
    from pipeline.data.stimuli import class_names, read_stimuli

    ds = read_stimuli(stimuli, label_level)
    names = class_names(ds, label_level)
    labels = np.searchsorted(names, ds[label_level].values.astype(str))
    return ds["stimulus_id"].values.astype(str), labels, names


def virtual_observer(raw_dir, stimuli, *, area: str, label_level: str, bin_ms: float = 10.0,
                     window_ms=(0.0, 250.0), cap: float = CAP, crossing: str = "linear",
                     **decoder) -> pd.DataFrame:
    """Reference d′ and neural OST from the virtual animals' IT-like area (module docstring).

    Parameters
    ----------
    raw_dir : path-like
        Sessions ``sub-*/sub-*_ses-*.nwb`` written by `simulate_synthetic_mouse` (frames index
        the probe stimulus set `stimuli`).
    stimuli : path-like
        The probe stimulus set, with label coord `label_level`.
    area : str
        The area read (the deepest, VISpm, by default).
    bin_ms, window_ms
        Spike-count bins and the response window after onset, in ms.
    crossing : {"linear", "logistic"}
        How the neural OST is read between bins (`solution_times`).
    **decoder
        `decoder_probabilities` settings.

    Returns
    -------
    pandas.DataFrame
        image_id, dprime, ost_ms (the `read_reference` format).
    """
    from pipeline.data.allen_neuropixels import session_spike_counts

    sessions = sorted(p for p in Path(raw_dir).glob("sub-*/sub-*_ses-*.nwb") if "_probe-" not in p.name)
    if not sessions:
        raise FileNotFoundError(f"{raw_dir}: no session files sub-*/sub-*_ses-*.nwb")
    stimulus_id, labels, _ = _stimulus_labels(stimuli, label_level)
    window = (window_ms[0] / 1000, window_ms[1] / 1000)
    rates = []
    for path in sessions:
        counts = session_spike_counts(path, areas=[area], bin_size=bin_ms / 1000, window=window)
        if counts.sizes["neuroid"] == 0:
            continue
        if not np.array_equal(counts["frame"].values, np.arange(len(stimulus_id))):
            raise ValueError(f"{path}: presented frames do not cover the {len(stimulus_id)} probe "
                             f"stimuli of {stimuli} once each")
        rates.append(counts.mean("trial", skipna=True).values)       # (stimulus, bin, neuroid)
    if not rates:
        raise ValueError(f"{raw_dir}: no unit in area {area!r}; set ost.reference.area to a "
                         f"recorded area")
    rates = np.concatenate(rates, axis=-1)
    # evidence up to bin t: the mean response from onset to the end of bin t
    cumulative = np.cumsum(rates, axis=1) / np.arange(1, rates.shape[1] + 1)[None, :, None]
    log.info("virtual observer: %d %s units, %d bins of %g ms", rates.shape[-1], area,
             rates.shape[1], bin_ms)
    dprime = dprime_over_time(list(cumulative.transpose(1, 0, 2)), labels, cap=cap,
                              desc=f"virtual observer {area}", **decoder)
    ends = window_ms[0] + bin_ms * np.arange(1, rates.shape[1] + 1)
    return pd.DataFrame({"image_id": stimulus_id, "dprime": dprime[-1],
                         "ost_ms": solution_times(dprime, dprime[-1], ends, crossing)})


# ---------------------------------------------------------------- model time course
def default_layers(layer_names) -> list[str]:
    """The upper half of a model's layers below its readout: its IT-like layers by default."""
    names = [n for n in layer_names if n != "readout"]
    return names[len(names) // 2:]


def model_time_course(model_dir, stimuli, *, layers=None, image_steps: int = 10,
                      grey_steps: int = 15, step_ms: float = 10.0, window_ms=(0.0, 250.0),
                      feedforward: str = "uniform", graded_units: int | None = None, seed: int = 0,
                      device: str = "cpu", batch_size: int = 64):
    """Features of the IT-like layers at each time point of the window, final checkpoint.

    A feedforward model's layers are spread over the time points "uniform"ly (whole layers) or
    "graded" (`pipeline.compare.model_time.graded_pseudo_layers`: `graded_units` units per time
    point drawn with `seed` across consecutive layers); a recurrent model reads its steps.

    Returns
    -------
    times : ndarray (time,)
        Bin starts in ms.
    features : list of ndarray (stimulus, unit)
        One per time point (layers concatenated at a recurrent model's step).
    sources : list of str
        What each time point reads: "step {t}", the feedforward layer or "graded {k}".
    """
    import torch

    from pipeline.checkpoints import load_backbone, read_checkpoint, run_epochs
    from pipeline.data.stimuli import read_stimuli, to_tensor
    from pipeline.models import layer_outputs
    from pipeline.objectives.augment import preprocess

    if feedforward not in ("uniform", "graded"):
        raise ValueError(f"ost.presentation.feedforward must be 'uniform' or 'graded'; got {feedforward!r}")
    checkpoint = read_checkpoint(list(run_epochs(model_dir).values())[-1])
    model = load_backbone(checkpoint, device)
    recurrent = getattr(model, "time_steps", None) is not None
    layers = list(layers) if layers else default_layers(model.layer_names)
    unknown = sorted(set(layers) - set(model.layer_names))
    if unknown:
        raise ValueError(f"ost.presentation.layers: {unknown} are not layers of "
                         f"{checkpoint['arch']!r} ({', '.join(model.layer_names)})")
    times = np.arange(window_ms[0], window_ms[1], step_ms, dtype=float)
    if recurrent:
        if not hasattr(model, "present"):
            raise ValueError(f"arch {checkpoint['arch']!r} is recurrent but cannot present a grey "
                             f"screen after the image (no `present` method, as ConvRNN has)")
        model.present(image_steps, grey_steps)
        steps = np.round(times / step_ms).astype(int)
        if steps.max() >= model.time_steps:
            raise ValueError(f"ost.presentation: window_ms {list(window_ms)} reaches step "
                             f"{steps.max()}, beyond the {model.time_steps} steps presented "
                             f"(image_steps + grey_steps)")
    images = to_tensor(read_stimuli(stimuli)["image"].values)
    outputs = {name: [] for name in layers}
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = preprocess(images[start:start + batch_size].to(device), checkpoint["preprocessing"])
            for name, out in layer_outputs(model, x).items():
                if name in outputs:
                    outputs[name].append(out.flatten(2 if recurrent else 1).float().cpu().numpy())
    outputs = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
    if recurrent:
        features = [np.concatenate([outputs[n][:, t] for n in layers], axis=1) for t in steps]
        return times, features, [f"step {t}" for t in steps]
    if feedforward == "graded":
        pseudo = graded_pseudo_layers([outputs[n] for n in layers], len(times), n_units=graded_units,
                                      seed=seed)
        return times, pseudo, [f"graded {k}" for k in range(len(times))]
    chosen = [layers[j * len(layers) // len(times)] for j in range(len(times))]
    return times, [outputs[n] for n in chosen], chosen


def model_ost(model_dir, stimuli, reference: pd.DataFrame, *, model: str, label_level: str,
              presentation: dict, cap: float = CAP, crossing: str = "linear", device: str = "cpu",
              **decoder):
    """Per-image d′ over time and OST of one model against a reference table.

    Returns
    -------
    dprime : pandas.DataFrame
        model, image_id, category, time_ms, source, dprime (one row per image and time point).
    ost : pandas.DataFrame
        model, image_id, category, reference_dprime, reference_ost_ms, ost_ms (one row per image
        of the reference).
    """
    stimulus_id, labels, names = _stimulus_labels(stimuli, label_level)
    missing = sorted(set(reference["image_id"]) - set(stimulus_id))
    if missing:
        raise ValueError(f"OST reference: {len(missing)} image_id values are not stimuli of "
                         f"{stimuli} (first: {missing[0]!r})")
    times, features, sources = model_time_course(model_dir, stimuli, device=device, **presentation)
    # Time points reading the same features (a feedforward layer spread over bins) share a d′.
    unique = list(dict.fromkeys(sources))
    computed = dprime_over_time([features[sources.index(s)] for s in unique], labels, cap=cap,
                                desc=f"OST {model}", **decoder)
    dprime = computed[[unique.index(s) for s in sources]]
    category = np.array(names)[labels]
    long = pd.DataFrame({"model": model, "image_id": np.tile(stimulus_id, len(times)),
                         "category": np.tile(category, len(times)),
                         "time_ms": np.repeat(times, len(stimulus_id)),
                         "source": np.repeat(sources, len(stimulus_id)),
                         "dprime": dprime.ravel()})
    position = pd.Index(stimulus_id).get_indexer(reference["image_id"])
    ost = pd.DataFrame({"model": model, "image_id": reference["image_id"].to_numpy(),
                        "category": category[position],
                        "reference_dprime": reference["dprime"].to_numpy(),
                        "reference_ost_ms": reference["ost_ms"].to_numpy(),
                        "ost_ms": solution_times(dprime[:, position], reference["dprime"], times,
                                                 crossing)})
    log.info("%s: %d of %d reference images solved within %g–%g ms", model,
             np.isfinite(ost["ost_ms"]).sum(), len(ost), times[0], times[-1])
    return long, ost


def consistency_table(ost_tables, **settings) -> pd.DataFrame:
    """One row per model: OST consistency with the reference and how many images each solves."""
    rows = []
    for table in ost_tables:
        result = ost_consistency(table["ost_ms"], table["reference_ost_ms"], **settings)
        rows.append({"model": table["model"].iloc[0], **result,
                     "n_solved_model": int(np.isfinite(table["ost_ms"]).sum()),
                     "n_solved_reference": int(np.isfinite(table["reference_ost_ms"]).sum()),
                     "n_reference": len(table)})
    return pd.DataFrame(rows)
