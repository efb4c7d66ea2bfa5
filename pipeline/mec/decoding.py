"""The path integrators' task metric over training (spec §3.7, eq. 4.16).

The decoding error of each stored checkpoint: the mean Euclidean distance between the true
position and the mean centre of the top-3 place-cell outputs (the readout itself for the
Position loss), over all steps of `n_batches` × `batch_size` held-out trajectories in the
training arena (spec: 100 × 200 = 20,000). The trajectories come from one fixed seed, so
every model and epoch is measured on the same paths.
"""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from pipeline.checkpoints import run_epochs
from pipeline.mec.training import EVAL_SEED, evaluate, load_path_integrator
from pipeline.models.names import parse_model_name

log = logging.getLogger(__name__)

__all__ = ["decoding_table"]


def decoding_table(model_dir, *, n_batches: int = 100, batch_size: int = 200,
                   epochs="ends", device="cpu") -> pd.DataFrame:
    """Decoding error of the checkpoints of a path-integrator run.

    Parameters
    ----------
    model_dir : path-like
        results/mec/models/{model}.
    n_batches, batch_size : int
        Held-out trajectories (sequence length and arena: the run's).
    epochs : "all", "ends", "final" or list of int
        Checkpoints to measure.
    device : str or torch.device

    Returns
    -------
    pandas.DataFrame
        Columns model, arch, objective, rule, seed, epoch, loss,
        error_cm, n_trajectories.
    """
    stored = run_epochs(model_dir)
    keys = list(stored)
    chosen = {"all": keys, "final": keys[-1:], "ends": sorted({keys[0], keys[-1]})}.get(
        epochs, epochs) if isinstance(epochs, str) else list(epochs)
    if isinstance(chosen, str):
        raise ValueError(f"decoding epochs must be 'all', 'ends', 'final' or a list; got {epochs!r}")
    rows = []
    for epoch in tqdm(chosen, desc=f"decoding {model_dir}", unit="epoch", disable=None):
        if epoch not in stored:
            raise ValueError(f"{model_dir}: epoch {epoch} is not stored (epochs {keys})")
        model, task, header = load_path_integrator(stored[epoch], device)
        s = header["settings"]
        loss, error = evaluate(model, task, n_batches=n_batches, batch_size=batch_size,
                               n_steps=s["n_steps"], width=s["arena"], seed=EVAL_SEED)
        rows.append({"model": header["model_name"], "arch": header["arch"],
                     "objective": header["objective"], "rule": header["rule"],
                     "seed": parse_model_name(header["model_name"]).seed, "epoch": epoch,
                     "loss": loss, "error_cm": 100.0 * error,
                     "n_trajectories": n_batches * batch_size})
        log.info("%s epoch %d: decoding error %.2f cm over %d trajectories",
                 header["model_name"], epoch, 100 * error, n_batches * batch_size)
    return pd.DataFrame(rows)
