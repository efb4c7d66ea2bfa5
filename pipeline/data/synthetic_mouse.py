"""The synthetic_mouse dataset: virtual animals recorded as Allen-style Neuropixels sessions.

A hidden generator network stands for the brain. With ``generator="random"`` (the estimator's
oracle) it is a fixed random convolutional front end, then six successive random ReLU stages;
stage k plays area ``ALLEN_AREAS[k]``. With a model name (``ModelGenerator``) it is that trained
model of the zoo, a hypothesis whose compared layers play the areas by relative depth
(`area_layers`), so model recovery can be tested with the truth known. Each virtual animal is
one recording session with units in all six areas. A unit reads out its area's stage through
its own random weights, gain, offset and baseline (rate = baseline + gain · softplus(readout ·
stage + offset), in Hz), with an area-dependent time course over 0–250 ms, and fires Poisson
spikes in 10-ms bins on every presentation. Presentations follow the Allen natural-scenes
protocol (each image `trials` times in random order, 250 ms, no gap, blanks as frame -1), and
each session is written as an NWB file in the Allen session layout, so the real loader
(`pipeline.data.allen_neuropixels`) reads synthetic and real data alike. The noise-free rates are
written beside the NWB files as ``truth.zarr``.

With ``dynamics`` (`Dynamics`; off by default, and then nothing above changes), each area's
code unfolds over time: a leaky recurrent stage driven by the feedforward code (`dynamic_codes`)
adds, with time constant ``tau`` after the area's onset, a nonlinear function of the stimulus
that the feedforward code does not carry linearly. Early bins read the feedforward code, late
bins the feedforward code plus the recurrent state, so a feedforward model predicts the early
phase well and the late phase worse, by a known amount. ``truth.zarr`` then also holds the
codes over time (``code``) and the feedforward code (``feedforward_code``).
"""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import xarray as xr
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import VectorData, VectorIndex
from numpy.lib.stride_tricks import sliding_window_view
from pynwb import NWBHDF5IO, NWBFile
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject
from pynwb.misc import Units
from tqdm import tqdm

from pipeline.data.allen_neuropixels import neuropixels_assembly
from pipeline.data.assembly import ALLEN_AREAS
from pipeline.io import atomic_path, read_zarr, write_zarr
from pipeline.models.names import parse_model_name

log = logging.getLogger(__name__)

BIN_SIZE = 0.01            # s, the time resolution of the simulated rates
DURATION = 0.25            # s, one presentation (Allen natural scenes: 250 ms, no gap)
LATENCY = dict(zip(ALLEN_AREAS, (0.040, 0.048, 0.052, 0.055, 0.062, 0.066)))  # s, onset
AREA_DIM = 8              # dimension of each area's population code
OTHER_AREA = "CA1"         # non-visual units the loader must leave out
SESSION_START = 100.0      # s, first presentation onset


def _layer_norm(h: np.ndarray) -> np.ndarray:
    """Standardise each stimulus's feature vector (per image, so batches never interact)."""
    h = h - h.mean(axis=1, keepdims=True)
    return h / (h.std(axis=1, keepdims=True) + 1e-8)


