"""Per-neuron layouts: the IR keeps maps as (C, H, W), C-major when flat (torch.flatten order);
Lava's processes and netx hold them as (W, H, C). Numpy only (the Lava runner imports it)."""

from __future__ import annotations

import numpy as np


def whc(a, shape) -> np.ndarray:
    """A per-neuron array in the IR's (C, H, W) order (or broadcastable to `shape`) in Lava's /
    netx's (W, H, C) order; a vector (len(shape) != 3) is returned as it is."""
    a = np.broadcast_to(np.asarray(a), shape)
    return np.ascontiguousarray(a.transpose(2, 1, 0)) if len(shape) == 3 else np.asarray(a)


def to_chw(a, shape) -> np.ndarray:
    """The inverse of `whc`: a Lava block's (W, H, C) values back to the IR's (C, H, W) (`shape`);
    a flat block's values are reshaped to `shape`."""
    a = np.asarray(a)
    return a.transpose(2, 1, 0) if a.ndim == 3 else a.reshape(shape)
