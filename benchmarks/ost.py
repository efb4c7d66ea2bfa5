"""The OST decoder at the spec's scale: one time point of I1 d′ (PCA + linear SVM, 10 splits).

Spec §4.3: 1320 images in 10 categories, PCA to 1000 dimensions, a linear SVM with Platt
probabilities, every image tested (here 5 folds × 2 repeats), on 2048 random-feature units with
a category signal. Ours (`pipeline.compare.ost.decoder_probabilities`): scikit-learn's
``SVC(kernel="linear")`` under ``CalibratedClassifierCV``. Alternative: the same SVC on the
precomputed Gram matrix of the PCA scores (one BLAS product per fit instead of libsvm's own dot
products), not (yet) in the pipeline: it was slower at 660 images and faster at 1320 (see
benchmarks/README.md). Prints both times, their ratio and the largest difference in class
probability and in d′.

    PYTHONPATH=. python benchmarks/ost.py [--images 1320] [--units 2048]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold
from sklearn.svm import SVC

from pipeline.compare.ost import decoder_probabilities, i1_dprime, two_afc_choices


def precomputed_kernel(X, labels, *, n_components, C, n_folds, n_repeats, seed):
    """The decoder with the linear kernel computed by numpy, otherwise as ours."""
    total = np.zeros((len(X), labels.max() + 1))
    folds = RepeatedStratifiedKFold(n_splits=n_folds, n_repeats=n_repeats, random_state=seed)
    for train, test in folds.split(X, labels):
        pca = PCA(n_components=min(n_components, len(train), X.shape[1]), random_state=seed)
        a = pca.fit_transform(X[train])
        b = pca.transform(X[test])
        scale = np.sqrt(np.mean(np.sum(a ** 2, axis=1)))
        a, b = a / scale, b / scale
        svm = CalibratedClassifierCV(SVC(kernel="precomputed", C=C), method="sigmoid", ensemble=False,
                                     cv=StratifiedKFold(5, shuffle=True, random_state=seed))
        svm.fit(a @ a.T, labels[train])
        total[test] += svm.predict_proba(b @ a.T)
    return total / n_repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1320)
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--categories", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = np.arange(args.images) % args.categories
    X = rng.normal(size=(args.categories, args.units))[labels] * 0.15 + rng.normal(size=(args.images, args.units))
    settings = dict(n_components=1000, C=1.0, n_folds=5, n_repeats=2, seed=0)
    start = time.perf_counter()
    ours = decoder_probabilities(X, labels, **settings)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    other = precomputed_kernel(X, labels, **settings)
    t_other = time.perf_counter() - start
    d_ours = i1_dprime(two_afc_choices(ours, labels), labels)
    d_other = i1_dprime(two_afc_choices(other, labels), labels)
    print(f"OST decoder, {args.images} images x {args.units} units, {args.categories} categories, "
          f"5 folds x 2 repeats: ours (linear kernel) {t_ours:.1f}s  precomputed kernel "
          f"{t_other:.1f}s  ours/precomputed time {t_ours / t_other:.2f}  "
          f"max|dp| {np.abs(ours - other).max():.1e}  max|dd'| {np.abs(d_ours - d_other).max():.1e}")


if __name__ == "__main__":
    main()
