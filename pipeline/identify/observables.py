"""Observables of one training run: per weight layer and checkpoint, 45 statistics (spec_ch5-6 B.4).

Each measured layer is an `nn.Conv2d` or `nn.Linear` of the backbone (feedback layers
included), as lr-identify measures every conv and fc op; its input x and output y are the
op's own. Per checkpoint the validation images go through the network **once**: a forward
pre-hook makes each layer's input a fresh leaf, and a forward hook then computes, from that
one batch of (x, y), every statistic of the layer at once:

- weights: the 21 statistics of the forward kernel W (all its elements, `statistics`);
- activations: the 21 statistics of y per example over its units, summed over examples;
- activity change: per example g = (1/N_out) Σ_i ∂(Σ_j y_j)/∂x_i, one backward pass of
  sum(y) through this layer only, in two variants: through the forward Jacobian (`gradavg`)
  and through the layer's backward weights B as the released TF layers route it
  (`gradavgfb`; equal for layers without B); then raw/abs/sq and the mean over examples.

The hook hands the next layer a detached output, so no autograd graph spans two layers and a
checkpoint costs one forward pass plus one local backward per layer and measurement.
Measurement conditions (`pipeline.identify.measurement`) are applied in the same pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.checkpoints import load_backbone, read_checkpoint, run_epochs
from pipeline.data.stimuli import read_stimuli, to_tensor
from pipeline.identify.measurement import CLEAN, Measurement, degrade, unit_index
from pipeline.identify.statistics import FUNCTIONS, apply_function, row_statistics
from pipeline.objectives.augment import preprocess

log = logging.getLogger(__name__)

POSITIONS = ("early", "middle", "deep")
COLUMNS = ("layer", "layer_index", "n_layers", "position", "epoch", "fraction", "noise", "draw",
           "measure", "function", "statistic", "observable", "value")

__all__ = ["COLUMNS", "POSITIONS", "checkpoint_observables", "layer_position", "measured_layers",
           "observables", "validation_images"]


def measured_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module path, module) of every Conv2d and Linear, feedback layers included, in order.

    Raises ValueError for a recurrent model, whose layers run once per time step.
    """
    if getattr(model, "time_steps", None) is not None:
        raise ValueError(f"{type(model).__name__} is recurrent (its layers run once per time "
                         "step); observables are defined for feedforward models only")
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to measure")
    return layers


