"""Path-integration objectives (spec §3.5, eq. 4.13/4.14) and the task metric (eq. 4.16).

- ``placecell`` (Banino et al. 2018): softmax cross-entropy between the DoG place-cell code of
  the true positions and the readout's logits, averaged over the steps and trajectories; the
  initial state reads the place code at t = 0.
- ``position`` (Cueva & Wei 2018): squared error of the readout (x, y) in metres, summed over
  x and y and averaged over steps and trajectories; the initial state reads the start position.

Both add λ·Σ‖W_rec‖² over the recurrent matrices (λ = 1e-4). The decoding error is the mean
Euclidean distance between decoded and true positions over steps and trajectories, the decoded
position being the mean centre of the top-3 place-cell outputs (or the readout itself for
``position``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pipeline.mec.placecells import PlaceCells
from pipeline.mec.trajectories import Trajectories
from pipeline.models.names import PATH_OBJECTIVES

L2_RECURRENT = 1e-4

__all__ = ["L2_RECURRENT", "PathIntegrationTask", "decoding_error"]


def decoding_error(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance (m) between positions (..., 2) (spec eq. 4.16)."""
    return torch.linalg.vector_norm(predicted - true, dim=-1).mean()


@dataclass
class PathIntegrationTask:
    """What a path integrator is given and trained towards, for one objective.

    Parameters
    ----------
    objective : {"placecell", "position"}
    place_cells : PlaceCells
        The targets' code (also decodes ``placecell`` outputs).
    l2 : float
        Weight of the L2 penalty on the recurrent matrices.
    """

    objective: str
    place_cells: PlaceCells
    l2: float = L2_RECURRENT

    def __post_init__(self):
        if self.objective not in PATH_OBJECTIVES:
            raise ValueError(f"unknown path-integration objective {self.objective!r}; known: "
                             f"{', '.join(PATH_OBJECTIVES)}")

    @property
    def n_init(self) -> int:
        """Width of the initial-state code (the network's `n_init`)."""
        return self.place_cells.n_cells if self.objective == "placecell" else 2

    @property
    def n_out(self) -> int:
        """Readout width: Np logits, or x and y."""
        return self.n_init

    def inputs(self, traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor]:
        """(velocity (traj, step, 2) m/s, initial code (traj, n_init))."""
        init = (self.place_cells.activation(traj.start) if self.objective == "placecell"
                else traj.start)
        return traj.velocity, init

    def targets(self, traj: Trajectories) -> torch.Tensor:
        """(traj, step, n_out): the place code or the position after each step."""
        return (self.place_cells.activation(traj.position) if self.objective == "placecell"
                else traj.position)

    def task_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with soft targets, or the squared position error."""
        if self.objective == "placecell":
            return -(target * F.log_softmax(output, dim=-1)).sum(-1).mean()
        return ((output - target) ** 2).sum(-1).mean()

    def loss(self, model, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Task loss + λ Σ ‖W_rec‖²."""
        penalty = sum((w ** 2).sum() for w in model.recurrent_weights())
        return self.task_loss(output, target) + self.l2 * penalty

    def decode(self, output: torch.Tensor) -> torch.Tensor:
        """Positions (traj, step, 2) m read from the readout."""
        return self.place_cells.decode(output) if self.objective == "placecell" else output
