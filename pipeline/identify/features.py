"""From the long observables table to classifier examples (spec_ch5-6 B.5, B.7).

One example is one (run, layer): the trajectories of the selected statistics over the
checkpoints, (statistic, time), plus the layer-position one-hot (early, middle, deep). SVM and
RF read them flattened statistic-major (`Features.flat`), the Conv1D as (statistic, time).
The transforms of the analyses act on the time axis: random-start subsampling at a period,
consecutive windows (thirds) and the trajectory average.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pipeline.identify.measurement import CLEAN, Measurement
from pipeline.identify.observables import POSITIONS
from pipeline.identify.statistics import admissible_observables, all_observables

log = logging.getLogger(__name__)

OBSERVABLE_CLASSES = ("weights", "activations", "activity_change", "all")
# Activity-change variant -> measure: through B as implemented, or the forward Jacobian.
ACTIVITY_CHANGE = {"feedback": "gradavgfb", "jacobian": "gradavg"}
RUN_COLUMNS = ("run", "task", "arch", "rule", "batch_size", "init_seed", "data_seed",
               "curriculum")

__all__ = ["ACTIVITY_CHANGE", "Features", "OBSERVABLE_CLASSES", "build_features",
           "observable_names"]


def observable_names(observable: str, *, statistics: str = "admissible",
                     activity_change: str = "feedback") -> list[str]:
    """The statistics an observable class reads: weights, activations, activity_change or all
    (their union); `admissible` (24 in all) or `all` (45) of them."""
    if observable not in OBSERVABLE_CLASSES:
        raise ValueError(f"observable must be one of {', '.join(OBSERVABLE_CLASSES)}; "
                         f"got {observable!r}")
    if activity_change not in ACTIVITY_CHANGE:
        raise ValueError(f"activity_change must be one of {', '.join(ACTIVITY_CHANGE)}; "
                         f"got {activity_change!r}")
    if statistics not in ("admissible", "all"):
        raise ValueError(f"statistics must be admissible or all; got {statistics!r}")
    measures = {"weights": ["weight"], "activations": ["act"],
                "activity_change": [ACTIVITY_CHANGE[activity_change]]}
    chosen = (measures["weights"] + measures["activations"] + measures["activity_change"]
              if observable == "all" else measures[observable])
    pick = admissible_observables if statistics == "admissible" else all_observables
    return [name for measure in chosen for name in pick(measure)]


@dataclass(frozen=True)
class Features:
    """Classifier examples: one per (run, layer).

    Attributes
    ----------
    values : numpy.ndarray
        (example, statistic, time) float64.
    position : numpy.ndarray
        (example, 3) one-hot of early, middle, deep.
    labels : numpy.ndarray
        (example,) rule class of the run.
    meta : pandas.DataFrame
        Per example: `RUN_COLUMNS` and layer.
    statistics : list of str
        Observable names along the statistic axis.
    times : list
        Labels of the time axis (epochs, or sample numbers after subsampling).
    """

    values: np.ndarray
    position: np.ndarray
    labels: np.ndarray
    meta: pd.DataFrame
    statistics: list
    times: list

    def __len__(self):
        return len(self.labels)

    def flat(self) -> np.ndarray:
        """(example, statistic·time + 3): trajectories statistic-major, then the one-hot."""
        return np.hstack([self.values.reshape(len(self), -1), self.position])

    def take(self, index) -> Features:
        """The examples at `index` (integer array or boolean mask)."""
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index
        return replace(self, values=self.values[index], position=self.position[index],
                       labels=self.labels[index], meta=self.meta.iloc[index].reset_index(drop=True))

    def window(self, start: int, stop: int) -> Features:
        """Only the time points start … stop - 1 (a consecutive stretch of training)."""
        return replace(self, values=self.values[:, :, start:stop], times=self.times[start:stop])

    def averaged(self) -> Features:
        """Each statistic averaged over the trajectory: one time point (B.7.2b control)."""
        return replace(self, values=self.values.mean(2, keepdims=True), times=["mean"])

    def subsampled(self, period: int, n_samples: int, rng: np.random.Generator) -> Features:
        """`n_samples` time points s, s + period, …, with a random start s per example (B.7.4).

        Raises ValueError when the trajectory is too short for them.
        """
        span = (n_samples - 1) * period + 1
        n_times = self.values.shape[2]
        if span > n_times:
            raise ValueError(f"{n_samples} samples {period} checkpoints apart need {span} "
                             f"checkpoints; the trajectories have {n_times}")
        starts = rng.integers(0, n_times - span + 1, size=len(self))
        index = starts[:, None] + period * np.arange(n_samples)[None, :]
        values = np.take_along_axis(self.values, index[:, None, :], axis=2)
        return replace(self, values=values, times=list(range(n_samples)))


def build_features(table: pd.DataFrame, observable: str, *, statistics: str = "admissible",
                   activity_change: str = "feedback",
                   condition: Measurement = CLEAN) -> Features:
    """The examples of one observable class under one measurement condition.

    Parameters
    ----------
    table : pandas.DataFrame
        Observables of many runs (`pipeline.identify.observables.COLUMNS` plus `RUN_COLUMNS`).
    observable, statistics, activity_change
        As `observable_names`.
    condition : Measurement
        Which unit fraction, noise level and draw to read (the clean one by default).

    Returns
    -------
    Features
        Statistics that are non-finite for any example or time point are dropped and logged
        (the thesis dropped the statistics that ever diverged, B.4).

    Raises
    ------
    ValueError
        When the condition has no rows, or some example lacks a time point another has
        (runs measured at different checkpoints).
    """
    names = observable_names(observable, statistics=statistics, activity_change=activity_change)
    rows = table[(table["fraction"] == condition.fraction) & (table["noise"] == condition.noise)
                 & (table["draw"] == condition.draw) & table["observable"].isin(names)]
    if rows.empty:
        raise ValueError(f"no observables for {observable} at unit fraction {condition.fraction}, "
                         f"noise {condition.noise}, draw {condition.draw}")
    wide = rows.set_index(["run", "layer", "observable", "epoch"])["value"].unstack(
        ["observable", "epoch"])
    present = [name for name in names if name in wide.columns.get_level_values(0)]
    epochs = sorted(int(e) for e in rows["epoch"].unique())
    wide = wide.reindex(columns=pd.MultiIndex.from_product([present, epochs]))
    values = wide.to_numpy(dtype=float).reshape(len(wide), len(present), len(epochs))
    missing = np.isnan(values).all(1).any(1)
    if missing.any():
        run = wide.index[int(np.argmax(missing))][0]
        have = sorted(int(e) for e in rows.loc[rows["run"] == run, "epoch"].unique())
        raise ValueError(f"run {run!r} was measured at epochs {have}, others at {epochs}; every "
                         "run of the grid needs the same checkpoints")
    finite = np.isfinite(values).all(axis=(0, 2))
    if not finite.all():
        log.warning("%s: dropped %d statistic(s) that are not finite everywhere: %s", observable,
                    int((~finite).sum()), [n for n, ok in zip(present, finite) if not ok])
    values = values[:, finite, :]
    kept = [n for n, ok in zip(present, finite) if ok]
    first = rows.drop_duplicates(["run", "layer"]).set_index(["run", "layer"])
    meta = first.loc[wide.index, [c for c in RUN_COLUMNS if c != "run"] + ["position"]]
    meta = meta.reset_index()
    position = (meta["position"].to_numpy()[:, None] == np.array(POSITIONS)[None, :]).astype(float)
    return Features(values=values, position=position, labels=meta["rule"].to_numpy(),
                    meta=meta.drop(columns="position"), statistics=kept, times=list(epochs))
