"""Path-integration RNNs, the MEC candidate models of spec §3.5 (eq. 4.15).

An arch name is ``{cell}_{nonlinearity}``: cell one of `PATH_CELLS`, nonlinearity one of
`NONLINEARITIES` (``ugrnn_relu``, ``lstm_tanh``, ...), as `pipeline.models.names` registers
them. The network reads 2-D velocity (m/s) at each of the steps of a trajectory:

    velocity → dense M → recurrent cell (state h, the layer ``pre_g``)
             → dense ``g`` with the same nonlinearity (the putative MEC population)
             → linear readout ``dc`` (place-cell logits, or x, y for the Position loss).

The initial state (and an LSTM's cell state) is a linear function of the ground-truth code at
t = 0 (place-cell code or position). Two ungated baselines (spec §3.5): ``rnn`` is the 2-layer
Sorscher/Cueva form, g_{t+1} = φ(W g_t + J v_t) read out by W_out (no dense M, no separate
g layer: its state is ``g``); ``srnn`` puts the same vanilla cell inside the full
M → cell → g stack. Gated cells (released code ``model.py``; gates sigmoid, candidate φ):

    UGRNN  [g, c] = W [x, h] + b;  u = σ(g + 1);  h' = u ∘ h + (1 − u) ∘ φ(c)
    GRU    r, z = σ(W_rz [x, h] + b);  n = φ(W_x x + W_h (r ∘ h) + b);  h' = z ∘ h + (1 − z) ∘ n
    LSTM   i, f, o = σ(·), f with +1 bias;  c' = f ∘ c + i ∘ φ(W [x, h] + b);  h' = o ∘ φ(c')

Every weight is an `nn.Linear` (input and recurrent parts separately, the recurrent ones
without bias), so a learning rule's converter (`pipeline.learning.make_rule(rule).convert`)
swaps them like any vision net's layers, and `recurrent_weights` names the matrices the
L2 penalty (1e-4) acts on.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.names import PATH_CELLS

# Nonlinearity name (names.PATH_NONLINEARITIES) -> module
NONLINEARITIES = {"linear": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}

__all__ = ["NONLINEARITIES", "PathIntegrator", "split_arch"]


def split_arch(arch: str) -> tuple[str, str]:
    """(cell, nonlinearity) of a path-integrator arch name; ValueError naming the known ones."""
    cell, _, act = arch.partition("_")
    if cell not in PATH_CELLS or act not in NONLINEARITIES:
        raise ValueError(f"unknown path-integrator arch {arch!r}: expected {{cell}}_"
                         f"{{nonlinearity}} with cell in {PATH_CELLS} and nonlinearity in "
                         f"{tuple(NONLINEARITIES)}")
    return cell, act


class _Cell(nn.Module):
    """A recurrent cell from nn.Linear parts: `x_proj` (input, with bias) and `h_proj`
    (recurrent, no bias), each producing `gates` blocks of `n` units."""

    def __init__(self, n_in: int, n: int, gates: int, act: nn.Module):
        super().__init__()
        self.n, self.act = n, act
        self.x_proj = nn.Linear(n_in, gates * n)
        self.h_proj = nn.Linear(n, gates * n, bias=False)

    def state_size(self) -> int:
        return self.n


class Vanilla(_Cell):
    def __init__(self, n_in, n, act):
        super().__init__(n_in, n, 1, act)

    def forward(self, x, state):
        h = self.act(self.x_proj(x) + self.h_proj(state))
        return h, h


class UGRNN(_Cell):
    def __init__(self, n_in, n, act):
        super().__init__(n_in, n, 2, act)

    def forward(self, x, h):
        gate, cand = (self.x_proj(x) + self.h_proj(h)).chunk(2, dim=-1)
        u = torch.sigmoid(gate + 1.0)
        h = u * h + (1.0 - u) * self.act(cand)
        return h, h


class GRU(_Cell):
    def __init__(self, n_in, n, act):
        super().__init__(n_in, n, 2, act)
        self.x_cand = nn.Linear(n_in, n)
        self.h_cand = nn.Linear(n, n, bias=False)

    def forward(self, x, h):
        r, z = torch.sigmoid(self.x_proj(x) + self.h_proj(h)).chunk(2, dim=-1)
        cand = self.act(self.x_cand(x) + self.h_cand(r * h))
        h = z * h + (1.0 - z) * cand
        return h, h


class LSTM(_Cell):
    def __init__(self, n_in, n, act):
        super().__init__(n_in, n, 4, act)

    def state_size(self) -> int:
        return 2 * self.n                       # [h, c]

    def forward(self, x, state):
        h, c = state.chunk(2, dim=-1)
        i, f, o, cand = (self.x_proj(x) + self.h_proj(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * self.act(cand)
        h = torch.sigmoid(o) * self.act(c)
        return h, torch.cat([h, c], dim=-1)


_CELL_CLASSES = {"rnn": Vanilla, "srnn": Vanilla, "ugrnn": UGRNN, "gru": GRU, "lstm": LSTM}


class PathIntegrator(nn.Module):
    """Velocity → (dense M) → cell → (dense g) → readout, over the steps of trajectories.

    Parameters
    ----------
    arch : str
        ``{cell}_{nonlinearity}`` (`PATH_ARCHS`).
    n_init : int
        Width of the initial-state input: Np for place-cell targets, 2 for positions.
    n_out : int
        Readout width: Np place-cell logits, or 2.
    n_units : int
        Recurrent units and g units (spec: 4096).
    n_input : int
        Width of the dense input layer M (spec silent; 64 by default).

    Attributes
    ----------
    layer_names : tuple of str
        The layers `run` returns and rate maps are made of: ("pre_g", "g", "dc"); ("g", "dc")
        for ``rnn``, whose state is g.
    """

    def __init__(self, arch: str, n_init: int, n_out: int, *, n_units: int = 4096,
                 n_input: int = 64):
        super().__init__()
        cell, act = split_arch(arch)
        self.arch, self.cell_name = arch, cell
        self.n_units = n_units
        two_layer = cell == "rnn"
        self.input = None if two_layer else nn.Sequential(nn.Linear(2, n_input),
                                                          NONLINEARITIES[act]())
        self.cell = _CELL_CLASSES[cell](2 if two_layer else n_input, n_units,
                                        NONLINEARITIES[act]())
        self.init = nn.Linear(n_init, self.cell.state_size(), bias=False)
        self.g = None if two_layer else nn.Sequential(nn.Linear(n_units, n_units),
                                                      NONLINEARITIES[act]())
        self.readout = nn.Linear(n_units, n_out)
        self.layer_names = ("g", "dc") if two_layer else ("pre_g", "g", "dc")

    def recurrent_weights(self) -> list[torch.Tensor]:
        """The recurrent matrices (the L2 penalty's, spec §3.5)."""
        return [m.weight for name, m in self.cell.named_modules()
                if name.startswith("h_") and isinstance(m, nn.Linear)]

    def run(self, velocity: torch.Tensor, init: torch.Tensor,
            g_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every layer over the steps.

        Parameters
        ----------
        velocity : Tensor (traj, step, 2)
            m/s.
        init : Tensor (traj, n_init)
            Code at t = 0 (place-cell code or position).
        g_mask : Tensor (g unit,), optional
            Multiplies the g layer (0 knocks a unit out, spec §3.7) before the readout.

        Returns
        -------
        dict of str to Tensor (traj, step, unit)
            `layer_names` → activity; g after the mask.
        """
        state = self.init(init)
        x = velocity if self.input is None else self.input(velocity)
        hs = []
        for t in range(velocity.shape[1]):
            h, state = self.cell(x[:, t], state)
            hs.append(h)
        pre_g = torch.stack(hs, dim=1)
        g = pre_g if self.g is None else self.g(pre_g)
        if g_mask is not None:
            g = g * g_mask
        out = {"g": g, "dc": self.readout(g)}
        if self.g is not None:
            out = {"pre_g": pre_g, **out}
        return out

    def forward(self, velocity: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """Readout (traj, step, n_out) for velocities (traj, step, 2) from codes (traj, n_init)."""
        return self.run(velocity, init)["dc"]
