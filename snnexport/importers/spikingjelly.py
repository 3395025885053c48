"""Import SpikingJelly 2.0 models (activation_based, single- or multi-step mode) into the IR.

The call order comes from torch.fx with every SpikingJelly module treated as a leaf, so
nn.Sequential nesting and wrapper modules (the parametric_lif_net models) are followed exactly
as their forward runs them; any other operation in a forward is an error, never skipped.

Supported: neuron.ParametricLIFNode, LIFNode, IFNode; layer.Conv2d, Linear, BatchNorm2d,
BatchNorm1d, MaxPool2d, AvgPool2d, Flatten, Dropout, VotingLayer (and the plain torch layers
they wrap). A SpikingJelly model does not know its input: give the per-sample input shape
and the number of time steps.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..readout import readout_scores
from ..sim.reference import SimResult, run_lif

SUPPORTED = ("neuron.ParametricLIFNode", "neuron.LIFNode", "neuron.IFNode", "layer.Conv2d",
             "layer.Linear", "layer.BatchNorm2d", "layer.BatchNorm1d", "layer.MaxPool2d",
             "layer.AvgPool2d", "layer.Flatten", "layer.Dropout", "layer.VotingLayer")


class UnsupportedModuleError(TypeError):
    """A module the importer cannot represent; names its path and type."""


def _sj():
    try:
        from spikingjelly.activation_based import layer, neuron
    except ImportError as e:  # pragma: no cover - the [spikingjelly] extra is installed by make
        raise ImportError("SpikingJelly is not installed: pip install --no-deps "
                          "spikingjelly==2.0.0 loguru") from e
    return layer, neuron


def _np(t):
    return None if t is None else t.detach().cpu().numpy().copy()


def _pair(v):
    return nn.modules.utils._pair(v)


def _unsupported(path: str, m: nn.Module, why: str = "") -> UnsupportedModuleError:
    return UnsupportedModuleError(
        f"{path}: {type(m).__module__}.{type(m).__name__} is not supported{why}; the "
        f"SpikingJelly importer takes {', '.join(SUPPORTED)} (in nn.Sequential or plain "
        f"wrapper modules)")


def call_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules in the order forward calls them, as one chain."""

    class Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return type(m).__module__.startswith("spikingjelly") or super().is_leaf_module(
                m, qualname)

    try:
        graph = Tracer().trace(model)
    except Exception as e:
        raise UnsupportedModuleError(
            f"{type(model).__name__}: its forward cannot be traced by torch.fx ({e}); only "
            f"chains of modules are supported") from e
    modules = dict(model.named_modules())
    out, prev = [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise UnsupportedModuleError(f"{type(model).__name__}: forward does not return "
                                             "the output of its last module")
            continue
        if node.op != "call_module":
            raise UnsupportedModuleError(
                f"{type(model).__name__}: forward applies {node.op} {node.target!r} outside a "
                f"module; only chains of modules are supported")
        if list(node.args) != [prev] or node.kwargs:
            raise UnsupportedModuleError(f"{node.target}: takes more than the previous "
                                         "module's output; only chains are supported")
        out.append((str(node.target), modules[str(node.target)]))
        prev = node
    return out


def neuron_node(path: str, m: nn.Module, shape) -> ir.LIFNeuron:
    _, neuron = _sj()
    if type(m) is neuron.ParametricLIFNode:
        k = _np(torch.sigmoid(m.w))  # the float32 k SpikingJelly computes
    elif type(m) is neuron.LIFNode:
        k = np.asarray(1.0 / m.tau)
    elif type(m) is neuron.IFNode:
        k = None
    else:
        raise _unsupported(path, m)
    decay_input = bool(getattr(m, "decay_input", False))
    v_reset = None if m.v_reset is None else float(m.v_reset)
    v_init = np.asarray(0.0 if v_reset is None else v_reset)  # SpikingJelly's V_-1
    return ir.LIFNeuron(tuple(shape), k, float(m.v_threshold), v_reset, decay_input, v_init)


def module_node(path: str, m: nn.Module, shape) -> ir.Node:
    layer, neuron = _sj()
    if isinstance(m, (neuron.ParametricLIFNode, neuron.LIFNode, neuron.IFNode)):
        return neuron_node(path, m, shape)
    if isinstance(m, nn.Conv2d):
        if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding,
                                                                                  str):
            raise _unsupported(path, m, " with dilation, string padding or non-zero padding "
                                        "mode (use numeric zero padding, dilation 1)")
        return ir.Conv2d(_np(m.weight), _np(m.bias), _pair(m.stride), _pair(m.padding),
                         m.groups)
    if isinstance(m, nn.Linear):
        return ir.Dense(_np(m.weight), _np(m.bias))
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        if not m.track_running_stats or m.running_mean is None:
            raise _unsupported(path, m, " without running statistics")
        gamma = _np(m.weight) if m.affine else np.ones(m.num_features, dtype=np.float32)
        beta = _np(m.bias) if m.affine else np.zeros(m.num_features, dtype=np.float32)
        return ir.BatchNorm(_np(m.running_mean), _np(m.running_var), gamma, beta, float(m.eps))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if getattr(m, "ceil_mode", False) or _pair(getattr(m, "dilation", 1)) != (1, 1):
            raise _unsupported(path, m, " with ceil_mode or dilation")
        if isinstance(m, nn.AvgPool2d) and (not m.count_include_pad or m.divisor_override):
            raise _unsupported(path, m, " with count_include_pad=False or divisor_override")
        cls = ir.MaxPool2d if isinstance(m, nn.MaxPool2d) else ir.AvgPool2d
        stride = m.stride if m.stride is not None else m.kernel_size
        return cls(_pair(m.kernel_size), _pair(stride), _pair(m.padding))
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            raise _unsupported(path, m, f" with start_dim={m.start_dim}, end_dim={m.end_dim}")
        return ir.Flatten()
    if isinstance(m, layer.Dropout) or isinstance(m, nn.Dropout):
        return ir.Dropout(float(m.p))
    if isinstance(m, layer.VotingLayer):
        return ir.Voting(int(m.voting_size))
    raise _unsupported(path, m)


