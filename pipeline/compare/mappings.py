"""Mappings from a source (model layer or pooled animals) to target neuroids (spec §1.5).

The numeric cores work on linear kernels G = X Xᵀ over stimuli (stimulus × stimulus), so
their cost does not grow with the number of source units, and they are batched: every
leading axis of the kernels and targets is a separate fit (split-half, train/test split),
and all target units of one fit are solved at once. The estimator classes wrap the same
cores with scikit-learn conventions. The one-to-one map needs the features themselves
(`pipeline.compare.one_to_one`); RSA and CKA fit nothing (`pipeline.compare.rsa`,
`pipeline.compare.cka`); `rdm`, `rdm_from_gram` and `compare_rdms` are re-exported here.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from pipeline.compare.one_to_one import OneToOneMap
from pipeline.compare.rsa import compare_rdms, rdm, rdm_from_gram

__all__ = [
    "FEATURE_MAPPINGS", "MAPPINGS", "OneToOneMap", "PLSMap", "RIDGE_CV_ALPHAS", "RidgeCVMap", "RidgeMap",
    "center_kernel", "clip_components", "compare_rdms", "pearson", "pls_predict_kernel", "rdm",
    "rdm_from_gram", "ridge_cv_predict_kernel", "ridge_predict_kernel",
]

log = logging.getLogger(__name__)

_EPS = np.finfo(np.float64).eps

RIDGE_CV_ALPHAS = tuple(10.0 ** np.arange(-3.0, 7.5, 0.5))
"""Default `RidgeCVMap` grid: 1e-3 to 1e7 in half decades. Kernel eigenvalues grow with the
number of source units times their variance (about 10⁶ for a 10⁵-unit layer of unit-variance
features), so the grid reaches far above sklearn's usual (0.1, 1, 10)."""


def pearson(a, b, axis=-1):
    """Pearson correlation of `a` and `b` along `axis`, broadcasting over the other axes.

    Returns NaN where either input is constant along `axis`.
    """
    a = a - a.mean(axis=axis, keepdims=True)
    b = b - b.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))


def center_kernel(G, train, test):
    """Train and cross kernels of features centred on their training-stimulus means.

    With X the (stimulus, unit) features, G = X Xᵀ and m the mean of X over `train`,
    returns (X_train - m)(X_train - m)ᵀ and (X_test - m)(X_train - m)ᵀ without forming X.

    Parameters
    ----------
    G : ndarray, shape (..., stimulus, stimulus)
        Symmetric linear kernels.
    train, test : ndarray of int
        Stimulus indices.

    Returns
    -------
    K_train : ndarray, shape (..., n_train, n_train)
    K_cross : ndarray, shape (..., n_test, n_train)
    """
    col = G[..., :, train].mean(-1)                    # (X mᵀ) for every stimulus
    mm = col[..., train].mean(-1)[..., None, None]     # m mᵀ
    K_train = G[..., train[:, None], train] - col[..., train, None] - col[..., None, train] + mm
    K_cross = G[..., test[:, None], train] - col[..., test, None] - col[..., None, train] + mm
    return K_train, K_cross


def ridge_predict_kernel(K_train, K_cross, Y_train, alpha):
    """Ridge predictions with intercept from centred kernels (dual form).

    β = X₀ᵀ (K + αI)⁻¹ Y₀, so the prediction is K_cross (K + αI)⁻¹ Y₀ + ȳ. The (n_test, n_train)
    operator is solved once per kernel and then broadcast over the targets' leading axes, so
    kernels shared by several targets (a model source) are solved only once.

    Parameters
    ----------
    K_train : ndarray, shape (..., n_train, n_train)
    K_cross : ndarray, shape (..., n_test, n_train)
    Y_train : ndarray, shape (..., n_train, target)
    alpha : float

    Returns
    -------
    ndarray, shape (..., n_test, target)
    """
    n = K_train.shape[-1]
    y_mean = Y_train.mean(-2, keepdims=True)
    # K + αI is symmetric, so (K_cross (K + αI)⁻¹)ᵀ = (K + αI)⁻¹ K_crossᵀ.
    op = np.linalg.solve(K_train + alpha * np.eye(n), np.swapaxes(K_cross, -1, -2))
    return np.swapaxes(op, -1, -2) @ (Y_train - y_mean) + y_mean


