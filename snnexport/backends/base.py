"""A target as a plug-in backend, the registry of them, and the model lowered once.

A backend says what it is (`name`, `description`), what it takes (the folded graph, NIR's form
of it, or the fixed-point net), what it writes (`exports`), how it runs (`make_runner`), what
it is compared with (`reference`), what prices it (`profile`, a TOML in snnexport/targets/)
and how much of a check it can afford (`slow`). `check` and `deploy` fold once (and quantise
once per calibration settings) through `Lowered` and hand the result to every backend; no
backend folds.

A backend owns its chain: a target that runs a chip's own integer net says how the folded
graph is lowered to it (`Chain.lower`: the quantiser, calibrated on training inputs) and, when it
is compared with an emulator of that net, which one (`Chain.reference_runner`). The Loihi 2
targets share `loihi.LOIHI` (quant/: the fixed-point IR and its emulator); each Xylo target
has `xylo.chain(chip)` (backends/xylo/: bit-shift decays, int8 weights, 16-bit state, its own
emulator).

Adding a target: one module (or, for a chip family with its own quantiser and emulator, one
package) in this package that calls `register(Backend(...))`, imported by `__init__.py`;
nothing else lists target names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import SnnexportError
from ..ir.graph import Graph


class UnknownTarget(SnnexportError, ValueError):
    """A target name no backend is registered under; the message lists the available ones."""


class TargetRefusal(SnnexportError, ValueError):
    """A chip that cannot take this model (a conv on Xylo, too many inputs): a verdict, not a
    failure. The message is the reason; `check` prints "<target> cannot take this model:
    <reason>" (exit status 1), deploy puts it in the target's row."""


@dataclass(frozen=True)
class Export:
    """The artifact a backend writes: `deploy` writes OUTDIR/model<suffix>, `snnexport export
    --to NAME` the file it is given."""

    suffix: str  # e.g. ".onnx", ".fixed.npz"
    # (what the backend takes: folded graph / NIR form / fixed net, path, **options) -> path
    write: Callable[..., Any]
    # command-line options of `snnexport export` the writer takes as keywords ('dt', 'step')
    options: tuple[str, ...] = ()
    # a line `snnexport export` prints after writing, given those options
    note: Callable[[dict], str] | None = None


@dataclass(frozen=True)
class Chain:
    """How a chip family's targets get their net and what they are compared with.
    `lower(folded, calib_x, decays)` -> (the net `make_runner` takes, the decay grouping report
    or None): the quantiser, refusing a model the chip cannot take (a SnnexportError);
    `reference_runner(net, stats)` -> xb -> SimResult: the emulator a target with
    reference='emulator' is compared with; `thresholds(net)` -> {layer: the level a tie is read
    at}; `new_stats()`: the counters the emulator fills (v_clipped, u_wrapped, bias_clipped,
    saturated: quant.emulator.EmulatorStats' fields)."""

    name: str
    lower: Callable[..., Any]
    reference_runner: Callable[[Any, Any], Callable]
    thresholds: Callable[[Any], dict]
    new_stats: Callable[[], Any]
    title: str = ""  # what `export` says it quantised for ("fixed point for Loihi 2")


@dataclass(frozen=True)
class Backend:
    """One target. `make_runner(inp, dtype, stats)` gets what the backend takes (`inp`: the
    folded graph, or the fixed-point net when `fixed_point`), the precision to run in and the
    emulator's saturation counters (fixed point only, else None), and returns a callable
    xb -> SimResult (spikes per layer, readout) for a batch of inputs."""

    name: str
    description: str  # what runs, as the parity report names it
    make_runner: Callable[[Any, torch.dtype, Any], Callable]
    exports: Export | None = None
    # what the target is compared with: 'model' = the trained model (an IR file: its float64
    # simulation), 'emulator' = snnexport's bit-accurate emulator of the fixed-point net
    reference: str = "model"
    fixed_point: bool = False  # takes the quantised net (calibrated on training inputs)
    fold_gain: bool = True  # False: the input gain stays in the neuron (NIR's LIF form)
    dtype: torch.dtype | None = None  # the precision it runs in; None: check's target_dtype
    profile: str = "cmos45"  # the energy profile (snnexport/targets/<profile>.toml) that prices it
    slow: bool = False  # checked on fewer samples in deploy (--lava-samples)
    mismatch_cause: str = "unexplained"  # what a mismatch against the reference is put down to
    resets_to_zero: bool = False  # Loihi's LIF: hard reset to 0 only (the linter's soft-reset)
    bounded_decays: bool = False  # a chip core holds few decay settings (linter: per-neuron τ)
    # after the run: (report, runner, inp) -> None, adds what only this target measures
    finish: Callable[[Any, Any, Any], None] | None = None
    # (artifact path, inp, dtype, stats) -> the runner of the artifact FILE `exports` wrote,
    # read back from disk (deploy checks the file a user takes away, not a model in memory)
    run_file: Callable[[Any, Any, torch.dtype, Any], Callable] | None = None
    # the written file run_file takes when not this one's own export: the name of the backend
    # whose export it is (lava-fixed runs the fixed-point IR file 'fixed' writes), or FOLDED
    # (the folded IR file deploy writes, model.snnir: reference, lava-float)
    artifact_of: str | None = None
    # fixed_point: the chain that lowers the folded graph to the chip's net and emulates it
    # (Chain); None: Loihi 2's (loihi.LOIHI)
    chain: Chain | None = None

    def __post_init__(self):
        if self.reference not in ("model", "emulator"):
            raise ValueError(f"backend {self.name!r}: reference must be 'model' or 'emulator'")
        if self.reference == "emulator" and not self.fixed_point:
            raise ValueError(f"backend {self.name!r}: the emulator reference needs fixed_point")
        if self.fixed_point and self.chain is None:
            from .loihi import LOIHI

            object.__setattr__(self, "chain", LOIHI)


