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
from .quant import QuantError
from .sim.limits import count, ensure_fits, first, fit_input, run_bytes, time_steps_of
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


def from_snntorch(net, input_shape, time_steps: int, readout: str = "rate",
                  name: str = "<snntorch model>") -> LoadedModel:
    """An nn.Sequential of torch layers and snntorch.Leaky(init_hidden=True); its reference is
    snnTorch's own forward, one call per step (snnexport.importers.snntorch)."""
    from .importers.snntorch import import_snntorch, run_snntorch_reference

    graph = import_snntorch(net, input_shape, time_steps, readout)
    return LoadedModel(name, graph, reference=lambda x, dtype: run_snntorch_reference(
        net, graph, x, dtype))


def from_norse(net, input_shape, time_steps: int, readout: str = "rate",
               name: str = "<norse model>") -> LoadedModel:
    """A norse.torch.SequentialState of torch layers and LIFCell / LIFBoxCell / LIF; its
    reference is Norse's own forward (snnexport.importers.norse)."""
    from .importers.norse import import_norse, run_norse_reference

    graph = import_norse(net, input_shape, time_steps, readout)
    return LoadedModel(name, graph, reference=lambda x, dtype: run_norse_reference(
        net, graph, x, dtype))


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_model(path, time_steps: int | None = None) -> LoadedModel:
    """A model file, told apart by content (not by its name): an snnexport checkpoint (.pt),
    an IR file (.snnir) or a NIR file from any producer (HDF5 with NIR's 'node' group).
    `time_steps` sets T where the file does not say it (NIR) and overrides it elsewhere."""
    path = Path(path)
    head = path.read_bytes()[:16] if path.is_file() else b""
    if head[:len(MAGIC)] == MAGIC:
        loaded = LoadedModel(path, load_ir(path))
    elif head[:8] == HDF5_MAGIC:
        loaded = LoadedModel(path, _read_hdf5_model(path))
    else:
        model, meta = load_checkpoint(path)
        graph = import_plifnet(model)
        if "data" in meta:
            graph.metadata["data"] = meta["data"]
        loaded = LoadedModel(path, graph, model, meta)
    if time_steps is not None:
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise UsageError(f"--time-steps {time_steps!r}: give a whole number >= 1")
        loaded.graph.metadata["time_steps"] = int(time_steps)
    if head[:8] == HDF5_MAGIC and not loaded.graph.metadata.get("time_steps"):
        raise UsageError(f"{path}: a NIR graph does not say how many time steps the network "
                         "runs; give them (--time-steps T)")
    return loaded


def _read_hdf5_model(path: Path) -> Graph:
    """A NIR file; a netx file (lava-dl's HDF5, a 'layer' group) is named as such."""
    import h5py

    from .importers.nir_import import read_nir

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError as exc:
        raise UsageError(f"{path}: not a readable HDF5 file ({exc})") from None
    if "layer" in keys and "node" not in keys:
        raise UsageError(f"{path}: a netx (lava-dl) file; snnexport reads snnexport "
                         "checkpoints, .snnir and NIR files; export the network it came from "
                         "to NIR")
    return read_nir(path)


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
    `lowered`: the model already folded / quantised (deploy hands one to every target).
    Refused before anything runs (UsageError, snnexport.sim.limits): a count below 1, more
    samples than the data hold, inputs of another shape than the model's, a batch larger than
    the memory available."""
    backend = get_backend(target)
    samples = count("--samples", samples)
    calib_samples = count("--calib-samples", calib_samples)
    batch_size = count("batch_size", batch_size)
    if decays is not None:
        decays = count("--decays", decays)
    calib_x, what = None, "the given inputs"
    own = (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
    if inputs is None or backend.fixed_point:
        data = data or own
        if data is None and inputs is None:
            raise UsageError(f"{loaded.path}: say which data to check on with --data")
        if data is not None:
            ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
            fix = (f"check on --data {own}, the data it was trained on" if own and own != data
                   else "give data of that shape (--data)")
            fit_input(loaded.graph, ds.x_test, loaded.path, f"the {data} test split", fix)
            if backend.fixed_point:  # only the quantiser calibrates
                calib_x = first(ds.x_train, calib_samples, "--calib-samples",
                                f"the {data} training split")
            if inputs is None:
                inputs, what = (ds.x_test, ds.y_test), f"the {data} test split"
    x = first(torch.as_tensor(inputs[0]), samples, "--samples", what)  # numpy or torch
    y = torch.as_tensor(inputs[1])[:samples]
    fit_input(loaded.graph, x, loaded.path, what)
    if calib_x is None:
        calib_x = x
    # the reference and the target of one batch are in memory together: refuse up front
    t = time_steps_of(loaded.graph, x)
    batch = min(batch_size, len(x))
    ensure_fits(2 * run_bytes(loaded.graph, batch, t),
                f"{loaded.path}: checking {target} on batches of {batch} samples over T={t}",
                "lower T, the batch or the model's size")
    if lowered is None:
        lowered = Lowered(loaded.graph, target_graph)
    if loaded.reference is None:
        reference_dtype = torch.float64
    try:
        inp = lowered.input_for(backend, calib_x, decays)  # folded graph, NIR form or fixed net
    except (QuantError, UsageError) as e:  # out of Loihi 2's bounds, or of the memory
        raise type(e)(f"{loaded.path}: {e}") from None
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