def _check_alphas(alphas, owner):
    grid = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0 or not (np.isfinite(grid).all() and (grid > 0).all()):
        raise ValueError(f"The 'alphas' parameter of {owner} must be a non-empty 1-D sequence of "
                         f"finite floats > 0. Got {alphas!r} instead.")
    return grid


def _ridge_cv_dual(K_train, Y_train, alphas):
    """Dual coefficients of ridge with the penalty chosen per target by efficient leave-one-out.

    sklearn ``RidgeCV(alphas, alpha_per_target=True, fit_intercept=True)`` in its "gram"
    mode (``_RidgeGCV._solve_eigen_gram``): with K = Q Λ Qᵀ (centred) and G = K + αI,
    c = G⁻¹ y₀ and the leave-one-out residuals are c_i / d_i with
    d_i = (G⁻¹)_ii - (G⁻¹ 1)_i / n, the last term accounting for the unpenalised intercept.
    The score of α is minus the mean squared residual; a target keeps the first α of the
    grid order until a later one scores strictly higher, as in sklearn.

    Parameters
    ----------
    K_train : ndarray, shape (..., n_train, n_train)
        Centred training kernels; one eigendecomposition each, shared by every α and by
        all targets that broadcast against it.
    Y_train : ndarray, shape (..., n_train, target)
    alphas : ndarray, shape (alpha,)

    Returns
    -------
    c : ndarray, shape (..., n_train, target)
        Dual coefficients at each target's chosen α (β = X₀ᵀ c).
    alpha : ndarray, shape (..., target)
    y_mean : ndarray, shape (..., 1, target)
    """
    n = K_train.shape[-1]
    lam, Q = np.linalg.eigh(K_train)
    y_mean = Y_train.mean(-2, keepdims=True)
    QtY = np.swapaxes(Q, -1, -2) @ (Y_train - y_mean)
    Qt1 = Q.sum(-2)
    Q2 = Q * Q
    best_c = best_score = best_alpha = None
    for alpha in alphas:
        D = 1.0 / (lam + alpha)
        c = Q @ (D[..., :, None] * QtY)
        d = (Q2 @ D[..., None])[..., 0] - (Q @ (D * Qt1)[..., None])[..., 0] / n
        score = -((c / d[..., None]) ** 2).mean(-2)
        if best_c is None:
            best_c, best_score, best_alpha = c, score, np.full(score.shape, alpha)
            continue
        better = score > best_score
        best_c = np.where(better[..., None, :], c, best_c)
        best_score = np.where(better, score, best_score)
        best_alpha = np.where(better, alpha, best_alpha)
    return best_c, best_alpha, y_mean


def ridge_cv_predict_kernel(K_train, K_cross, Y_train, alphas):
    """Ridge predictions with α chosen per target by leave-one-out on the training stimuli.

    Equals sklearn ``RidgeCV(alphas, alpha_per_target=True, fit_intercept=True).fit(X_train,
    Y_train).predict(X_test)`` (see `_ridge_cv_dual`); only training stimuli choose α.

    Parameters
    ----------
    K_train : ndarray, shape (..., n_train, n_train)
    K_cross : ndarray, shape (..., n_test, n_train)
        Centred kernels, as from `center_kernel`.
    Y_train : ndarray, shape (..., n_train, target)
        Leading axes broadcast against those of the kernels.
    alphas : sequence of float
        Candidate penalties, > 0.

    Returns
    -------
    prediction : ndarray, shape (..., n_test, target)
    alpha : ndarray, shape (..., target)
        The α chosen for each fit and target.
    """
    grid = _check_alphas(alphas, "ridge_cv_predict_kernel")
    c, alpha, y_mean = _ridge_cv_dual(np.asarray(K_train, dtype=np.float64),
                                      np.asarray(Y_train, dtype=np.float64), grid)
    return np.asarray(K_cross, dtype=np.float64) @ c + y_mean, alpha


def clip_components(n_components, n_features, n_train):
    """Number of PLS components that the data support: at most n_features and n_train - 1."""
    n_used = min(n_components, n_features, n_train - 1)
    if n_used < n_components:
        log.info("PLS: %d components requested, %d used (%d source features, %d training stimuli)",
                 n_components, n_used, n_features, n_train)
    return n_used


