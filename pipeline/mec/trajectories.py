"""Simulated rat trajectories for path integration (spec §3.5), and replay of recorded ones.

The motion model is Raudies & Hasselmo's, as in the released code (neuroailab/mec
``trajectory_generator.py``, after Sorscher et al.): a random start and heading; each step of
dt = 0.02 s draws a forward speed ~ Rayleigh(0.13·2π m/s) and a rotation velocity
~ N(0, 11.52 rad/s); inside the 0.03 m border region, when heading towards the nearest wall,
the heading turns away from it (to parallel the wall) and the speed is scaled by 0.25. A step
moves along the heading it starts with, then the heading turns. Positions are metres, the
arena centred on 0 (x in [-w/2, w/2], y in [-h/2, h/2]).

Choices the spec leaves open, and ours:
- positions are clipped into the arena (the released code lets a fast step cross a wall by a
  few mm; a model's rate maps need every position inside its bins);
- the 1-D track (``track=True``, spec: "turns are disabled to mimic head fixation") runs on
  y = 0 with heading 0 or π; within the border region of an end, facing it, the animal turns
  around (heading + π) and slows by the same 0.25.

Every draw comes from one `torch.Generator` seeded per call, so a seed gives the same paths
on any machine and batch of calls; everything is vectorised over trajectories (one loop over
steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

DT = 0.02                       # s per step (spec §3.5)
ROTATION_SIGMA = 11.52          # rad/s, sd of the rotation velocity
SPEED_SCALE = 0.13 * 2 * math.pi    # m/s, Rayleigh scale of the forward speed
BORDER_REGION = 0.03            # m
BORDER_SLOWDOWN = 0.25          # speed factor near a wall

__all__ = ["Trajectories", "replay_trajectories", "simulate_session", "simulate_trajectories"]


@dataclass(frozen=True)
class Trajectories:
    """A batch of trajectories (torch float32, metres, arena centred on 0).

    Attributes
    ----------
    start : Tensor (traj, 2)
        Position at t = 0, before the first step.
    start_hd : Tensor (traj,)
        Heading at t = 0 (rad).
    position : Tensor (traj, step, 2)
        Position after each step.
    head_direction : Tensor (traj, step)
        Heading (rad, in [-π, π)) along which each step moved.
    speed : Tensor (traj, step)
        Forward speed (m/s) of each step.
    dt : float
        Seconds per step.
    width, height : float
        Arena (m).
    """

    start: torch.Tensor
    start_hd: torch.Tensor
    position: torch.Tensor
    head_direction: torch.Tensor
    speed: torch.Tensor
    dt: float
    width: float
    height: float

    @property
    def velocity(self) -> torch.Tensor:
        """(traj, step, 2) velocity in m/s: speed · [cos hd, sin hd], the networks' input."""
        return self.speed[..., None] * torch.stack(
            [torch.cos(self.head_direction), torch.sin(self.head_direction)], dim=-1)

    @property
    def n_steps(self) -> int:
        return self.position.shape[1]

    def to(self, device) -> Trajectories:
        """The same trajectories on `device`."""
        return Trajectories(self.start.to(device), self.start_hd.to(device),
                            self.position.to(device), self.head_direction.to(device),
                            self.speed.to(device), self.dt, self.width, self.height)

    def numpy(self) -> dict:
        """The fields as numpy arrays (velocity included)."""
        return {"start": self.start.cpu().numpy(), "start_hd": self.start_hd.cpu().numpy(),
                "position": self.position.cpu().numpy(),
                "head_direction": self.head_direction.cpu().numpy(),
                "speed": self.speed.cpu().numpy(), "velocity": self.velocity.cpu().numpy(),
                "dt": self.dt}


