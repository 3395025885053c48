"""Energy estimates from real operation counts (counts.py) and sourced target profiles
(estimate.py, ../targets/*.toml)."""

from __future__ import annotations

import torch

from ..data import load_dataset
from ..passes.fold import fold
from .counts import LayerCounts, ann_macs, count_operations
from .estimate import EnergyReport, Profile, available_profiles, estimate, load_profile, plot

__all__ = ["EnergyReport", "LayerCounts", "Profile", "ann_macs", "available_profiles",
           "count_operations", "energy_of", "estimate", "load_profile", "plot"]


def energy_of(loaded, profile: str, data: str | None = None, samples: int = 200,
              inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> EnergyReport:
    """Fold the model, count its operations on real inputs, and price them on `profile`."""
    graph = fold(loaded.graph)
    if inputs is None:
        data = data or (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        if data is None:
            raise ValueError(f"{loaded.path}: say which data to count on with --data")
        inputs = (load_dataset(data).x_test, None)
    x = inputs[0][:samples]
    counts = count_operations(graph, x)
    prof = load_profile(profile)
    t = int(graph.metadata.get("time_steps") or x.shape[1])
    return estimate(counts, prof, sum(m for _, m in ann_macs(graph)), len(x), t)