def _pls_kernel_fit(K0, Y, n_components, max_iter=500, tol=1e-6):
    """NIPALS PLS regression (scikit-learn's algorithm, scale=False) in kernel form, batched.

    Follows sklearn ``_PLS.fit`` (Wegelin 2000, §4.1) step by step, with every feature-space
    vector written as X₀ᵀ·(sample-space coefficients): x_weights w = X₀ᵀ a, x_loadings
    p = X₀ᵀ b, and the deflated X_k = D X₀ with D a product of projections, so
    X_k X_kᵀ = D K₀ Dᵀ. sklearn's power iteration, with its start column and stopping rule,
    is evaluated in closed form (`_first_direction`), and the y-column masking matches
    sklearn's, so predictions agree with ``PLSRegression(scale=False)`` to rounding. Sign
    flips are skipped: they do not change predictions.

    Parameters
    ----------
    K0 : ndarray, shape (batch, n, n)
        Centred training kernels.
    Y : ndarray, shape (batch, n, target)
        Training targets (uncentred).

    Returns
    -------
    A : ndarray, shape (batch, n, component)
        Weights as sample coefficients (w = X₀ᵀ a).
    R : ndarray, shape (batch, component, target)
        ``pinv(PᵀW) Qᵀ``, so that predictions are ``K_cross A R + y_mean``.
    y_mean : ndarray, shape (batch, 1, target)
    """
    n_batch, n, q = Y.shape
    y_mean = Y.mean(1, keepdims=True)
    Yk = Y - y_mean
    Kk = K0.copy()
    D = np.broadcast_to(np.eye(n), (n_batch, n, n)).copy()
    A = np.zeros((n_batch, n, n_components))
    Bl = np.zeros((n_batch, n, n_components))
    Q = np.zeros((n_batch, q, n_components))
    scale = np.trace(K0, axis1=1, axis2=2)
    alive = np.ones(n_batch, bool)
    n_capped = 0
    for k in range(n_components):
        magnitude = np.abs(Yk).max(1)                                     # (batch, target)
        tiny = magnitude < 10 * _EPS
        if tiny.any():                               # sklearn zeroes near-constant columns
            Yk[np.broadcast_to(tiny[:, None, :], Yk.shape)] = 0.0
            magnitude[tiny] = 0.0
        nonzero = magnitude > _EPS
        # "y residual is constant" ends sklearn's loop; an exhausted X would only add noise.
        alive &= nonzero.any(1) & (np.trace(Kk, axis1=1, axis2=2) > 1e-12 * scale)
        if not alive.any():
            break
        c, capped = _first_direction(Kk, Yk, nonzero.argmax(1), alive, max_iter, tol)
        n_capped += capped
        live = alive[:, None]
        t = np.where(live, _matvec(Kk, c), 0.0)                           # x_scores
        tt = np.where(alive, (t * t).sum(1), 1.0)[:, None]
        A[..., k] = np.where(live, _matvec(D, c, transpose=True), 0.0)
        Bl[..., k] = _matvec(D, t, transpose=True) / tt
        Q[..., k] = (np.swapaxes(Yk, 1, 2) @ t[..., None])[..., 0] / tt    # y_loadings
        # Regression deflation with P = I - t tᵀ/tᵀt: X_k ← P X_k, y_k ← P y_k, as rank-1
        # updates of D (X_k = D X₀) and of the kernels P K P.
        Yk -= t[:, :, None] * Q[:, None, :, k]
        D -= t[:, :, None] * (t[:, None, :] @ D) / tt[..., None]
        Kk = _deflate(Kk, t, tt)
    if n_capped:
        log.info("PLS: %d power iterations stopped at max_iter=%d (as sklearn, which warns)", n_capped, max_iter)
    M = np.swapaxes(Bl, 1, 2) @ K0 @ A                                    # x_loadingsᵀ x_weights
    R = np.linalg.pinv(M) @ np.swapaxes(Q, 1, 2)
    return A, R, y_mean


def _matvec(M, v, transpose=False):
    """Batched M v (or Mᵀ v) for M (batch, n, n) and v (batch, n); symmetric M may say either."""
    if transpose:
        return (v[:, None, :] @ M)[:, 0]
    return (M @ v[..., None])[..., 0]