def _wrap(angle):
    """Angle into [-π, π)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def _avoid_walls(pos, hd, half_w, half_h, border_region):
    """(near-wall mask, turn angle): facing the nearest wall inside the border region, turn to
    parallel it (released code ``avoid_wall``)."""
    dists = torch.stack([half_w - pos[:, 0], half_h - pos[:, 1],
                         half_w + pos[:, 0], half_h + pos[:, 1]], dim=1)
    d_wall, nearest = dists.min(dim=1)
    theta = nearest.to(hd.dtype) * (math.pi / 2)          # outward normal of that wall
    a_wall = _wrap(hd - theta)
    near = (d_wall < border_region) & (a_wall.abs() < math.pi / 2)
    turn = torch.where(near, torch.sign(a_wall) * (math.pi / 2 - a_wall.abs()),
                       torch.zeros_like(hd))
    return near, turn


def _check(name, value, low=0.0, strict=True):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or (value <= low if strict else value < low):
        raise ValueError(f"trajectories: {name} must be a number {'>' if strict else '>='} "
                         f"{low}; got {value!r}")


def _walk_batch(pos, hd, turns, speeds, half_w, half_h, dt, border_region, border_slowdown,
                track):
    """The motion model's steps for a batch, vectorised over trajectories (torch)."""
    n, n_steps = speeds.shape
    positions = torch.empty(n, n_steps, 2, device=pos.device)
    headings = torch.empty(n, n_steps, device=pos.device)
    used_speed = torch.empty(n, n_steps, device=pos.device)
    for t in range(n_steps):
        v = speeds[:, t]
        if track:
            facing = torch.where(torch.cos(hd) > 0, half_w - pos[:, 0], half_w + pos[:, 0])
            near = facing < border_region
            hd = torch.where(near, hd + math.pi, hd)
            turn = torch.zeros_like(hd)
        else:
            near, turn = _avoid_walls(pos, hd, half_w, half_h, border_region)
            turn = turn + dt * turns[:, t]
        v = torch.where(near, v * border_slowdown, v)
        dx = v * dt * torch.cos(hd)
        dy = torch.zeros_like(dx) if track else v * dt * torch.sin(hd)
        pos = torch.stack([(pos[:, 0] + dx).clamp(-half_w, half_w),
                           (pos[:, 1] + dy).clamp(-half_h, half_h)], dim=1)
        positions[:, t] = pos
        headings[:, t] = _wrap(hd)
        used_speed[:, t] = v
        hd = hd + turn
    return positions, headings, used_speed


def _walk_one(pos, hd, turns, speeds, half_w, half_h, dt, border_region, border_slowdown, track):
    """The same steps for one trajectory in Python floats: a long session (30 000 steps) in a
    fraction of a second, where per-step torch calls would take seconds."""
    x, y, h = float(pos[0, 0]), float(pos[0, 1]), float(hd[0])
    turns, speeds = turns[0].tolist(), speeds[0].tolist()
    out = np.empty((len(speeds), 4))
    for t, (v, r) in enumerate(zip(speeds, turns)):
        if track:
            near = (half_w - x if math.cos(h) > 0 else half_w + x) < border_region
            if near:
                h += math.pi
            turn = 0.0
        else:
            dists = (half_w - x, half_h - y, half_w + x, half_h + y)
            k = min(range(4), key=dists.__getitem__)
            a_wall = (h - k * math.pi / 2 + math.pi) % (2 * math.pi) - math.pi
            near = dists[k] < border_region and abs(a_wall) < math.pi / 2
            turn = (math.copysign(math.pi / 2 - abs(a_wall), a_wall) if near and a_wall
                    else 0.0) + dt * r
        if near:
            v *= border_slowdown
        x = min(max(x + v * dt * math.cos(h), -half_w), half_w)
        y = 0.0 if track else min(max(y + v * dt * math.sin(h), -half_h), half_h)
        out[t] = (x, y, (h + math.pi) % (2 * math.pi) - math.pi, v)
        h += turn
    out = torch.as_tensor(out, dtype=torch.float32)
    return out[None, :, :2].contiguous(), out[None, :, 2].contiguous(), out[None, :, 3].contiguous()


