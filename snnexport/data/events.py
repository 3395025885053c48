"""Event streams -> frames by equal-event-count slicing (Fang et al. 2021, supplement eq. S1).

    F(j, p, x, y) = sum_{i = j_l}^{j_r - 1} 1[(p_i, x_i, y_i) = (p, x, y)]
    j_l = floor(N/T) * j,   j_r = floor(N/T) * (j + 1) for j < T-1, and j_r = N for j = T-1

Written here rather than taken from tonic because tonic's ToFrame(n_event_bins=T) gives every
slice floor(N/T) events and drops the last N mod T events, while S1 puts them in the last
frame (tests/test_events.py shows both agree on everything else).
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def slice_bounds(n_events: int, time_steps: int) -> list[tuple[int, int]]:
    """[(j_l, j_r)] for j = 0..T-1, as eq. S1."""
    if time_steps <= 0:
        raise UsageError(f"time_steps must be > 0, got {time_steps}")
    step = n_events // time_steps
    return [(step * j, step * (j + 1) if j < time_steps - 1 else n_events)
            for j in range(time_steps)]


def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int],
                     time_steps: int) -> np.ndarray:
    """events: structured array with fields x, y, p (and t), sorted by time.
    sensor_size: (width, height, polarities). Returns int frames [T, P, H, W]."""
    for f in ("x", "y", "p"):
        if f not in (events.dtype.names or ()):
            raise UsageError(f"events need fields x, y, p; got {events.dtype.names}")
    if "t" in events.dtype.names and np.any(np.diff(events["t"]) < 0):
        raise UsageError("events must be sorted by time stamp t")
    width, height, pols = sensor_size
    frames = np.zeros((time_steps, pols, height, width), dtype=np.int64)
    for j, (lo, hi) in enumerate(slice_bounds(len(events), time_steps)):
        ev = events[lo:hi]
        np.add.at(frames[j], (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    return frames