def _deflate(K, t, tt):
    """P K P with P = I - t tᵀ/tᵀt, in place, as a rank-2 update (K symmetric).

    With v = K t / tᵀt: P K P = K - t vᵀ - v tᵀ + (tᵀv / tᵀt) t tᵀ = K - t wᵀ - w tᵀ,
    w = v - (tᵀv / 2tᵀt) t.
    """
    v = _matvec(K, t, transpose=True) / tt
    w = v - 0.5 * (t * v).sum(1, keepdims=True) / tt * t
    K -= t[:, :, None] * w[:, None, :]
    K -= w[:, :, None] * t[:, None, :]
    return K


def _first_direction(Kk, Yk, start, alive, max_iter, tol, n_direct=128):
    """sklearn's power iteration for the first PLS weights, run in the target space.

    sklearn (``_get_first_singular_vectors_power_method``, mode A) starts from the first
    non-constant y column and iterates u ← y_k y_kᵀ K_k u, with x_weights w ∝ X_kᵀ u, until
    ‖w_i − w_{i−1}‖² < tol. Every iterate stays in the span of y_k: u_i = y_k z_i with
    z_i ∝ S^i e_j, S = y_kᵀ K_k y_k (target × target) and j the start column, and
    ‖w_i‖² ∝ z_iᵀ S z_i, w_i·w_{i−1} ∝ z_iᵀ S z_{i−1}. The first `n_direct` iterations run
    directly on S (most fits stop there); fits still running are finished in closed form
    from S = V Λ Vᵀ (`_stopping_iteration`), instead of up to `max_iter` products.

    Returns
    -------
    c : ndarray, shape (batch, n)
        Sample coefficients of the weights (w = X_kᵀ c, ‖w‖ = 1); zero for finished fits.
    n_capped : int
        Fits that reached `max_iter` without converging (sklearn warns for these).
    """
    n_batch, n, q = Yk.shape
    S = np.swapaxes(Yk, 1, 2) @ Kk @ Yk
    S[~alive] = np.eye(q)
    z = np.zeros((n_batch, q))
    z[np.arange(n_batch), start] = 1.0
    n_capped = 0
    if q > 1:                                       # sklearn stops after one iteration if q = 1
        Sz = _matvec(S, z)
        zSz = (z * Sz).sum(1)
        running = np.ones(n_batch, bool)
        for _ in range(1, min(n_direct, max_iter)):
            z_new = np.where(running[:, None], Sz / np.linalg.norm(Sz, axis=1, keepdims=True), z)
            Sz_new = _matvec(S, z_new)
            zSz_new = (z_new * Sz_new).sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cosine = (z_new * Sz).sum(1) / np.sqrt(zSz_new * zSz)
            running &= 2.0 - 2.0 * cosine >= tol      # NaN (degenerate) counts as converged
            z, Sz, zSz = z_new, Sz_new, zSz_new
            if not running.any():
                break
        slow = np.flatnonzero(running & alive)
        if slow.size and n_direct < max_iter:
            lam, V = np.linalg.eigh(S[slow])
            lam = np.clip(lam, 0.0, None)
            top = lam[:, -1:]
            lam = np.divide(lam, top, out=np.zeros_like(lam), where=top > 0)   # largest is 1
            a = np.take_along_axis(V, start[slow, None, None], axis=1)[:, 0]  # Vᵀ e_j
            stop = _stopping_iteration(a**2, lam, max_iter, tol, first=n_direct)
            z[slow] = (V @ (a * lam ** stop[:, None])[..., None])[..., 0]
            n_capped = int((stop == max_iter - 1).sum())
    u = _matvec(Yk, z)
    norm = np.sqrt(np.maximum((u * _matvec(Kk, u)).sum(1, keepdims=True), 0.0))
    c = np.where(alive[:, None] & (norm > 0), u / np.where(norm > 0, norm, 1.0), 0.0)
    return c, n_capped


