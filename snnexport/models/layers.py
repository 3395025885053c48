"""Stateless layers applied to multi-step tensors [T, B, ...] by folding T into the batch.

Parameters and state_dict keys are exactly those of the torch layer they extend, so a
checkpoint reads like an ordinary torch model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UsageError


def over_time(fn, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample layer to [T, B, ...] as one batch of T*B samples."""
    t, b = x_seq.shape[:2]
    y = fn(x_seq.flatten(0, 1))
    return y.reshape(t, b, *y.shape[1:])


class SeqConv2d(nn.Conv2d):
    def forward(self, x_seq):
        return over_time(super().forward, x_seq)


class SeqBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x_seq):
        return over_time(super().forward, x_seq)


class SeqBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x_seq):
        return over_time(super().forward, x_seq)


class SeqMaxPool2d(nn.MaxPool2d):
    """Max-pooling on spikes: for binary inputs it is a spike OR over the window."""

    def forward(self, x_seq):
        return over_time(super().forward, x_seq)


class SeqAvgPool2d(nn.AvgPool2d):
    """Average pooling (SEW-ResNet's global pooling of spikes: kernel = the map size)."""

    def forward(self, x_seq):
        return over_time(super().forward, x_seq)


class SeqFlatten(nn.Module):
    """[T, B, C, H, W] -> [T, B, C*H*W] (C-major, as torch.flatten)."""

    def forward(self, x_seq):
        return x_seq.flatten(2)


class SeqDropout(nn.Module):
    """Dropout whose mask is shared over all time steps (as SpikingJelly's layer.Dropout),
    so a dropped neuron stays silent for the whole sample. Identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise UsageError(f"dropout p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x_seq):
        if not self.training or self.p == 0.0:
            return x_seq
        keep = torch.bernoulli(torch.full_like(x_seq[0], 1.0 - self.p))
        return x_seq * keep / (1.0 - self.p)

    def extra_repr(self):
        return f"p={self.p}"


class VotingLayer(nn.Module):
    """Population voting (000): average of each group of M consecutive outputs,
    [T, B, M*C] -> [T, B, C] (AvgPool1d with kernel = stride = M)."""

    def __init__(self, population: int = 10):
        super().__init__()
        self.population = int(population)

    def forward(self, x_seq):
        t, b, n = x_seq.shape
        if n % self.population:
            raise UsageError(f"VotingLayer: {n} outputs are not a multiple of M={self.population}")
        return x_seq.reshape(t, b, n // self.population, self.population).mean(-1)

    def extra_repr(self):
        return f"population={self.population}"
