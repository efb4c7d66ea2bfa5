"""Rate maps against cases whose answer is known in closed form, and against scipy."""

import numpy as np
import pytest
from scipy import stats
from scipy.ndimage import gaussian_filter

from pipeline.mec.ratemaps import (BinGrid, half_labels, rate_maps, running_speed,
                                   sample_durations, smooth_maps)

DT = 0.02


def path(start, segments):
    """Samples every DT s along straight segments [(end_xy, speed_cm_s), ...] (end excluded)."""
    points, here = [], np.asarray(start, dtype=float)
    for end, speed in segments:
        end = np.asarray(end, dtype=float)
        n = int(round(np.linalg.norm(end - here) / (speed * DT)))
        points.append(here + (end - here) * (np.arange(n)[:, None] / n))
        here = end
    xy = np.concatenate(points)
    return np.arange(len(xy)) * DT, xy


@pytest.fixture
def track():
    """A 5 s pause at (0, 2.5), row y=2.5 at 10 cm/s, up at x=20, row y=7.5 back at 5 cm/s.

    Grid 20 × 20 cm in 5 cm bins: rows y >= 10 cm are never visited. An interior bin of row 0
    is crossed in 0.5 s, of row 1 in 1.0 s.
    """
    pause = np.tile([0.0, 2.5], (250, 1))
    t, xy = path((0, 2.5), [((20, 2.5), 10.0), ((20, 7.5), 10.0), ((0, 7.5), 5.0)])
    xy = np.concatenate([pause, xy])
    return np.arange(len(xy)) * DT, xy, BinGrid(20, 20, 5.0)


def spikes_where(t, mask, per_sample=1):
    """`per_sample` spikes inside each sample interval where `mask` holds."""
    offsets = (np.arange(per_sample) + 0.5) / per_sample * DT
    return np.sort((t[mask][:, None] + offsets[None, :]).ravel())


def test_field_unit_constant_unit_and_unvisited_bins(track):
    t, xy, grid = track
    col, row = np.floor(xy[:, 0] / 5).clip(0, 3), np.floor(xy[:, 1] / 5)
    moving = np.arange(len(t)) >= 250
    field = moving & (((col == 1) & (row == 0)) | ((col == 2) & (row == 1)))
    units = [spikes_where(t, field), spikes_where(t, np.ones(len(t), bool), per_sample=2)]
    maps = rate_maps(t, xy, units, grid, speed_window=0.0, sigma=0, half_block=None)
    rate = maps.rate.isel(half=0).values.reshape(2, 4, 4)          # (unit, y, x)
    occupancy = maps.occupancy.isel(half=0).values.reshape(4, 4)
    # Occupancy normalisation: row 1 is crossed twice as slowly, yet both fields read 50 Hz.
    assert occupancy[0, 1] == pytest.approx(0.5) and occupancy[0, 2] == pytest.approx(0.5)
    assert occupancy[1, 1] == pytest.approx(1.0) and occupancy[1, 2] == pytest.approx(1.0)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 2] = 1 / DT
    expected[2:] = np.nan
    np.testing.assert_allclose(rate[0], expected, rtol=1e-9)
    np.testing.assert_allclose(rate[1][:2], 2 / DT, rtol=1e-9)      # 100 Hz wherever visited
    assert np.isnan(rate[:, 2:]).all() and (occupancy[2:] == 0).all()
    np.testing.assert_array_equal(maps.stimulus_id.values[:5], ["x0_y0", "x1_y0", "x2_y0",
                                                                 "x3_y0", "x0_y1"])
    np.testing.assert_allclose(maps.x.values[:4], [2.5, 7.5, 12.5, 17.5])


