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
from ..ir.neurons import CUBA_LIF, kind_of
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
# each kind's steps are ir/neurons.py's (found by the node's kind name); here only the loop

def run_layer(x_seq, v, charge, fire):
    """The shared loop: H_t = charge(V_{t-1}, X_t); (S_t, V_t) = fire(H_t) (a spiking
    layer; None: a non-spiking layer keeps V_t = H_t and outputs it). Returns (H, S, out),
    each [T, B, *shape]."""
    hs, ss, outs = [], [], []
    for x in x_seq:
        h = charge(v, x)
        if fire is not None:
            s, v = fire(h)
        else:
            s, v = torch.zeros_like(h), h
        hs.append(h)
        ss.append(s)
        outs.append(s if fire is not None else v)
    return torch.stack(hs), torch.stack(ss), torch.stack(outs)


def run_current(step, param, x_seq):
    """A synaptic current over [T, B, *shape] from a zero state: (J_t, state) = step(param,
    state, X_t) (a kind's `current`), a linear filter of the input that the spikes never
    touch (so it runs before the membrane loop)."""
    out = torch.empty_like(x_seq)
    carry = torch.zeros_like(x_seq[0])
    for t, x in enumerate(x_seq):
        out[t], carry = step(param, carry, x)
    return out


def synaptic_current(x_seq, current_decay=None):
    """J_t = current_decay J_{t-1} + I_t (J_-1 = 0; 'cuba_lif''s current) over [T, B, *shape];
    current_decay a tensor, or None: J = the input itself (the host layer's current at the
    chip's decay, quant/fixed.py; `neuron_current` finds a node's current by its kind)."""
    if current_decay is None:
        return x_seq
    return run_current(CUBA_LIF.current, current_decay, x_seq)


def neuron_current(n, x_seq, dtype=torch.float64):
    """What drives a neuron node's membrane: its kind's synaptic current of x_seq, or x_seq
    itself (a kind or node without a current)."""
    kind = kind_of(n)
    param = None if kind.current is None else _t(getattr(n, kind.current_param), dtype)
    return x_seq if param is None else run_current(kind.current, param, x_seq)


def run_neuron(n, x_seq, dtype):
    """Any neuron node (ir.Neuron, ir.LIFNeuron, a registered kind's), as its kind's steps
    state it (ir/neurons.py; the node docstrings)."""
    kind = kind_of(n)
    p = kind.params(n, lambda a: _t(a, dtype))
    x_seq = neuron_current(n, x_seq, dtype)
    v0 = _t(n.v_init, dtype).expand_as(x_seq[0])
    return run_layer(x_seq, v0, lambda v, x: kind.charge(p, v, x),
                     (lambda h: kind.fire_reset(p, h)) if n.spiking else None)


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
        if hasattr(node, "neuron_kind"):  # a neuron of any registered kind
            h, s, y = run_neuron(node, args[0], dtype)
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
