"""Mappings from a source (model layer or pooled animals) to target neuroids (spec §1.5).

The numeric cores work on linear kernels G = X Xᵀ over stimuli (stimulus × stimulus), so
their cost does not grow with the number of source units, and they are batched: every
leading axis of the kernels and targets is a separate fit (split-half, train/test split),
and all target units of one fit are solved at once. The estimator classes wrap the same
cores with scikit-learn conventions. The one-to-one map needs the features themselves
(`pipeline.compare.one_to_one`); RSA and CKA fit nothing (`pipeline.compare.rsa`,
`pipeline.compare.cka`).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from pipeline.compare.one_to_one import OneToOneMap

__all__ = [
    "FEATURE_MAPPINGS", "MAPPINGS", "OneToOneMap", "PLSMap", "RIDGE_CV_ALPHAS", "RidgeCVMap", "RidgeMap",
    "center_kernel", "clip_components", "pearson", "pls_predict_features", "pls_predict_kernel",
    "ridge_cv_predict_kernel", "ridge_predict_kernel",
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


_PLS_CHUNK = 128      # fits per chunk: the chunk's working arrays stay in cache between passes
_PLS_BLOCK = 16       # power iterations between two vectorised checks of sklearn's stopping rule


def _pls_kernel_fit(K0, Y, n_components, max_iter=500, tol=1e-6):
    """NIPALS PLS regression (scikit-learn's algorithm, scale=False) in kernel form, batched.

    Follows sklearn ``_PLS.fit`` (Wegelin 2000, §4.1), with every feature-space vector
    written as X₀ᵀ·(sample-space coefficients). The x_scores t₁, t₂, ... are orthogonal, so
    the k deflations X_k = P_k ⋯ P_1 X₀ (P = I − t tᵀ/tᵀt) compose to one projection
    D_k = I − T̂ T̂ᵀ (T̂: the normalised scores so far), and neither the deflated kernel
    K_k = D_k K₀ D_k nor y_k = D_k y₀ is ever formed: products with them are products with
    K₀ and y₀ followed by D_k. sklearn's power iteration (`_power_iteration`) runs in the
    target space on S_k = y_kᵀ K_k y_k, which follows each deflation by a rank-2 update.
    The x_weights are w = X₀ᵀ c and the x_loadings X₀ᵀ t/tᵀt, so the coefficients are
    ``X₀ᵀ A R`` with R = pinv(PᵀW) Qᵀ. The start column, the stopping rule and the zeroing
    of spent y columns match sklearn's, so predictions agree with
    ``PLSRegression(scale=False)`` to rounding. Sign flips are skipped: they do not change
    predictions.

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
    A = np.zeros((n_batch, n, n_components))
    R = np.zeros((n_batch, n_components, q))
    y_mean = Y.mean(1, keepdims=True)
    n_capped = 0
    for start in range(0, n_batch, _PLS_CHUNK):
        part = slice(start, start + _PLS_CHUNK)
        n_capped += _pls_chunk(_KernelGram(np.ascontiguousarray(K0[part], dtype=np.float64)), Y[part] - y_mean[part],
                               n_components, max_iter, tol, A[part], R[part])
    if n_capped:
        log.info("PLS: %d power iterations stopped at max_iter=%d (as sklearn, which warns)", n_capped, max_iter)
    return A, R, y_mean


class _KernelGram:
    """Products with the centred training kernels K₀ of a chunk of fits (batch, n, n)."""

    def __init__(self, K0):
        self.K0 = K0

    def quadratic(self, Y0t, Y0):                                 # y₀ᵀ K₀ y₀
        return Y0t @ self.K0 @ Y0

    def matvec(self, v):                                          # K₀ v
        return np.matvec(self.K0, v)

    def trace(self):
        return np.trace(self.K0, axis1=1, axis2=2)

    def sandwich(self, T, A):                                     # T K₀ A
        return T @ self.K0 @ A


class _FeatureGram:
    """The same products through centred training features X₀ (group, n, p), K₀ = X₀ X₀ᵀ.

    The fits of a chunk come in groups of `per_group` consecutive fits that share one X₀
    (every trial half and the all-trial fit of one split), so each product is one matrix
    product per group over all of its fits' vectors, and K₀ (n², where X₀ is n·p) is never
    formed.
    """

    def __init__(self, X0, per_group):
        self.X0, self.m = X0, per_group
        self.X0t = np.ascontiguousarray(np.swapaxes(X0, 1, 2))    # (group, p, n)

    def _grouped(self, V):                                        # (b, k, d) -> (group, m·k, d)
        return V.reshape(self.X0.shape[0], -1, V.shape[-1])

    def project(self, V):
        """X₀ᵀ vᵀ for every row v of V (b, k, n): (b, k, p)."""
        b, k = V.shape[0], V.shape[1]
        return (self._grouped(V) @ self.X0).reshape(b, k, -1)

    def quadratic(self, Y0t, Y0):
        C = self.project(Y0t)                                     # (b, target, p): (X₀ᵀ y₀)ᵀ
        return C @ np.swapaxes(C, 1, 2)

    def matvec(self, v):
        b = v.shape[0]
        w = self.project(v[:, None, :])                          # (b, 1, p)
        return (self._grouped(w) @ self.X0t).reshape(b, -1)

    def trace(self):
        return np.repeat(np.einsum("gnp,gnp->g", self.X0, self.X0), self.m)

    def sandwich(self, T, A):
        return self.project(T) @ np.swapaxes(self.project(np.swapaxes(A, 1, 2)), 1, 2)


def _pls_feature_fit(X0, Y, n_components, max_iter=500, tol=1e-6):
    """`_pls_kernel_fit` through centred features, for sources narrower than the training set.

    The same arithmetic with every product by K₀ taken as X₀(X₀ᵀ ·): a fit costs n·p per
    product instead of n², and S = (X₀ᵀy₀)ᵀ(X₀ᵀy₀) costs n·p·target instead of n²·target.

    Parameters
    ----------
    X0 : ndarray, shape (group, n, p)
        Centred training features; the fits of a group share them.
    Y : ndarray, shape (group, fit, n, target)
        Training targets (uncentred) of each group's fits.

    Returns
    -------
    coef : ndarray, shape (group, fit, p, target)
        Regression coefficients on centred features.
    y_mean : ndarray, shape (group, fit, 1, target)
    """
    g, m, n, q = Y.shape
    coef = np.zeros((g, m, X0.shape[2], q))
    y_mean = Y.mean(2, keepdims=True)
    groups = max(1, _PLS_CHUNK // m)
    n_capped = 0
    for start in range(0, g, groups):
        part = slice(start, start + groups)
        gram = _FeatureGram(np.ascontiguousarray(X0[part], dtype=np.float64), m)
        Y0 = (Y[part] - y_mean[part]).reshape(-1, n, q)
        A = np.zeros((Y0.shape[0], n, n_components))
        R = np.zeros((Y0.shape[0], n_components, q))
        n_capped += _pls_chunk(gram, Y0, n_components, max_iter, tol, A, R)
        W = np.swapaxes(gram.project(np.swapaxes(A, 1, 2)), 1, 2)  # x_weights X₀ᵀA, (b, p, component)
        coef[part] = (W @ R).reshape(-1, m, X0.shape[2], q)
    if n_capped:
        log.info("PLS: %d power iterations stopped at max_iter=%d (as sklearn, which warns)", n_capped, max_iter)
    return coef, y_mean


def _pls_chunk(gram, Y0, n_components, max_iter, tol, A, R):
    """`_pls_kernel_fit` of one chunk of fits; writes A and R in place, returns the capped count.

    `gram` gives the products with the fits' K₀ (`_KernelGram` or `_FeatureGram`).
    """
    b, n, q = Y0.shape
    Y0t = np.ascontiguousarray(np.swapaxes(Y0, 1, 2))            # (b, target, n)
    S = gram.quadratic(Y0t, Y0)                                   # y_kᵀ K_k y_k
    T_hat = np.zeros((b, n_components, n))                        # orthonormal x_scores
    T_load = np.zeros((b, n_components, n))                       # x_scores / tᵀt
    Q = np.zeros((b, q, n_components))                            # y_loadings
    live_cols = np.ones((b, q))                                   # 0: a column sklearn zeroed
    col_ss0 = np.einsum("bnq,bnq->bq", Y0, Y0)
    col_ss = col_ss0.copy()                                       # ‖y_k column‖², tracked
    trace0 = gram.trace()
    trace = trace0.copy()                                         # tr K_k, tracked
    alive = np.ones(b, bool)
    n_capped = 0

    def project(v, k):                                            # D_k v, in place
        if k:
            v -= np.vecmat(np.matvec(T_hat[:, :k], v), T_hat[:, :k])
        return v

    for k in range(n_components):
        # sklearn zeroes the y_k columns whose entries are all below 10 eps and starts the
        # power iteration at the first column with an entry above eps. Only columns whose
        # tracked norm has (nearly) vanished can qualify; those are checked exactly.
        nonzero = live_cols > 0
        suspect = nonzero & (col_ss <= 64 * _EPS * col_ss0 + n * (1e3 * _EPS) ** 2)
        for f, j in zip(*np.nonzero(suspect)):
            top = np.abs(Y0[f, :, j] - T_hat[f, :k].T @ (T_hat[f, :k] @ Y0[f, :, j])).max()
            if top < 10 * _EPS:
                live_cols[f, j], col_ss[f, j] = 0.0, 0.0
                S[f, j, :], S[f, :, j] = 0.0, 0.0
            nonzero[f, j] = top >= 10 * _EPS
        # "y residual is constant" ends sklearn's loop; an exhausted X would only add noise.
        alive &= nonzero.any(1) & (trace > 1e-12 * trace0)
        if not alive.any():
            break
        z, capped = _power_iteration(S, nonzero.argmax(1), alive, max_iter, tol)
        n_capped += capped
        u = project(np.matvec(Y0, z * live_cols), k)              # y_k z
        Ku = project(gram.matvec(u), k)                           # K_k u
        norm2 = np.vecdot(u, Ku)                                  # ‖X_kᵀ u‖²
        ok = alive & (norm2 > 0)
        inv = np.where(ok, 1.0 / np.sqrt(np.where(ok, norm2, 1.0)), 0.0)[:, None]
        c = np.where(ok[:, None], u * inv, 0.0)                   # x_weights w = X_kᵀ c = X₀ᵀ c
        t = np.where(ok[:, None], Ku * inv, 0.0)                  # x_scores t = K_k c
        tt = np.where(ok, np.vecdot(t, t), 1.0)
        a = project(gram.matvec(t), k)                            # K_k t
        gh = np.matmul(Y0t, np.stack([t, a], -1)) * live_cols[..., None]
        g, h = gh[..., 0], gh[..., 1]                             # y_kᵀ t, y_kᵀ K_k t
        ta = np.vecdot(t, a)
        A[..., k] = c
        T_load[:, k] = t / tt[:, None]
        T_hat[:, k] = t / np.sqrt(tt)[:, None]
        Q[..., k] = g / tt[:, None]
        # S_{k+1} = y_kᵀ P K_k P y_k = S_k − g h̃ᵀ − h̃ gᵀ, h̃ = (h − (tᵀa / 2tᵀt) g) / tᵀt
        h_tilde = (h - (0.5 * ta / tt)[:, None] * g) / tt[:, None]
        S -= np.matmul(np.stack([g, h_tilde], -1), np.stack([h_tilde, g], 1))
        col_ss -= g * g / tt[:, None]
        trace -= np.where(ok, ta / tt, 0.0)
    # x_loadingsᵀ x_weights is unit upper triangular when every component is live (p_kᵀw_k = 1,
    # p_iᵀw_j = 0 for i > j); sklearn's pinv is then the inverse, and a solve is cheaper.
    M = gram.sandwich(T_load, A)
    Qt = np.swapaxes(Q, 1, 2)
    regular = np.all(np.abs(np.diagonal(M, axis1=1, axis2=2) - 1.0) < 1e-8, axis=1)
    R[regular] = np.linalg.solve(M[regular], Qt[regular])
    R[~regular] = np.linalg.pinv(M[~regular]) @ Qt[~regular]
    return n_capped


def _power_iteration(S, start, alive, max_iter, tol):
    """sklearn's power iteration for the first PLS weights, in the target space.

    sklearn (``_get_first_singular_vectors_power_method``, mode A) starts from the first
    non-constant y column j and iterates u ← y_k y_kᵀ K_k u, with x_weights w ∝ X_kᵀ u,
    until ‖w_i − w_{i−1}‖² < tol. Every iterate stays in the span of y_k: u_i = y_k z_i
    with z_i ∝ S^i e_j, S = y_kᵀ K_k y_k, and with P(m) = e_jᵀ S^m e_j,
    ‖w_i − w_{i−1}‖² = 2 − 2 P(2i) / sqrt(P(2i+1) P(2i−1)). The iterates y_i = (S/tr S)^i e_j
    are computed `_PLS_BLOCK` at a time, the rule is checked for the whole block at once,
    and finished fits leave the batch.

    Parameters
    ----------
    S : ndarray, shape (batch, target, target)
    start : ndarray of int, shape (batch,)
    alive : ndarray of bool, shape (batch,)
        Fits to iterate; the others get e_start.
    max_iter, tol : int, float
        As sklearn's.

    Returns
    -------
    z : ndarray, shape (batch, target)
        ∝ S^i e_start at the stopping iteration i (scale arbitrary).
    n_capped : int
        Fits that reached `max_iter` without converging (sklearn warns for these).
    """
    b, q = S.shape[0], S.shape[1]
    z = np.zeros((b, q))
    z[np.arange(b), start] = 1.0
    if q == 1 or max_iter <= 1:                      # sklearn stops after one iteration if q = 1
        return z, 0
    idx = np.flatnonzero(alive)
    scale = np.trace(S[idx], axis1=1, axis2=2)
    scale[~(scale > 0)] = 1.0
    S_run = S[idx] / scale[:, None, None]            # eigenvalues in [0, 1]: no overflow
    buf = np.empty((_PLS_BLOCK + 2, idx.size, q))
    buf[0] = z[idx]                                  # y_{i0-1}
    np.matvec(S_run, buf[0], out=buf[1])             # y_{i0}
    running = np.ones(idx.size, bool)
    i0 = 1
    with np.errstate(invalid="ignore", divide="ignore", under="ignore"):
        while i0 < max_iter:
            m = min(_PLS_BLOCK, max_iter - i0)          # check iterations i0 .. i0 + m - 1
            for j in range(1, m + 1):
                np.matvec(S_run, buf[j], out=buf[j + 1])
            power = np.vecdot(buf[1:m + 1], buf[1:m + 1])                # P(2i)
            odd = np.vecdot(buf[:m + 1], buf[1:m + 2])                   # P(2i−1), P(2i+1)
            done = ~(2.0 - 2.0 * power / np.sqrt(odd[1:] * odd[:-1]) >= tol)   # NaN: degenerate, done
            hit = done.any(0) & running
            if hit.any():
                rows = np.flatnonzero(hit)
                z[idx[rows]] = buf[1 + done[:, rows].argmax(0), rows]
                running &= ~hit
            i0 += m
            if not running.any():
                return z, 0
            # carry y_{i0-1} and y_{i0}, rescaled together (the rule is scale-free)
            norm = np.sqrt(np.vecdot(buf[m + 1], buf[m + 1]))
            norm[~(norm > 0)] = 1.0
            carry = buf[m:m + 2] / norm[:, None]
            if running.mean() < 0.8:                 # compact the batch
                idx, S_run, carry = idx[running], S_run[running], carry[:, running]
                running = np.ones(idx.size, bool)
                buf = np.empty((_PLS_BLOCK + 2, idx.size, q))
            buf[:2] = carry
    rows = np.flatnonzero(running)                   # sklearn keeps its last iterate, y_{max_iter-1}
    z[idx[rows]] = buf[0, rows]
    return z, rows.size


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


def pls_predict_features(X_train, X_test, Y_train, n_components, max_iter=500, tol=1e-6):
    """PLS regression predictions (sklearn ``PLSRegression(scale=False)``) from the features.

    For sources with fewer features than training stimuli, where this costs less than
    `pls_predict_kernel`; the two agree to rounding.

    Parameters
    ----------
    X_train : ndarray, shape (group, n_train, p)
    X_test : ndarray, shape (group, n_test, p)
    Y_train : ndarray, shape (group, fit, n_train, target)
        Each group's fits share its features (e.g. every trial half of one split).
    n_components : int
        Already clipped with `clip_components`.

    Returns
    -------
    ndarray, shape (group, fit, n_test, target)
    """
    x_mean = X_train.mean(1, keepdims=True)
    coef, y_mean = _pls_feature_fit(X_train - x_mean, np.asarray(Y_train, dtype=np.float64),
                                    n_components, max_iter, tol)
    return (X_test - x_mean)[:, None] @ coef + y_mean


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

    def predict_from_shared_features(self, X_train, X_test, Y_train):
        """Batched test predictions from features shared by groups of fits; see `pls_predict_features`."""
        self._check_components()
        n_used = clip_components(self.n_components, X_train.shape[-1], X_train.shape[-2])
        return pls_predict_features(X_train, X_test, Y_train, n_used, self.max_iter, self.tol)


MAPPINGS = {"ridge": RidgeMap, "ridge_cv": RidgeCVMap, "pls": PLSMap}
"""Kernel-form mappings by name: each has ``predict_from_kernel(K_train, K_cross, Y_train,
n_features)``; PLS also has ``predict_from_shared_features``, which the engine uses for model
sources narrower than the training set. Feature-space mappings are in `FEATURE_MAPPINGS`; "rsa" and "cka" fit nothing."""

FEATURE_MAPPINGS = {"one_to_one": OneToOneMap}
"""Mappings that need the source features themselves: each has
``predict_from_features(X_train, X_test, Y_train)``."""
