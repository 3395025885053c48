"""Energy estimates from real operation counts (counts.py) and sourced target profiles
(estimate.py, snnexport/targets/*.toml)."""

from __future__ import annotations

import torch

from ..data import load_dataset
from ..errors import UsageError
from ..passes.fold import fold
from ..sim.limits import count, first, fit_input
from .counts import LayerCounts, ann_macs, count_operations
from .estimate import EnergyReport, Profile, available_profiles, estimate, load_profile, plot

__all__ = ["EnergyReport", "LayerCounts", "Profile", "ann_macs", "available_profiles",
           "count_operations", "energy_of", "estimate", "load_profile", "plot"]


def energy_of(loaded, profile: str, data: str | None = None, samples: int = 200,
              inputs: tuple[torch.Tensor, torch.Tensor] | None = None) -> EnergyReport:
    """Fold the model, count its operations on real inputs, and price them on `profile`.
    Refused before running (UsageError): `samples` below 1 or more than the data hold, inputs
    of another shape than the model's, a batch larger than the memory available."""
    samples = count("--samples", samples)
    graph = fold(loaded.graph)
    what = "the given inputs"
    if inputs is None:
        own = (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        data = data or own
        if data is None:
            raise UsageError(f"{loaded.path}: say which data to count on with --data")
        ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
        inputs, what = (ds.x_test, None), f"the {data} test split"
        fix = (f"count on --data {own}, the data it was trained on" if own and own != data
               else "")
        fit_input(graph, inputs[0], loaded.path, what, fix)
    x = first(inputs[0], samples, "--samples", what)
    counts = count_operations(graph, x, source=str(loaded.path), what=what)
    prof = load_profile(profile)
    t = int(graph.metadata.get("time_steps") or x.shape[1])
    return estimate(counts, prof, sum(m for _, m in ann_macs(graph)), len(x), t)
