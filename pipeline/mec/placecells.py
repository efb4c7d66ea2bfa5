"""Place-cell targets of path integration (spec §3.5): difference-of-Gaussians codes.

Np = 512 centres uniform in the training arena (seed 0). The code of a position x is

    p(x) = softmax_i(−‖x − c_i‖² / 2σ²) − softmax_i(−‖x − c_i‖² / (2·s·σ²)),

shifted by its minimum over cells so it is non-negative, and normalised to sum 1 (σ = 0.12 m,
surround scale s = 2; released code ``place_cells.py``). The softmax is over cells, so the code
is a probability vector: the target of the softmax cross-entropy loss. The top-3 decoder
(eq. 4.16) reads a position back as the mean centre of the 3 most active outputs.
"""

from __future__ import annotations

import numpy as np
import torch

N_CELLS = 512
SIGMA = 0.12            # m
SURROUND = 2.0

__all__ = ["PlaceCells", "decode_top_k"]


class PlaceCells:
    """Difference-of-Gaussians place cells with fixed centres.

    Parameters
    ----------
    n_cells : int
        Np.
    width, height : float
        Arena (m) the centres are drawn in (uniformly); height None = width.
    sigma : float
        Centre width (m).
    surround : float
        Surround scale s (the surround's variance is s·σ²); None or 0: plain Gaussians (no
        surround subtracted), still normalised.
    seed : int
        Seed of the centres (numpy RandomState, as the released code).
    track : bool
        1-D track: centres on y = 0 along x.

    Attributes
    ----------
    centres : Tensor (cell, 2)
        m, arena centred on 0.
    """

    def __init__(self, n_cells: int = N_CELLS, *, width: float = 2.2, height: float | None = None,
                 sigma: float = SIGMA, surround: float | None = SURROUND, seed: int = 0,
                 track: bool = False):
        if isinstance(n_cells, bool) or not isinstance(n_cells, int) or n_cells < 3:
            raise ValueError(f"place cells: n_cells must be an int >= 3 (the top-3 decoder); "
                             f"got {n_cells!r}")
        if not sigma > 0:
            raise ValueError(f"place cells: sigma must be > 0 m; got {sigma!r}")
        if surround is not None and surround != 0 and not surround > 1:
            raise ValueError(f"place cells: surround must be > 1 (a wider surround) or null; "
                             f"got {surround!r}")
        height = width if height is None else height
        rng = np.random.RandomState(seed)
        x = rng.uniform(-width / 2, width / 2, n_cells)
        y = np.zeros(n_cells) if track else rng.uniform(-height / 2, height / 2, n_cells)
        self.centres = torch.as_tensor(np.stack([x, y], axis=1), dtype=torch.float32)
        self.n_cells, self.sigma, self.surround = n_cells, float(sigma), surround or None
        self.width, self.height = float(width), float(height)

    def to(self, device) -> PlaceCells:
        """Move the centres to `device` (in place); returns self."""
        self.centres = self.centres.to(device)
        return self

    def activation(self, position: torch.Tensor) -> torch.Tensor:
        """The code of positions (..., 2) m → (..., cell), non-negative, summing to 1."""
        d2 = ((position[..., None, :] - self.centres) ** 2).sum(-1)
        out = torch.softmax(-d2 / (2 * self.sigma ** 2), dim=-1)
        if self.surround:
            out = out - torch.softmax(-d2 / (2 * self.surround * self.sigma ** 2), dim=-1)
            out = out - out.min(dim=-1, keepdim=True).values
        return out / out.sum(dim=-1, keepdim=True)

    def decode(self, activity: torch.Tensor, k: int = 3) -> torch.Tensor:
        """Positions (..., 2) read from place-cell activity (..., cell): `decode_top_k`."""
        return decode_top_k(activity, self.centres, k)


def decode_top_k(activity: torch.Tensor, centres: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean centre of the k most active cells (spec §3.7, eq. 4.16; k = 3)."""
    idx = torch.topk(activity, k=k, dim=-1).indices
    return centres[idx].mean(-2)
