"""Energy estimates from real operation counts (counts.py) and sourced target profiles
(estimate.py, snnexport/targets/*.toml)."""

from __future__ import annotations

import torch

from ..data import load_dataset
from ..data.user import data_for
from ..errors import SnnexportError, UsageError
from ..passes.fold import fold
from ..sim.limits import count, first, fit_input
from .counts import (
    LayerCounts,
    add_totals,
    ann_macs,
    count_operations,
    count_totals,
    per_inference,
)
from .estimate import EnergyReport, Profile, available_profiles, estimate, load_profile, plot

__all__ = ["EnergyReport", "LayerCounts", "Profile", "ann_macs", "available_profiles",
           "count_operations", "counts_of", "energy_of", "estimate", "load_profile", "plot"]


def energy_of(loaded, profile: str, data: str | None = None, samples: int = 200,
              inputs: tuple[torch.Tensor, torch.Tensor] | None = None, workers: int = 1,
              ray_address: str | None = None) -> EnergyReport:
    """Fold the model, count its operations on real inputs, and price them on `profile`.
    Refused before running (UsageError): `samples` below 1 or more than the data hold, inputs
    of another shape than the model's, a batch larger than the memory available.
    `workers` N > 1 (or `ray_address`): counted in N shards on Ray (counts_of)."""
    from ..distributed import wanted

    if loaded.fixed is not None:  # a fixed-point net with no float model behind it (netx)
        return _fixed_energy(loaded, profile, data, samples, inputs)
    samples = count("--samples", samples)
    wanted(workers, ray_address)  # a bad --workers / --ray-address: refused before any work
    graph = fold(loaded.graph)
    what = "the given inputs"
    if inputs is None:
        own = (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        data = data_for(data, loaded)  # a file names only a built-in set: never code
        if data is None:
            raise UsageError(f"{loaded.path}: say which data to count on with --data")
        ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
        inputs, what = (ds.x_test, None), f"the {data} test split"
        fix = (f"count on --data {own}, the data it was trained on" if own and own != data
               else "")
        fit_input(graph, inputs[0], loaded.path, what, fix)
    x = first(inputs[0], samples, "--samples", what)
    counts = counts_of(graph, x, workers, ray_address, source=str(loaded.path), what=what)
    prof = load_profile(profile)
    t = int(graph.metadata.get("time_steps") or x.shape[1])
    return estimate(counts, prof, sum(m for _, m in ann_macs(graph)), len(x), t)


def counts_of(graph, x: torch.Tensor, workers: int = 1, ray_address: str | None = None,
              source: str = "<model>", what: str = "the inputs") -> list[LayerCounts]:
    """count_operations of the folded `graph` on x; with `workers` N > 1 (or `ray_address`)
    x is cut into N contiguous shards, each counted by a Ray task (snnexport.distributed),
    the shards' totals summed and divided by the number of samples once: the counts one
    process gives. A shard that fails on every try is an error (UsageError naming its
    samples): an energy figure on part of the samples would silently be another one."""
    from .. import distributed

    if not distributed.wanted(workers, ray_address):
        return count_operations(graph, x, source=source, what=what)
    count("--samples", len(x))
    fit_input(graph, x, source, what)
    parts = distributed.shards(len(x), workers)
    results = distributed.run(_count_shard, graph, [(x[lo:hi].clone(), source, what)
                                                    for lo, hi in parts],
                              workers, ray_address, refusals=(SnnexportError,))
    failed = [(p, r) for p, r in zip(parts, results, strict=True)
              if isinstance(r, distributed.Failed)]
    if failed:
        (lo, hi), r = failed[0]
        raise ShardError(f"{source}: counting operations: shard {r.index + 1} (samples {lo}-"
                         f"{hi - 1}) failed on all {r.tries} tries: {r.error}")
    return per_inference(add_totals(results), len(x))


def _fixed_energy(loaded, profile: str, data, samples: int, inputs) -> EnergyReport:
    """`snnexport energy NET.net --data FILE.npz`: a model that is a fixed-point net (a netx
    file) counted on its own integer inputs (quant/netx_inputs.py) by count_fixed_totals."""
    from ..quant.netx_inputs import driven, inputs_for
    from .counts import count_fixed_totals, fixed_ann_macs

    net = loaded.fixed
    ins = inputs_for(net, loaded.path, data, inputs, count("--samples", samples), "counted")
    t_steps, n = ins.x.shape[0], ins.x.shape[1]
    counts = per_inference(count_fixed_totals(driven(net, ins), ins.x), n)
    return estimate(counts, load_profile(profile), fixed_ann_macs(net), n, t_steps)


class ShardError(SnnexportError, RuntimeError):
    """A shard of a distributed energy count failed on every try."""


def _count_shard(graph, x: torch.Tensor, source: str, what: str) -> list[LayerCounts]:
    return count_totals(graph, x, source=source, what=what)
