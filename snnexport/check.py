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

TARGETS = ("reference", "nir", "onnx", "lava-float")


def target_graph_for(target: str, graph: Graph) -> Graph:
    """The IR a target runs: 'reference' the folded IR; 'nir' the IR read back from an exported
    NIR file (export, write, read, import: what a NIR consumer gets)."""
    if target in ("reference", "onnx", "lava-float"):
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


def check(loaded: LoadedModel, target: str = "reference", data: str | None = None,
          samples: int = 200, batch_size: int = 100,
          reference_dtype: torch.dtype = torch.float32,
          target_graph: Graph | None = None,
          inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
          target_dtype: torch.dtype = torch.float64) -> ParityReport:
    """Reference: the original model in reference_dtype, or an IR file simulated in float64.
    Target 'reference': the folded IR (or `target_graph`) in target_dtype. Inputs: the first
    `samples` of the data set's test split, or `inputs` = (x, labels)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; available: {', '.join(TARGETS)}")
    if inputs is None:
        data = data or (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
        if data is None:
            raise ValueError(f"{loaded.path}: say which data to check on with --data")
        ds = load_dataset(data)
        inputs = ds.x_test, ds.y_test
    x, y = inputs[0][:samples], inputs[1][:samples]
    folded = target_graph if target_graph is not None else target_graph_for(target,
                                                                            loaded.graph)
    if loaded.reference is None:
        reference_dtype = torch.float64
    if target == "onnx":
        from .onnx_run import ONNXTarget

        run_target = ONNXTarget(folded)
        target_dtype = torch.float32
    elif target == "lava-float":
        from .lava.target import LavaFloatTarget

        run_target = LavaFloatTarget(folded)
        target_dtype = torch.float64
    else:
        def run_target(xb):
            return simulate(folded, xb, dtype=target_dtype, record_membrane=True)
    what = {"reference": "folded IR", "nir": "NIR file read back",
            "onnx": "onnxruntime, optimisations off",
            "lava-float": "Lava floating_pt, aligned for the Dense delays"}[target]
    report = ParityReport(target=f"{target} ({what}, {str(target_dtype).split('.')[-1]})")
    thresholds = thresholds_of(loaded.graph)
    in_shape = loaded.graph.nodes[loaded.graph.order()[0]].shape
    for lo in range(0, len(y), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        if xb.dim() == len(in_shape) + 2:  # frame sequences are stored [N, T, ...]
            xb = xb.transpose(0, 1)
        if loaded.reference is not None:
            ref = loaded.reference(xb, reference_dtype)
        else:
            ref = simulate(loaded.graph, xb, dtype=torch.float64, record_membrane=True)
        tgt = run_target(xb)
        compare(report, ref, tgt, yb, thresholds, TOL[reference_dtype], sample_offset=lo)
    if target == "onnx":
        from .onnx_run import binary_spike_check

        report.binary = binary_spike_check(folded, run_target.spike_inputs)
    return report
