"""Event data from real images, offline: MNIST-5k digits seen by an emulated event camera.

N-MNIST was recorded by moving an ATIS sensor in three saccades in front of MNIST digits on a
screen. We do the same in software: the digit is moved along a triangle, one step of `shift`
pixels at a time, and a pixel emits an ON (OFF) event whenever its intensity rises (falls) by
more than `threshold` between two positions. The event list is then integrated into T frames
by equal event count (eq. S1 of Fang et al., `events.events_to_frames`). These inputs feed the
paper's event-data nets (N-MNIST, CIFAR10-DVS, DVS128 Gesture) with real digits; they are not
those data sets, which cannot be downloaded here.
"""

from __future__ import annotations

import numpy as np
import torch

from .events import events_to_frames
from .static import load_dataset

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
# three saccades as in N-MNIST, (dy, dx) per step: down-right, down-left, up
SACCADES = ((1, 1), (1, -1), (-1, 0))


def place(image: np.ndarray, size: int) -> np.ndarray:
    """Scale a square image by an integer factor (nearest) and centre it on a size x size
    canvas of zeros."""
    factor = max(1, size // image.shape[0])
    big = np.kron(image, np.ones((factor, factor)))[:size, :size]
    canvas = np.zeros((size, size))
    o = (size - big.shape[0]) // 2
    canvas[o:o + big.shape[0], o:o + big.shape[1]] = big
    return canvas


def saccade_events(image: np.ndarray, steps_per_saccade: int = 4, shift: int = 1,
                   threshold: float = 0.15) -> np.ndarray:
    """Events (x, y, t, p) of `image` (values in [0, 1]) moved along the three saccades."""
    frames, pos = [image], np.array([0, 0])
    for dy, dx in SACCADES:
        for _ in range(steps_per_saccade):
            pos = pos + shift * np.array([dy, dx])
            frames.append(np.roll(image, tuple(pos), axis=(0, 1)))
    events = []
    for k in range(1, len(frames)):
        diff = frames[k] - frames[k - 1]
        for p, mask in ((1, diff > threshold), (0, diff < -threshold)):
            ys, xs = np.nonzero(mask)
            ev = np.zeros(len(xs), dtype=EVENT_DTYPE)
            ev["x"], ev["y"], ev["p"] = xs, ys, p
            ev["t"] = k * 1000 + (ys * image.shape[1] + xs) * 1000 // image.size
            events.append(ev)
    ev = np.concatenate(events)
    return ev[np.argsort(ev["t"], kind="stable")]


def mnist_event_frames(size: int, time_steps: int, samples: int, split: str = "test",
                       shift: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [N, T, 2, size, size] event frames (float32 counts), labels [N]."""
    ds = load_dataset("mnist5k")
    x = ds.x_test if split == "test" else ds.x_train
    y = ds.y_test if split == "test" else ds.y_train
    raw = x[:samples, 0].numpy() * ds.std + ds.mean  # back to intensities in [0, 1]
    shift = shift if shift is not None else max(1, size // 28)
    out = np.zeros((len(raw), time_steps, 2, size, size), dtype=np.float32)
    for i, img in enumerate(raw):
        ev = saccade_events(place(img, size), shift=shift)
        out[i] = events_to_frames(ev, (size, size, 2), time_steps)
    return torch.from_numpy(out), y[:samples].clone()


def mnist_rgb32(samples: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-5k digits as 3 x 32 x 32 images (CIFAR-10 input shape): padded by 2 px with the
    background value and repeated over three channels."""
    ds = load_dataset("mnist5k")
    x = ds.x_test if split == "test" else ds.x_train
    y = ds.y_test if split == "test" else ds.y_train
    x = torch.nn.functional.pad(x[:samples], [2, 2, 2, 2], value=float(x.min()))
    return x.repeat(1, 3, 1, 1), y[:samples].clone()
