"""Import SpikingJelly 2.0 models (activation_based, single- or multi-step mode) into the IR.

The call graph comes from torch.fx with every SpikingJelly module treated as a leaf, so
nn.Sequential nesting and wrapper modules (the parametric_lif_net models) are followed exactly
as their forward runs them; residual connections between module outputs (`out + x`, `out * x`,
`x * (1 - out)`: SEW-ResNet's ADD / AND / IAND, Spiking ResNet's add before the neuron) become
merge nodes; any other operation in a forward is an error, never skipped.

Supported: neuron.ParametricLIFNode, LIFNode, IFNode; layer.Conv2d, Linear, BatchNorm2d,
BatchNorm1d, MaxPool2d, AvgPool2d, Flatten, Dropout, VotingLayer (and the plain torch layers
they wrap). A SpikingJelly model does not know its input: give the per-sample input shape
and the number of time steps.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.validate import validate
from ..readout import readout_scores
from ..sim.reference import SimResult, run_lif
from .torch_layers import UnsupportedModuleError, layer_node, np_of, out_shape

SUPPORTED = ("neuron.ParametricLIFNode", "neuron.LIFNode", "neuron.IFNode", "layer.Conv2d",
             "layer.Linear", "layer.BatchNorm2d", "layer.BatchNorm1d", "layer.MaxPool2d",
             "layer.AvgPool2d", "layer.Flatten", "layer.Dropout", "layer.VotingLayer")


def _sj():
    try:
        from spikingjelly.activation_based import layer, neuron
    except ImportError as e:  # pragma: no cover - the [spikingjelly] extra is installed by make
        raise ImportError("SpikingJelly is not installed: pip install --no-deps "
                          "spikingjelly==2.0.0 loguru") from e
    return layer, neuron



def _unsupported(path: str, m: nn.Module, why: str = "") -> UnsupportedModuleError:
    return UnsupportedModuleError(
        f"{path}: {type(m).__module__}.{type(m).__name__} is not supported{why}; the "
        f"SpikingJelly importer takes {', '.join(SUPPORTED)} (in nn.Sequential or plain "
        f"wrapper modules)")


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return type(m).__module__.startswith("spikingjelly") or super().is_leaf_module(
            m, qualname)


_ADD = (operator.add, operator.iadd, torch.add)
_MUL = (operator.mul, operator.imul, torch.mul)
_SUB = (operator.sub, operator.isub, torch.sub)
_FLATTEN = (torch.flatten, "flatten")


def _is_one(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == 1


def _one_minus(node: fx.Node) -> fx.Node | None:
    """c if the fx node computes 1 - c (how SEW's IAND writes NOT c), else None."""
    if node.op == "call_function" and node.target in _SUB and len(node.args) == 2 \
            and not node.kwargs and _is_one(node.args[0]) and isinstance(node.args[1], fx.Node):
        return node.args[1]
    if node.op == "call_function" and node.target is torch.rsub and _is_one(node.args[1]):
        return node.args[0]
    return None


@dataclass
class _Op:
    """One step of the traced forward: a module (`module` set) or a merge / flatten of the
    values named in `args` (fx node names)."""

    name: str
    args: list[str]
    module: nn.Module | None = None
    merge: type[ir.Merge] | None = None
    flatten: bool = False


def call_graph(model: nn.Module) -> tuple[list[_Op], str]:
    """The traced forward as ops in call order (their args are earlier ops or 'x', the input),
    and the op whose value forward returns. Modules are named by their path; merges by the
    path of the module the merge sits in (the scope of its latest argument) + add / and /
    iand. Residual connections written as `out + x`, `out * x`, `x * (1 - out)` (also inside
    a module-level connect function: fx follows Python calls) become Add, SEWAnd, SEWIAnd;
    anything else in a forward is an error naming it, never skipped."""
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        raise UnsupportedModuleError(
            f"{type(model).__name__}: its forward cannot be traced by torch.fx ({e}); write "
            "it as modules, +, * and 1 - x") from e
    where = type(model).__name__
    modules = dict(model.named_modules())
    ops: list[_Op] = []
    name_of: dict[fx.Node, str] = {}  # fx node -> op name ('x' for the input)
    scope: dict[fx.Node, str] = {}  # fx node -> module path its value was made in
    iand_inner: set[fx.Node] = set()  # `1 - c` nodes consumed by an IAND
    result = None

    def unique(base: str) -> str:
        taken = {o.name for o in ops}
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        return name

    def arg_names(node: fx.Node, args) -> list[str]:
        if any(not isinstance(a, fx.Node) for a in args) or node.kwargs:
            raise UnsupportedModuleError(
                f"{where}: forward applies {node.op} {_target_name(node)} to "
                f"{node.args!r}; only module outputs can be combined (+, *, 1 - x)")
        missing = [a for a in args if a not in name_of]
        if missing:
            raise UnsupportedModuleError(f"{where}: {_target_name(node)} uses {missing}, "
                                         "which snnexport cannot represent")
        return [name_of[a] for a in args]

    def merge_name(node: fx.Node, args, kind: str) -> str:
        latest = max(args, key=lambda a: list(graph.nodes).index(a))
        parent = scope.get(latest, "").rpartition(".")[0]
        return unique(f"{parent}.{kind}" if parent else kind)

    for node in graph.nodes:
        if node.op == "placeholder":
            if name_of:
                raise UnsupportedModuleError(f"{where}: forward takes more than one input")
            name_of[node], scope[node] = "x", ""
        elif node.op == "output":
            result = node.args[0]
        elif node.op == "call_module":
            path = str(node.target)
            if any(o.name == path for o in ops):
                raise UnsupportedModuleError(f"{path}: called twice in one forward; give each "
                                             "call its own module")
            if len(node.args) != 1 or node.kwargs:
                raise UnsupportedModuleError(f"{path}: takes more than one input; only "
                                             "one-input modules are supported")
            (arg,) = arg_names(node, node.args)
            ops.append(_Op(path, [arg], module=modules[path]))
            name_of[node], scope[node] = path, path
        elif node.op in ("call_function", "call_method") and (
                node.target in _ADD + _MUL or node.target in ("add", "mul", "add_", "mul_")):
            a, b = node.args[:2] if len(node.args) >= 2 else (None, None)
            if len(node.args) != 2 or node.kwargs or not all(isinstance(v, fx.Node)
                                                             for v in (a, b)):
                raise UnsupportedModuleError(
                    f"{where}: forward applies {node.op} {_target_name(node)} to "
                    f"{node.args!r}; only sums and products of two module outputs are "
                    "supported")
            if node.target in _ADD or node.target in ("add", "add_"):
                kind, merge, args = "add", ir.Add, [a, b]
            elif _one_minus(b) is not None or _one_minus(a) is not None:
                inner, other = (b, a) if _one_minus(b) is not None else (a, b)
                iand_inner.add(inner)
                kind, merge, args = "iand", ir.SEWIAnd, [_one_minus(inner), other]
            else:
                kind, merge, args = "and", ir.SEWAnd, [a, b]
            op = _Op(merge_name(node, args, kind), arg_names(node, args), merge=merge)
            ops.append(op)
            name_of[node], scope[node] = op.name, scope[max(
                args, key=lambda v: list(graph.nodes).index(v))]
        elif _one_minus(node) is not None:
            scope[node] = scope.get(_one_minus(node), "")  # used only inside an IAND (checked)
        elif node.op in ("call_function", "call_method") and node.target in _FLATTEN and \
                list(node.args[1:]) in ([1], [1, -1]) and not node.kwargs:
            (arg,) = arg_names(node, node.args[:1])
            op = _Op(unique(f"{scope[node.args[0]]}.flatten".lstrip(".")), [arg], flatten=True)
            ops.append(op)
            name_of[node], scope[node] = op.name, scope[node.args[0]]
        else:
            raise UnsupportedModuleError(
                f"{where}: forward applies {node.op} {_target_name(node)!r} outside a module; "
                "supported are modules, +, * and 1 - x between module outputs (residual "
                "connections) and flatten(x, 1)")
    for node in graph.nodes:
        if _one_minus(node) is not None and node not in iand_inner:
            raise UnsupportedModuleError(f"{where}: forward computes 1 - x outside a product "
                                         "(x * (1 - y) is SEW's IAND; 1 - x alone has no form)")
    if not isinstance(result, fx.Node) or result not in name_of:
        raise UnsupportedModuleError(f"{where}: forward does not return one module output")
    return ops, name_of[result]


def _target_name(node: fx.Node) -> str:
    t = node.target
    return getattr(t, "__name__", str(t))


def neuron_node(path: str, m: nn.Module, shape) -> ir.LIFNeuron:
    _, neuron = _sj()
    if type(m) is neuron.ParametricLIFNode:
        k = np_of(torch.sigmoid(m.w))  # the float32 k SpikingJelly computes
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
    node = layer_node(path, m, "SpikingJelly", SUPPORTED)  # the plain torch layers
    if node is not None:
        return node
    if isinstance(m, layer.Dropout):  # SpikingJelly's own (one mask for all steps)
        return ir.Dropout(float(m.p))
    if isinstance(m, layer.VotingLayer):
        return ir.Voting(int(m.voting_size))
    raise _unsupported(path, m)


def import_spikingjelly(model: nn.Module, input_shape, time_steps: int,
                        readout: str = "rate", input_kind: str = "analog") -> Graph:
    """model: a SpikingJelly network (eval mode is not required; BN running stats are used).
    input_shape: per-sample input, e.g. (1, 28, 28). readout: rate | last | membrane.
    Chains and residual nets (SEW-ResNet / Spiking ResNet blocks) alike: the IR graph has
    one node per module call and per merge (+, *, x * (1 - y))."""
    ops, result = call_graph(model)
    shapes = {"x": tuple(int(s) for s in input_shape)}
    nodes: dict[str, ir.Node] = {"input": ir.Input(shapes["x"], input_kind)}
    edges: list[tuple[str, str]] = []
    rename = {"x": "input"}
    for op in ops:
        ins = [shapes[a] for a in op.args]
        if op.module is not None:
            node = module_node(op.name, op.module, ins[0])
        elif op.merge is not None:
            node = op.merge()
        else:
            node = ir.Flatten()
        shapes[op.name] = out_shape(op.name, node, *ins)
        nodes[op.name] = node
        edges += [(rename.get(a, a), op.name) for a in op.args]
    # keep what the returned value depends on (dead code in a forward is not the network)
    keep, todo = set(), [result]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += [a for a, b in edges if b == n]
    nodes = {n: x for n, x in nodes.items() if n in keep}
    edges = [(a, b) for a, b in edges if b in keep]
    modes = {getattr(op.module, "step_mode", None) for op in ops} - {None}
    meta = {"source": "spikingjelly", "time_steps": int(time_steps), "readout": readout,
            "step_mode": modes.pop() if len(modes) == 1 else None}
    return validate(Graph(nodes, edges, meta), type(model).__name__)


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
