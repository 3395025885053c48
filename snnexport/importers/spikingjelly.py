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
from ..sim.reference import SimResult, run_neuron
from .torch_layers import (
    UnsupportedModuleError,
    choose_readout,
    layer_node,
    np_of,
    out_shape,
)

SUPPORTED = ("neuron.ParametricLIFNode", "neuron.LIFNode", "neuron.IFNode", "layer.Conv2d",
             "layer.Linear", "layer.BatchNorm2d", "layer.BatchNorm1d", "layer.MaxPool2d",
             "layer.AvgPool2d", "layer.AdaptiveAvgPool2d", "layer.Flatten", "layer.Dropout",
             "layer.VotingLayer", "layer.SeqToANNContainer", "MultiStepContainer",
             "StepModeContainer", "nn.Identity")


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
    """Traces through every module but SpikingJelly's neurons and layers and torch's own
    leaves: the zoo's blocks (BasicBlock, Bottleneck) and the user's wrappers are followed
    as their forward runs, Python branches on constants included (`if self.downsample is not
    None`, `sew_function(identity, out, self.cnf)`, step-mode branches)."""

    def is_leaf_module(self, m, qualname):
        return _is_sj_leaf(m) or super().is_leaf_module(m, qualname)


def _is_sj_leaf(m: nn.Module) -> bool:
    mod = type(m).__module__
    if mod.startswith(("spikingjelly.activation_based.neuron",
                       "spikingjelly.activation_based.layer")):
        return True
    try:
        from spikingjelly.activation_based.neuron import BaseNode
    except ImportError:  # pragma: no cover
        return False
    return isinstance(m, BaseNode)  # a user's subclass of a neuron (refused by name later)


# SpikingJelly's containers apply their children in order, per step or over T*B at once
# (seq_to_ann_forward): per sample it is the children's chain, which is what the IR needs
_CONTAINERS = ("SeqToANNContainer", "MultiStepContainer", "StepModeContainer")


def _is_container(m: nn.Module) -> bool:
    return type(m).__name__ in _CONTAINERS and type(m).__module__.startswith(
        "spikingjelly.activation_based.layer") or type(m) is nn.Sequential


def _is_identity(m: nn.Module) -> bool:
    return type(m) is nn.Identity


_ADD = (operator.add, operator.iadd, torch.add)
_MUL = (operator.mul, operator.imul, torch.mul)
_SUB = (operator.sub, operator.isub, torch.sub)
_FLATTEN = (torch.flatten, "flatten")
_RESHAPE = (torch.reshape, "view", "reshape")
_TIME_REDUCE = {torch.mean: "mean", "mean": "mean", torch.sum: "sum", "sum": "sum"}
_SIZE = ("size", "dim")


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


@dataclass
class CallGraph:
    """The traced forward: ops in call order (their args are earlier ops or 'x', the input),
    the op whose value forward returns, and how forward reduces it over time at the head
    ('mean' / 'sum' over dim 0 of a multi-step output, None if it returns every step)."""

    ops: list[_Op]
    result: str
    head: str | None = None
    step_mode: str = "s"


def step_mode_of(model: nn.Module) -> str:
    """'s' or 'm': the one step mode of the model's SpikingJelly modules."""
    modes = {m.step_mode for m in model.modules() if isinstance(getattr(m, "step_mode", None),
                                                                 str)}
    if len(modes) > 1:
        raise UnsupportedModuleError(
            f"{type(model).__name__}: mixed step modes {sorted(modes)}; set one with "
            "spikingjelly.activation_based.functional.set_step_mode(net, 'm' or 's')")
    return modes.pop() if modes else "s"


