"""The motion model against its own parameters (spec §3.5), and replay of recorded paths."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.mec import trajectories as T
from pipeline.mec.trajectories import replay_trajectories, simulate_session, simulate_trajectories

SARGOLINI = Path(__file__).resolve().parents[3] / "shared/data/real/ratinabox_sargolini2006/sargolini.npz"


def test_speed_and_turn_statistics_match_the_parameters():
    """Far from any wall: speeds ~ Rayleigh(b), rotation velocity ~ N(0, sigma)."""
    b, sigma = 0.13 * 2 * math.pi, 11.52
    traj = simulate_trajectories(400, 200, width=1e4, seed=1)      # walls never reached
    speed = traj.speed.double().numpy().ravel()
    assert speed.mean() == pytest.approx(b * math.sqrt(math.pi / 2), rel=0.01)
    assert (speed ** 2).mean() == pytest.approx(2 * b ** 2, rel=0.02)
    assert stats.kstest(speed, stats.rayleigh(scale=b).cdf).pvalue > 1e-3
    hd = np.unwrap(traj.head_direction.double().numpy(), axis=1)
    rotation = np.diff(hd, axis=1).ravel() / traj.dt
    assert rotation.mean() == pytest.approx(0.0, abs=0.1)
    assert rotation.std() == pytest.approx(sigma, rel=0.01)


def test_steps_follow_heading_and_speed_and_stay_in_the_arena():
    traj = simulate_trajectories(32, 150, width=1.0, height=0.6, seed=2)
    pos = torch.cat([traj.start[:, None], traj.position], dim=1).double()
    step = pos[:, 1:] - pos[:, :-1]
    expected = traj.velocity.double() * traj.dt
    inner = (traj.position.abs() < torch.tensor([0.5, 0.3]) - 1e-3).all(-1)  # not clipped
    assert torch.allclose(step[inner], expected[inner], atol=1e-5)
    assert (traj.position[..., 0].abs() <= 0.5).all() and (traj.position[..., 1].abs() <= 0.3).all()


def test_border_region_slows_the_animal():
    """Steps taken inside the border facing a wall run at 0.25 of the drawn speed: their speed
    distribution is 0.25 x Rayleigh."""
    b = 0.13 * 2 * math.pi
    traj = simulate_trajectories(200, 400, width=0.5, seed=3)
    prev = torch.cat([traj.start[:, None], traj.position[:, :-1]], dim=1)
    hd = traj.head_direction
    middle = prev[..., 1].abs() < 0.25 - 0.03                     # an x wall is the nearest
    near = middle & (((0.25 - prev[..., 0] < 0.03) & (torch.cos(hd) > 0))
                     | ((0.25 + prev[..., 0] < 0.03) & (torch.cos(hd) < 0)))
    slow = traj.speed[near].double().numpy()
    assert slow.size > 1000
    assert slow.mean() == pytest.approx(0.25 * b * math.sqrt(math.pi / 2), rel=0.05)


def test_seeded_and_the_scalar_walk_equals_the_batch_walk():
    a = simulate_trajectories(3, 50, seed=7)
    b = simulate_trajectories(3, 50, seed=7)
    c = simulate_trajectories(3, 50, seed=8)
    assert torch.equal(a.position, b.position) and not torch.equal(a.position, c.position)
    g = torch.Generator().manual_seed(5)
    pos, hd = torch.rand(1, 2, generator=g) - 0.5, torch.rand(1, generator=g) * 6.28
    turns = 11.52 * torch.randn(1, 2000, generator=g)
    speeds = 0.8 * torch.sqrt(-2 * torch.log(1 - torch.rand(1, 2000, generator=g)))
    args = (0.5, 0.5, 0.02, 0.03, 0.25, False)
    one = T._walk_one(pos, hd, turns, speeds, *args)
    batch = T._walk_batch(pos, hd, turns, speeds, *args)
    # float64 vs float32 arithmetic: the paths agree until rounding tips a wall decision
    assert torch.allclose(one[0][:, :500], batch[0][:, :500], atol=1e-4)


def test_session_is_in_cm_from_the_corner():
    s = simulate_session(60.0, width=0.8, seed=0)
    assert s["t"][1] == pytest.approx(0.02) and s["xy"].shape == (3000, 2)
    assert s["xy"].min() >= 0 and s["xy"].max() <= 80.0
    assert s["xy"].max(axis=0).min() > 60                         # it explores the box


def test_track_has_no_turns_and_reverses_at_the_ends():
    traj = simulate_trajectories(20, 500, width=4.0, track=True, seed=0)
    assert (traj.position[..., 1] == 0).all()
    cos = torch.cos(traj.head_direction)
    assert torch.allclose(cos.abs(), torch.ones_like(cos), atol=1e-5)
    assert (cos[:, 1:] != cos[:, :-1]).any()                      # U-turns happen


def _replay_check(t, xy):
    traj = replay_trajectories(t, xy, n_steps=20)
    steps = np.diff(np.r_[t, t[-1]])[:1]                           # dt of the file
    pos = traj.start[:, None] + torch.cumsum(traj.velocity * traj.dt, dim=1)
    return traj, (pos - traj.position).abs().max().item(), steps


def test_replay_reproduces_a_path():
    t = np.arange(2001) * 0.02
    xy = np.stack([50 + 30 * np.cos(t), 50 + 30 * np.sin(2 * t)], axis=1)
    traj, err, _ = _replay_check(t, xy)
    assert traj.position.shape == (100, 20, 2) and err < 1e-5


@pytest.mark.skipif(not SARGOLINI.exists(), reason="../shared real data absent")
def test_replay_of_the_sargolini_rat():
    data = np.load(SARGOLINI)
    traj, err, _ = _replay_check(data["t"], data["pos"] * 100)
    assert len(traj.start) > 1000 and err < 1e-4
    assert traj.position.abs().max() <= 0.5 + 1e-6                # centred 1 m box