FOLDED = "fold"  # Backend.artifact_of: the folded IR file (.snnir) deploy's fold step writes

_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Adds (or replaces) a backend; the registry keeps the order of registration."""
    _REGISTRY[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def available() -> tuple[str, ...]:
    """The registered target names, in registration order."""
    return tuple(_REGISTRY)


def backends() -> tuple[Backend, ...]:
    return tuple(_REGISTRY.values())


def get(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTarget(f"unknown target {name!r}; available: "
                            f"{', '.join(available())}") from None


def fixed_point(folded: Graph, calib_x: torch.Tensor, decays: int | None = None):
    """The fixed-point IR of a folded graph (decays grouped to at most `decays` values per
    layer first, if asked), and the grouping report. Refused up front (UsageError): no
    calibration samples, `decays` below 1, a calibration run (all of `calib_x` at once, float64,
    membranes recorded) larger than the memory available."""
    from ..passes.group_decays import group_decays
    from ..quant import quantize
    from ..sim.limits import count, ensure_fits, run_bytes, time_steps_of

    n = count("--calib-samples", len(calib_x))
    t = time_steps_of(folded, calib_x)
    ensure_fits(run_bytes(folded, n, t), f"calibrating the fixed point on {n} samples over T={t}",
                "give fewer --calib-samples")
    grouping = None
    if decays is not None:
        count("--decays", decays)
        folded, grouping = group_decays(folded, decays)
    return quantize(folded, calib_x), grouping


@dataclass
class Lowered:
    """A model lowered once: the folded graph and NIR's form of it (input gain kept in the
    neuron) are made on first use and kept, the fixed-point net once per calibration inputs
    and decay grouping. `folded` given: the graph every backend takes (its NIR form too)."""

    graph: Graph  # as imported or read (source-level or folded)
    folded_graph: Graph | None = None
    _nir_form: Graph | None = field(default=None, repr=False)
    _fixed: list = field(default_factory=list, repr=False)  # (calib_x, decays, lower, net, ...)
    _given: bool = field(default=False, init=False, repr=False)

    def __post_init__(self):
        self._given = self.folded_graph is not None

    @property
    def folded(self) -> Graph:
        if self.folded_graph is None:
            from ..passes.fold import fold

            self.folded_graph = fold(self.graph)
        return self.folded_graph

    def folded_for(self, fold_gain: bool = True) -> Graph:
        """The folded graph, or (fold_gain False) NIR's form of it; a given folded graph
        stands for both."""
        if fold_gain or self._given:
            return self.folded
        if self._nir_form is None:
            from ..passes.fold import fold

            self._nir_form = fold(self.graph, fold_gain=False)
        return self._nir_form

    def fixed(self, calib_x: torch.Tensor, decays: int | None = None,
              chain: Chain | None = None):
        """(fixed-point net, decay grouping report), quantised on the first call for these
        calibration inputs, this grouping and this chain (None: Loihi 2's fixed point)."""
        lower = fixed_point if chain is None else chain.lower
        for cx, k, low, net, grouping in self._fixed:
            if (k == decays and low is lower and cx.shape == calib_x.shape
                    and torch.equal(cx, calib_x)):
                return net, grouping
        net, grouping = lower(self.folded, calib_x, decays)
        self._fixed.append((calib_x, decays, lower, net, grouping))
        return net, grouping

    def input_for(self, backend: Backend, calib_x: torch.Tensor | None = None,
                  decays: int | None = None):
        """What `backend` takes: the fixed-point net, or the folded graph in its form."""
        if backend.fixed_point:
            if calib_x is None:
                raise ValueError(f"target {backend.name!r} runs the fixed-point net: give the "
                                 "calibration inputs")
            return self.fixed(calib_x, decays, backend.chain)[0]
        return self.folded_for(backend.fold_gain)
