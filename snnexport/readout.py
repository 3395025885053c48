"""Readouts shared by the torch models and every simulator of the IR."""

from __future__ import annotations

import torch


def readout_scores(outputs: torch.Tensor, mode: str, population: int) -> torch.Tensor:
    """Class scores from per-step outputs [T, B, classes].

    rate: spike count per class / (M T). The votes o_t are counts / M; summing the rounded
    counts keeps equal counts exactly equal, so argmax ties break the same way (lowest class)
    in float32 and float64 alike. last / lts: o_{T-1}. membrane: mean_t o_t.
    """
    if mode in ("last", "lts"):
        return outputs[-1]
    if mode == "rate":
        return (outputs * population).round().sum(0) / (population * outputs.shape[0])
    return outputs.mean(0)
