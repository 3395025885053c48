"""Losses of the seed papers, on per-step outputs o shaped [T, B, classes].

  mse    Fang 2021 (000): (1/T) sum_t MSE(o_t, onehot(y))
  ce     cross-entropy on the time-averaged output (rate / mean membrane)
  tet    Deng et al. 2022 TET as used in 001: (1/T) sum_t CE(o_t, y)
  tet_s  001's label-smoothed TET: TET with label smoothing eps
  lts    001's last time step: CE(o_{T-1}, y)

The Var(tau) regulariser of 002 is `neurons.tau_variance_penalty`, added by the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UsageError

LOSSES = ("mse", "ce", "tet", "tet_s", "lts")


def mse_onehot(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    target = F.one_hot(y, o.shape[-1]).to(o.dtype).expand_as(o)
    return F.mse_loss(o, target)


def ce_mean(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(o.mean(0), y)


def tet(o: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    t, b, c = o.shape
    return F.cross_entropy(o.reshape(t * b, c), y.repeat(t), label_smoothing=label_smoothing)


def tet_s(o: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    return tet(o, y, label_smoothing=eps)


def lts(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(o[-1], y)


def get_loss(name: str):
    table = {"mse": mse_onehot, "ce": ce_mean, "tet": tet, "tet_s": tet_s, "lts": lts}
    if name not in table:
        raise UsageError(f"unknown loss {name!r}; choose one of {LOSSES}")
    return table[name]