class Generator:
    """The hidden network whose six stages play the six visual areas.

    Parameters
    ----------
    seed : int
        Seed of every fixed random weight.
    width : int
        Features per stage.
    threshold : float
        ReLU threshold on the per-image standardised pre-activations; higher is sparser and
        makes neighbouring stages less linearly related.
    """

    kernel_size = 5
    n_filters = 32
    pool = 4

    def __init__(self, seed=0, width=96, threshold=0.5):
        self.seed = seed
        self.width = width
        self.threshold = threshold
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E6E]))
        filters = rng.normal(size=(self.kernel_size, self.kernel_size, 3, self.n_filters))
        self.filters_ = filters - filters.mean(axis=(0, 1), keepdims=True)  # edge-like, no DC

    def _front_end(self, images: np.ndarray) -> np.ndarray:
        """Fixed random conv (valid, stride 1), ReLU, average pooling; (n, feature)."""
        x = images.astype(np.float64) / 255.0
        x = x - x.mean(axis=(1, 2, 3), keepdims=True)
        patches = sliding_window_view(x, (self.kernel_size, self.kernel_size), axis=(1, 2))
        h = np.maximum(np.einsum("nyxcij,ijcd->nyxd", patches, self.filters_, optimize=True), 0)
        n, ny, nx, nc = h.shape
        py, px = ny // self.pool, nx // self.pool
        h = h[:, :py * self.pool, :px * self.pool]
        h = h.reshape(n, py, self.pool, px, self.pool, nc).mean(axis=(2, 4))
        return _layer_norm(h.reshape(n, -1))

    def _weights(self, n_in: int) -> list[np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x57A6, n_in]))
        sizes = [n_in] + [self.width] * len(ALLEN_AREAS)
        return [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]

    def features(self, images) -> dict[str, np.ndarray]:
        """Stage features of `images`.

        Parameters
        ----------
        images : numpy.ndarray
            uint8 (n_stimulus, y, x, channel) with 3 channels.

        Returns
        -------
        dict of str to numpy.ndarray
            Area name → (n_stimulus, width) features; a deterministic function of each image.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"Generator.features: images must be (stimulus, y, x, 3); "
                             f"got shape {images.shape}")
        h = self._front_end(images)
        out = {}
        for area, weight in zip(ALLEN_AREAS, self._weights(h.shape[1])):
            h = np.maximum(_layer_norm(h @ weight) - self.threshold, 0.0)
            out[area] = h
        return out


def nearest_depth(depth: float, n_layers: int) -> int:
    """Index of the layer, among `n_layers` in network order, nearest relative depth `depth`.

    Layer j of n sits at relative depth j / (n - 1) (0 for the first, 1 for the last; 0 when
    n = 1); halves round up, so the choice never depends on floating-point ties.
    """
    if n_layers < 1:
        raise ValueError(f"nearest_depth: n_layers must be >= 1; got {n_layers}")
    return int(np.floor(depth * (n_layers - 1) + 0.5 + 1e-9))


def area_layers(layer_names) -> dict[str, str]:
    """Which compared layer of a generator model plays each Allen area.

    Area i of the six (``ALLEN_AREAS`` order, relative depth i / 5) reads the layer nearest its
    relative depth (`nearest_depth`): k layers are spread over the six areas in order, the
    first layer playing VISp and the last VISpm. With fewer than six layers, neighbouring areas
    share a layer (each still reads its own random projection of it). ventral_cnn's area1–4,
    readout give VISp: area1, VISl: area2, VISal: area3, VISrl: area3, VISam: area4, VISpm: readout.
    """
    layer_names = list(layer_names)
    n_areas = len(ALLEN_AREAS)
    return {area: layer_names[nearest_depth(i / (n_areas - 1), len(layer_names))]
            for i, area in enumerate(ALLEN_AREAS)}


class ModelGenerator:
    """A trained model of the zoo as the hidden network: a virtual brain that is a hypothesis.

    Its final checkpoint (the last epoch of the run record) is run on the images; the output of
    the layer `area_layers` assigns to each area (flattened; a recurrent model's last time step)
    stands in for that area's stage of the random `Generator`.

    Parameters
    ----------
    name : str
        Model name {arch}-{objective}-{rule}-s{seed}; must be the model the folder holds.
    model_dir : path-like
        ``results/models/{name}``, written by the `train` rule.
    """

    def __init__(self, name: str, model_dir):
        from pipeline.checkpoints import load_backbone, read_checkpoint, run_epochs

        self.name = parse_model_name(name).name
        self.model_dir = Path(model_dir)
        epochs = run_epochs(self.model_dir)
        self.epoch_ = max(epochs)
        checkpoint = read_checkpoint(epochs[self.epoch_])
        trained = checkpoint.get("model_name")
        if trained is not None and trained != self.name:
            raise ValueError(f"{self.model_dir}: holds model {trained!r}, but the generator is "
                             f"{self.name!r} (datasets.synthetic_mouse.simulate.generator)")
        self.model_ = load_backbone(checkpoint, "cpu")
        self.preprocessing_ = checkpoint["preprocessing"]
        self.layers_ = list(self.model_.layer_names)
        self.area_layers_ = area_layers(self.layers_)

    def features(self, images, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Area name → (n_stimulus, units) outputs of the area's layer on `images` (uint8
        (stimulus, y, x, 3)), preprocessed as in training and extraction."""
        import torch

        from pipeline.data.stimuli import to_tensor
        from pipeline.models import layer_outputs
        from pipeline.objectives.augment import preprocess

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"ModelGenerator.features: images must be (stimulus, y, x, 3); "
                             f"got shape {images.shape}")
        wanted = set(self.area_layers_.values())
        outputs = {layer: [] for layer in wanted}
        recurrent = getattr(self.model_, "time_steps", None) is not None
        with torch.no_grad():
            tensor = to_tensor(images)
            for start in range(0, len(tensor), batch_size):
                x = preprocess(tensor[start:start + batch_size], self.preprocessing_)
                for layer, out in layer_outputs(self.model_, x).items():
                    if layer in wanted:
                        out = out[:, -1] if recurrent else out
                        outputs[layer].append(out.flatten(1).double().numpy())
        stacked = {layer: np.concatenate(parts) for layer, parts in outputs.items()}
        return {area: stacked[layer] for area, layer in self.area_layers_.items()}

    def depth(self) -> dict[str, float]:
        """Area → relative depth (0 … 1) of the generator layer that plays it."""
        n = len(self.layers_)
        return {area: self.layers_.index(layer) / max(n - 1, 1)
                for area, layer in self.area_layers_.items()}


