"""Linear centred kernel alignment (CKA) between two representations of the same stimuli.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) for linear kernels K = X Xᵀ and
L = Y Yᵀ over stimuli (Kornblith et al. 2019). Two estimators of HSIC:

- biased (Gretton et al. 2005): ⟨H K H, H L H⟩_F with H = I - 11ᵀ/n, up to a factor that
  cancels in the ratio;
- unbiased (Song et al. 2012, eq. 5; used for CKA by Nguyen et al. 2021 and as
  Brain-Score's default): with K̃, L̃ the kernels with their diagonals set to zero,

      HSIC_u = [ tr(K̃ L̃) + (1ᵀK̃1)(1ᵀL̃1) / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1 ] / (n(n-3)).

Nothing is fitted, so these are functions (STYLE §8). Working from kernels lets a pooled
population's kernel (the sum of its animals' kernels) be used without concatenation.
"""

from __future__ import annotations

import numpy as np


def _hsic_biased(K, L):
    """⟨H K H, H L H⟩_F (the n⁻² and (n-1)⁻² factors cancel in CKA)."""
    def centre(M):
        row = M.mean(-1, keepdims=True)
        return M - row - np.swapaxes(row, -1, -2) + row.mean(-2, keepdims=True)
    return (centre(K) * centre(L)).sum((-2, -1))


def _hsic_unbiased(K, L):
    """Song et al. (2012) unbiased HSIC of symmetric kernels (..., n, n)."""
    n = K.shape[-1]
    diag = np.arange(n)
    K, L = K.copy(), L.copy()
    K[..., diag, diag] = 0.0
    L[..., diag, diag] = 0.0
    k_sum, l_sum = K.sum(-1), L.sum(-1)                               # K̃1, L̃1
    trace = (K * L).sum((-2, -1))                                     # tr(K̃ L̃), both symmetric
    cross = k_sum.sum(-1) * l_sum.sum(-1) / ((n - 1) * (n - 2))
    middle = 2.0 / (n - 2) * (k_sum * l_sum).sum(-1)                  # 1ᵀ K̃ L̃ 1
    return (trace + cross - middle) / (n * (n - 3))


def cka_from_grams(K, L, unbiased=False):
    """Linear CKA from Gram matrices over the same stimuli.

    Parameters
    ----------
    K, L : ndarray, shape (..., stimulus, stimulus)
        Symmetric Gram matrices X Xᵀ and Y Yᵀ (uncentred or centred: the result is the
        same); leading axes broadcast.
    unbiased : bool
        Use the unbiased HSIC estimator (Song et al. 2012), which needs at least 4 stimuli.

    Returns
    -------
    float or ndarray, shape (...)
        In [0, 1] for the biased estimator; the unbiased one can fall slightly below 0. NaN
        where a representation is constant over stimuli (or where an unbiased self-HSIC
        estimate is not positive).
    """
    K, L = np.asarray(K, dtype=np.float64), np.asarray(L, dtype=np.float64)
    if K.ndim < 2 or K.shape[-1] != K.shape[-2] or L.shape[-2:] != K.shape[-2:]:
        raise ValueError(f"cka_from_grams needs Gram matrices of shape (..., stimulus, stimulus) over the "
                         f"same stimuli; got shapes {K.shape} and {L.shape}.")
    n = K.shape[-1]
    if unbiased and n < 4:
        raise ValueError(f"unbiased CKA needs at least 4 stimuli; got {n}.")
    hsic = _hsic_unbiased if unbiased else _hsic_biased
    with np.errstate(invalid="ignore", divide="ignore"):
        return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))