def import_spikingjelly(model: nn.Module, input_shape, time_steps: int,
                        readout: str = "rate", input_kind: str = "analog") -> Graph:
    """model: a SpikingJelly network (eval mode is not required; BN running stats are used).
    input_shape: per-sample input, e.g. (1, 28, 28). readout: rate | last | membrane."""
    shape = tuple(int(s) for s in input_shape)
    named: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, input_kind))]
    for path, m in call_order(model):
        node = module_node(path, m, shape)
        try:
            shape = node.out_shape(shape)
        except ir.IRError as e:
            raise ir.IRError(f"{path}: {e}") from None
        named.append((path, node))
    modes = {getattr(m, "step_mode", None) for _, m in call_order(model)} - {None}
    meta = {"source": "spikingjelly", "time_steps": int(time_steps), "readout": readout,
            "step_mode": modes.pop() if len(modes) == 1 else None}
    return Graph.chain(named, meta)


@torch.no_grad()
def run_spikingjelly_reference(model: nn.Module, graph: Graph, x: torch.Tensor,
                               dtype: torch.dtype = torch.float32) -> SimResult:
    """Run the SpikingJelly model itself (its own step mode) and record every neuron layer's
    spikes. H (for telling threshold ties) is recomputed from each layer's recorded input with
    the layer's own equations, in the same dtype."""
    from spikingjelly.activation_based import functional

    from ..sim.reference import encode

    m = model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
    m.eval()
    functional.reset_net(m)
    modules = dict(m.named_modules())
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.LIFNeuron)]
    inputs: dict[str, list] = {n: [] for n in neurons}
    outputs: dict[str, list] = {n: [] for n in neurons}
    hooks = []
    for n in neurons:
        mod = modules[n]
        hooks.append(mod.register_forward_pre_hook(lambda _m, a, n=n: inputs[n].append(a[0])))
        hooks.append(mod.register_forward_hook(lambda _m, _a, o, n=n: outputs[n].append(o)))
    x_seq = encode(graph, x, None).to(dtype)
    step_modes = {getattr(mod, "step_mode", "s") for mod in modules.values()
                  if hasattr(mod, "step_mode")}
    try:
        if step_modes == {"m"}:
            out = m(x_seq)
            seq = {n: (inputs[n][0], outputs[n][0]) for n in neurons}
        elif step_modes == {"s"}:
            out = torch.stack([m(xt) for xt in x_seq])
            seq = {n: (torch.stack(inputs[n]), torch.stack(outputs[n])) for n in neurons}
        else:
            raise ValueError(f"mixed step modes {sorted(step_modes)}; use "
                             "functional.set_step_mode(net, 's' or 'm')")
    finally:
        for h in hooks:
            h.remove()
        functional.reset_net(m)
    spikes, membrane = {}, {}
    for n in neurons:
        x_in, s = seq[n]
        spikes[n] = s
        membrane[n] = run_lif(graph.nodes[n], x_in, dtype)[0]
    mode = graph.metadata.get("readout", "rate")
    population = next((node.population for _, node in graph.ordered()
                       if isinstance(node, ir.Voting)), 1)
    return SimResult(out, readout_scores(out, mode, population), spikes, membrane)