def time_course(area: str, latency_jitter: float = 0.0) -> np.ndarray:
    """Temporal profile (mean 1 over 0–250 ms) of the stimulus-driven rate, per 10-ms bin.

    A transient peak ~15 ms after the area's onset latency, decaying to a sustained level.
    """
    t = (np.arange(round(DURATION / BIN_SIZE)) + 0.5) * BIN_SIZE
    lag = t - (LATENCY[area] + latency_jitter)
    rise = 1.0 / (1.0 + np.exp(-lag / 0.002))
    profile = rise * (0.45 + 2.5 * np.exp(-np.clip(lag, 0, None) / 0.03))
    return profile / profile.mean()


def area_codes(stages: dict[str, np.ndarray], seed: int, dim: int = AREA_DIM) -> dict[str, np.ndarray]:
    """Each area's population code: a fixed random `dim`-d projection of its generator stage.

    Units of every animal read out the same low-dimensional code, as neurons of one area share
    a representation; so pooled animals can predict each other, and the inter-animal ceiling is
    high and well defined. The code is linear in the stage, so stage k still predicts area k best.
    """
    codes = {}
    for k, (area, stage) in enumerate(stages.items()):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0DE, k]))
        code = stage @ rng.normal(size=(stage.shape[1], dim))
        codes[area] = (code - code.mean(0)) / (code.std(0) + 1e-8)
    return codes


@dataclass(frozen=True)
class Dynamics:
    """Settings of the virtual animals' dynamics (config ``simulate.dynamics``).

    Attributes
    ----------
    enabled : bool
        False: the static virtual animals (every other field unused).
    tau : float
        Time constant (s) of the leaky recurrent stage.
    recurrent_gain : float
        Gain of the recurrent stage's tanh on its input: higher is more nonlinear.
    late_weight : float
        Weight κ of the (standardised) recurrent state in the code, z_t = c_t + κ h_t.
    rate_scale : float
        Factor on every unit's stimulus-driven gain, so 10-ms bins carry enough spikes to be
        scored bin by bin.
    """

    enabled: bool = False
    tau: float = 0.06
    recurrent_gain: float = 3.0
    late_weight: float = 1.0
    rate_scale: float = 8.0

    @classmethod
    def from_config(cls, block) -> "Dynamics":
        """From the config block (None or a dict of the fields); ValueError naming a bad key."""
        block = dict(block or {})
        unknown = sorted(set(block) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"simulate_synthetic_mouse: dynamics has unknown keys {unknown}; "
                             f"expected some of {sorted(cls.__dataclass_fields__)}")
        dynamics = cls(**block)
        for key in ("tau", "recurrent_gain", "rate_scale"):
            if not getattr(dynamics, key) > 0:
                raise ValueError(f"simulate_synthetic_mouse: dynamics.{key} must be > 0; "
                                 f"got {getattr(dynamics, key)!r}")
        return dynamics


