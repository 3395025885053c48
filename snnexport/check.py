"""Load a model (checkpoint or IR file), fold it once, and run a parity check against a target:
get the target's backend (snnexport.backends), run it, compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .backends import Lowered
from .backends import get as get_backend
from .data import load_dataset
from .errors import UsageError
from .importers.plifnet import import_plifnet
from .ir import nodes as ir
from .ir.graph import Graph
from .ir.io import MAGIC, load_ir
from .models import load_checkpoint
from .models.network import PLIFNet
from .parity import TOL, ParityReport, compare, run_torch_reference
from .sim.reference import simulate


@dataclass
class LoadedModel:
    path: Path | str
    graph: Graph  # as imported (source-level) or as read from an IR file
    torch_model: PLIFNet | None = None
    meta: dict | None = None
    # runs the original model: (x, dtype) -> SimResult with spikes and H per neuron layer;
    # None for an IR file, whose own float64 simulation is then the reference
    reference: Callable | None = None

    def __post_init__(self):
        if self.reference is None and self.torch_model is not None:
            model = self.torch_model
            self.reference = lambda x, dtype: run_torch_reference(model, x, dtype)


def from_spikingjelly(model, input_shape, time_steps: int, readout: str = "rate",
                      name: str = "<spikingjelly model>") -> LoadedModel:
    from .importers.spikingjelly import import_spikingjelly, run_spikingjelly_reference

    graph = import_spikingjelly(model, input_shape, time_steps, readout)
    return LoadedModel(name, graph, reference=lambda x, dtype: run_spikingjelly_reference(
        model, graph, x, dtype))


def load_model(path) -> LoadedModel:
    """A project checkpoint (.pt) or an IR file (.snnir), told apart by content."""
    path = Path(path)
    if path.is_file() and path.read_bytes()[:len(MAGIC)] == MAGIC:
        return LoadedModel(path, load_ir(path))
    model, meta = load_checkpoint(path)
    graph = import_plifnet(model)
    if "data" in meta:
        graph.metadata["data"] = meta["data"]
    return LoadedModel(path, graph, model, meta)


def thresholds_of(graph: Graph) -> dict[str, float]:
    out = {}
    for name, node in graph.ordered():
        if isinstance(node, ir.LIFNeuron):
            out[name] = float(node.v_threshold)
        elif isinstance(node, ir.Neuron):
            out[name] = float(node.threshold)
    return out


def check(loaded: LoadedModel, target: str = "reference", data: str | None = None,
          samples: int = 200, batch_size: int = 100,
          reference_dtype: torch.dtype = torch.float32,
          target_graph: Graph | None = None,
          inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
          target_dtype: torch.dtype = torch.float64,
          calib_samples: int = 200, decays: int | None = None,
          lowered: Lowered | None = None) -> ParityReport:
    """Reference: the original model in reference_dtype, or an IR file simulated in float64
    (for targets checked against the emulator: the emulator of the fixed-point IR). Target
    'reference': the folded IR (or `target_graph`) in target_dtype. Inputs: the first `samples`
    of the data set's test split, or `inputs` = (x, labels). Fixed-point targets calibrate on
    the first `calib_samples` of the training split (on the inputs themselves when only
    `inputs` is given) and may group per-neuron decays into `decays` values per layer.
    `lowered`: the model already folded / quantised (deploy hands one to every target)."""
    backend = get_backend(target)
    calib_x = None
    if inputs is None or backend.fixed_point:
        data = data or (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        if data is None and inputs is None:
            raise UsageError(f"{loaded.path}: say which data to check on with --data")
        if data is not None:
            ds = load_dataset(data)
            calib_x = ds.x_train[:calib_samples]
            if inputs is None:
                inputs = ds.x_test, ds.y_test
    x, y = inputs[0][:samples], inputs[1][:samples]
    if calib_x is None:
        calib_x = x
    if lowered is None:
        lowered = Lowered(loaded.graph, target_graph)
    if loaded.reference is None:
        reference_dtype = torch.float64
    inp = lowered.input_for(backend, calib_x, decays)  # folded graph, NIR form or fixed net
    stats = None
    if backend.fixed_point:
        from .quant.emulator import EmulatorStats

        stats = EmulatorStats()
    dtype = backend.dtype or target_dtype
    run_target = backend.make_runner(inp, dtype, stats)
    thresholds = thresholds_of(loaded.graph)
    tol, reference = TOL[reference_dtype], loaded.reference
    if backend.reference == "emulator":
        from .quant.emulator import emulate, fixed_threshold

        def reference(xb, dtype):
            return emulate(inp, xb, stats)
        thresholds = {lay.name: fixed_threshold(lay) + 0.5 / lay.scale
                      for lay in inp.layers if not lay.pool}
        tol = 0.0
    # a saturated fixed-point neuron explains a divergence from the float model (overflow)
    saturating = backend.fixed_point and backend.reference == "model"
    report = ParityReport(target=f"{target} ({backend.description}, "
                                 f"{str(dtype).split('.')[-1]})",
                          mismatch_cause=backend.mismatch_cause)
    in_shape = loaded.graph.nodes[loaded.graph.order()[0]].shape
    for lo in range(0, len(y), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        if xb.dim() == len(in_shape) + 2:  # frame sequences are stored [N, T, ...]
            xb = xb.transpose(0, 1)
        if reference is not None:
            ref = reference(xb, reference_dtype)
        else:
            ref = simulate(loaded.graph, xb, dtype=torch.float64, record_membrane=True)
        tgt = run_target(xb)
        compare(report, ref, tgt, yb, thresholds, tol, sample_offset=lo,
                saturated=stats.saturated if saturating else None)
    if backend.finish is not None:
        backend.finish(report, run_target, inp)
    if backend.fixed_point:
        _, grouping = lowered.fixed(calib_x, decays)
        # --decays K: the grouping's size per layer, so the accuracy cost reads against it
        grouped = {r["layer"]: {"decays_before_grouping": r["before"],
                                "decay_max_change": r["max_change"]} for r in grouping or []}
        report.quantisation = [dict(row, v_clipped=stats.v_clipped.get(row["layer"], 0),
                                    u_wrapped=stats.u_wrapped.get(row["layer"], 0),
                                    bias_clipped=row.get("bias_clipped", 0) +
                                    stats.bias_clipped.get(row["layer"], 0),
                                    **grouped.get(row["layer"], {}))
                               for row in inp.report]
    return report
