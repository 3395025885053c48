"""The reference simulator: runs any IR graph (source-level or folded) on real batches.

Plain on purpose: one value per node per step, computed from the values of its inputs in
topological order; one small function per op, the neuron recurrence written exactly as the
node docstrings state it, a Python loop over time. It is vectorised over batch and neurons
(torch tensors, float32 or float64) and nothing else; speed lives elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..readout import readout_scores


@dataclass
class SimResult:
    outputs: torch.Tensor  # per-step readout o_t, [T, B, classes]
    scores: torch.Tensor  # [B, classes]
    spikes: dict[str, torch.Tensor] = field(default_factory=dict)  # neuron -> [T, B, *shape]
    membrane: dict[str, torch.Tensor] = field(default_factory=dict)  # neuron -> H, if asked


def _t(a, dtype) -> torch.Tensor | None:
    return None if a is None else torch.tensor(np.asarray(a), dtype=dtype)


# --- stateless ops on [N, *shape] (N = T*B) -------------------------------------------------

def run_conv2d(n: ir.Conv2d, x, dtype):
    return F.conv2d(x, _t(n.weight, dtype), _t(n.bias, dtype), n.stride, n.padding, 1, n.groups)


def run_dense(n: ir.Dense, x, dtype):
    y = x @ _t(n.weight, dtype).T
    return y if n.bias is None else y + _t(n.bias, dtype)


def run_batchnorm(n: ir.BatchNorm, x, dtype):
    view = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = _t(n.mean, dtype).view(view), _t(n.var, dtype).view(view)
    gamma, beta = _t(n.gamma, dtype).view(view), _t(n.beta, dtype).view(view)
    return (x - mean) / torch.sqrt(var + n.eps) * gamma + beta


def run_maxpool(n: ir.MaxPool2d, x, dtype):
    return F.max_pool2d(x, n.kernel, n.stride, n.padding)


def run_avgpool(n: ir.AvgPool2d, x, dtype):
    return F.avg_pool2d(x, n.kernel, n.stride, n.padding, count_include_pad=True)


def run_spikepool(n: ir.SpikePool, x, dtype):
    if n.mode in ("or", "max"):
        return F.max_pool2d(x, n.kernel, n.stride, n.padding)
    window = torch.ones((x.shape[1], 1, *n.kernel), dtype=dtype)
    return F.conv2d(x, window, None, n.stride, n.padding, 1, x.shape[1])  # exact spike count


def run_upsample(n: ir.Upsample, x, dtype):
    return x.repeat_interleave(n.scale[0], dim=2).repeat_interleave(n.scale[1], dim=3)


def run_voting(n: ir.Voting, x, dtype):
    return x.reshape(x.shape[0], -1, n.population).mean(-1)


STATELESS = {
    ir.Conv2d: run_conv2d, ir.Dense: run_dense, ir.BatchNorm: run_batchnorm,
    ir.Dropout: lambda n, x, d: x, ir.MaxPool2d: run_maxpool, ir.AvgPool2d: run_avgpool,
    ir.SpikePool: run_spikepool, ir.Upsample: run_upsample,
    ir.Flatten: lambda n, x, d: x.flatten(1),
    ir.Voting: run_voting, ir.Readout: run_voting,
}


# --- neuron layers over [T, B, *shape] ------------------------------------------------------

def run_layer(x_seq, v, charge, threshold: float, soft_reset: bool, reset_level: float,
              spiking: bool, reset_by=None):
    """The shared fire-and-reset loop: H_t = charge(V_{t-1}, X_t); S_t = [H_t >= threshold];
    V_t = H_t - threshold S_t (soft; H_t - reset_by S_t when reset_by, a tensor, is given) or
    H_t (1 - S_t) + reset_level S_t (hard); a non-spiking layer keeps V_t = H_t and outputs it.
    Returns (H, S, out), each [T, B, *shape]."""
    amount = threshold if reset_by is None else reset_by
    hs, ss, outs = [], [], []
    for x in x_seq:
        h = charge(v, x)
        if spiking:
            s = (h >= threshold).to(h.dtype)
            v = h - amount * s if soft_reset else h * (1 - s) + reset_level * s
        else:
            s, v = torch.zeros_like(h), h
        hs.append(h)
        ss.append(s)
        outs.append(s if spiking else v)
    return torch.stack(hs), torch.stack(ss), torch.stack(outs)


def synaptic_current(x_seq, current_decay=None, k_syn=None):
    """The synaptic current of a current-based neuron over [T, B, *shape], a linear filter of
    the input that the spikes never touch (so it runs before the membrane loop):
        Neuron:     J_t = current_decay J_{t-1} + I_t                  (J_-1 = 0)
        LIFNeuron:  J_t = C_{t-1} + X_t,  C_t = J_t + (-k_syn) J_t      (C_-1 = 0, Norse's order)
    Both tensors (or None: no current, J = the input itself)."""
    if current_decay is None and k_syn is None:
        return x_seq
    out = torch.empty_like(x_seq)
    carry = torch.zeros_like(x_seq[0])
    for t, x in enumerate(x_seq):
        if current_decay is not None:
            carry = current_decay * carry + x
            out[t] = carry
        else:
            j = carry + x
            out[t] = j
            carry = j + (-k_syn) * j
    return out


def run_lif(n: ir.LIFNeuron, x_seq, dtype):
    """LIFNeuron, as its docstring states it."""
    x_seq = synaptic_current(x_seq, k_syn=_t(n.k_syn, dtype))
    k = _t(n.k, dtype)
    level = 0.0 if n.v_reset is None else n.v_reset
    if k is None:
        def charge(v, x):
            return v + x
    elif n.decay_input:
        def charge(v, x):
            return v + k * (x - (v - level))
    else:
        def charge(v, x):
            return v - k * (v - level) + x
    v0 = _t(n.v_init, dtype).expand_as(x_seq[0])
    return run_layer(x_seq, v0, charge, n.v_threshold, n.v_reset is None, level, n.spiking)


def run_neuron(n: ir.Neuron, x_seq, dtype):
    """Neuron (hardware-native), as its docstring states it."""
    decay, gain = _t(n.decay, dtype), _t(n.gain, dtype)
    x_seq = synaptic_current(x_seq, _t(n.current_decay, dtype))

    def charge(v, x):
        return decay * v + (x if gain is None else gain * x)

    v0 = _t(n.v_init, dtype).expand_as(x_seq[0])
    return run_layer(x_seq, v0, charge, n.threshold, n.reset == "soft", 0.0, n.spiking,
                     _t(n.reset_by, dtype))


NEURONS = {ir.LIFNeuron: run_lif, ir.Neuron: run_neuron}

# --- merges, element-wise on [T, B, *shape] ---------------------------------------------------

MERGES = {
    ir.Add: lambda a, b: a + b,
    ir.SEWAnd: lambda a, b: a * b,
    ir.SEWIAnd: lambda a, b: (1 - a) * b,
}


def encode(graph: Graph, x: torch.Tensor, time_steps: int | None) -> torch.Tensor:
    """Static input [B, *shape] is repeated over T steps (direct encoding); [T, B, *shape]
    passes unchanged."""
    shape = tuple(graph.nodes[graph.input_name()].shape)
    if tuple(x.shape[1:]) == shape:
        t = time_steps or graph.metadata.get("time_steps")
        if not t:
            raise ValueError("static input needs time_steps (argument or graph metadata)")
        return x.unsqueeze(0).expand(int(t), *x.shape)
    if tuple(x.shape[2:]) == shape:
        return x
    raise ValueError(f"input {list(x.shape)} fits neither [B, {shape}] nor [T, B, {shape}]")


@torch.no_grad()
def simulate(graph: Graph, x: torch.Tensor, time_steps: int | None = None,
             dtype: torch.dtype = torch.float64, record_membrane: bool = False,
             observe=None) -> SimResult:
    """observe(name, node, x_in, y_out), if given, sees every node's input and output
    sequence [T, B, ...] (the operation counter uses it); for a merge node x_in is the tuple
    of its input sequences. The result's `outputs` is the network output: the Voting/Readout
    node's sequence if the graph has one as an output, else its last output node's."""
    order = graph.order()
    x_seq = encode(graph, torch.as_tensor(x), time_steps).to(dtype)
    t, b = x_seq.shape[:2]
    spikes, membrane = {}, {}
    outputs = graph.outputs()
    readout = next((graph.nodes[n] for n in outputs if isinstance(graph.nodes[n], ir.Voting)),
                   None)
    final = next(n for n in reversed(outputs) if readout is None or graph.nodes[n] is readout)
    left = {n: len(graph.consumers(n)) for n in order}  # values are dropped once consumed
    values: dict[str, torch.Tensor] = {order[0]: x_seq}
    for name in order[1:]:
        node = graph.nodes[name]
        args = [values[p] for p in graph.inputs(name)]
        for p in graph.inputs(name):
            left[p] -= 1
            if left[p] == 0 and p != final:
                del values[p]
        x_in = args[0] if len(args) == 1 else tuple(args)
        if type(node) in NEURONS:
            h, s, y = NEURONS[type(node)](node, args[0], dtype)
            if node.spiking:
                spikes[name] = s
            if record_membrane:
                membrane[name] = h
        elif type(node) in MERGES:
            y = MERGES[type(node)](*args)
        else:
            op = STATELESS.get(type(node))
            if op is None:
                raise TypeError(f"node {name!r}: the reference simulator has no op for "
                                f"{type(node).__name__}")
            y = op(node, args[0].flatten(0, 1), dtype)
            y = y.reshape(t, b, *y.shape[1:])
        if observe is not None:
            observe(name, node, x_in, y)
        values[name] = y
    out = values[final]
    mode = getattr(readout, "mode", graph.metadata.get("readout", "rate"))
    scores = readout_scores(out, mode, readout.population if readout else 1)
    return SimResult(out, scores, spikes, membrane)