def onset(area: str) -> np.ndarray:
    """Area-level onset (0 → 1 at the area's latency) of the feedforward drive, per 10-ms bin."""
    t = (np.arange(round(DURATION / BIN_SIZE)) + 0.5) * BIN_SIZE
    return 1.0 / (1.0 + np.exp(-(t - LATENCY[area]) / 0.002))


def dynamic_codes(codes: dict[str, np.ndarray], seed: int,
                  dynamics: Dynamics) -> dict[str, np.ndarray]:
    """Each area's code over time: the feedforward code plus a leaky recurrent state.

    With c the area's feedforward code (stimulus, dim), switched on at its latency (c_t =
    onset(t) c), the recurrent stage is

        h_{t+1} = h_t + (Δt / τ) (−h_t + tanh(g (W h_t + c_t U))²)

    (W: fixed random recurrence of spectral radius 0.9; U: fixed random input weights; the
    squared, energy-like rectification makes h an even function of c to first order, so c
    carries it hardly at all linearly), and the code the units read is
    z_t = c_t + κ · (h_t − mean h_t) / sd(h_final), means over stimuli, sd over stimuli of the
    last bin's state. h starts at 0, so early bins carry the feedforward code and late ones
    add a recurrently mixed nonlinear function of it (spec §4: recurrence shapes the late
    phase).

    Returns
    -------
    dict of str to numpy.ndarray
        Area → (time_bin, stimulus, dim) codes over the 25 bins of 0–250 ms.
    """
    out = {}
    step = BIN_SIZE / dynamics.tau
    for k, (area, code) in enumerate(codes.items()):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD1A, k]))
        dim = code.shape[1]
        W = rng.normal(size=(dim, dim))
        W *= 0.9 / np.abs(np.linalg.eigvals(W)).max()
        U = rng.normal(size=(dim, dim)) / np.sqrt(dim)
        drive = onset(area)[:, None, None] * code[None]               # (time_bin, stimulus, dim)
        h = np.zeros_like(code)
        states = []
        for c_t in drive:
            states.append(h)
            h = h + step * (-h + np.tanh(dynamics.recurrent_gain * (h @ W.T + c_t @ U)) ** 2)
        states = np.stack(states)
        states = states - states.mean(1, keepdims=True)                # stimulus-driven part only
        scale = states[-1].std(0) + 1e-8
        out[area] = drive + dynamics.late_weight * states / scale
    return out


def _sample_dynamic_units(rng, codes: np.ndarray, feedforward: np.ndarray, area: str, n_units: int,
                          rate_scale: float) -> dict[str, np.ndarray]:
    """`_sample_units` for a code over time (time_bin, stimulus, dim): rates (stimulus,
    time_bin, unit) in Hz, each unit's readout standardised on the feedforward code."""
    w = rng.normal(size=(codes.shape[2], n_units))
    z_ff = feedforward @ w
    mu, sd = z_ff.mean(0), z_ff.std(0) + 1e-8
    z = (codes @ w - mu) / sd                                              # (time_bin, stimulus, unit)
    slope, offset = rng.uniform(0.7, 2.0, n_units), rng.normal(-0.5, 0.5, n_units)
    drive = np.logaddexp(0.0, slope * z + offset)
    drive /= drive.mean((0, 1))
    gain = rate_scale * np.exp(rng.uniform(np.log(0.4), np.log(10.0), n_units))      # Hz
    baseline = rng.uniform(1.5, 6.0, n_units)                           # Hz
    jitter = rng.uniform(-0.005, 0.005, n_units)
    profiles = np.stack([time_course(area, j) for j in jitter], axis=-1)  # (time_bin, unit)
    rate = baseline + gain * np.transpose(drive, (1, 0, 2)) * profiles[None]
    return {"rate": rate, "gain": gain, "baseline": baseline}