def simulate_trajectories(n_trajectories: int, n_steps: int, *, width: float = 2.2,
                          height: float | None = None, dt: float = DT,
                          rotation_sigma: float = ROTATION_SIGMA,
                          speed_scale: float = SPEED_SCALE, border_region: float = BORDER_REGION,
                          border_slowdown: float = BORDER_SLOWDOWN, track: bool = False,
                          seed: int | None = 0, generator: torch.Generator | None = None,
                          device="cpu") -> Trajectories:
    """Random-walk trajectories of the rat motion model (spec §3.5), vectorised in torch.

    Parameters
    ----------
    n_trajectories, n_steps : int
        Batch size and sequence length (spec: 200 and 20).
    width, height : float
        Square or rectangular arena (m); height None = width. Spec: 2.2 m for training.
    dt : float
        Seconds per step.
    rotation_sigma : float
        sd of the rotation velocity (rad/s).
    speed_scale : float
        Rayleigh scale of the forward speed (m/s); the mean speed is scale·sqrt(π/2).
    border_region, border_slowdown : float
        Width (m) of the band along the walls where the animal turns away, and its speed factor.
    track : bool
        1-D track of length `width` along x (no turns; U-turns at the ends).
    seed : int, optional
        Seeds a private generator (ignored when `generator` is given).
    generator : torch.Generator, optional
        Draw from this generator instead (its state advances; training uses one per run).
    device : str or torch.device
        Where the tensors are made (the generator must live there).

    Returns
    -------
    Trajectories
    """
    for name, value in (("n_trajectories", n_trajectories), ("n_steps", n_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"trajectories: {name} must be a positive int; got {value!r}")
    height = width if height is None else height
    _check("width", width)
    _check("height", height)
    _check("dt", dt)
    _check("rotation_sigma", rotation_sigma, strict=False)
    _check("speed_scale", speed_scale)
    _check("border_region", border_region, strict=False)
    _check("border_slowdown", border_slowdown, strict=False)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
    device = generator.device
    n, half_w, half_h = n_trajectories, width / 2, (0.0 if track else height / 2)

    def uniform(size, low, high):
        return low + (high - low) * torch.rand(size, generator=generator, device=device)

    pos = torch.stack([uniform(n, -half_w, half_w),
                       uniform(n, -half_h, half_h) if not track else torch.zeros(n, device=device)],
                      dim=1)
    if track:
        hd = math.pi * (torch.rand(n, generator=generator, device=device) < 0.5).float()
    else:
        hd = uniform(n, 0.0, 2 * math.pi)
    turns = rotation_sigma * torch.randn(n, n_steps, generator=generator, device=device)
    # Rayleigh(b) by inversion: b·sqrt(-2 log U), U in (0, 1]
    u = 1.0 - torch.rand(n, n_steps, generator=generator, device=device)
    speeds = speed_scale * torch.sqrt(-2.0 * torch.log(u))
    start, start_hd = pos.clone(), _wrap(hd)
    walk = _walk_one if n == 1 and device.type == "cpu" else _walk_batch
    positions, headings, used_speed = walk(pos, hd, turns, speeds, half_w, half_h, dt,
                                           border_region, border_slowdown, track)
    return Trajectories(start, start_hd, positions, headings, used_speed, float(dt),
                        float(width), float(height if not track else 0.0))


def simulate_session(duration_s: float, *, width: float = 1.0, height: float | None = None,
                     dt: float = DT, seed: int = 0, **motion) -> dict:
    """One continuous simulated session, in the data's units (for virtual MEC animals).

    Parameters
    ----------
    duration_s : float
        Length of the session (s).
    width, height : float
        Arena (m); height None = width.
    dt : float
        Sampling interval (s).
    seed : int
    **motion
        Other `simulate_trajectories` keywords (rotation_sigma, speed_scale, ...).

    Returns
    -------
    dict
        ``t`` (sample,) s from 0; ``xy`` (sample, 2) cm from the arena's corner (the layout
        `pipeline.mec.ratemaps.BinGrid` uses); ``hd`` (sample,) rad, heading of each sample.
    """
    _check("duration_s", duration_s)
    n = max(2, int(round(duration_s / dt)))
    traj = simulate_trajectories(1, n - 1, width=width, height=height, dt=dt, seed=seed, **motion)
    h = width if height is None else height
    xy = torch.cat([traj.start[:, None], traj.position], dim=1)[0].double().numpy()
    hd = torch.cat([traj.start_hd[:, None], traj.head_direction], dim=1)[0].double().numpy()
    # float32 walls: clip the rounding (1e-7 m) back into the box
    xy = np.clip((xy + np.array([width / 2, h / 2])) * 100.0, 0.0, [width * 100.0, h * 100.0])
    return {"t": np.arange(n) * dt, "xy": xy, "hd": hd}


def replay_trajectories(t, xy, *, n_steps: int = 20, width: float | None = None,
                        height: float | None = None, hd=None, max_gap: float = 1.0,
                        dt: float | None = None) -> Trajectories:
    """Cut a recorded path into consecutive `n_steps`-step trajectories a network can replay.

    Parameters
    ----------
    t : array (sample,)
        Timestamps (s), increasing.
    xy : array (sample, 2)
        Positions in cm, tracking coordinates (NaN where tracking was lost).
    n_steps : int
        Steps per trajectory.
    width, height : float, optional
        Arena (cm); None: the tracked extent. Positions are centred on the arena's middle (the
        tracked extent's) and converted to metres.
    hd : array (sample,), optional
        Recorded head direction (rad); None uses the movement direction. The velocity input is
        the displacement between samples over the sample interval, so replaying the velocities
        from `start` reproduces the recorded positions.
    max_gap : float
        Windows holding a sample interval longer than this (s), or a non-finite sample, are
        left out.
    dt : float, optional
        Step interval; None: the median sample interval. Irregularly sampled paths are first
        interpolated onto a lattice of this interval (gaps longer than `max_gap` are still
        dropped, since interpolation is checked against the original samples' gaps), so
        ``start + cumsum(velocity · dt)`` replays the positions exactly.

    Returns
    -------
    Trajectories
        ``speed`` and ``head_direction`` give the displacement of each step; ``dt`` is the
        median sample interval.
    """
    t = np.asarray(t, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (t.size, 2):
        raise ValueError(f"replay: positions must have shape (samples, 2) = ({t.size}, 2); "
                         f"got {xy.shape}")
    if dt is None:
        dt = float(np.median(np.diff(t)))
    in_gap = np.zeros(t.size, dtype=bool)
    if np.ptp(np.diff(t)) > 1e-6 * dt:               # irregular samples: onto a dt lattice
        grid = np.arange(t[0], t[-1], dt)
        interval = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, t.size - 2)
        in_gap = np.diff(t)[interval] > max_gap         # lattice points inside a tracking gap
        xy = np.stack([np.interp(grid, t, xy[:, i]) for i in range(2)], axis=1)
        hd = None if hd is None else np.interp(grid, t, np.unwrap(np.asarray(hd, float)))
        t = grid
    finite = np.isfinite(xy).all(axis=1)
    lo, hi = np.nanmin(xy[finite], axis=0), np.nanmax(xy[finite], axis=0)
    centre = (lo + hi) / 2
    w = float(hi[0] - lo[0]) if width is None else float(width)
    h = float(hi[1] - lo[1]) if height is None else float(height)
    pos = (xy - centre) / 100.0
    step_dt = np.diff(t)
    disp = np.diff(pos, axis=0)
    good = (finite[:-1] & finite[1:] & (step_dt > 0) & (step_dt <= max_gap)
            & ~in_gap[:-1] & ~in_gap[1:])
    n_windows = (t.size - 1) // n_steps
    if n_windows < 1:
        raise ValueError(f"replay: {t.size} samples hold no window of {n_steps} steps")
    idx = np.arange(n_windows * n_steps).reshape(n_windows, n_steps)
    keep = good[idx].all(axis=1)
    if not keep.any():
        raise ValueError(f"replay: no window of {n_steps} steps without a gap or lost sample")
    idx = idx[keep]
    speed = np.linalg.norm(disp, axis=1) / np.where(step_dt > 0, step_dt, 1.0)
    move = np.arctan2(disp[:, 1], disp[:, 0])
    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)

    start = pos[idx[:, 0]]
    # the recorded heading (when given) is the start heading; each step's heading is its
    # movement direction, so speed · [cos, sin] · interval is exactly the displacement
    start_hd = np.asarray(hd, float)[idx[:, 0]] if hd is not None else move[idx[:, 0]]
    return Trajectories(tensor(start), tensor(np.angle(np.exp(1j * start_hd))),
                        tensor(pos[idx + 1]), tensor(move[idx]), tensor(speed[idx]),
                        float(np.median(step_dt)), w / 100.0, h / 100.0)
