"""A human-readable summary of an IR graph: layers, shapes, tau, IMP, readout."""

from __future__ import annotations

import numpy as np

from .ir import nodes as ir
from .ir.graph import Graph


def _stats(a) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 1 or np.all(a == a.flat[0]):
        return f"{float(a.flat[0]):.4g}"
    return f"min {a.min():.4g} / mean {a.mean():.4g} / max {a.max():.4g} ({a.size} values)"


def tau_of(node: ir.Node):
    """tau = 1/k (source-level) or 1/(1 - decay) (folded); None for IF (no leak)."""
    if isinstance(node, ir.LIFNeuron):
        return None if node.k is None else 1.0 / np.asarray(node.k, dtype=np.float64)
    if isinstance(node, ir.Neuron):
        leak = 1.0 - np.asarray(node.decay, dtype=np.float64)
        return None if np.all(leak == 0) else 1.0 / leak
    return None


READOUT_MEANING = {"rate": "spike count over T", "membrane": "mean over T",
                   "last": "the last step"}


def _one(a) -> str:
    """A per-neuron integer parameter: its value, or its range when it varies."""
    a = np.asarray(a)
    return str(int(a.flat[0])) if (a == a.flat[0]).all() else f"{int(a.min())}..{int(a.max())}"


def describe_fixed(net) -> str:
    """What `snnexport inspect` prints for a model that is a fixed-point net (a netx file:
    quant.netx_import): its layers as netx builds them, and what it is compared with."""
    drive = {"a_in": "the Input block's a_in (or its bias mantissa)", "bias": "the Input "
             "block's bias mantissa", "spikes": "the first synapse (0/1 spikes)",
             "host": "the host layer's float synapse (its current sent as bias mantissas)"}
    timing = ("netx's own timing: every layer from step 0 and from rest, each synapse a step "
              "late plus its delays" if net.lava_timing else
              "snnexport's aligned layers (written by snnexport's netx export)")
    reset = f", reset every {net.reset_interval} steps (offset {net.reset_offset})" \
        if net.reset_interval else ""
    wide = max(10, 2 + max(len(lay.name) for lay in net.layers))
    lines = [f"netx network {net.netx_file}: {len(net.layers)} layers, input "
             f"{'x'.join(map(str, reversed(net.input_shape)))} (netx W x H x C) into "
             f"{drive[net.input_drive]}; {timing}{reset}",
             f"  {'layer':<{wide}}{'block':<7}{'shape (CxHxW)':<16}{'iDecay':>11}"
             f"{'vDecay':>11}{'vThMant':>8}{'w bits':>8}{'w exp':>6}{'bias':>5}{'delay':>8}"]
    for lay in net.layers:
        w = np.asarray(lay.weight)
        wb = "-" if lay.kind in ("input", "host") or not w.size else str(int(np.ceil(np.log2(
            np.abs(w).max() + 1))) + 1)
        delay = "-" if lay.delay is None else f"0..{int(np.asarray(lay.delay).max())}"
        readout = "" if lay.spiking or lay.pool else "  readout"
        lines.append(f"  {lay.name:<{wide}}{lay.kind:<7}{'x'.join(map(str, lay.shape)):<16}"
                     f"{'4096' if lay.i_decay is None else _one(lay.i_decay):>11}"
                     f"{_one(lay.dv):>11}{lay.vth_mant:>8}{wb:>8}{lay.weight_exp:>6}"
                     f"{'yes' if lay.bias_mant is not None else '-':>5}{delay:>8}{readout}")
    lines += [f"  note: {n}" for n in net.notes]
    lines.append("  compared with: no float model stands behind a netx file, so every target "
                 "(check --target fixed | netx | onnx-fixed | lava-fixed) is compared with "
                 "snnexport's emulator of it (fixed: the fast emulator with the plain one), and "
                 "the emulator with outputs recorded elsewhere where --data gives them (s:<g>, "
                 "u:<g>, v:<g>)")
    return "\n".join(lines)


def describe(g: Graph) -> str:
    shapes = g.shapes()
    order = g.order()
    wide = max(18, 2 + max(len(n) for n in order))
    lines = [f"{'node':<{wide}}{'type':<11}{'output':<16}details"]
    for i, (name, node) in enumerate(g.ordered()):
        details = ""
        ins = g.inputs(name)
        # a graph: say where a node's input comes from unless it is the line above
        where = "" if not ins or ins == [order[i - 1]] else f"<- {', '.join(ins)}"
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            details = f"weight {list(node.weight.shape)}" + (
                "" if node.bias is None else ", bias")
        elif isinstance(node, (ir.LIFNeuron, ir.Neuron)):
            tau = tau_of(node)
            details = f"tau {'inf (IF)' if tau is None else _stats(tau)}"
            thr = node.v_threshold if isinstance(node, ir.LIFNeuron) else node.threshold
            details += f", V_th {thr:g}"
            if isinstance(node, ir.LIFNeuron):
                details += ", reset " + ("soft" if node.v_reset is None else
                                         f"hard to {node.v_reset:g}")
            else:
                details += f", reset {node.reset}"
                if node.reset_by is not None:
                    details += f" by {_stats(node.reset_by)}"
                if node.gain is not None:
                    details += f", input gain {_stats(node.gain)}"
            # a current-based neuron: its current's tau_syn = 1 / (1 - current_decay) (k_syn)
            keep = getattr(node, "current_decay", None)
            if getattr(node, "k_syn", None) is not None:
                keep = 1.0 - np.asarray(node.k_syn, np.float64)
            if keep is not None:
                leak = 1.0 - np.asarray(keep, np.float64)
                details += ", current tau_syn " + ("inf" if np.all(leak == 0) else _stats(
                    1.0 / np.maximum(leak, 1e-300)))
            v0 = np.asarray(node.v_init)
            details += f", V_-1 {'IMP ' if v0.size > 1 else ''}{_stats(v0)}"
            if not node.spiking:
                details += ", non-spiking"
                if isinstance(node, ir.Neuron) and np.all(np.asarray(node.decay) == 0):
                    details += " memoryless: the current it is given, each step (a readout " \
                               "of a head with no neuron)"
        elif isinstance(node, ir.SpikePool):
            details = f"{node.mode} over {node.kernel[0]}x{node.kernel[1]}"
        elif isinstance(node, ir.Readout):
            details = f"population {node.population}, mode {node.mode} " \
                      f"({READOUT_MEANING.get(node.mode, '?')})"
        elif isinstance(node, ir.Voting):
            details = f"population {node.population}, readout {g.metadata.get('readout')}"
        details = "; ".join(d for d in (where, details) if d)
        lines.append(f"{name:<{wide}}{type(node).__name__:<11}{str(list(shapes[name])):<16}"
                     f"{details}".rstrip())
    head = g.metadata.get("head")
    lines.append(f"time steps {g.metadata.get('time_steps')}, readout "
                 f"{g.metadata.get('readout')}, folded {bool(g.metadata.get('folded'))}" + (
                     f", forward returns the {head['reduce']} over time of {head['of']!r}"
                     if isinstance(head, dict) else ""))
    return "\n".join(lines)