def _sample_units(rng, code: np.ndarray, area: str, n_units: int) -> dict[str, np.ndarray]:
    """One animal's units in one area: noise-free rates (stimulus, time_bin, unit) in Hz."""
    z = code @ rng.normal(size=(code.shape[1], n_units))
    z = (z - z.mean(0)) / (z.std(0) + 1e-8)  # calibrated once on the probe set
    drive = np.logaddexp(0.0, rng.uniform(0.7, 2.0, n_units) * z + rng.normal(-0.5, 0.5, n_units))
    drive /= drive.mean(0)
    gain = np.exp(rng.uniform(np.log(0.4), np.log(10.0), n_units))      # Hz
    baseline = rng.uniform(1.5, 6.0, n_units)                           # Hz
    jitter = rng.uniform(-0.005, 0.005, n_units)
    profiles = np.stack([time_course(area, j) for j in jitter], axis=-1)  # (time_bin, unit)
    rate = baseline + gain * drive[:, None, :] * profiles[None]
    return {"rate": rate, "gain": gain, "baseline": baseline}


def _presentation_table(rng, n_images: int, trials: int):
    """Allen-style schedule: every image and the blank (-1) `trials` times, random order."""
    frames = rng.permutation(np.repeat(np.arange(-1, n_images), trials))
    start = SESSION_START + DURATION * np.arange(frames.size)
    return frames, start, start + DURATION


def _spike_times(rng, rates: np.ndarray, start: np.ndarray) -> list[np.ndarray]:
    """Inhomogeneous Poisson spikes; rates (presentation, time_bin, unit) in Hz."""
    counts = rng.poisson(rates * BIN_SIZE)
    bin_start = (start[:, None] + BIN_SIZE * np.arange(rates.shape[1])).ravel()
    out = []
    for unit in range(rates.shape[2]):
        n = counts[:, :, unit].ravel()
        t = np.repeat(bin_start, n) + BIN_SIZE * rng.random(n.sum())
        out.append(np.sort(t))
    return out


def _nwb_file(subject: str, session: str, seed: int) -> NWBFile:
    nwb = NWBFile(
        session_description="synthetic virtual animal, Allen brain_observatory_1.1 layout",
        identifier=str(uuid.UUID(int=int(np.random.default_rng([seed, int(session)])
                                         .integers(2**63)))),
        session_start_time=datetime(2019, 10, 3, tzinfo=timezone.utc),
        session_id=session,
        stimulus_notes="brain_observatory_1.1",
        subject=Subject(subject_id=subject, species="Mus musculus", age="P100D", sex="U"),
    )
    for name, description in [("probe_id", "probe the channel is on"),
                              ("local_index", "channel index on its probe"),
                              ("probe_vertical_position", "depth along the probe (um)"),
                              ("valid_data", "channel is usable")]:
        nwb.add_electrode_column(name=name, description=description)
    return nwb


def _column(name: str, description: str, data) -> VectorData:
    return VectorData(name=name, description=description, data=np.asarray(data))


def _units_table(spikes: list[np.ndarray], columns: dict[str, np.ndarray], ids) -> Units:
    """Allen-style units table built from whole arrays (row-wise adding is far slower)."""
    times = VectorData(name="spike_times", description="spike times (s)",
                       data=H5DataIO(np.concatenate(spikes), compression="gzip", shuffle=True))
    index = VectorIndex(name="spike_times_index", target=times,
                        data=np.cumsum([s.size for s in spikes]).astype(np.int64))
    described = {"peak_channel_id": "electrode id with the largest waveform",
                 "quality": "curation label; only 'good' units are analysed",
                 "firing_rate": "mean firing rate over the session (Hz)",
                 "snr": "waveform signal-to-noise ratio",
                 "isi_violations": "refractory-period violation rate"}
    return Units(name="units", description="sorted units", id=np.asarray(ids, dtype=np.int64),
                 columns=[times, index] + [_column(k, described[k], v) for k, v in columns.items()])