def _stopping_iteration(a2, lam, max_iter, tol, first=1):
    """First iteration i ≥ `first` with ‖w_i − w_{i−1}‖² = 2 − 2 cos_i < tol (else max_iter − 1).

    cos_i = P(2i) / sqrt(P(2i+1) P(2i−1)) with P(m) = Σ a² λ^m. Iterations are scanned in
    growing blocks and finished fits leave the batch.
    """
    stop = np.full(len(a2), max_iter - 1)
    pending = np.arange(len(a2))
    lo = first
    while pending.size and lo < max_iter:
        hi = min(max_iter, max(16, 4 * lo))
        i = np.arange(lo, hi)
        P = np.einsum("bq,bqm->bm", a2[pending], lam[pending, :, None] ** np.arange(2 * lo - 1, 2 * hi))
        k = 2 * (i - lo) + 1                                # column of P(2i)
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = P[:, k] / np.sqrt(P[:, k + 1] * P[:, k - 1])
        done = ~(2.0 - 2.0 * cosine >= tol)                 # NaN (degenerate) counts as converged
        hit = done.any(1)
        stop[pending[hit]] = i[done[hit].argmax(1)]
        pending = pending[~hit]
        lo = hi
    return stop


def pls_predict_kernel(K_train, K_cross, Y_train, n_components, max_iter=500, tol=1e-6):
    """PLS regression predictions (sklearn ``PLSRegression(scale=False)``) from centred kernels.

    Parameters
    ----------
    K_train : ndarray, shape (..., n_train, n_train)
    K_cross : ndarray, shape (..., n_test, n_train)
    Y_train : ndarray, shape (..., n_train, target)
        Leading axes broadcast against those of the kernels; each is one multi-output fit.
    n_components : int
        Already clipped with `clip_components`.

    Returns
    -------
    ndarray, shape (..., n_test, target)
    """
    batch = np.broadcast_shapes(K_train.shape[:-2], Y_train.shape[:-2])
    n_train, n_test, q = K_train.shape[-1], K_cross.shape[-2], Y_train.shape[-1]
    K0 = np.broadcast_to(K_train, batch + (n_train, n_train)).reshape(-1, n_train, n_train)
    Kx = np.broadcast_to(K_cross, batch + (n_test, n_train)).reshape(-1, n_test, n_train)
    Y = np.broadcast_to(Y_train, batch + (n_train, q)).reshape(-1, n_train, q)
    A, R, y_mean = _pls_kernel_fit(K0, Y, n_components, max_iter, tol)
    return (Kx @ A @ R + y_mean).reshape(batch + (n_test, q))


def _check_pair(X, Y):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2:
        raise ValueError(f"X and Y must be 2-D (stimulus, unit); got shapes {X.shape} and {Y.shape}.")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of stimuli; got {X.shape[0]} and {Y.shape[0]}.")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X and Y must be finite; found NaN or inf.")
    return X, Y


class RidgeMap(BaseEstimator, RegressorMixin):
    """Ridge regression with intercept (sklearn ``Ridge(alpha)``); dual form when units > stimuli.

    Parameters
    ----------
    alpha : float
        L2 penalty, > 0 (spec §1.5: 1, the sklearn default).
    """

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def _check_alpha(self):
        if not self.alpha > 0:
            raise ValueError(f"The 'alpha' parameter of RidgeMap must be > 0. Got {self.alpha!r} instead.")

    def fit(self, X, Y):
        """Fit on X (stimulus, feature) and Y (stimulus, target); sets `coef_` and `intercept_`."""
        self._check_alpha()
        X, Y = _check_pair(X, Y)
        x_mean, y_mean = X.mean(0), Y.mean(0)
        X0, Y0 = X - x_mean, Y - y_mean
        n, p = X0.shape
        if p > n:
            coef = X0.T @ np.linalg.solve(X0 @ X0.T + self.alpha * np.eye(n), Y0)
        else:
            coef = np.linalg.solve(X0.T @ X0 + self.alpha * np.eye(p), X0.T @ Y0)
        self.coef_ = coef.T
        self.intercept_ = y_mean - x_mean @ coef
        return self

    def predict(self, X):
        """Predicted targets (stimulus, target)."""
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_from_kernel(self, K_train, K_cross, Y_train, n_features):
        """Batched test predictions from centred kernels; see `ridge_predict_kernel`."""
        self._check_alpha()
        return ridge_predict_kernel(K_train, K_cross, Y_train, self.alpha)


