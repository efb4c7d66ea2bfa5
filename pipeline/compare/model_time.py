"""Model time onto neural time bins (spec §4.1, §4.3): which features stand for each 10-ms bin.

- A recurrent model (activations with a ``time`` dim, e.g. the ConvRNN) maps its steps one to
  one onto bins: step s is the bin starting at ``offset + s · step`` (spec: 10-ms steps from
  70 ms). Bins before the first step or after the last have no source.
- A feedforward model has no time; the spec gives it two mappings onto the mapped bins
  (those starting at or after ``offset``): ``uniform``, its layers spread evenly over the bins
  in network order (layer ℓ of L covers bins [ℓ·M/L, (ℓ+1)·M/L) of the M mapped bins); and
  ``graded``, M pseudo-layers whose units are drawn at random from two consecutive layers in
  the proportion of the pseudo-layer's position between them.
- ``timedecay`` (the simple-recurrence control of spec §4.1, shallow Time Decay): every layer
  of a feedforward model becomes a leaky integrator h_t = τ h_{t−1} + x_t, where x_t is the
  layer's response while the image reaches it (one step per layer, image on for
  ``image_steps`` steps, "biological unrolling") and 0 after. The thesis learns τ per layer
  with the task; here τ is fixed (``decay``), so the control adds dynamics without training.

`bin_sources` returns, per bin, a Dataset of (epoch, stimulus, unit) variables that
`pipeline.compare.temporal.temporal_predictivity` scores; activations are read at one epoch
(the final one).
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from pipeline.compare.epochs import select_epochs

log = logging.getLogger(__name__)

FEEDFORWARD_MAPPINGS = ("uniform", "graded", "timedecay")


def _flat(var):
    """(…, stimulus, unit) float32 values of a layer variable, its unit dims flattened."""
    lead = [d for d in ("epoch", "time") if d in var.dims]
    units = [d for d in var.dims if d not in lead + ["stimulus"]]
    var = var.transpose(*lead, "stimulus", *units)
    return np.asarray(var.values, dtype=np.float32).reshape(*[var.sizes[d] for d in lead],
                                                           var.sizes["stimulus"], -1)


def _dataset(layers, stimulus_id, epoch):
    """A one-epoch activations Dataset of {name: (stimulus, unit)} arrays."""
    return xr.Dataset({name: (("epoch", "stimulus", f"unit_{name}"), values[None])
                       for name, values in layers.items()},
                      coords={"epoch": [epoch], "stimulus_id": ("stimulus", stimulus_id)})


def mapped_bins(bin_starts, offset):
    """Indices of the bins starting at or after `offset` (s), in order."""
    return np.flatnonzero(np.asarray(bin_starts, dtype=float) >= offset - 1e-9)


def step_of_bin(bin_starts, n_steps, *, offset, step):
    """{bin index: model step} for steps s = 0 … n_steps−1 at ``offset + s · step`` (s)."""
    out = {}
    for b, start in enumerate(np.asarray(bin_starts, dtype=float)):
        s = (start - offset) / step
        if s > -1e-6 and abs(s - round(s)) < 1e-6 and round(s) < n_steps:
            out[b] = int(round(s))
    return out


def uniform_layers(n_layers, n_bins):
    """Layer index per mapped bin: layers spread evenly over the bins in network order."""
    if n_layers < 1 or n_bins < 1:
        raise ValueError(f"uniform_layers: need >= 1 layer and bin; got {n_layers} and {n_bins}")
    return [min(n_layers - 1, (k * n_layers) // n_bins) for k in range(n_bins)]


def graded_pseudo_layers(layers, n_bins, *, n_units=None, seed=0):
    """`n_bins` pseudo-layers of units sampled across consecutive layers (spec §4.3 "graded").

    Pseudo-layer k sits at depth x = k (L−1)/(n_bins−1) between layer ⌊x⌋ and the next; it
    holds round((1 − f)·n) random units of layer ⌊x⌋ and the rest from layer ⌊x⌋+1, with
    f = x − ⌊x⌋. So the first is a sample of the first layer, the last of the last, and the
    mix moves through the network bin by bin.

    Parameters
    ----------
    layers : list of ndarray
        Each layer's features (stimulus, unit), in network order.
    n_bins : int
        Pseudo-layers to make.
    n_units : int, optional
        Units per pseudo-layer; the narrowest layer's width by default (never more).
    seed : int
        Seed of the unit draws.

    Returns
    -------
    list of ndarray
        (stimulus, n_units) per pseudo-layer.
    """
    widths = [X.shape[1] for X in layers]
    n = min(widths) if n_units is None else min(int(n_units), min(widths))
    if n < 1:
        raise ValueError(f"graded_pseudo_layers: n_units must be >= 1; got {n_units!r} (layer widths {widths})")
    rng = np.random.default_rng(seed)
    L = len(layers)
    out = []
    for k in range(n_bins):
        x = k * (L - 1) / max(n_bins - 1, 1)
        low = min(int(np.floor(x + 1e-9)), L - 1)
        f = x - low
        n_low = int(round((1 - f) * n))
        parts = [layers[low][:, rng.choice(widths[low], n_low, replace=False)]]
        if n - n_low:
            parts.append(layers[low + 1][:, rng.choice(widths[low + 1], n - n_low, replace=False)])
        out.append(np.concatenate(parts, axis=1))
    return out


def timedecay_states(layers, n_steps, *, decay, image_steps):
    """Leaky-integrator responses h_t = τ h_{t−1} + x_t of each layer over `n_steps` steps.

    Layer i (network order) receives its feedforward response x from step i for
    `image_steps` steps (one step per layer, image then grey), 0 otherwise.

    Parameters
    ----------
    layers : list of ndarray
        Feedforward features (stimulus, unit) per layer.
    decay : float or sequence of float
        τ in [0, 1), one for all layers or one per layer.

    Returns
    -------
    list of ndarray
        (time, stimulus, unit) per layer.
    """
    taus = np.broadcast_to(np.asarray(decay, dtype=float), (len(layers),))
    if not ((taus >= 0) & (taus < 1)).all():
        raise ValueError(f"timedecay: decay must lie in [0, 1); got {list(taus)}")
    out = []
    for i, (X, tau) in enumerate(zip(layers, taus)):
        h = np.zeros_like(X, dtype=np.float32)
        states = []
        for t in range(n_steps):
            h = tau * h + (X if i <= t < i + image_steps else 0.0)
            states.append(h)
        out.append(np.stack(states))
    return out


def bin_sources(activations, bin_starts, *, feedforward="uniform", offset=0.0, step=0.01, n_units=None,
                seed=0, decay=0.5, image_steps=10):
    """The model's features standing for each bin: {bin index: Dataset of layers}.

    Parameters
    ----------
    activations : xarray.Dataset
        One variable per layer in network order, dims (epoch, [time,] stimulus, unit...); the
        final epoch is used. With a ``time`` dim (any layer) the model is recurrent.
    bin_starts : sequence of float
        The assembly's bin starts (s).
    feedforward : {"uniform", "graded", "timedecay"}
        How a feedforward model gets time (module docstring); ignored for recurrent models.
    offset, step : float
        Time (s) of the first model step or first mapped bin, and of one model step.
    n_units, seed
        Units per graded pseudo-layer and their draw's seed.
    decay, image_steps
        The time-decay control's τ and image duration in steps.

    Returns
    -------
    dict of int to xarray.Dataset
        Variables are the layers at the bin's step (recurrent, timedecay), or one variable
        named after the mapping ("uniform", "graded").
    """
    if feedforward not in FEEDFORWARD_MAPPINGS:
        raise ValueError(f"bin_sources: feedforward must be one of {FEEDFORWARD_MAPPINGS}; got {feedforward!r}")
    if not step > 0:
        raise ValueError(f"bin_sources: step must be > 0 s; got {step!r}")
    activations = select_epochs(activations, "final")
    epoch = int(activations["epoch"].values[0]) if "epoch" in activations.coords else 0
    stimulus_id = activations["stimulus_id"].values
    names = list(activations.data_vars)
    recurrent = any("time" in activations[name].dims for name in names)
    if recurrent:
        steps = {name: _flat(activations[name])[0] for name in names}       # (time, stimulus, unit)
        n_steps = min(v.shape[0] for v in steps.values() if v.ndim == 3)
        mapping = step_of_bin(bin_starts, n_steps, offset=offset, step=step)
        log.info("recurrent model: %d steps onto %d of %d bins from %g s", n_steps, len(mapping),
                 len(bin_starts), offset)
        return {b: _dataset({n: v[s] if v.ndim == 3 else v for n, v in steps.items()}, stimulus_id, epoch)
                for b, s in mapping.items()}
    layers = [_flat(activations[name])[0] for name in names]                 # (stimulus, unit)
    if feedforward == "timedecay":
        n_steps = len(step_of_bin(bin_starts, 10**6, offset=offset, step=step))
        states = timedecay_states(layers, n_steps, decay=decay, image_steps=image_steps)
        mapping = step_of_bin(bin_starts, n_steps, offset=offset, step=step)
        return {b: _dataset({n: X[s] for n, X in zip(names, states)}, stimulus_id, epoch)
                for b, s in mapping.items()}
    bins = mapped_bins(bin_starts, offset)
    if feedforward == "uniform":
        chosen = [layers[i] for i in uniform_layers(len(layers), bins.size)]
    else:
        chosen = graded_pseudo_layers(layers, bins.size, n_units=n_units, seed=seed)
    log.info("feedforward model: %d layers onto %d bins from %g s (%s)", len(layers), bins.size, offset,
             feedforward)
    return {int(b): _dataset({feedforward: X}, stimulus_id, epoch) for b, X in zip(bins, chosen)}