def _presentations(frames, start, stop) -> TimeIntervals:
    return TimeIntervals(
        name="natural_scenes_presentations",
        description="Presentation times and frames of the natural scenes",
        id=np.arange(frames.size),
        columns=[_column("start_time", "onset (s)", start),
                 _column("stop_time", "offset (s)", stop),
                 _column("frame", "image index; -1 = blank", frames.astype(np.float64)),
                 _column("stimulus_name", "stimulus name",
                         np.full(frames.size, "natural_scenes", dtype=object))],
    )


def _write_nwb(path: Path, nwb: NWBFile) -> None:
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # The temporary name does not end in .nwb; the final one does.
            warnings.filterwarnings("ignore", message="The file path provided")
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(nwb)


def simulate_synthetic_mouse(probe, out_dir, *, animals_per_area: int,
                             units_per_animal: int, trials: int, seed: int,
                             generator: str = "random", generator_dir=None,
                             dynamics=None) -> list[Path]:
    """Simulate Neuropixels sessions of virtual animals viewing the probe images.

    Parameters
    ----------
    probe : xarray.Dataset or path-like
        Stimulus set (or its Zarr store) with `image` (stimulus, y, x, channel) uint8 and coord
        stimulus_id; frame i of every session is probe stimulus i.
    out_dir : path-like
        Receives ``sub-{subject}/sub-{subject}_ses-{session}.nwb`` per animal and
        ``truth.zarr`` (noise-free rates).
    animals_per_area : int
        Animals (sessions); each records from all six areas.
    units_per_animal : int
        Good units per area per animal. Each probe also records a few 'noise'-quality units
        and a few units in a non-visual area (CA1), which analyses must drop.
    trials : int
        Presentations of each image (and of the blank).
    seed : int
        Seed of the random generator network (and of the area codes) and of every animal.
    generator : str
        "random" (the fixed random `Generator`, the estimators' ground-truth oracle) or a model
        name {arch}-{objective}-{rule}-s{seed} whose trained network plays the areas
        (`ModelGenerator`); its name, layers and their relative depths go to truth.zarr's attrs.
    generator_dir : path-like, optional
        The model's folder ``results/models/{generator}``; required with a model name.
    dynamics : dict or None
        `Dynamics` fields (``enabled``, ``tau``, ``recurrent_gain``, ``late_weight``,
        ``rate_scale``); None or enabled false simulates the static animals unchanged.

    Returns
    -------
    list of pathlib.Path
        The NWB session files, one per animal.
    """
    for key, value in {"animals_per_area": animals_per_area,
                       "units_per_animal": units_per_animal, "trials": trials}.items():
        if int(value) != value or value < 1:
            raise ValueError(f"simulate_synthetic_mouse: {key} must be a positive integer; "
                             f"got {value!r}")
    if trials < 2:
        raise ValueError(f"simulate_synthetic_mouse: trials must be >= 2 for split halves; "
                         f"got {trials}")
    dynamics = Dynamics.from_config(dynamics)
    if not isinstance(probe, xr.Dataset):
        probe = read_zarr(probe).load()
    out_dir = Path(out_dir)
    images = probe["image"].values
    if generator == "random":
        stages = area_codes(Generator(seed).features(images), seed)
        provenance = {"generator": "random"}
    else:
        if generator_dir is None:
            raise ValueError(f"simulate_synthetic_mouse: generator {generator!r} is a model; "
                             "its trained folder (generator_dir) is required")
        hidden = ModelGenerator(generator, generator_dir)
        stages = area_codes(hidden.features(images), seed)
        provenance = {"generator": hidden.name, "generator_epoch": hidden.epoch_,
                      "generator_layers": json.dumps(hidden.layers_),
                      "area_layers": json.dumps(hidden.area_layers_),
                      "area_depths": json.dumps(hidden.depth())}
        log.info("generator %s (epoch %d): areas read layers %s", hidden.name, hidden.epoch_,
                 hidden.area_layers_)
    codes = None
    if dynamics.enabled:
        codes = dynamic_codes(stages, seed, dynamics)
        provenance["dynamics"] = json.dumps(asdict(dynamics), sort_keys=True)
        log.info("dynamics on: leaky recurrent stage, tau %g s, gain %g, late weight %g",
                 dynamics.tau, dynamics.recurrent_gain, dynamics.late_weight)
    paths, truth = [], []
    for animal in tqdm(range(animals_per_area), desc="simulate synthetic_mouse", unit="animal",
                       disable=None):
        subject, session = str(700000 + 100 * seed + animal), str(800000 + 100 * seed + animal)
        path = out_dir / f"sub-{subject}" / f"sub-{subject}_ses-{session}.nwb"
        rng = np.random.default_rng(np.random.SeedSequence([seed, animal, 0xA11E]))
        truth.append(_simulate_session(path, rng, stages, subject, session, seed,
                                       units_per_animal, trials, codes, dynamics.rate_scale))
        paths.append(path)
    _write_truth(out_dir / "truth.zarr", probe, truth, provenance,
                 None if codes is None else (codes, stages))
    return paths


