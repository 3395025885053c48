"""Networks whose forward loops over time with explicit neuron state, as snnTorch's tutorials
and Norse's custom modules write them, imported into the same chain the nn.Sequential /
SequentialState importers make; their reference is their own forward.

    def forward(self, x):                        # x: [B, ...] (the same every step) or
        mem1 = self.lif1.init_leaky()            #    [T, B, ...] read as x[step]
        spk_rec, mem_rec = [], []
        for step in range(num_steps):            # a constant, or x.size(0) / len(x) of [T, ...]
            cur1 = self.fc1(x.flatten(1))
            spk1, mem1 = self.lif1(cur1, mem1)   # Norse: z, s1 = self.lif1(cur1, s1), s1 = None
            ...
            spk_rec.append(spk2); mem_rec.append(mem2)
        return torch.stack(spk_rec, dim=0), torch.stack(mem_rec, 0)

How the calls are captured: torch.fx symbolic tracing with the framework's neurons as leaf
modules (as snnexport.importers.spikingjelly traces), which unrolls the Python loop over its
constant range into T copies of each call; every step's calls are then checked to form the
same chain and folded into one. Chosen over recording the calls of one real forward with
hooks (measured on snnTorch Tutorial 5's net, 784-1000-10, T = 25, on a shared 2-core
machine under load: the trace and fold take 0.11 s and need no input data, one forward of 200
MNIST samples 2.6 s) because a symbolic trace sees every operation between the modules
(x.flatten(1), x.view(x.size(0), -1), F.max_pool2d, x[step]) as a node, where module hooks see
only module calls and would miss them, and because a trace *fails* on control flow that
depends on the data (`if spk.sum() > 0`: fx's TraceError, one line here), where one recorded
forward would silently keep the branch that input took. The loop count is read from the
unrolled trace (`range(num_steps)`) or, for a [T, B, ...] input, from `x.size(0)`, `x.shape[0]`
or `len(x)` (the tracer answers T there); it must equal the time steps given.

Each step's per-step value is a tree of the calls that made it (module path, argument tree);
the values forward stacks (`torch.stack(rec, 0)`) must be the same tree at every step, made
from that step's input and that step's neuron calls, and each neuron's state must go from its
call at step t to its own call at step t + 1 and nowhere else (a returned `torch.stack` of
membranes is allowed and ignored: the IR's output is the spikes or currents). The first call
takes the fresh state (snnTorch: the `init_leaky()` / `reset_mem()` / `init_synaptic()`
zeros made in forward; Norse: None). Understood between the calls: torch.nn layers (as
snnexport.importers.torch_layers maps them), F.max_pool2d / F.avg_pool2d, flattening one sample
(`x.flatten(1)`, `torch.flatten(x, 1)`, `x.view(x.size(0), -1)`, `x.view(-1, n)` with n the
sample's size, `reshape` alike) and `x[step]`. Everything else is one line naming the module
path and the operation (UnsupportedModuleError): state mixed across layers or steps, a reset in
the middle (a fresh state after the first step), a layer used differently at some step, a
module called twice per step, values from two different steps combined, a data-dependent
branch, a loop count that differs from the time steps, a batch size written as a constant.

The reference runs the user's module itself: forward on the batch (or on the [T, B, ...]
sequence), the per-step spikes of every neuron recorded by forward hooks on the neuron
modules, the output taken from what forward returns; H (for telling threshold ties) is
recomputed from each neuron's recorded input with the IR's equations for it, as the
nn.Sequential readers do.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.validate import validate
from ..readout import readout_scores
from ..sim.reference import SimResult, encode
from .torch_layers import (
    UnsupportedModuleError,
    choose_readout,
    layer_node,
    out_shape,
    refuse,
)


@dataclass
class Framework:
    """What the loop reader needs from a framework's importer.

    name / source / supported: for messages and metadata. is_neuron(m): a neuron module (a
    leaf of the trace). states(m): how many state arguments its call takes after the input
    (snnTorch Leaky 1, Synaptic 2; Norse cells 1). fresh(path, m, arg, root): whether the fx
    argument `arg` of its first call is the fresh state (else a message why not).
    neuron_node(path, m, shape): the IR node. membrane(node, inputs [T, B, ...], dtype): H
    per step. prepare(net) before a trace and clear(net) after it and around a reference
    run (the framework's state kept in modules)."""

    name: str
    source: str
    supported: tuple
    is_neuron: Callable
    states: Callable
    fresh: Callable
    neuron_node: Callable
    membrane: Callable
    prepare: Callable = lambda net: None
    clear: Callable = lambda net: None


@dataclass(frozen=True)
class _V:
    """The meaning of one fx node: kind 'value' (a per-step tensor: tree, step or None when it
    is the same at every step), 'seq' (the [T, B, ...] input), 'call' (a neuron's call: tree,
    step), 'state' (a neuron's state after a step: tree = (path, index)), 'size' (x.size(d):
    tree = (value, d)), 'stack' (torch.stack over steps: tree, step = the count)."""

    kind: str
    tree: tuple | None = None
    step: int | None = None


@dataclass
class Loop:
    """The folded forward: ops (name -> module, or 'flatten' with the sample size a view
    names) in call order from the input, the op forward returns stacked over steps, where in
    forward's returned tuple it is (None: returned alone), the steps, and whether forward reads
    x[step] of a [T, B, ...] input (else the same x at every step)."""

    chain: list[tuple[str, object]]
    output: int | None
    steps: int
    sequence: bool
    neurons: list[str] = field(default_factory=list)


class _Proxy(fx.Proxy):
    """Answers the time dimension of the input where the forward needs it as a number
    (`range(x.size(0))`, `len(x)`): the time steps given."""

    def __index__(self):
        return self.tracer.time_of(self.node)

    def __len__(self):
        if self.node.op == "placeholder":
            return self.tracer.time_of(self.node, 0)
        return super().__len__()


class _Tracer(fx.Tracer):
    def __init__(self, fw: Framework, time_steps: int):
        super().__init__()
        self.fw, self.time_steps, self.time_read = fw, time_steps, False

    def is_leaf_module(self, m, qualname):
        return self.fw.is_neuron(m) or type(m).__module__.startswith(("snntorch", "norse")) \
            or super().is_leaf_module(m, qualname)

    def proxy(self, node):
        return _Proxy(node, self)

    def time_of(self, node, dim=None):
        """T where node is the input's dim 0 (x.size(0), x.shape[0], len(x))."""
        if dim is None:
            src, dim = _size_source(node)
        else:
            src = node
        if src is None or src.op != "placeholder" or dim != 0:
            raise UnsupportedModuleError(
                f"forward uses a size of a traced value ({node.name}) as a number; only a "
                "constant loop count or the input's time dimension (x.size(0) of a [T, B, ...] "
                "input) is understood")
        self.time_read = True
        return self.time_steps


def _size_source(node: fx.Node):
    """(source node, dim) of x.size(d) / x.shape[d] / x.size()[d], else (None, None)."""
    if node.op == "call_method" and node.target == "size" and len(node.args) == 2:
        return node.args[0], node.args[1]
    if node.op == "call_function" and node.target is operator.getitem and \
            isinstance(node.args[0], fx.Node) and isinstance(node.args[1], int):
        inner = node.args[0]
        if (inner.op == "call_function" and inner.target is getattr and
                inner.args[1] == "shape") or (inner.op == "call_method" and
                                              inner.target == "size" and len(inner.args) == 1):
            return inner.args[0], node.args[1]
    return None, None


_FLATTEN = (torch.flatten, "flatten")
_RESHAPE = (torch.reshape, "view", "reshape")
_POOLS = {F.max_pool2d: ("max_pool2d", nn.MaxPool2d), F.avg_pool2d: ("avg_pool2d", nn.AvgPool2d)}
_STACK = (torch.stack,)


def _name(t) -> str:
    return getattr(t, "__name__", str(t))


def _head(tree) -> str:
    """The name of the op that made a value ('input' for x)."""
    return tree[1] if tree[0] == "op" else "input"


def capture(net: nn.Module, time_steps: int, fw: Framework) -> Loop:
    """Trace forward and fold its time loop (module docstring), or one line why not."""
    where = type(net).__name__
    tracer = _Tracer(fw, int(time_steps))
    before = set(vars(net))
    fw.prepare(net)
    try:
        graph = tracer.trace(net)
    except UnsupportedModuleError as e:
        raise UnsupportedModuleError(f"{where}: {e}") from None
    except Exception as e:
        raise UnsupportedModuleError(
            f"{where}: its forward cannot be traced by torch.fx ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); a forward that loops over a constant range "
            "with explicit state and no branch on the data is read") from None
    try:
        return _fold(net, graph, tracer, fw, where)
    finally:
        for k in set(vars(net)) - before:  # fx's _tensor_constant attributes
            delattr(net, k)
        fw.clear(net)


def _fold(net, graph: fx.Graph, tracer: _Tracer, fw: Framework, where: str) -> Loop:
    modules = dict(net.named_modules())
    sequence = any(n.op == "call_function" and n.target is operator.getitem and
                   n.args[0].op == "placeholder" for n in graph.nodes
                   if n.args and isinstance(n.args[0], fx.Node))
    val: dict[fx.Node, _V] = {}
    ops: dict[str, tuple] = {}  # op name -> ('module', m) | ('flatten', n | None)
    calls: dict[str, int] = {}  # neuron path -> calls so far
    result = None

    def no(node, why):
        scope = next((_head(val[a].tree) for a in node.args if isinstance(a, fx.Node)
                      and a in val and val[a].kind == "value"), None)
        at = f" (after {scope})" if scope else ""
        return UnsupportedModuleError(f"{where}: forward {why}{at}")

    def value(node, a) -> _V:
        v = val.get(a) if isinstance(a, fx.Node) else None
        if v is None or v.kind != "value":
            what = "a neuron's state" if v is not None and v.kind == "state" else repr(a)
            raise no(node, f"applies {node.op} {_name(node.target)!r} to {what}; between "
                           "the time-loop's modules only one module output at a time flows "
                           "(a neuron's state goes only to its own next call)")
        return v

    def add_op(name, spec, node):
        if ops.setdefault(name, spec) != spec and not (spec[0] == "module" and
                                                       ops[name][1] is spec[1]):
            raise no(node, f"uses {name} differently at two steps")
        return name

    def batch(node, d) -> bool:
        """d is the batch size of a value (x.size(0) of a per-step value, x.size(1) of a
        [T, B, ...] input)."""
        s = val.get(d) if isinstance(d, fx.Node) else None
        if s is None or s.kind != "size":
            return False
        src, dim = s.tree
        return dim == (1 if val[src].kind == "seq" else 0)

    for node in graph.nodes:
        op, target = node.op, node.target
        if op == "placeholder":
            if val:
                raise UnsupportedModuleError(f"{where}: forward takes more than one input")
            val[node] = _V("seq") if sequence else _V("value", ("x",), None)
        elif op == "output":
            result = node.args[0]
        elif op == "get_attr":
            val[node] = _V("attr", (str(target),))
        elif op == "call_function" and target in (torch.zeros, torch.zeros_like):
            val[node] = _V("zeros")  # a fresh state made in forward
        elif op == "call_module":
            path, m = str(target), modules[str(target)]
            if fw.is_neuron(m):
                val[node] = _neuron_call(node, path, m, fw, val, calls, value, tracer, where)
                continue
            if len(node.args) != 1 or node.kwargs:
                raise no(node, f"calls {path} with more than one input")
            a = value(node, node.args[0])
            val[node] = _V("value", ("op", add_op(path, ("module", m), node), a.tree), a.step)
        elif op == "call_function" and target is operator.getitem:
            src, idx = node.args
            s = val.get(src) if isinstance(src, fx.Node) else None
            if s is not None and s.kind == "seq":
                if isinstance(idx, tuple) and idx and all(
                        i in (Ellipsis, slice(None)) for i in idx[1:]):
                    idx = idx[0]
                if not isinstance(idx, int) or isinstance(idx, bool):
                    raise no(node, f"indexes the input with {idx!r}; read one step as x[step]")
                val[node] = _V("value", ("x",), idx)
            elif s is not None and s.kind == "call" and isinstance(idx, int):
                path, tree = s.tree
                val[node] = _V("value", tree, s.step) if idx == 0 else \
                    _V("state", (path, idx - 1), s.step)
            elif _size_source(node)[0] in val:
                val[node] = _V("size", _size_source(node))
            elif s is not None and s.kind == "shape" and isinstance(idx, int):
                val[node] = _V("size", (s.tree[0], idx))
            else:
                raise no(node, f"takes item {idx!r} of {src}; only x[step] of the input and "
                               "the (spikes, state) a neuron returns are read")
        elif op == "call_method" and target == "size" and node.args[0] in val:
            val[node] = _V("size", (node.args[0], node.args[1])) if len(node.args) == 2 \
                else _V("shape", (node.args[0],))
        elif op == "call_function" and target is getattr and node.args[1] == "shape":
            val[node] = _V("shape", (node.args[0],))
        elif op == "call_function" and target is getattr and \
                val.get(node.args[0], _V("")).kind == "state":
            val[node] = val[node.args[0]]  # a field of a Norse state (s.v): still state
        elif op in ("call_function", "call_method") and target in _FLATTEN:
            a = value(node, node.args[0])
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if (start, end) != (1, -1):
                raise no(node, f"flattens with start_dim={start}, end_dim={end}; flatten one "
                               "sample: x.flatten(1)")
            name = add_op(f"{_head(a.tree)}.flatten" if a.tree != ("x",) else "flatten",
                          ("flatten", None), node)
            val[node] = _V("value", ("op", name, a.tree), a.step)
        elif op in ("call_function", "call_method") and target in _RESHAPE:
            a = value(node, node.args[0])
            dims = node.args[1:]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = tuple(dims[0])
            n = None
            if len(dims) == 2 and batch(node, dims[0]) and dims[1] == -1:
                n = None
            elif len(dims) == 2 and dims[0] == -1 and isinstance(dims[1], int):
                n = dims[1]
            else:
                shown = tuple(d if isinstance(d, int) else str(d) for d in dims)
                raise no(node, f"reshapes to {shown}; flatten one sample with "
                               "x.view(x.size(0), -1), x.view(-1, n) or x.flatten(1) (a batch "
                               "size written as a number fixes the batch)")
            name = add_op(f"{_head(a.tree)}.flatten" if a.tree != ("x",) else "flatten",
                          ("flatten", n), node)
            val[node] = _V("value", ("op", name, a.tree), a.step)
        elif op == "call_function" and target in _POOLS:
            a = value(node, node.args[0])
            try:
                kw = {k: v for k, v in node.kwargs.items() if k != "return_indices"}
                pool = _POOLS[target][1](*node.args[1:], **kw)
            except TypeError as e:
                raise no(node, f"calls {_POOLS[target][0]} with {node.args[1:]}: {e}") from None
            if node.kwargs.get("return_indices"):
                raise no(node, f"calls {_POOLS[target][0]} with return_indices=True")
            name = f"{_head(a.tree)}.{_POOLS[target][0]}"
            if name in ops and repr(ops[name][1]) != repr(pool):
                raise no(node, f"uses {name} differently at two steps")
            ops.setdefault(name, ("module", pool))
            val[node] = _V("value", ("op", name, a.tree), a.step)
        elif op == "call_function" and target in _STACK:
            items = node.args[0] if node.args else node.kwargs.get("tensors")
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if dim != 0 or not isinstance(items, (list, tuple)) or not items:
                raise no(node, "stacks values along a dimension other than 0 (time)")
            vs = [val.get(i) if isinstance(i, fx.Node) else None for i in items]
            kinds = {v.kind if v is not None else None for v in vs}
            if kinds == {"state"}:
                val[node] = _V("stack_state")
                continue
            if kinds != {"value"}:
                raise no(node, "stacks something other than per-step module outputs")
            trees = {v.tree for v in vs}
            steps = [v.step for v in vs]
            if len(trees) != 1:
                bad = next(i for i, v in enumerate(vs) if v.tree != vs[0].tree)
                raise no(node, f"computes its step-{bad} output with other calls than its "
                               f"step-0 output ({_first_diff(vs[0].tree, vs[bad].tree)}); "
                               "every step must run the same layers in the same order")
            if steps != list(range(len(vs))):
                raise no(node, f"stacks values of steps {steps}; stack one value per step, "
                               "steps 0, 1, ... in order")
            val[node] = _V("stack", vs[0].tree, len(vs))
        else:
            a = next((x for x in node.args if isinstance(x, fx.Node) and x in val), None)
            what = f"{op} {_name(target)!r}"
            if a is not None and val[a].kind == "state":
                raise no(node, f"applies {what} to a neuron's state ({val[a].tree[0]}); a "
                               "state goes only to its own neuron's next call")
            raise no(node, f"applies {what} outside a module; between the time-loop's modules "
                           "are understood torch.nn layers, F.max_pool2d / avg_pool2d, "
                           "flattening one sample and x[step]")
    return _result(net, result, val, ops, calls, tracer, fw, where, sequence)


def _neuron_call(node, path, m, fw, val, calls, value, tracer, where) -> _V:
    k = calls.get(path, 0)
    calls[path] = k + 1
    args = list(node.args)
    for key in list(node.kwargs):
        args.append(node.kwargs[key])
    n = fw.states(path, m)
    if k == 0 and len(args) == 1 and not fw.fresh(path, m, None, tracer.root, None):
        args += [None] * n  # Norse: no state is the fresh state
    if len(args) != 1 + n:
        raise UnsupportedModuleError(
            f"{path}: called with {len(args) - 1} state argument(s) at step {k}, its "
            f"{n} state(s) must be handed in explicitly at every step ({fw.name}: "
            + ("spk, mem = lif(cur, mem) with mem = lif.init_leaky() before the loop and "
               "init_hidden=False)" if fw.source == "snntorch" else
               "z, s = cell(x, s) with s = None before the loop)"))
    a = value(node, args[0])
    if a.step is not None and a.step != k:
        raise UnsupportedModuleError(
            f"{path}: its call number {k} (step {k}) takes an input of step {a.step} (a neuron "
            "called more than once per step, or values of two steps combined); call each "
            "neuron once per step on that step's input")
    for i, s in enumerate(args[1:]):
        v = val.get(s) if isinstance(s, fx.Node) else None
        if k == 0:
            why = fw.fresh(path, m, s, tracer.root, v)
            if why:
                raise UnsupportedModuleError(f"{path}: {why}")
        elif v is None or v.kind != "state" or v.tree != (path, i) or v.step != k - 1:
            got = "a fresh state (a reset in the middle of the loop)" if v is None or \
                v.kind == "attr" else (f"the state of {v.tree[0]} at step {v.step}"
                                       if v.kind == "state" else "another value")
            raise UnsupportedModuleError(
                f"{path}: its state at step {k} is {got}, not its own state from step "
                f"{k - 1}; reset the state once before the loop and hand each neuron's state "
                "only to its own next call")
    return _V("call", (path, ("op", path, a.tree)), k)


def _first_diff(a: tuple, b: tuple) -> str:
    """Where two steps' call trees part: 'fc2 where step 0 has lif1'."""
    while a[0] == "op" and b[0] == "op" and a[1] == b[1]:
        a, b = a[2], b[2]
    return f"{_head(b)} where step 0 has {_head(a)}"


def _result(net, result, val, ops, calls, tracer, fw, where, sequence) -> Loop:
    outs = list(result) if isinstance(result, (tuple, list)) else [result]
    stacks = [i for i, o in enumerate(outs) if isinstance(o, fx.Node) and o in val
              and val[o].kind == "stack"]
    if len(stacks) != 1 or any(not isinstance(o, fx.Node) or o not in val or
                               val[o].kind not in ("stack", "stack_state") for o in outs):
        raise UnsupportedModuleError(
            f"{where}: forward returns {len(stacks)} stacked per-step outputs among "
            f"{len(outs)} values; return torch.stack(spk_rec, 0) of the last layer (and "
            "optionally torch.stack of membranes, as a tuple), after a loop over the steps")
    out = val[outs[stacks[0]]]
    steps = out.step
    if steps != tracer.time_steps:
        raise UnsupportedModuleError(
            f"{where}: forward loops over {steps} steps, but time steps {tracer.time_steps} "
            f"were given; give --time-steps {steps} (time_steps={steps})")
    if tracer.time_read and not sequence:
        raise UnsupportedModuleError(
            f"{where}: forward loops over x.size(0) of an input it does not index by step; "
            "loop over a constant number of steps, or index a [T, B, ...] input as x[step]")
    chain, tree = [], out.tree
    while tree[0] == "op":
        chain.append(tree[1])
        tree = tree[2]
    chain.reverse()
    dup = next((n for n in chain if chain.count(n) > 1), None)
    if dup is not None:
        raise UnsupportedModuleError(f"{dup}: called twice in one step; give each call its "
                                     "own module")
    neurons = [n for n in chain if n in calls]
    for n in neurons:
        if calls[n] != steps:
            raise UnsupportedModuleError(f"{n}: called {calls[n]} times in a forward of "
                                         f"{steps} steps; call each neuron once per step")
    modules = dict(net.named_modules())
    specs = []
    for n in chain:
        kind, obj = ops.get(n, ("neuron", None))
        specs.append((n, obj if kind == "module" else ("flatten", obj) if kind == "flatten"
                      else modules[n]))
    return Loop(specs, None if not isinstance(result, (tuple, list)) else stacks[0], steps,
                sequence, neurons)


def import_loop(net: nn.Module, input_shape, time_steps: int, readout: str | None,
                input_kind: str, fw: Framework) -> Graph:
    """The IR chain of a forward that loops over time (module docstring)."""
    loop = capture(net, time_steps, fw)
    where = type(net).__name__
    shape = tuple(int(s) for s in input_shape)
    nodes: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, input_kind))]
    for name, m in loop.chain:
        if isinstance(m, tuple):  # ('flatten', n)
            if m[1] is not None and m[1] != math.prod(shape):
                raise UnsupportedModuleError(
                    f"{name}: view(-1, {m[1]}) of a sample of shape {shape} "
                    f"({math.prod(shape)} values) does not flatten one sample")
            node = ir.Flatten()
        elif fw.is_neuron(m):
            node = fw.neuron_node(name, m, shape)
        else:
            node = layer_node(name, m, fw.name, fw.supported, in_shape=shape)
            if node is None:
                raise refuse(name, m, "is not supported", fw.name, fw.supported)
        shape = out_shape(name, node, shape)
        nodes.append((name, node))
    last = nodes[-1][0]
    mode, added = choose_readout(where, last, nodes[-1][1], shape, readout, None)
    meta = {"source": fw.source, "time_steps": int(time_steps), "readout": mode,
            "time_loop": {"input": "sequence" if loop.sequence else "static",
                          "output": loop.output, "of": last}}
    return validate(Graph.chain(nodes + added, meta), where)