def layer_position(index: int, n_layers: int) -> str:
    """early, middle or deep: the third of the model's layers that layer `index` falls in (B.4)."""
    return POSITIONS[min(2, 3 * index // n_layers)]


def validation_images(stimuli_path, n_stimuli: int, seed: int) -> torch.Tensor:
    """A fixed seeded subset of `n_stimuli` images of a stimulus set, in stored order, as uint8
    (stimulus, channel, y, x); every run of a task is measured on the same images."""
    images = read_stimuli(stimuli_path)["image"].values
    if n_stimuli > len(images):
        raise ValueError(f"{stimuli_path}: observables.n_stimuli = {n_stimuli}, but the set "
                         f"holds {len(images)} images")
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[:n_stimuli])
    return to_tensor(images[index])


def _forward_jacobian_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's output computed with its forward weight W only (plain autograd), so the
    input gradient is the forward Jacobian's even for a layer with backward weights B."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d._conv_forward(module, x, module.weight, module.bias)
    return F.linear(x, module.weight, module.bias)


def _seeds(seed: int, m: Measurement) -> tuple[int, int]:
    """Seeds of the input-side and output-side unit choice of draw m.draw."""
    base = seed + 2 * m.draw
    return base, base + 1


@dataclass
class _Sums:
    """Running sums over examples of one layer under one measurement."""

    act: dict = field(default_factory=dict)        # (function, statistic) -> float
    grad: dict = field(default_factory=dict)       # (measure, function) -> float

    def add(self, target: dict, key, values: torch.Tensor) -> None:
        target[key] = target.get(key, 0.0) + float(values.sum())


class _Recorder:
    """Forward hooks measuring every layer of one checkpoint under every measurement."""

    def __init__(self, layers, conditions: list[Measurement], seed: int, noise_seed: int):
        self.layers = layers
        self.conditions = conditions
        self.seed = seed
        self.sums = [[_Sums() for _ in conditions] for _ in layers]
        # one noise stream per condition, read in layer and batch order: deterministic
        self.generators = [torch.Generator().manual_seed(int(s)) for s in
                           np.random.SeedSequence([noise_seed]).generate_state(len(conditions))]
        self.n_examples = 0

    def attach(self):
        handles = []
        for index, (_, module) in enumerate(self.layers):
            handles.append(module.register_forward_pre_hook(_leaf_input))
            handles.append(module.register_forward_hook(self._hook(index)))
        return handles

    def _hook(self, index):
        def hook(module, inputs, output):
            self._measure(index, module, inputs[0], output)
            return output.detach()
        return hook

    def _measure(self, index, module, x, y):
        activations = y.detach().flatten(1)
        for c, m in enumerate(self.conditions):
            in_seed, _ = _seeds(self.seed, m)
            values = degrade(activations.cpu(), m, seed=in_seed, generator=self.generators[c])
            for key, stat in row_statistics(values).items():
                self.sums[index][c].add(self.sums[index][c].act, key, stat)
        variants = [("gradavgfb", y, x)]
        if hasattr(module, "weight_fb"):
            x_w = x.detach().requires_grad_(True)
            variants.append(("gradavg", _forward_jacobian_output(module, x_w), x_w))
        n_out = activations.shape[1]
        masks = {}
        for m in self.conditions:             # one backward per distinct output-unit choice
            _, out_seed = _seeds(self.seed, m)
            masks.setdefault((m.fraction, out_seed), unit_index(n_out, m.fraction, out_seed))
        for v, (measure, output, leaf) in enumerate(variants):
            for k, ((fraction, out_seed), kept) in enumerate(masks.items()):
                mask = torch.zeros(n_out, dtype=output.dtype, device=output.device)
                mask[torch.from_numpy(kept).to(output.device)] = 1
                last = v == len(variants) - 1 and k == len(masks) - 1
                weights = mask.view(1, *output.shape[1:]).expand_as(output)
                (jacobian,) = torch.autograd.grad(output, leaf, weights, retain_graph=not last)
                jacobian = jacobian.detach().flatten(1).to(torch.float64).cpu()
                for c, m in enumerate(self.conditions):
                    in_seed, seed_out = _seeds(self.seed, m)
                    if (m.fraction, seed_out) != (fraction, out_seed):
                        continue
                    change = degrade(jacobian, m, seed=in_seed,
                                     generator=self.generators[c]).sum(1) / len(kept)
                    names = [measure] + (["gradavg"] if len(variants) == 1 else [])
                    for name in names:           # no B: the two variants coincide
                        for function in FUNCTIONS:
                            self.sums[index][c].add(self.sums[index][c].grad, (name, function),
                                                    apply_function(change, function))

    def weight_rows(self, epoch: int) -> list[dict]:
        rows = []
        for index, (name, module) in enumerate(self.layers):
            kernel = module.weight.detach().reshape(1, -1).cpu()
            for c, m in enumerate(self.conditions):
                in_seed, _ = _seeds(self.seed, m)
                values = degrade(kernel, m, seed=in_seed, generator=self.generators[c])
                for (function, statistic), stat in row_statistics(values).items():
                    rows.append(self._row(index, name, epoch, m, "weight", function, statistic,
                                          float(stat[0])))
        return rows

    def data_rows(self, epoch: int) -> list[dict]:
        rows = []
        for index, (name, _) in enumerate(self.layers):
            for c, m in enumerate(self.conditions):
                sums = self.sums[index][c]
                for (function, statistic), total in sums.act.items():
                    rows.append(self._row(index, name, epoch, m, "act", function, statistic,
                                          total / self.n_examples))
                for (measure, function), total in sums.grad.items():
                    rows.append(self._row(index, name, epoch, m, measure, function, "mean",
                                          total / self.n_examples))
        return rows

    def _row(self, index, name, epoch, m, measure, function, statistic, value):
        n = len(self.layers)
        return {"layer": name, "layer_index": index, "n_layers": n,
                "position": layer_position(index, n), "epoch": epoch, "fraction": m.fraction,
                "noise": m.noise, "draw": m.draw, "measure": measure, "function": function,
                "statistic": statistic, "observable": f"{measure}_{function}_{statistic}",
                "value": value}


def _leaf_input(_module, args):
    """Forward pre-hook: the layer's input as a new leaf, so its gradient stays local."""
    return (args[0].detach().requires_grad_(True), *args[1:])


def checkpoint_observables(model: nn.Module, images: torch.Tensor, preprocessing: dict, *,
                           epoch: int, measurements=(), batch_size: int = 128, seed: int = 0,
                           device: str | torch.device = "cpu") -> list[dict]:
    """Rows of every layer's observables of one network on uint8 images, in one forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        A backbone (`pipeline.checkpoints.load_backbone`), in eval mode.
    images : torch.Tensor
        uint8 (stimulus, channel, y, x).
    preprocessing : dict
        The checkpoint's mean, std and input_size.
    epoch : int
        Recorded in the rows; also seeds the measurement noise of this checkpoint.
    measurements : sequence of Measurement
        Degraded conditions measured beside the clean one.
    batch_size : int
    seed : int
        Seed of the unit choices (input side `seed + 2·draw`, output side one more).

    Returns
    -------
    list of dict
        One row per layer, condition, measure, function and statistic (`COLUMNS`).
    """
    layers = measured_layers(model)
    conditions = [CLEAN, *[m for m in measurements if m != CLEAN]]
    recorder = _Recorder(layers, conditions, seed, noise_seed=seed * 100003 + epoch)
    handles = recorder.attach()
    try:
        with torch.enable_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size].to(device)
                model(preprocess(batch, preprocessing))
                recorder.n_examples += len(batch)
    finally:
        for handle in handles:
            handle.remove()
    return recorder.weight_rows(epoch) + recorder.data_rows(epoch)


