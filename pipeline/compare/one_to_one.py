"""One-to-one mapping: each target unit is predicted by its single best source unit (spec §1.5).

For every target, the source unit with the highest Pearson r over the training stimuli is
chosen (mouse-vision ``CorrelationNeuralMap(identity=True, percentile=100)``, Brain-Score
``neuron_to_neuron``). The prediction on test stimuli is that unit's response rescaled by
its least-squares line on the training stimuli. A positive rescaling leaves every test
correlation equal to the chosen unit's own (the thesis uses the raw response), and the
predictions also live on the target's scale.

The correlation search needs the features, not a kernel, and model layers have up to
~10⁵ units, so the source units are scanned in chunks whose working arrays stay below a
fixed number of elements, converted to float64 one chunk at a time.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

log = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps
_MAX_ELEMENTS = 1 << 22          # float64 elements per working array of one chunk (32 MiB)


def _center_chunk(X):
    """Centred float64 columns and a mask of the columns that are constant up to rounding.

    A constant column's centred values are rounding noise, whose correlations are
    meaningless; it counts as constant when its sum of squares is below what the rounding
    of its mean can produce, n · (n ε max|x|)².
    """
    X = X.astype(np.float64)
    n = X.shape[-2]
    if not np.isfinite(X).all():
        raise ValueError("one-to-one mapping: source features contain NaN or inf; expected finite values.")
    scale = np.abs(X).max(-2)
    X -= X.mean(-2, keepdims=True)
    ss = (X * X).sum(-2)
    return X, ss, ss <= n * (n * _EPS * scale) ** 2


def _expand(A, ndim):
    """A with leading axes of length 1 added up to `ndim` axes."""
    return A.reshape((1,) * (ndim - A.ndim) + A.shape)


def choose_sources(X_train, Y_train, *, max_elements=_MAX_ELEMENTS):
    """Index of the source unit most correlated with each target over the training stimuli.

    Parameters
    ----------
    X_train : ndarray, shape (..., n_train, source)
        Source responses; any float dtype (chunks are converted to float64).
    Y_train : ndarray, shape (..., n_train, target)
        Leading axes broadcast against those of `X_train`; each is a separate choice.
    max_elements : int
        Bound on the elements of each chunk's correlation array.

    Returns
    -------
    index : ndarray of int, shape (..., target)
        Ties go to the lowest index. Constant source units are never chosen; a constant
        target gets the first non-constant source (all its correlations are undefined).
        -1 where every source unit is constant.
    r : ndarray, shape (..., target)
        The chosen unit's training correlation (NaN for constant targets or sources).
    """
    X_train, Y = np.asarray(X_train), np.asarray(Y_train, dtype=np.float64)
    if X_train.ndim < 2 or Y.ndim < 2 or X_train.shape[-2] != Y.shape[-2]:
        raise ValueError(f"one-to-one mapping: source and target must be (..., stimulus, unit) with the same "
                         f"training stimuli; got shapes {X_train.shape} and {Y.shape}.")
    if not np.isfinite(Y).all():
        raise ValueError("one-to-one mapping: targets contain NaN or inf; expected finite values.")
    batch = np.broadcast_shapes(X_train.shape[:-2], Y.shape[:-2])
    n, p, t = Y.shape[-2], X_train.shape[-1], Y.shape[-1]
    Y0, ss_y, constant_y = _center_chunk(Y)
    Zy = Y0 / np.where(constant_y, np.inf, np.sqrt(ss_y))[..., None, :]    # 0 for constant targets
    best_r = np.full(batch + (t,), -np.inf)
    best = np.full(batch + (t,), -1)
    chunk = max(1, max_elements // max(1, math.prod(batch) * max(n, t)))
    for start in range(0, p, chunk):
        X0, ss, constant = _center_chunk(X_train[..., start:start + chunk])
        Zx = X0 / np.where(constant, np.inf, np.sqrt(ss))[..., None, :]
        r = np.where(constant[..., :, None], -np.inf, np.swapaxes(Zx, -1, -2) @ Zy)   # (..., chunk, t)
        local = r.argmax(-2)                                       # first maximum: lowest index
        value = np.take_along_axis(r, local[..., None, :], -2)[..., 0, :]
        better = value > best_r
        best_r = np.where(better, value, best_r)
        best = np.where(better, start + local, best)
    with np.errstate(invalid="ignore"):
        best_r = np.where((best < 0) | constant_y, np.nan, best_r)
    n_dead = int((best < 0).sum())
    if n_dead:
        log.warning("one-to-one mapping: every source unit is constant over the training stimuli "
                    "in %d (fit, target) pairs; their predictions are NaN", n_dead)
    return best, best_r


def _rescale(x_train, y_train):
    """Least-squares line y ≈ a + b x per column (columns of x are chosen source units)."""
    x_mean, y_mean = x_train.mean(-2), y_train.mean(-2)
    x0 = x_train - x_mean[..., None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (x0 * (y_train - y_mean[..., None, :])).sum(-2) / (x0 * x0).sum(-2)
    return slope, y_mean - slope * x_mean


def _gather(X, index):
    """Columns `index` (..., target) of X (..., stimulus, source), as float64 (..., stimulus, target)."""
    safe = np.where(index < 0, 0, index)[..., None, :]
    columns = np.take_along_axis(_expand(X, safe.ndim), safe, -1).astype(np.float64)
    return np.where(index[..., None, :] < 0, np.nan, columns)


def one_to_one_predict(X_train, X_test, Y_train, *, max_elements=_MAX_ELEMENTS):
    """Test predictions of the one-to-one map, batched over leading axes.

    Parameters
    ----------
    X_train : ndarray, shape (..., n_train, source)
    X_test : ndarray, shape (..., n_test, source)
        Source responses on the training and test stimuli (leading axes broadcast).
    Y_train : ndarray, shape (..., n_train, target)
        Target responses on the training stimuli.
    max_elements : int
        Bound on the elements of each chunk's correlation array (see `choose_sources`).

    Returns
    -------
    prediction : ndarray, shape (..., n_test, target)
        ``a + b · X_test[..., index]`` with (a, b) the least-squares line of the chosen unit
        on the training stimuli; NaN where every source unit is constant.
    index : ndarray of int, shape (..., target)
        The chosen source unit (see `choose_sources`).
    """
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    if X_train.ndim < 2 or X_test.ndim < 2 or X_train.shape[-1] != X_test.shape[-1]:
        raise ValueError(f"one-to-one mapping: X_train and X_test must be (..., stimulus, source) with the "
                         f"same sources; got shapes {X_train.shape} and {X_test.shape}.")
    Y_train = np.asarray(Y_train, dtype=np.float64)
    index, _ = choose_sources(X_train, Y_train, max_elements=max_elements)
    slope, intercept = _rescale(_gather(X_train, index), Y_train)
    prediction = intercept[..., None, :] + slope[..., None, :] * _gather(X_test, index)
    return prediction, index


class OneToOneMap(BaseEstimator, RegressorMixin):
    """One source unit per target, the most correlated on the training stimuli, rescaled.

    Parameters
    ----------
    max_elements : int
        Bound on the elements of each chunk's correlation array.
    """

    def __init__(self, *, max_elements=_MAX_ELEMENTS):
        self.max_elements = max_elements

    def fit(self, X, Y):
        """Fit on X (stimulus, source) and Y (stimulus, target).

        Sets `source_index_` (target,), the chosen source units; `coef_` and `intercept_`
        (target,), their least-squares lines; `train_r_` (target,), their training r.
        """
        X, Y = np.asarray(X), np.asarray(Y, dtype=np.float64)
        if X.ndim != 2 or Y.ndim != 2:
            raise ValueError(f"X and Y must be 2-D (stimulus, unit); got shapes {X.shape} and {Y.shape}.")
        self.source_index_, self.train_r_ = choose_sources(X, Y, max_elements=self.max_elements)
        self.coef_, self.intercept_ = _rescale(_gather(X, self.source_index_), Y)
        return self

    def predict(self, X):
        """Predicted targets (stimulus, target)."""
        return self.intercept_ + self.coef_ * _gather(np.asarray(X), self.source_index_)

    def predict_from_features(self, X_train, X_test, Y_train):
        """Batched test predictions; see `one_to_one_predict`."""
        return one_to_one_predict(X_train, X_test, Y_train, max_elements=self.max_elements)[0]
