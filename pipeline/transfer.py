"""Linear-evaluation transfer: a linear classifier on a frozen backbone's penultimate features.

An evaluation of trained checkpoints, not a training objective (rule and CLI verb `transfer`).

Spec §2.4 "Linear-evaluation transfer" (Table 3.3 column 1): freeze the backbone and train a
linear readout for object categories. Here the features are the readout's input (the
penultimate layer) of a checkpoint's backbone on the unaugmented train and test stimulus sets,
standardised on the training features, and the classifier is scikit-learn's multinomial
LogisticRegression (L2, C = `C`, lbfgs): a convex fit with one answer, so the score is
reproducible. Top-1 on the test set is reported with chance = the test frequency of its most
common class (1/K for balanced sets).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from pipeline.checkpoints import load_backbone, read_checkpoint, run_epochs
from pipeline.data.stimuli import check_label_level, read_stimuli, to_tensor
from pipeline.io import write_csv
from pipeline.objectives.augment import preprocess
from pipeline.objectives.base import readout_features
from pipeline.runtime import resolve_device

log = logging.getLogger(__name__)

COLUMNS = ("epoch", "label_level", "top1", "chance")


@torch.no_grad()
def penultimate_features(backbone, images: torch.Tensor, preprocessing: dict,
                         batch_size: int = 256) -> np.ndarray:
    """Readout-input features (stimulus, feature) of uint8 images (stimulus, channel, y, x)."""
    device = next(backbone.parameters()).device
    parts = [readout_features(backbone, preprocess(images[s:s + batch_size].to(device),
                                                   preprocessing))[0].cpu().numpy()
             for s in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float64)


def linear_probe(train_x, train_y, test_x, test_y, *, C: float = 1.0, max_iter: int = 1000
                 ) -> float:
    """Test top-1 of a logistic regression on standardised features fit to (train_x, train_y)."""
    classifier = make_pipeline(StandardScaler(),
                               LogisticRegression(C=C, max_iter=max_iter))
    classifier.fit(train_x, train_y)
    return float((classifier.predict(test_x) == test_y).mean())


def _chosen(model_dir, epochs) -> list[Path]:
    """The run's checkpoints of the requested epochs: "final", "all" or a list of ints."""
    by_epoch = run_epochs(model_dir)
    if epochs == "final":
        return [by_epoch[max(by_epoch)]]
    if epochs == "all":
        return list(by_epoch.values())
    missing = sorted(set(epochs) - by_epoch.keys())
    if missing:
        raise ValueError(f"transfer epochs {missing} have no checkpoint; found epochs "
                         f"{sorted(by_epoch)}")
    return [by_epoch[e] for e in epochs]


def transfer(model_dir, train_path, test_path, out_path, *, epochs="final",
             label_level: str = "subordinate", C: float = 1.0, max_iter: int = 1000,
             device: str = "auto", batch_size: int = 256) -> pd.DataFrame:
    """Linear-evaluation top-1 of a trained model's checkpoints → `transfer.csv`.

    Parameters
    ----------
    model_dir : path-like
        Folder with `epoch_{e:03d}.pt` checkpoints written by `pipeline.train.train`; the
        epochs are those its run.json lists (`pipeline.checkpoints.run_epochs`), never stale
        files of an earlier run, and each checkpoint is checked against its sha256 record.
    train_path, test_path : path-like
        Stimulus sets the classifier is fit and scored on (label coord `label_level`).
    out_path : path-like
        CSV with columns epoch, label_level, top1, chance; one row per requested epoch.
    epochs : "final", "all" or list of int
        Checkpoints to evaluate.
    label_level : str
        Category level to classify.
    C, max_iter : numbers
        LogisticRegression's inverse L2 strength and iteration cap.
    device : str
        "auto", "cpu" or "cuda", for the feature extraction.
    batch_size : int
        Stimuli per forward pass.
    """
    check_label_level(label_level)
    chosen = _chosen(model_dir, epochs)
    device = resolve_device(device)
    train_ds = read_stimuli(train_path, label_level)
    test_ds = read_stimuli(test_path, label_level)
    train_y = train_ds[label_level].values.astype(str)
    test_y = test_ds[label_level].values.astype(str)
    train_images, test_images = to_tensor(train_ds["image"].values), to_tensor(test_ds["image"].values)
    _, counts = np.unique(test_y, return_counts=True)
    chance = counts.max() / counts.sum()
    rows = []
    with logging_redirect_tqdm():
        for path in tqdm(chosen, desc=f"transfer {Path(model_dir).name}", unit="checkpoint",
                         disable=None):
            checkpoint = read_checkpoint(path)
            backbone = load_backbone(checkpoint, device)
            pre = checkpoint["preprocessing"]
            top1 = linear_probe(penultimate_features(backbone, train_images, pre, batch_size),
                                train_y,
                                penultimate_features(backbone, test_images, pre, batch_size),
                                test_y, C=C, max_iter=max_iter)
            rows.append({"epoch": int(checkpoint["epoch"]), "label_level": label_level,
                         "top1": top1, "chance": chance})
            log.info("%s: linear-evaluation top-1 %.3f at %s level (chance %.3f)", path, top1,
                     label_level, chance)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    write_csv(table, out_path)
    return table
