"""IR -> NIR 1.0.8 graph / file.

Neurons are written with Euler semantics that reproduce the IR exactly at the graph's dt
(default 1e-4 s, the snnTorch / SpikingJelly convention), from the IR folded *without* moving
the input gain into the synapse, so that a PLIF layer reads as NIR expects it:

    IR  H_t = decay V_{t-1} + gain I_t          NIR (Euler)  v += dt/tau (v_leak - v + r I)
    ->  tau = dt / (1 - decay),  r = gain / (1 - decay)  (= 1 for decay_input PLIF),
        v_leak = v_reset = 0 (the IR has V_reset shifted away)
    IF  (decay 1): nir.IF with r = gain / dt;  non-spiking layer: nir.LI
    current-based (J = current_decay J + I, H = decay V + gain J): nir.CubaLIF (CubaLI)
        with tau_mem, r as above, tau_syn = dt / (1 - current_decay), w_in = 1 / (1 -
        current_decay) (so that NIR's I += dt/tau_syn (w_in S - I) is J), the form snnTorch's
        import_from_nir reads as Synaptic (r = tau_mem / dt, w_in dt / tau_syn = 1 at gain 1)

NIR fires on v > v_threshold, the IR on H >= threshold: the NIR threshold is the IR threshold
moved one float64 step down (np.nextafter), so the two agree for every float64 value.

What NIR 1.0.8 cannot say goes into node metadata, read back by snnexport only (export warns):
  snnexport.v_init    the initial membrane potential (IMP), as an array
  snnexport.reset     "soft" for subtract reset (NIR has hard reset only); a soft reset by
                      another amount than the threshold (Neuron.reset_by) is refused
  snnexport.readout   on the output Linear: the readout mode (rate / last / membrane) and
                      snnexport.population, the voting group size M
  snnexport.name      the IR node name (NIR names have '.' replaced by '_')
  snnexport.decay / snnexport.gain   the exact IR values (tau and r reproduce them only to
                      float rounding); the importer uses them while they agree with tau, r
Graph metadata: dt, snnexport.time_steps, snnexport.format_version.

The OR-pool is written as SumPool2d followed by Threshold(0.5) (at least one spike in the
window); population voting as a Linear with 1/M entries.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np

from ..errors import SnnexportError
from ..files import atomic_write
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.neurons import kind_of
from ..nir_conventions import DEFAULT_DT, voting_matrix

FORMAT_VERSION = 1


class NIRExportError(SnnexportError, ValueError):
    """An IR node NIR cannot express; names the node."""


def nir_name(name: str) -> str:
    return name.replace(".", "_")


def _full(a, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(a, dtype=np.float64), shape).copy()


def neuron_to_nir(name: str, n: ir.Neuron, dt: float) -> nir.NIRNode:
    """The NIR node of a neuron, of the type its kind names (ir/neurons.py nir_types) with the
    parameters its kind converts (the module docstring)."""
    kind = kind_of(n)
    types = kind.need("nir_types", f"node {name!r}: NIR")
    shape = tuple(n.shape)
    decay = _full(n.decay, shape)
    gain = _full(1.0 if n.gain is None else n.gain, shape)
    # the exact IR values, since dt / (dt / x) is not always x in floating point
    meta = {"snnexport.name": name, "snnexport.decay": decay, "snnexport.gain": gain}
    v_init = np.asarray(n.v_init, dtype=np.float64)
    if np.any(v_init != 0):
        meta["snnexport.v_init"] = _full(v_init, shape)
    if n.reset_by is not None:  # snnTorch's subtract reset with beta < 1 (ir.Neuron)
        raise NIRExportError(
            f"node {name!r}: its soft reset subtracts reset_by (not the threshold), which NIR "
            "cannot state (its LIF has no reset amount); export to onnx, or retrain with a "
            "zero reset (snnTorch reset_mechanism='zero')")
    if n.reset == "soft":
        meta["snnexport.reset"] = "soft"
    threshold = _full(np.nextafter(float(n.threshold), -np.inf), shape)
    zeros = np.zeros(shape)
    leak = 1.0 - decay
    if np.all(leak == 0):
        if types.no_leak is None:
            raise NIRExportError(f"node {name!r}: a current-based layer without leak (decay 1) "
                                 "has no NIR form (CubaLIF's membrane leaks); export to onnx")
        if not n.spiking:
            return getattr(nir, types.no_leak_non_spiking)(r=gain / dt, metadata=meta)
        return getattr(nir, types.no_leak)(r=gain / dt, v_threshold=threshold, v_reset=zeros,
                                           metadata=meta)
    if np.any(leak <= 0) or np.any(leak > 1):
        raise NIRExportError(f"node {name!r}: decay must lie in [0, 1) for NIR's LIF")
    tau, r = dt / leak, gain / leak
    if kind.has_current:  # the kind's current: tau_syn, w_in (kind.nir_current)
        current = _full(getattr(n, kind.current_param), shape)
        if np.any(current >= 1):
            raise NIRExportError(f"node {name!r}: a current that never decays (current_decay "
                                 "1) has no tau_syn in NIR's CubaLIF; export to onnx")
        # the exact IR value as the importer reads it back (1 - k_s, k_s = 1 - current_decay)
        meta[f"snnexport.{kind.current_param}"] = 1.0 - (1.0 - current)
        cuba = dict(**kind.nir_current(current, dt), tau_mem=tau, r=r, v_leak=zeros,
                    metadata=meta)
        if not n.spiking:
            return getattr(nir, types.non_spiking)(**cuba)
        return getattr(nir, types.spiking)(v_threshold=threshold, v_reset=zeros, **cuba)
    if not n.spiking:
        return getattr(nir, types.non_spiking)(tau=tau, r=r, v_leak=zeros, metadata=meta)
    return getattr(nir, types.spiking)(tau=tau, r=r, v_leak=zeros, v_threshold=threshold,
                                       v_reset=zeros, metadata=meta)


def to_nir(graph: Graph, dt: float = DEFAULT_DT) -> nir.NIRGraph:
    """A NIR graph of `graph` (folded IR; with fold_gain=False NIR's LIF keeps
    the input gain as r). Merges, since NIR sums the edges into
    a node: Add -> Scale(1) fed by both inputs; SEW AND -> Threshold(1.5) fed by both (a + b >
    1.5 is a AND b for spikes); SEW IAND (1 - a) b -> a through Scale(-1), and b, into
    Threshold(0.5) (b - a > 0.5 is (NOT a) AND b). Each carries 'snnexport.merge' so the
    importer restores the node."""
    if not graph.metadata.get("folded"):  # exporters never fold: the caller folds once
        raise NIRExportError("export the folded IR: fold(graph, fold_gain=False) keeps the "
                             "input gain in the neuron as NIR's LIF does (snnexport fold)")
    g = graph
    shapes = g.shapes()
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}  # IR node -> the NIR node its inputs go to
    exit_: dict[str, str] = {}  # IR node -> the NIR node carrying its output
    lost = []

    def add(key, node, name):
        nodes[key] = node
        entry.setdefault(name, key)
        if exit_.get(name) is not None:
            edges.append((exit_[name], key))
        exit_[name] = key

    for name, node in g.ordered():
        key = nir_name(name) if not isinstance(node, ir.Input) else "input"
        in_shapes = [shapes[p] for p in g.inputs(name)]
        prev_shape = in_shapes[0] if in_shapes else None
        if isinstance(node, ir.Input):
            add("input", nir.Input(input_type={"input": np.array(node.shape)}), name)
        elif isinstance(node, ir.Conv2d):
            bias = node.bias if node.bias is not None else np.zeros(node.weight.shape[0])
            add(key, nir.Conv2d(input_shape=tuple(prev_shape[1:]),
                                weight=np.asarray(node.weight, dtype=np.float64),
                                stride=tuple(node.stride), padding=tuple(node.padding),
                                dilation=(1, 1), groups=node.groups,
                                bias=np.asarray(bias, dtype=np.float64),
                                metadata={"snnexport.name": name}), name)
        elif isinstance(node, ir.Dense):
            w = np.asarray(node.weight, dtype=np.float64)
            meta = {"snnexport.name": name}
            add(key, nir.Linear(weight=w, metadata=meta) if node.bias is None else
                nir.Affine(weight=w, bias=np.asarray(node.bias, dtype=np.float64),
                           metadata=meta), name)
        elif hasattr(node, "neuron_kind"):  # a neuron of any kind with a NIR form
            nn_ = neuron_to_nir(name, node, dt)
            lost += [k for k in ("snnexport.v_init", "snnexport.reset") if k in nn_.metadata]
            add(key, nn_, name)
        elif isinstance(node, ir.SpikePool):
            if node.mode == "max":
                raise NIRExportError(
                    f"node {name!r}: a max-pool of graded values (a SEW ADD's 0/1/2 or a "
                    "current) has no NIR node (NIR pools sum or average); export to onnx, or "
                    "pool the spikes after the neuron")
            pool = dict(kernel_size=np.array(node.kernel), stride=np.array(node.stride),
                        padding=np.array(node.padding))
            add(key, nir.SumPool2d(**pool, metadata={"snnexport.name": name}), name)
            if node.mode == "or":
                add(key + "_or", nir.Threshold(threshold=np.full(shapes[name], 0.5),
                                               metadata={"snnexport.name": name,
                                                         "snnexport.or_pool": 1}), name)
        elif isinstance(node, ir.AvgPool2d):
            add(key, nir.AvgPool2d(kernel_size=np.array(node.kernel),
                                   stride=np.array(node.stride),
                                   padding=np.array(node.padding),
                                   metadata={"snnexport.name": name}), name)
        elif isinstance(node, ir.Flatten):
            add(key, nir.Flatten(input_type={"input": np.array(prev_shape)}, start_dim=0,
                                 end_dim=-1, metadata={"snnexport.name": name}), name)
        elif isinstance(node, ir.Readout):
            classes = shapes[name][0]
            add(key, nir.Linear(weight=voting_matrix(classes, node.population), metadata={
                "snnexport.name": name, "snnexport.readout": node.mode,
                "snnexport.population": node.population}), name)
            if node.mode != "rate":
                lost.append("snnexport.readout")
        elif isinstance(node, ir.Add):
            add(key, nir.Scale(scale=np.ones(shapes[name]), metadata={
                "snnexport.name": name, "snnexport.merge": "add"}), name)
        elif isinstance(node, (ir.SEWAnd, ir.SEWIAnd)):
            iand = isinstance(node, ir.SEWIAnd)
            add(key, nir.Threshold(threshold=np.full(shapes[name], 0.5 if iand else 1.5),
                                   metadata={"snnexport.name": name,
                                             "snnexport.merge": "iand" if iand else "and"}),
                name)
            if iand:  # the first argument is negated on its way in
                nodes[key + "_not"] = nir.Scale(scale=-np.ones(shapes[name]), metadata={
                    "snnexport.name": name, "snnexport.negated": 1})
        else:
            raise NIRExportError(f"node {name!r}: {type(node).__name__} has no NIR form")
        for i, p in enumerate(g.inputs(name)):
            if isinstance(node, ir.SEWIAnd) and i == 0:
                edges += [(exit_[p], key + "_not"), (key + "_not", entry[name])]
            else:
                edges.append((exit_[p], entry[name]))
    out_shape = shapes[g.outputs()[-1]]
    nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
    edges += [(exit_[o], "output") for o in g.outputs()]
    if lost:
        warnings.warn(f"NIR export: {sorted(set(lost))} are kept in node metadata; NIR consumers "
                      "other than snnexport will ignore them", stacklevel=2)
    meta = {"dt": float(dt), "snnexport.time_steps": int(g.metadata.get("time_steps", 0)),
            "snnexport.format_version": FORMAT_VERSION}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(graph: Graph, path, dt: float = DEFAULT_DT) -> Path:
    ng = to_nir(graph, dt)
    return atomic_write(path, lambda tmp: nir.write(tmp, ng))