def observables(run_dir, stimuli_path, *, n_stimuli: int = 256, batch_size: int = 128,
                seed: int = 0, measurements=(), device: str = "cpu") -> pd.DataFrame:
    """The long table of a run's observables: its checkpoints × layers × conditions ×
    statistics, measured on a fixed validation subset (spec_ch5-6 B.4–B.5).

    Every checkpoint the run wrote is measured: the training setting `checkpoint_every` sets
    the trajectory's period (B.5: every 5 of epochs 0…100 gives 21 points).

    Parameters
    ----------
    run_dir : path-like
        A finished training run (`pipeline.train.train`'s folder with run.json).
    stimuli_path : path-like
        The task's validation stimulus set (Zarr).
    n_stimuli : int
        Validation images (a seeded subset, the same for every run of the task).
    batch_size, seed, measurements, device
        As `checkpoint_observables`; `seed` also picks the validation subset.

    Returns
    -------
    pandas.DataFrame
        Columns `COLUMNS`.
    """
    paths = run_epochs(run_dir)
    epochs = list(paths)
    if len(epochs) < 2:
        raise ValueError(f"{run_dir}: checkpoints of epochs {epochs} only; a trajectory needs at "
                         "least 2 (train for at least one epoch)")
    images = validation_images(stimuli_path, n_stimuli, seed)
    rows = []
    with logging_redirect_tqdm():
        for epoch in tqdm(epochs, desc=f"observables {run_dir}", unit="checkpoint",
                          disable=None):
            checkpoint = read_checkpoint(paths[epoch])
            model = load_backbone(checkpoint, device)
            rows += checkpoint_observables(model, images, checkpoint["preprocessing"],
                                           epoch=epoch, measurements=measurements,
                                           batch_size=batch_size, seed=seed, device=device)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    log.info("%s: %d layers × %d checkpoints × %d conditions on %d images -> %d rows", run_dir,
             table["layer"].nunique(), len(epochs), 1 + len(measurements), len(images),
             len(table))
    return table
