"""The Conv1D classifier of spec_ch5-6 B.6: one learned 1-D convolution over time, ReLU, optional
pooling over time, then a softmax layer that also reads the layer-position one-hot.

A scikit-learn estimator (so `GridSearchCV` selects its settings like the SVM's and RF's),
trained with Adam on full-batch or mini-batch cross-entropy; the trajectories are z-scored per
statistic and time point with the training examples' mean and std (B.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y
from torch import nn

POOLINGS = ("none", "max", "avg")

__all__ = ["Conv1DClassifier", "POOLINGS"]


class _Net(nn.Module):
    """conv over time → ReLU → pool → [features, position] → linear logits."""

    def __init__(self, n_statistics, n_times, n_position, n_classes, *, filters, kernel,
                 stride, pooling):
        super().__init__()
        self.conv = nn.Conv1d(n_statistics, filters, kernel, stride=stride)
        self.pooling = pooling
        length = (n_times - kernel) // stride + 1
        width = filters * (length if pooling == "none" else 1)
        self.readout = nn.Linear(width + n_position, n_classes)

    def forward(self, series, position):
        h = torch.relu(self.conv(series))
        if self.pooling == "max":
            h = h.amax(2)
        elif self.pooling == "avg":
            h = h.mean(2)
        return self.readout(torch.cat([h.flatten(1), position], 1))


class Conv1DClassifier(ClassifierMixin, BaseEstimator):
    """A 1-D convolution over each example's (statistic, time) trajectories.

    Parameters
    ----------
    n_statistics, n_times : int
        Shape of the trajectories; X holds them flattened statistic-major, followed by the
        position one-hot (any remaining columns).
    filters : int
    kernel_fraction : float
        Kernel length ⌈kernel_fraction · n_times⌉ (B.6: 0.003 … 1 of 21 points).
    stride : int
    pooling : {"none", "max", "avg"}
    lr, batch_size, weight_decay, epochs
        Adam's learning rate and L2 penalty, examples per step, passes over the data.
    random_state : int
        Seeds the initial weights and the batch order.
    """

    def __init__(self, n_statistics=1, n_times=1, filters=20, kernel_fraction=1.0, stride=1,
                 pooling="none", lr=1e-3, batch_size=512, weight_decay=0.0, epochs=400,
                 random_state=0):
        self.n_statistics = n_statistics
        self.n_times = n_times
        self.filters = filters
        self.kernel_fraction = kernel_fraction
        self.stride = stride
        self.pooling = pooling
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.random_state = random_state

    def _split(self, X):
        n_series = self.n_statistics * self.n_times
        if X.shape[1] < n_series:
            raise ValueError(f"Conv1DClassifier: X has {X.shape[1]} columns, fewer than "
                             f"n_statistics · n_times = {n_series}")
        series = X[:, :n_series].reshape(len(X), self.n_statistics, self.n_times)
        return series, X[:, n_series:]

    def _tensors(self, X):
        series, position = self._split(X)
        series = (series - self.mean_) / self.scale_
        return (torch.as_tensor(series, dtype=torch.float32),
                torch.as_tensor(position, dtype=torch.float32))

    def fit(self, X, y):
        """Train on X (example, statistic·time + position) and labels y; returns self."""
        X, y = check_X_y(X, y, dtype=np.float64)
        if self.pooling not in POOLINGS:
            raise ValueError(f"Conv1DClassifier: pooling must be one of {', '.join(POOLINGS)}; "
                             f"got {self.pooling!r}")
        self.classes_, target = np.unique(y, return_inverse=True)
        series, _ = self._split(X)
        self.mean_ = series.mean(0, keepdims=True)
        std = series.std(0, keepdims=True)
        self.scale_ = np.where(std > 0, std, 1.0)
        kernel = min(self.n_times, max(1, math.ceil(self.kernel_fraction * self.n_times)))
        generator = torch.Generator().manual_seed(int(self.random_state))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state))
            self.net_ = _Net(self.n_statistics, self.n_times, X.shape[1] - series[0].size,
                             len(self.classes_), filters=self.filters, kernel=kernel,
                             stride=self.stride, pooling=self.pooling)
        data, position = self._tensors(X)
        target = torch.as_tensor(target)
        optimizer = torch.optim.Adam(self.net_.parameters(), lr=self.lr,
                                     weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(target), generator=generator)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                optimizer.zero_grad()
                loss_fn(self.net_(data[idx], position[idx]), target[idx]).backward()
                optimizer.step()
        self.net_.eval()
        return self

    def predict_proba(self, X):
        """Class probabilities (example, class) in the order of `classes_`."""
        check_is_fitted(self, "net_")
        X = check_array(X, dtype=np.float64)
        with torch.no_grad():
            logits = self.net_(*self._tensors(X))
        return torch.softmax(logits, 1).numpy()

    def predict(self, X):
        """The most probable class of each example."""
        return self.classes_[self.predict_proba(X).argmax(1)]