def test_speed_filter_drops_the_pause(track):
    t, xy, grid = track
    in_pause = (np.arange(len(t)) >= 2) & (np.arange(len(t)) < 248)
    units = [spikes_where(t, in_pause, per_sample=3)]
    slow_kept = rate_maps(t, xy, units, grid, speed_threshold=0.0, speed_window=0.0, sigma=0,
                          half_block=None)
    filtered = rate_maps(t, xy, units, grid, speed_window=0.0, sigma=0, half_block=None)
    assert slow_kept.occupancy.values[0, 0] == pytest.approx(5.5)   # 5 s pause + 0.5 s crossing
    assert filtered.occupancy.values[0, 0] == pytest.approx(0.5)
    assert slow_kept.rate.values[0, 0, 0] == pytest.approx(3 * 246 / 5.5)
    assert filtered.spike_count.values.sum() == 0
    assert np.nanmax(filtered.rate.values) == 0


def test_halves_partition_the_session(track):
    t, xy, grid = track
    units = [spikes_where(t, np.arange(len(t)) % 3 == 0)]
    whole = rate_maps(t, xy, units, grid, half_block=None)
    halves = rate_maps(t, xy, units, grid, half_block=1.0)
    np.testing.assert_allclose(halves.occupancy.sum("half"), whole.occupancy.isel(half=0))
    np.testing.assert_array_equal(halves.spike_count.sum("half"), whole.spike_count.isel(half=0))
    labels = half_labels(t, 1.0)
    assert labels[0] == 0 and labels[50] == 1 and labels[100] == 0
    assert (half_labels(t, None) == 0).all()


def test_occupancy_matches_scipy_binned_statistic():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 300, 6000))
    xy = rng.uniform(0, 100, (6000, 2))
    grid = BinGrid(100, 100, 5.0)
    maps = rate_maps(t, xy, [t[::7] + 1e-6], grid, speed_threshold=0.0, speed_window=0.0,
                     max_gap=np.inf, min_occupancy=0.0, sigma=0, half_block=None)
    edges = np.arange(0, 101, 5.0)
    dt = np.append(np.diff(t), np.median(np.diff(t)))
    theirs = stats.binned_statistic_2d(xy[:, 1], xy[:, 0], dt, "sum", bins=[edges, edges])
    np.testing.assert_allclose(maps.occupancy.values[0], theirs.statistic.ravel(), rtol=1e-10)
    counts = stats.binned_statistic_2d(xy[::7, 1], xy[::7, 0], None, "count", bins=[edges, edges])
    np.testing.assert_array_equal(maps.spike_count.values[0, 0], counts.statistic.sum())


def test_smoothing_keeps_constants_and_nan_bins():
    rate = np.full((3, 6, 6), 4.0)
    rate[:, 0, :2] = np.nan
    out = smooth_maps(rate, 1.0)
    np.testing.assert_allclose(out[np.isfinite(rate)], 4.0)
    assert np.isnan(out[:, 0, :2]).all()
    # Where the kernel (radius 4 sigma) lies inside the arena, it is scipy's Gaussian filter.
    peak = np.zeros((15, 15))
    peak[7, 7] = 1.0
    ours = smooth_maps(peak, 1.0)
    np.testing.assert_allclose(ours[4:11, 4:11], gaussian_filter(peak, 1.0)[4:11, 4:11],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(smooth_maps(peak, 0), peak)


def test_running_speed_and_gaps():
    t = np.arange(100) * DT
    xy = np.stack([3.0 * t, 4.0 * t], axis=1)                        # 5 cm/s
    np.testing.assert_allclose(running_speed(t, xy, 0.25), 5.0)
    dt = sample_durations(np.array([0.0, 0.02, 0.04, 3.0, 3.02]), max_gap=1.0)
    np.testing.assert_allclose(dt, [0.02, 0.02, 0.0, 0.02, 0.02])
    with pytest.raises(ValueError, match="increase"):
        sample_durations(np.array([0.0, 0.0, 1.0]))


def test_grid_locates_clips_and_rejects():
    grid = BinGrid(20, 10, 5.0, origin=(-10.0, -5.0))
    assert grid.shape == (2, 4)
    idx = grid.locate(np.array([[-10, -5], [9.99, 4.99], [10.5, -1], [30, 0], [np.nan, 0]]))
    np.testing.assert_array_equal(idx, [0, 7, 3, -1, -1])
    with pytest.raises(ValueError, match="whole number"):
        BinGrid(22, 20, 5.0)
