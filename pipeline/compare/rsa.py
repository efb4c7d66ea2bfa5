"""Representational similarity analysis: RDMs, RDM comparisons and RSA noise ceilings (spec §1.5).

Conventions follow rsatoolbox (anchors §6) where it has one: the correlation RDM is
``calc_rdm(method='correlation')``, the comparisons are ``rsatoolbox.rdm.compare`` ('corr',
'spearman', 'tau-a', 'cosine'), and the noise ceiling is ``boot_noise_ceiling``, with each
subject's RDM normalised the way ``pool_rdm`` does before averaging. Everything is batched
over leading axes. RDMs are either square, (..., stimulus, stimulus), or condensed,
(..., pair): the upper triangle without the diagonal, row by row (the order of
``scipy.spatial.distance.squareform`` and of rsatoolbox's RDM vectors).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

RDM_METRICS = ("correlation", "spearman", "cosine", "euclidean")
COMPARE_METHODS = ("pearson", "spearman", "kendall_tau_a", "cosine", "dot")


def upper_tri(D):
    """Condensed RDMs: the upper triangles (diagonal excluded) of square ones, row by row.

    Parameters
    ----------
    D : ndarray, shape (..., stimulus, stimulus)

    Returns
    -------
    ndarray, shape (..., stimulus · (stimulus - 1) / 2)
    """
    D = np.asarray(D)
    if D.ndim < 2 or D.shape[-1] != D.shape[-2]:
        raise ValueError(f"square RDMs must have shape (..., stimulus, stimulus); got {D.shape}.")
    iu = np.triu_indices(D.shape[-1], k=1)
    return D[..., iu[0], iu[1]]


def _similarity_to_rdm(S, condensed):
    """1 - S with an exact-zero diagonal, square or condensed."""
    D = 1.0 - S
    n = D.shape[-1]
    D[..., np.arange(n), np.arange(n)] = 0.0
    return upper_tri(D) if condensed else D


def rdm(X, metric="correlation", *, condensed=False):
    """Representational dissimilarity matrices of stimulus-by-unit responses.

    Parameters
    ----------
    X : ndarray, shape (..., stimulus, unit)
        Leading axes are separate populations.
    metric : {"correlation", "spearman", "cosine", "euclidean"}
        "correlation": 1 - Pearson r between two stimuli's population patterns (spec §1.5;
        rsatoolbox ``calc_rdm(method='correlation')``, scipy ``pdist(metric='correlation')``).
        "spearman": 1 - Spearman ρ (patterns ranked over units). "cosine": 1 - cosine
        similarity. "euclidean": Euclidean distance, as scipy's ``pdist``; rsatoolbox's
        'euclidean' is instead the squared distance divided by the number of units.
    condensed : bool
        Return condensed vectors (..., pair) instead of square matrices.

    Returns
    -------
    ndarray, shape (..., stimulus, stimulus) or (..., pair)
        NaN in the rows of stimuli whose pattern is constant ("correlation", "spearman") or
        zero ("cosine"); the diagonal is 0.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"rdm needs responses of shape (..., stimulus, unit); got {X.shape}.")
    if metric not in RDM_METRICS:
        raise ValueError(f"rdm metric must be one of {RDM_METRICS}; got {metric!r}.")
    if metric == "euclidean":
        # Distances do not change when the mean pattern is subtracted; doing so first keeps
        # the Gram-matrix expansion from cancelling large offsets.
        X = X - X.mean(-2, keepdims=True)
        G = X @ np.swapaxes(X, -1, -2)
        sq = np.diagonal(G, axis1=-2, axis2=-1)
        D = np.sqrt(np.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * G, 0.0))
        n = D.shape[-1]
        D[..., np.arange(n), np.arange(n)] = 0.0
        return upper_tri(D) if condensed else D
    if metric == "spearman":
        X = rankdata(X, axis=-1)
    if metric in ("correlation", "spearman"):
        X = X - X.mean(-1, keepdims=True)
    G = X @ np.swapaxes(X, -1, -2)
    norm = np.sqrt(np.diagonal(G, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        S = G / (norm[..., :, None] * norm[..., None, :])
    return _similarity_to_rdm(S, condensed)


def rdm_from_gram(G, s, n_units, *, condensed=False):
    """Correlation RDM from sufficient statistics, so that pooled populations need no concatenation.

    Parameters
    ----------
    G : ndarray, shape (..., stimulus, stimulus)
        X Xᵀ summed over units.
    s : ndarray, shape (..., stimulus)
        Sum over units of each stimulus's responses.
    n_units : int or ndarray
        Number of units.
    condensed : bool
        Return condensed vectors (..., pair) instead of square matrices.

    Returns
    -------
    ndarray, shape (..., stimulus, stimulus) or (..., pair)
        1 - Pearson r between stimuli, as `rdm` with metric "correlation".
    """
    G = np.asarray(G, dtype=np.float64)
    n_units = np.asarray(n_units, dtype=np.float64)
    mean = np.asarray(s, dtype=np.float64) / n_units[..., None]
    cov = G / n_units[..., None, None] - mean[..., :, None] * mean[..., None, :]
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _similarity_to_rdm(cov / (sd[..., :, None] * sd[..., None, :]), condensed)


# ---------------------------------------------------------------- comparisons

def _pearson(x, y):
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / np.sqrt((x * x).sum(-1) * (y * y).sum(-1))


def _tied_pairs(sorted_rows):
    """Pairs of equal entries per row, Σ c(c-1)/2 over the runs of equal values of sorted rows."""
    new = np.ones(sorted_rows.shape, bool)
    new[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    position = np.broadcast_to(np.arange(sorted_rows.shape[1]), sorted_rows.shape)
    start = np.maximum.accumulate(np.where(new, position, 0), axis=1)
    return (position - start).sum(1)                  # each entry counts its earlier equals


def _dense_ranks(v):
    """Ranks 0, 1, ... of each row's distinct values (equal values share a rank)."""
    order = np.argsort(v, axis=1, kind="stable")
    sorted_v = np.take_along_axis(v, order, 1)
    new = np.ones(v.shape, bool)
    new[:, 1:] = sorted_v[:, 1:] != sorted_v[:, :-1]
    ranks = np.empty(v.shape, np.int64)
    np.put_along_axis(ranks, order, np.cumsum(new, axis=1) - 1, 1)
    return ranks


def _strict_inversions(r):
    """Pairs i < j with r[i] > r[j], per row of non-negative integers r (B, m).

    Bottom-up merge sort, vectorised over rows and blocks: at the level with block size s,
    the two sorted halves of every block are merged by one stable sort of keys offset by
    block (timsort merges the sorted runs in linear time). Keys carry the half in their
    lowest bit, so on equal values the left element sorts first; a right element then has
    (merged position - its index among the right elements) left elements at most as large,
    and the rest are inversions. Each pair is counted at the one level where it first lies
    in the two halves of a block: O(m log m) per row.
    """
    n_rows, m = r.shape
    R = int(r.max(initial=0)) + 1
    rows = np.arange(n_rows)[:, None]
    position = np.arange(m)
    total = np.zeros(n_rows, np.int64)
    s = 1
    while s < m:
        block, half = position // (2 * s), (position // s) % 2
        n_right = np.bincount(block, weights=half).astype(np.int64)          # per block
        offset = (rows * (int(block[-1]) + 1) + block) * R
        merged = np.sort(((offset + r) * 2 + half).ravel(), kind="stable").reshape(n_rows, m)
        is_right = merged & 1
        at_most = ((position - 2 * s * block) * is_right).sum(1) - (n_right * (n_right - 1) // 2).sum()
        total += s * n_right.sum() - at_most                # left halves are full where n_right > 0
        r = (merged >> 1) - offset                          # sorted within blocks of 2s
        s *= 2
    return total


def _kendall_tau_a(x, y):
    """Kendall τ-a of rows of x and y (B, m): (concordant - discordant) / (m(m-1)/2).

    Ties are counted as neither, and the denominator is not corrected for them
    (rsatoolbox 'tau-a'; Nili et al. 2014). Exact integer counts: sort by (x, y), then
    discordant pairs are strict inversions of y, and
    C - D = M - ties_x - ties_y + ties_xy - 2 D with M = m(m-1)/2.
    """
    n_rows, m = x.shape
    rx, ry = _dense_ranks(x), _dense_ranks(y)
    joint = rx * (int(ry.max(initial=0)) + 1) + ry
    order = np.argsort(joint, axis=1)
    discordant = _strict_inversions(np.take_along_axis(ry, order, 1))
    ties_x = _tied_pairs(np.take_along_axis(rx, order, 1))
    ties_xy = _tied_pairs(np.take_along_axis(joint, order, 1))
    ties_y = _tied_pairs(np.sort(ry, axis=1))
    pairs = m * (m - 1) // 2
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = (pairs - ties_x - ties_y + ties_xy - 2 * discordant) / pairs
    return np.where(np.isnan(x).any(1) | np.isnan(y).any(1), np.nan, tau)


def compare_rdms(a, b, method="pearson", *, condensed=False):
    """Similarity of RDMs over their upper triangles, diagonal excluded (spec §1.5).

    Parameters
    ----------
    a, b : ndarray, shape (..., stimulus, stimulus), or (..., pair) if `condensed`
        Broadcast against each other.
    method : {"pearson", "spearman", "kendall_tau_a", "cosine", "dot"}
        "pearson" (rsatoolbox 'corr'), "spearman" (Pearson of average ranks, rsatoolbox
        'spearman'), "kendall_tau_a" (rsatoolbox 'tau-a': ties not corrected for),
        "cosine" (rsatoolbox 'cosine'), "dot" (the plain inner product Σ a·b over pairs).
    condensed : bool
        Whether `a` and `b` are condensed vectors rather than square matrices.

    Returns
    -------
    float or ndarray, shape (...)
        NaN where a correlation or cosine is undefined (a constant or zero RDM; rsatoolbox
        returns 0 for a zero RDM's cosine) and where an RDM has a NaN entry.
    """
    if method not in COMPARE_METHODS:
        raise ValueError(f"compare_rdms method must be one of {COMPARE_METHODS}; got {method!r}.")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not condensed:
        a, b = upper_tri(a), upper_tri(b)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"compare_rdms: RDMs have {a.shape[-1]} and {b.shape[-1]} pairs; "
                         "both must come from the same stimuli.")
    if method == "pearson":
        return _pearson(a, b)
    if method == "spearman":
        return _pearson(rankdata(a, axis=-1), rankdata(b, axis=-1))
    if method == "dot":
        return (a * b).sum(-1)
    if method == "cosine":
        with np.errstate(invalid="ignore", divide="ignore"):
            return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    n_pairs = a.shape[-1]
    x = np.broadcast_to(a, batch + (n_pairs,)).reshape(-1, n_pairs)
    y = np.broadcast_to(b, batch + (n_pairs,)).reshape(-1, n_pairs)
    return _kendall_tau_a(x, y).reshape(batch)


# ---------------------------------------------------------------- noise ceiling

def _normalise_for_pooling(v, method):
    """Each subject's RDM as rsatoolbox's ``pool_rdm`` normalises it before averaging.

    "pearson" (rsatoolbox 'corr'): z-scored (population sd); "cosine": divided by its root
    mean square; "spearman" and "kendall_tau_a": average ranks (rsatoolbox warns that the
    τ ceiling then rests on averaged ranks); "dot": unchanged (rsatoolbox has no dot
    product; a plain mean, as its 'euclid' pooling).
    """
    if method == "pearson":
        v = v - v.mean(-1, keepdims=True)
        return v / v.std(-1, keepdims=True)
    if method == "cosine":
        return v / np.sqrt((v * v).mean(-1, keepdims=True))
    if method in ("spearman", "kendall_tau_a"):
        return rankdata(v, axis=-1)
    return v


def rsa_noise_ceiling(rdms, method="pearson", *, per_subject=False):
    """Lower and upper RSA noise ceilings from per-subject RDMs (rsatoolbox ``boot_noise_ceiling``).

    For each subject s, with every RDM first normalised as rsatoolbox's ``pool_rdm`` does for
    `method` (z-scored for "pearson", see `_normalise_for_pooling`):

        upper_s = compare(mean of all subjects' normalised RDMs, RDM_s)
        lower_s = compare(mean of the other subjects' normalised RDMs, RDM_s)

    and the ceilings are the means over subjects. The lower bound leaves subject s out of
    its own reference, so it never sees the compared data (rsatoolbox#95 was a bug where it
    did). Subjects are animals here (anchors §6).

    Parameters
    ----------
    rdms : ndarray, shape (..., subject, pair)
        Condensed RDMs (see `upper_tri`), at least two subjects.
    method : {"pearson", "spearman", "kendall_tau_a", "cosine", "dot"}
        As for `compare_rdms`.
    per_subject : bool
        Return the per-subject values instead of their means.

    Returns
    -------
    lower, upper : ndarray, shape (...), or (..., subject) if `per_subject`
    """
    if method not in COMPARE_METHODS:
        raise ValueError(f"rsa_noise_ceiling method must be one of {COMPARE_METHODS}; got {method!r}.")
    rdms = np.asarray(rdms, dtype=np.float64)
    if rdms.ndim < 2 or rdms.shape[-2] < 2:
        raise ValueError(f"rsa_noise_ceiling needs condensed RDMs of shape (..., subject, pair) with "
                         f"at least 2 subjects; got shape {rdms.shape}.")
    n_subjects = rdms.shape[-2]
    normalised = _normalise_for_pooling(rdms, method)
    total = normalised.sum(-2, keepdims=True)
    upper = compare_rdms(total / n_subjects, rdms, method, condensed=True)
    lower = compare_rdms((total - normalised) / (n_subjects - 1), rdms, method, condensed=True)
    if per_subject:
        return lower, upper
    return lower.mean(-1), upper.mean(-1)
