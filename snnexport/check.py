"""Load a model (checkpoint or IR file), fold it, and run a parity check against a target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .data import load_dataset
from .importers.plifnet import import_plifnet
from .ir import nodes as ir
from .ir.graph import Graph
from .ir.io import MAGIC, load_ir
from .models import load_checkpoint
from .models.network import PLIFNet
from .parity import TOL, ParityReport, compare, run_torch_reference
from .passes.fold import fold
from .sim.reference import simulate

TARGETS = ("reference", "nir", "onnx", "lava-float", "fixed", "onnx-fixed", "lava-fixed",
           "netx")
# the fixed-point targets: 'fixed' is snnexport's bit-accurate emulator of the quantised IR
# checked against the float model; 'lava-fixed' (LIF + Dense processes) and 'netx' (the HDF5
# file as lava-dl builds it) run in Lava fixed_pt and 'onnx-fixed' (the integer ONNX artifact)
# in onnxruntime, each checked against that emulator
FIXED_TARGETS = ("fixed", "onnx-fixed", "lava-fixed", "netx")


def target_graph_for(target: str, graph: Graph) -> Graph:
    """The IR a target runs: 'reference' the folded IR; 'nir' the IR read back from an exported
    NIR file (export, write, read, import: what a NIR consumer gets)."""
    if target in ("reference", "onnx", "lava-float") + FIXED_TARGETS:
        return fold(graph)
    if target == "nir":
        import tempfile
        import warnings

        from .exporters.nir_export import write_nir
        from .importers.nir_import import read_nir

        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # metadata that only snnexport reads: expected here
            return read_nir(write_nir(graph, Path(d) / "model.nir"))
    raise ValueError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")


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


def fixed_point(folded: Graph, calib_x: torch.Tensor, decays: int | None = None):
    """The fixed-point IR of a folded graph (decays grouped to at most `decays` values per
    layer first, if asked), and the grouping report."""
    from .passes.group_decays import group_decays
    from .quant import quantize

    grouping = None
    if decays is not None:
        folded, grouping = group_decays(folded, decays)
    return quantize(folded, calib_x), grouping


def check(loaded: LoadedModel, target: str = "reference", data: str | None = None,
          samples: int = 200, batch_size: int = 100,
          reference_dtype: torch.dtype = torch.float32,
          target_graph: Graph | None = None,
          inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
          target_dtype: torch.dtype = torch.float64,
          calib_samples: int = 200, decays: int | None = None) -> ParityReport:
    """Reference: the original model in reference_dtype, or an IR file simulated in float64
    (for 'lava-fixed' / 'netx': the emulator of the fixed-point IR). Target 'reference': the
    folded IR (or `target_graph`) in target_dtype. Inputs: the first `samples` of the data
    set's test split, or `inputs` = (x, labels). Fixed-point targets calibrate on the first
    `calib_samples` of the training split (on the inputs themselves when only `inputs` is
    given) and may group per-neuron decays into `decays` values per layer."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    calib_x = None
    if inputs is None or target in FIXED_TARGETS:
        data = data or (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        if data is None and inputs is None:
            raise ValueError(f"{loaded.path}: say which data to check on with --data")
        if data is not None:
            ds = load_dataset(data)
            calib_x = ds.x_train[:calib_samples]
            if inputs is None:
                inputs = ds.x_test, ds.y_test
    x, y = inputs[0][:samples], inputs[1][:samples]
    if calib_x is None:
        calib_x = x
    folded = target_graph if target_graph is not None else target_graph_for(target,
                                                                            loaded.graph)
    if loaded.reference is None:
        reference_dtype = torch.float64
    thresholds = thresholds_of(loaded.graph)
    tol, cause, reference = TOL[reference_dtype], "unexplained", loaded.reference
    fixed_net, stats, grouping = None, None, None
    if target in FIXED_TARGETS:
        from .quant.emulator import EmulatorStats, emulate, fixed_threshold

        fixed_net, grouping = fixed_point(folded, calib_x, decays)
        stats = EmulatorStats()
        target_dtype = torch.int64
    if target == "onnx":
        from .onnx_run import ONNXTarget

        run_target = ONNXTarget(folded)
        target_dtype = torch.float32
    elif target == "lava-float":
        from .lava.target import LavaFloatTarget

        run_target = LavaFloatTarget(folded)
        target_dtype = torch.float64
    elif target == "fixed":
        def run_target(xb):
            return emulate(fixed_net, xb, stats)
        cause = "quantisation"
    elif target in ("onnx-fixed", "lava-fixed", "netx"):
        if target == "onnx-fixed":
            from .exporters.onnx_fixed import ONNXFixedTarget

            run_target = ONNXFixedTarget(fixed_net)
        else:
            from .lava.target import LavaFixedTarget

            run_target = LavaFixedTarget(fixed_net, netx=target == "netx")

        def reference(xb, dtype):
            return emulate(fixed_net, xb, stats)
        thresholds = {lay.name: fixed_threshold(lay) + 0.5 / lay.scale
                      for lay in fixed_net.layers if not lay.pool}
        tol = 0.0
    else:
        def run_target(xb):
            return simulate(folded, xb, dtype=target_dtype, record_membrane=True)
    what = {"reference": "folded IR", "nir": "NIR file read back",
            "onnx": "onnxruntime, optimisations off",
            "lava-float": "Lava floating_pt, aligned for the Dense delays",
            "fixed": "snnexport's bit-accurate emulator of the fixed-point IR",
            "onnx-fixed": "integer ONNX in onnxruntime vs the emulator",
            "lava-fixed": "Lava fixed_pt LIF + Dense/Conv processes vs the emulator, aligned",
            "netx": "netx HDF5 in Lava fixed_pt vs the emulator, aligned"}[target]
    report = ParityReport(target=f"{target} ({what}, {str(target_dtype).split('.')[-1]})",
                          mismatch_cause=cause)
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
                saturated=stats.saturated if target == "fixed" else None)
    if target == "onnx":
        from .onnx_run import binary_spike_check

        report.binary = binary_spike_check(folded, run_target.spike_inputs)
    if fixed_net is not None:
        # --decays K: the grouping's size per layer, so the accuracy cost reads against it
        grouped = {r["layer"]: {"decays_before_grouping": r["before"],
                                "decay_max_change": r["max_change"]} for r in grouping or []}
        report.quantisation = [dict(row, v_clipped=stats.v_clipped.get(row["layer"], 0),
                                    u_wrapped=stats.u_wrapped.get(row["layer"], 0),
                                    bias_clipped=row.get("bias_clipped", 0) +
                                    stats.bias_clipped.get(row["layer"], 0),
                                    **grouped.get(row["layer"], {}))
                               for row in fixed_net.report]
    return report