@torch.no_grad()

def spikes_of(o):
    """A neuron module's spikes: the first of the tuple it returns, or the tensor itself."""
    return o[0] if isinstance(o, tuple) else o


def record_neurons(modules: dict, neurons: list[str], dtype: torch.dtype):
    """Hooks on the `neurons` (module paths) that record each call's input and spikes, in
    call order, and hand the spikes on in `dtype` (snnTorch's surrogates return float32
    spikes; 0 and 1 are exact in every float dtype). Returns (inputs, outputs, hooks): the
    caller removes the hooks."""
    inputs: dict[str, list] = {n: [] for n in neurons}
    outputs: dict[str, list] = {n: [] for n in neurons}

    def record(n):
        def hook(_m, _a, o):
            s = spikes_of(o)
            outputs[n].append(s)
            if s.dtype != dtype:
                s = s.to(dtype)
                return (s, *o[1:]) if isinstance(o, tuple) else s
            return None
        return hook

    hooks = []
    for n in neurons:
        hooks.append(modules[n].register_forward_pre_hook(
            lambda _m, a, n=n: inputs[n].append(a[0])))
        hooks.append(modules[n].register_forward_hook(record(n)))
    return inputs, outputs, hooks


def run_loop_reference(net: nn.Module, graph: Graph, x: torch.Tensor, dtype: torch.dtype,
                       fw: Framework) -> SimResult:
    """Run the user's module itself (its forward loops over time) and record every neuron's
    spikes per step with forward hooks (module docstring)."""
    meta = graph.metadata["time_loop"]
    fw.clear(net)  # a state left from a forward with autograd cannot be deep-copied
    m = net if dtype == torch.float32 else copy.deepcopy(net).to(dtype)
    m.eval()
    modules = dict(m.named_modules())
    neurons = [n for n, node in graph.ordered() if n in modules and fw.is_neuron(modules[n])]
    inputs, outputs, hooks = record_neurons(modules, neurons, dtype)
    x_seq = encode(graph, x, None).to(dtype)
    if meta["input"] == "static":
        if not bool((x_seq == x_seq[:1]).all()):
            raise UnsupportedModuleError(
                f"{type(net).__name__}: its forward takes one input for every step (it does "
                "not read x[step]); give a static input, not a sequence that changes")
        feed = x_seq[0]
    else:
        feed = x_seq
    try:
        fw.clear(m)
        got = m(feed)
    finally:
        for h in hooks:
            h.remove()
        fw.clear(m)
    out = got[meta["output"]] if meta["output"] is not None else got
    t = int(graph.metadata["time_steps"])
    for n in neurons:
        if len(outputs[n]) != t:
            raise UnsupportedModuleError(
                f"{n}: called {len(outputs[n])} times in a forward traced with {t} steps; the "
                "forward depends on something the trace did not see")
    spikes, membrane = {}, {}
    for n in neurons:
        spikes[n] = torch.stack(outputs[n]).to(dtype)
        membrane[n] = fw.membrane(graph.nodes[n], torch.stack(inputs[n]).to(dtype), dtype)
    out = out.to(dtype)
    last = meta["of"]
    if last in spikes and not torch.equal(out, spikes[last]):
        raise UnsupportedModuleError(
            f"{last}: forward's output is not this layer's spikes per step, as traced; the "
            "forward depends on something the trace did not see")
    mode = graph.metadata.get("readout", "rate")
    return SimResult(out, readout_scores(out, mode, 1), spikes, membrane)