class RidgeCVMap(BaseEstimator, RegressorMixin):
    """Ridge regression with the penalty chosen per target by leave-one-out on the training stimuli.

    sklearn ``RidgeCV(alphas, alpha_per_target=True, fit_intercept=True)``, in dual (kernel)
    form: one eigendecomposition per fit serves every α and every target.

    Parameters
    ----------
    alphas : sequence of float
        Candidate penalties, > 0; `RIDGE_CV_ALPHAS` by default.
    """

    def __init__(self, alphas=RIDGE_CV_ALPHAS):
        self.alphas = alphas

    def fit(self, X, Y):
        """Fit on X (stimulus, feature) and Y (stimulus, target); sets `coef_`, `intercept_`, `alpha_`."""
        grid = _check_alphas(self.alphas, "RidgeCVMap")
        X, Y = _check_pair(X, Y)
        x_mean = X.mean(0)
        X0 = X - x_mean
        c, alpha, y_mean = _ridge_cv_dual(X0 @ X0.T, Y, grid)
        self.coef_ = (X0.T @ c).T
        self.intercept_ = y_mean[0] - x_mean @ self.coef_.T
        self.alpha_ = alpha
        n_edge = int(np.isin(alpha, grid[[0, -1]]).sum()) if grid.size > 1 else 0
        log.info("RidgeCVMap: alpha chosen per target from %d candidates, median %g; %d of %d "
                 "targets at an end of the grid", grid.size, np.median(alpha), n_edge, alpha.size)
        return self

    def predict(self, X):
        """Predicted targets (stimulus, target)."""
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_from_kernel(self, K_train, K_cross, Y_train, n_features):
        """Batched test predictions from centred kernels; see `ridge_cv_predict_kernel`."""
        return ridge_cv_predict_kernel(K_train, K_cross, Y_train, self.alphas)[0]


class PLSMap(BaseEstimator, RegressorMixin):
    """Multi-output PLS regression (sklearn ``PLSRegression(n_components, scale=False)``).

    One fit maps to all target units jointly (spec §1.5). `n_components` is clipped to
    what the data support (source features, training stimuli - 1); the number used is
    `n_components_`.

    Parameters
    ----------
    n_components : int
        Requested number of components (spec §1.5: 25).
    max_iter, tol : int, float
        Power-iteration limits, as in sklearn.
    """

    def __init__(self, n_components=25, *, max_iter=500, tol=1e-6):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol

    def _check_components(self):
        if not (isinstance(self.n_components, (int, np.integer)) and self.n_components >= 1):
            raise ValueError(
                f"The 'n_components' parameter of PLSMap must be an int >= 1. Got {self.n_components!r} instead."
            )

    def fit(self, X, Y):
        """Fit on X (stimulus, feature) and Y (stimulus, target); sets `coef_` and `intercept_`."""
        self._check_components()
        X, Y = _check_pair(X, Y)
        self.x_mean_ = X.mean(0)
        X0 = X - self.x_mean_
        self.n_components_ = clip_components(self.n_components, X.shape[1], X.shape[0])
        A, R, y_mean = _pls_kernel_fit((X0 @ X0.T)[None], Y[None], self.n_components_,
                                       self.max_iter, self.tol)
        self.coef_ = (X0.T @ A[0] @ R[0]).T
        self.intercept_ = y_mean[0, 0]
        return self

    def predict(self, X):
        """Predicted targets (stimulus, target)."""
        return (np.asarray(X, dtype=np.float64) - self.x_mean_) @ self.coef_.T + self.intercept_

    def predict_from_kernel(self, K_train, K_cross, Y_train, n_features):
        """Batched test predictions from centred kernels; see `pls_predict_kernel`."""
        self._check_components()
        n_used = clip_components(self.n_components, n_features, K_train.shape[-1])
        return pls_predict_kernel(K_train, K_cross, Y_train, n_used, self.max_iter, self.tol)


MAPPINGS = {"ridge": RidgeMap, "ridge_cv": RidgeCVMap, "pls": PLSMap}
"""Kernel-form mappings by name: each has ``predict_from_kernel(K_train, K_cross, Y_train,
n_features)``. Feature-space mappings are in `FEATURE_MAPPINGS`; "rsa" and "cka" fit nothing."""

FEATURE_MAPPINGS = {"one_to_one": OneToOneMap}
"""Mappings that need the source features themselves: each has
``predict_from_features(X_train, X_test, Y_train)``."""