def _arg(node: fx.Node, i: int, key: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(key, default)


def call_graph(model: nn.Module) -> CallGraph:
    """The traced forward (CallGraph). Modules are named by their path (a container's
    children by the container's path + their own name); merges by the path of the module the
    merge sits in (the scope of its latest argument) + add / and / iand. Understood besides
    module calls: residual connections `out + x`, `out * x`, `x * (1 - out)` (also inside a
    connect function such as the zoo's `sew_function`) as Add, SEWAnd, SEWIAnd; flattening one
    sample (`torch.flatten(x, 1)`, `x.flatten(1)`, `x.view(x.size(0), -1)`, and with the time
    dimension first in multi-step mode `flatten(x, 2)`, `view(T, B, -1)` from x's own sizes);
    nn.Identity; and a mean or sum over time (dim 0) of the returned value in multi-step mode.
    Anything else in a forward is an error naming it, never skipped."""
    mode = step_mode_of(model)
    lead = 2 if mode == "m" else 1  # the dimensions before one sample's: [T,] B
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        raise UnsupportedModuleError(
            f"{type(model).__name__}: its forward cannot be traced by torch.fx "
            f"({type(e).__name__}: {str(e)[:200]}); write it as modules, +, * and 1 - x, "
            "flatten and a mean over time at the end") from e
    where = type(model).__name__
    modules = dict(model.named_modules())
    position = {n: i for i, n in enumerate(graph.nodes)}
    ops: list[_Op] = []
    name_of: dict[fx.Node, str] = {}  # fx node -> op name ('x' for the input)
    scope: dict[fx.Node, str] = {}  # fx node -> module path its value was made in
    sizes: dict[fx.Node, tuple] = {}  # x.size(i) / x.shape[i] / x.shape: (source, i | None)
    iand_inner: set[fx.Node] = set()  # `1 - c` nodes consumed by an IAND
    reduced: dict[fx.Node, tuple[str, fx.Node]] = {}  # mean / sum over time -> (how, of what)
    result = None

    def unique(base: str) -> str:
        taken = {o.name for o in ops}
        name, i = base, 1
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        return name

    def arg_names(node: fx.Node, args) -> list[str]:
        if any(not isinstance(a, fx.Node) for a in args):
            raise UnsupportedModuleError(
                f"{where}: forward applies {node.op} {_target_name(node)} to "
                f"{node.args!r}; only module outputs can be combined (+, *, 1 - x)")
        missing = [a for a in args if a not in name_of]
        if missing:
            raise UnsupportedModuleError(
                f"{where}: {_target_name(node)} uses {[str(a) for a in missing]} "
                f"({', '.join(_target_name(a) for a in missing)}), which snnexport cannot "
                "represent")
        return [name_of[a] for a in args]

    def latest(args) -> fx.Node:
        return max(args, key=lambda a: position[a])

    def add_module_call(path: str, m: nn.Module, arg: str) -> str:
        """The op(s) of calling module m on arg; the name of the value it makes."""
        if _is_identity(m):
            return arg
        if _is_container(m):
            for child_name, child in m.named_children():
                arg = add_module_call(f"{path}.{child_name}", child, arg)
            return arg
        if any(o.name == path for o in ops):
            raise UnsupportedModuleError(f"{path}: called twice in one forward; give each "
                                         "call its own module")
        ops.append(_Op(path, [arg], module=m))
        return path

    def flatten_of(node: fx.Node) -> fx.Node | None:
        """x if the node flattens one sample of x (keeping [T,] B), else None."""
        if node.op not in ("call_function", "call_method"):
            return None
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node):
            return None
        if node.target in _FLATTEN:
            start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
            return src if (start, end) == (lead, -1) else None
        if node.target in _RESHAPE:
            dims = node.args[1:]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = tuple(dims[0])
            if node.kwargs or len(dims) != lead + 1 or dims[-1] != -1:
                return None
            ok = all(sizes.get(d) == (src, i) for i, d in enumerate(dims[:-1]))
            return src if ok else None
        return None

    for node in graph.nodes:
        if node.op == "placeholder":
            if name_of:
                raise UnsupportedModuleError(f"{where}: forward takes more than one input")
            name_of[node], scope[node] = "x", ""
        elif node.op == "output":
            result = node.args[0]
        elif node.op == "call_module":
            path = str(node.target)
            if len(node.args) != 1 or node.kwargs:
                raise UnsupportedModuleError(f"{path}: takes more than one input; only "
                                             "one-input modules are supported")
            (arg,) = arg_names(node, node.args)
            name_of[node] = add_module_call(path, modules[path], arg)
            scope[node] = path if name_of[node] != arg else scope[node.args[0]]
        elif node.op == "call_method" and node.target in _SIZE and node.args and \
                node.args[0] in name_of:
            dim = _arg(node, 1, "dim")
            sizes[node] = (node.args[0], dim)
        elif node.op == "call_function" and node.target is getattr and \
                node.args[1] == "shape" and node.args[0] in name_of:
            sizes[node] = (node.args[0], None)
        elif node.op == "call_function" and node.target is operator.getitem and \
                node.args[0] in sizes and sizes[node.args[0]][1] is None and \
                isinstance(node.args[1], int):
            sizes[node] = (sizes[node.args[0]][0], node.args[1])
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
            parent = scope.get(latest(args), "").rpartition(".")[0]
            op = _Op(unique(f"{parent}.{kind}" if parent else kind), arg_names(node, args),
                     merge=merge)
            ops.append(op)
            name_of[node], scope[node] = op.name, scope[latest(args)]
        elif _one_minus(node) is not None:
            scope[node] = scope.get(_one_minus(node), "")  # used only inside an IAND (checked)
        elif flatten_of(node) is not None:
            src = flatten_of(node)
            (arg,) = arg_names(node, [src])
            op = _Op(unique(f"{scope[src]}.flatten".lstrip(".")), [arg], flatten=True)
            ops.append(op)
            name_of[node], scope[node] = op.name, scope[src]
        elif node.op in ("call_function", "call_method") and node.target in _TIME_REDUCE \
                and node.args and isinstance(node.args[0], fx.Node) and mode == "m" \
                and _arg(node, 1, "dim") in (0, (0,), [0]) \
                and not _arg(node, 2, "keepdim", False) and set(node.kwargs) <= {"dim"}:
            reduced[node] = (_TIME_REDUCE[node.target], node.args[0])
        else:
            raise UnsupportedModuleError(
                f"{where}: forward applies {node.op} {_target_name(node)!r} outside a module "
                f"(after {scope.get(_first_node(node.args), '') or 'the input'}); supported "
                "are modules, +, * and 1 - x between module outputs (residual connections), "
                f"flattening one sample (flatten(x, {lead})) and a mean or sum over time "
                "(dim 0) of the output")
    for node in graph.nodes:
        if _one_minus(node) is not None and node not in iand_inner:
            raise UnsupportedModuleError(f"{where}: forward computes 1 - x outside a product "
                                         "(x * (1 - y) is SEW's IAND; 1 - x alone has no form)")
        if node in reduced and node is not result:
            raise UnsupportedModuleError(
                f"{where}: forward takes a {reduced[node][0]} over time (dim 0) and goes on "
                "computing with it; a reduction over time is only understood as the last "
                "operation (the readout)")
    head = None
    if result in reduced:
        head, result = reduced[result]
    if not isinstance(result, fx.Node) or result not in name_of or name_of[result] == "x":
        raise UnsupportedModuleError(f"{where}: forward does not return one module output")
    return CallGraph(ops, name_of[result], head, mode)