def assemble_synthetic_mouse(raw_dir, stimuli, **block) -> xr.DataArray:
    """NeuralAssembly of the simulated sessions, through the real Neuropixels loader.

    Parameters
    ----------
    raw_dir : path-like
        ``data/raw/synthetic_mouse``, written by `simulate_synthetic_mouse`.
    stimuli : path-like
        The probe stimulus set (Zarr) whose order the presentations' frames index.
    **block
        The config block ``datasets.synthetic_mouse.assemble``: bin_size, window,
        unit_threshold, median_threshold, specimen_quantile, n_boot, seed, time_bins (keyword
        arguments of `pipeline.data.allen_neuropixels.neuropixels_assembly`, over all six areas;
        time_bins "keep" gives the time-resolved assembly).
    """
    sessions = sorted(p for p in Path(raw_dir).glob("sub-*/sub-*_ses-*.nwb")
                      if "_probe-" not in p.name)
    if not sessions:
        raise FileNotFoundError(f"{raw_dir}: no session files sub-*/sub-*_ses-*.nwb")
    stimulus_ids = read_zarr(stimuli)["stimulus_id"].values
    return neuropixels_assembly(sessions, stimulus_ids, areas=ALLEN_AREAS, **block)


def _simulate_session(path: Path, rng, stages: dict[str, np.ndarray], subject: str,
                      session: str, seed: int, units_per_animal: int, trials: int,
                      codes=None, rate_scale=1.0):
    """Simulate and write one animal's session; returns its truth (rates, per-unit metadata).

    With `codes` (area → (time_bin, stimulus, dim), `dynamic_codes`), units read the code of
    each bin (`_sample_dynamic_units`); without, the static `stages` codes.
    """
    n_images, n_bins = next(iter(stages.values())).shape[0], round(DURATION / BIN_SIZE)
    n_extra = max(1, units_per_animal // 20)   # noise units, and CA1 units, per probe
    frames, start, stop = _presentation_table(rng, n_images, trials)
    nwb = _nwb_file(subject, session, seed)
    spikes, ids, columns = [], [], {k: [] for k in ("peak_channel_id", "quality", "firing_rate",
                                                    "snr", "isi_violations")}
    truth_rates, meta = [], []
    for p, area in enumerate(ALLEN_AREAS):
        name = f"probe{'ABCDEF'[p]}"
        device = nwb.create_device(name=name, description="Neuropixels 1.0")
        group = nwb.create_electrode_group(name=name, device=device, description=f"probe in {area}",
                                           location=area)
        n_channel = units_per_animal + 2 * n_extra
        probe_key = 10 * (int(session) - 800000) + p   # unique per (seed, animal, probe)
        channel_id = 850000000 + 1000 * probe_key + np.arange(n_channel)
        location = np.where(np.arange(n_channel) < 2 * n_extra, OTHER_AREA, area)
        for local, (cid, loc) in enumerate(zip(channel_id, location)):
            nwb.add_electrode(id=int(cid), location=str(loc), group=group, probe_id=p,
                              local_index=local, probe_vertical_position=20 * local,
                              valid_data=True)
        units = (_sample_units(rng, stages[area], area, units_per_animal) if codes is None else
                 _sample_dynamic_units(rng, codes[area], stages[area], area, units_per_animal,
                                       rate_scale))
        truth_rates.append(units["rate"])
        # Rates per presentation: the image's rates, or the baseline for blanks.
        blank = np.broadcast_to(units["baseline"], (1, n_bins, units_per_animal))
        rates = np.concatenate([units["rate"], blank])[frames]
        extra_rate = np.broadcast_to(rng.uniform(1.0, 4.0, 2 * n_extra),
                                     (frames.size, n_bins, 2 * n_extra))
        probe_spikes = _spike_times(rng, rates, start) + _spike_times(rng, extra_rate, start)
        quality = ["good"] * units_per_animal + ["noise"] * n_extra + ["good"] * n_extra
        peak = np.concatenate([rng.choice(channel_id[2 * n_extra:], units_per_animal),
                               rng.choice(channel_id, n_extra), channel_id[:n_extra]])
        unit_id = 950000000 + 1000 * probe_key + np.arange(len(probe_spikes))
        spikes += probe_spikes
        ids += list(unit_id)
        columns["peak_channel_id"] += list(peak)
        columns["quality"] += quality
        columns["firing_rate"] += [t.size / (stop[-1] - start[0]) for t in probe_spikes]
        columns["snr"] += [rng.uniform(2, 6) if q == "good" else rng.uniform(0.2, 1)
                           for q in quality]
        columns["isi_violations"] += list(rng.uniform(0, 0.1, len(quality)))
        meta += [(f"{session}_{unit_id[u]}", subject, area, p, units["gain"][u],
                  units["baseline"][u]) for u in range(units_per_animal)]
    columns["quality"] = np.array(columns["quality"], dtype=object)
    nwb.units = _units_table(spikes, {k: np.asarray(v) if k != "quality" else v
                                      for k, v in columns.items()}, ids)
    nwb.add_time_intervals(_presentations(frames, start, stop))
    _write_nwb(path, nwb)
    log.info("wrote %s: %d presentations, %d units", path, frames.size, len(ids))
    return np.concatenate(truth_rates, axis=-1), meta


def _write_truth(path: Path, probe: xr.Dataset, truth, provenance: dict, dynamic=None) -> None:
    """Noise-free rates per neuroid: `rate` (stimulus, time_bin, neuroid), `rate_mean`; attrs
    say which generator made them (and, for a model, which layer played each area). With
    `dynamic` = (codes over time, feedforward codes), also `code` (area, time_bin, stimulus,
    code_dim) and `feedforward_code` (area, stimulus, code_dim), areas in ALLEN_AREAS order."""
    rate = np.concatenate([r for r, _ in truth], axis=-1)
    meta = [m for _, ms in truth for m in ms]
    neuroid_id, animal, area, stage, gain, baseline = map(np.array, zip(*meta))
    ds = xr.Dataset(
        {"rate": (("stimulus", "time_bin", "neuroid"), rate),
         "rate_mean": (("stimulus", "neuroid"), rate.mean(axis=1))},
        coords={"stimulus_id": ("stimulus", probe["stimulus_id"].values.astype(str)),
                "time_bin": BIN_SIZE * np.arange(rate.shape[1]),
                "neuroid_id": ("neuroid", neuroid_id.astype(str)),
                "animal": ("neuroid", animal.astype(str)),
                "area": ("neuroid", area.astype(str)),
                "stage": ("neuroid", stage.astype(int)),
                "gain": ("neuroid", gain.astype(float)),
                "baseline": ("neuroid", baseline.astype(float))},
        attrs={"description": "noise-free rates (Hz) of the synthetic units; stage k = "
                              "generator stage read out (area ALLEN_AREAS[k])", **provenance},
    )
    if dynamic is not None:
        codes, feedforward = dynamic
        ds["code"] = (("area_code", "time_bin", "stimulus", "code_dim"),
                      np.stack([codes[a] for a in ALLEN_AREAS]))
        ds["feedforward_code"] = (("area_code", "stimulus", "code_dim"),
                                  np.stack([feedforward[a] for a in ALLEN_AREAS]))
        ds = ds.assign_coords(area_code=("area_code", list(ALLEN_AREAS)))
    write_zarr(ds, path)