def _first_node(args) -> fx.Node | None:
    return next((a for a in args if isinstance(a, fx.Node)), None)


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
    node = layer_node(path, m, "SpikingJelly", SUPPORTED, in_shape=shape)  # torch layers
    if node is not None:
        return node
    if isinstance(m, layer.Dropout):  # SpikingJelly's own (one mask for all steps)
        return ir.Dropout(float(m.p))
    if isinstance(m, layer.VotingLayer):
        return ir.Voting(int(m.voting_size))
    raise _unsupported(path, m)


def import_spikingjelly(model: nn.Module, input_shape, time_steps: int,
                        readout: str | None = None, input_kind: str = "analog") -> Graph:
    """model: a SpikingJelly network (eval mode is not required; BN running stats are used).
    input_shape: per-sample input, e.g. (1, 28, 28). readout: rate | last | membrane, or None
    to take it from the network (torch_layers.choose_readout: a mean over time in forward or
    a classifier head with no neuron after it -> membrane, spikes -> rate).
    Chains and residual nets (SEW-ResNet / Spiking ResNet blocks, the model zoo's) alike: the
    IR graph has one node per module call and per merge (+, *, x * (1 - y)); a head with no
    neuron after it (the zoo's `fc`: a current per step) ends in a current readout."""
    cg = call_graph(model)
    shapes = {"x": tuple(int(s) for s in input_shape)}
    nodes: dict[str, ir.Node] = {"input": ir.Input(shapes["x"], input_kind)}
    edges: list[tuple[str, str]] = []
    rename = {"x": "input"}
    for op in cg.ops:
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
    keep, todo = set(), [cg.result]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += [a for a, b in edges if b == n]
    nodes = {n: x for n, x in nodes.items() if n in keep}
    edges = [(a, b) for a, b in edges if b in keep]
    where = type(model).__name__
    mode, added = choose_readout(where, cg.result, nodes[cg.result], shapes[cg.result],
                                 readout, cg.head)
    last = cg.result
    for name, node in added:
        nodes[name] = node
        edges.append((last, name))
        last = name
    meta = {"source": "spikingjelly", "time_steps": int(time_steps), "readout": mode,
            "step_mode": cg.step_mode}
    if cg.head is not None:
        if not any(op.name == cg.result and op.module is not None for op in cg.ops):
            raise UnsupportedModuleError(
                f"{where}: forward takes the {cg.head} over time of {cg.result!r}, which is "
                "no module's output; reduce a module's output (e.g. the classifier's)")
        meta["head"] = {"reduce": cg.head, "of": cg.result}
    return validate(Graph(nodes, edges, meta), where)


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
    head = graph.metadata.get("head")
    if head is not None:  # forward reduces over time: its per-step values are the output's
        steps: list = []
        hooks.append(modules[head["of"]].register_forward_hook(
            lambda _m, _a, o: steps.append(o)))
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
    if head is not None:
        out = _per_step(out, steps, head)
    spikes, membrane = {}, {}
    for n in neurons:
        x_in, s = seq[n]
        spikes[n] = s
        membrane[n] = run_neuron(graph.nodes[n], x_in, dtype)[0]
    mode = graph.metadata.get("readout", "rate")
    population = next((node.population for _, node in graph.ordered()
                       if isinstance(node, ir.Voting)), 1)
    return SimResult(out, readout_scores(out, mode, population), spikes, membrane)


def _per_step(out: torch.Tensor, steps: list, head: dict) -> torch.Tensor:
    """The per-step values [T, B, ...] behind a forward that returns their mean or sum over
    time, checked against what forward returned (the same reduction of the same tensor is
    the same bits): a forward that does something else is an error, not a wrong reference."""
    if len(steps) != 1:
        raise UnsupportedModuleError(f"{head['of']}: called {len(steps)} times in one forward "
                                     "that reduces over time; expected once (multi-step)")
    seq = steps[0]
    again = seq.mean(0) if head["reduce"] == "mean" else seq.sum(0)
    if again.shape != out.shape or not torch.equal(again, out):
        raise UnsupportedModuleError(
            f"{head['of']}: forward's output is not the {head['reduce']} over time of this "
            "layer's output, as traced; the network's forward depends on something the "
            "trace did not see (data-dependent control flow?)")
    return seq
