"""Import Norse 1.1 networks into the IR directly (not through Norse's `to_nir`, which writes
tau = dt / tau_mem_inv, off by a factor of tau², norse #411; docs/semantics.md §7).

The form read: a norse.torch.SequentialState of torch.nn Conv2d, Linear, BatchNorm1d/2d,
MaxPool2d, AvgPool2d, Flatten, Dropout and one kind of neuron, run as Norse runs it:
  * cells (LIFCell, LIFBoxCell), one call per time step: `out, state = net(x_t, state)`;
  * LIF (the sequence module), one call on the whole sequence: `out, state = net(x_seq)`, the
    layers that cannot take [T, B, ...] wrapped in norse.torch.Lift (Linear and Dropout may
    stand bare, Flatten bare only with start_dim=2).
Nodes are named by module path ("0", "3", ...; a Lift by its own path).
Any other module is read as a forward that loops over time calling its cells with their state,
`z, s = self.lif(self.fc(x[t]), s)` from s = None, and returns `torch.stack(zs, 0)`
(snnexport.importers.time_loop; its reference is its own forward).

Norse's step (norse/torch/functional/lif.py `lif_feed_forward_step`, lif_box.py
`lif_box_feed_forward_step`; Euler at dt, state v = v_leak and i = 0 at the start):
    LIF / LIFCell:  i' = i + x_t
                    v' = v + dt tau_mem_inv ((v_leak - v) + i')
                    i  = i' - dt tau_syn_inv i'
    LIFBoxCell:     v' = v + dt tau_mem_inv (x_t + v_leak - v)
    both:           z_t = [v' - v_th > 0]          (every method's forward is this Heaviside)
                    v = (1 - z) v' + z v_reset     (LIFBoxCell with reset_subtract: v' - z v_th)

Mapping onto the IR's LIFNeuron (decay_input: H_t = V + k (X_t - (V - V_reset)), S_t = [H_t >=
threshold], V_-1 = v_init), exact term by term, with k = dt * tau_mem_inv as Norse computes it
(scalar, per channel or per neuron), threshold = nextafter(v_th, +inf) (Norse fires on v' >
v_th, the IR on H >= threshold: equal for every float64 value), V_reset = v_reset = v_leak,
v_init = v_leak:
  * LIFBoxCell: no current, H = v + k (x - (v - v_leak)) (bit for bit when v_leak = 0);
  * LIF / LIFCell: the current-based LIFNeuron, k_syn = dt * tau_syn_inv as Norse computes it
    (J_t = C_{t-1} + x_t is i', C_t = J_t + (-k_syn) J_t is the new i, term by term), X_t = J_t
    in the box neuron's equation (bit for bit: (v_leak - v) + i' and i' - (v - v_leak) round
    alike); with dt * tau_syn_inv == 1 exactly, i = i' - i' = 0 after every step, i' = x_t,
    and the layer is stored without a current (k_syn None: the box neuron, as before);
  * reset_subtract (LIFBoxCell, v_leak = 0): the IR's soft reset, which subtracts the IR's
    threshold (one float64 step above v_th: 2^-52 v_th, invisible in float32).
Refused, each with a one-line error naming the module path and the fix:
  * LIF / LIFCell with dt * tau_syn_inv outside [0, 1] (a current decay outside [0, 1]);
  * v_leak != v_reset (the IR's neuron leaks toward its reset level), per-neuron v_th, v_leak
    or v_reset (the IR keeps one per layer), dt tau_mem_inv outside (0, 1] (a decay 1 - k
    outside [0, 1)), another reset method or threshold method;
  * every other Norse neuron (recurrent cells, AdEx, refractory, CobaLIF, ...).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.validate import validate
from ..readout import readout_scores
from ..sim.reference import SimResult, encode, run_neuron
from .time_loop import Framework, import_loop, run_loop_reference
from .torch_layers import (
    LAYERS,
    UnsupportedModuleError,
    layer_node,
    out_shape,
    per_neuron,
    refuse,
    uniform,
)

SUPPORTED = ("norse.torch.LIFCell", "LIFBoxCell", "LIF", "Lift") + LAYERS + \
    ("in norse.torch.SequentialState",)
FRAMEWORK = "Norse"
THRESHOLD_METHODS = ("heaviside", "super", "triangle", "tanh", "circ", "heavi_erfc")


def _nt():
    try:
        import norse.torch as nt
    except ImportError as e:  # pragma: no cover - installed by make (dev extra)
        raise ImportError("Norse is not installed: pip install --no-deps norse==1.1.0 "
                          "(it declares torchvision, which it does not need here)") from e
    return nt


def _no(path, m, why):
    return refuse(path, m, why, FRAMEWORK, SUPPORTED)


def _values(v) -> np.ndarray:
    """A parameter as Norse holds it (tensor, or a Python number, kept in float64)."""
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy().copy()
    return np.asarray(v, dtype=np.float64)


def layers(net: nn.Module) -> tuple[str, list[tuple[str, nn.Module, bool]]]:
    """The step mode ('s': cells called per step, 'm': LIF on the whole sequence) and
    (module path, module, lifted) in call order, a Lift unwrapped to the module it lifts."""
    nt = _nt()
    if not isinstance(net, nt.SequentialState) or \
            type(net).forward is not nt.SequentialState.forward:
        raise UnsupportedModuleError(
            f"{type(net).__name__}: not a norse.torch.SequentialState; import_norse reads a "
            "SequentialState of layers and LIFCell / LIFBoxCell (or LIF with Lift-ed layers)")
    named = []
    for path, m in net.named_children():
        lifted = isinstance(m, nt.Lift)
        named.append((path, m.lifted_module if lifted else m, lifted))
    cells = [p for p, m, _ in named if type(m) in (nt.LIFCell, nt.LIFBoxCell)]
    seqs = [p for p, m, _ in named if type(m) is nt.LIF]
    if cells and seqs:
        raise UnsupportedModuleError(
            f"{type(net).__name__}: mixes cells ({', '.join(cells)}) and LIF ({', '.join(seqs)})"
            "; use cells called per step, or LIF over the whole sequence, throughout")
    mode = "m" if seqs else "s"
    for path, m, lifted in named:
        if lifted and mode == "s":
            raise _no(path, m, "inside Lift is not supported in a net of cells (a Lift runs "
                               "its module over the first axis, here the batch); drop the "
                               "Lift around it")
        if lifted and type(m).__module__.startswith("norse"):
            raise _no(path, m, "inside Lift is not supported; use LIF itself")
        if mode == "m" and not lifted and isinstance(m, (nn.Conv2d, nn.BatchNorm1d,
                                                         nn.BatchNorm2d, nn.MaxPool2d,
                                                         nn.AvgPool2d)):
            raise _no(path, m, "cannot take a [T, B, ...] sequence in a LIF net; wrap it in "
                               "norse.torch.Lift")
    return mode, named


def neuron_node(path: str, m: nn.Module, shape) -> ir.LIFNeuron:
    """LIFCell / LIFBoxCell / LIF -> ir.LIFNeuron exactly (module docstring), or an error."""
    nt = _nt()
    from norse.torch.functional.reset import reset_subtract, reset_value

    if type(m) not in (nt.LIFCell, nt.LIF, nt.LIFBoxCell):
        raise _no(path, m, "is not supported (only LIFCell, LIFBoxCell and LIF map exactly "
                           "onto the IR's neuron); use one of them")
    p, dt, box = m.p, m.dt, type(m) is nt.LIFBoxCell
    methods = THRESHOLD_METHODS + (() if box else ("adjoint",))
    if p.method not in methods:
        raise _no(path, m, f"with method {p.method!r} is not supported; use one of "
                           f"{', '.join(methods)}")
    k_syn = None
    if not box:
        # what Norse multiplies the current by, -dt * tau_syn_inv, computed as Norse does
        k_syn = -per_neuron(_values(-dt * p.tau_syn_inv), shape, path, "dt * tau_syn_inv")
        if not np.all((k_syn >= 0) & (k_syn <= 1)):
            raise _no(path, m, f"with dt * tau_syn_inv = {float(np.min(k_syn)):g} .. "
                               f"{float(np.max(k_syn)):g} outside [0, 1] is not supported (the "
                               "Euler step's current decay 1 - dt tau_syn_inv leaves [0, 1]); "
                               "lower dt or tau_syn_inv")
    k = per_neuron(_values(dt * p.tau_mem_inv), shape, path, "dt * tau_mem_inv")
    if not np.all((k > 0) & (k <= 1)):
        raise _no(path, m, f"with dt * tau_mem_inv = {float(np.min(k)):g} .. "
                           f"{float(np.max(k)):g} outside (0, 1] is not supported (the Euler "
                           "step's decay 1 - dt tau_mem_inv leaves [0, 1)); lower dt or "
                           "tau_mem_inv")
    fix = "give a scalar"
    v_th = uniform(_values(p.v_th), path, "v_th", fix)
    v_leak = uniform(_values(p.v_leak), path, "v_leak", fix)
    v_reset = uniform(_values(p.v_reset), path, "v_reset", fix)
    reset = getattr(p, "reset_method", reset_value)
    threshold = float(np.nextafter(v_th, np.inf))
    if reset is reset_subtract:
        if v_leak != 0 or not v_th > 0:
            raise _no(path, m, f"with reset_subtract, v_leak={v_leak:g} and v_th={v_th:g} is "
                               "not supported (the IR's soft reset leaks toward 0); use "
                               "v_leak=0 and v_th > 0")
        return ir.LIFNeuron(tuple(shape), k, threshold, None, True, np.asarray(0.0),
                            k_syn=k_syn)
    if reset is not reset_value:
        raise _no(path, m, f"with reset_method {getattr(reset, '__name__', reset)!r} is not "
                           "supported; use reset_value or reset_subtract")
    if v_leak != v_reset or not v_th > v_reset:
        raise _no(path, m, f"with v_leak={v_leak:g}, v_reset={v_reset:g}, v_th={v_th:g} is "
                           "not supported (the IR's neuron leaks toward its reset level and "
                           "fires above it); use v_leak = v_reset < v_th")
    return ir.LIFNeuron(tuple(shape), k, threshold, v_reset, True, np.asarray(v_leak),
                        k_syn=k_syn)


def import_norse(net: nn.Module, input_shape, time_steps: int, readout: str = "rate",
                 input_kind: str = "analog") -> Graph:
    """net: a norse.torch.SequentialState, or a module whose forward loops over time calling
    its cells with their state (module docstring). input_shape: per-sample input, e.g.
    (1, 28, 28). readout: rate | last | membrane."""
    nt = _nt()
    if not isinstance(net, nt.SequentialState) or \
            type(net).forward is not nt.SequentialState.forward:
        return import_loop(net, input_shape, time_steps, readout, input_kind, loop_framework())
    mode, named = layers(net)
    shape = tuple(int(s) for s in input_shape)
    nodes: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, input_kind))]
    for path, m, lifted in named:
        if type(m).__module__.startswith("norse"):
            node = neuron_node(path, m, shape)
        else:
            node = layer_node(path, m, FRAMEWORK, SUPPORTED,
                              flatten_start=2 if mode == "m" and not lifted else 1)
            if node is None:
                raise _no(path, m, "is not supported")
        shape = out_shape(path, node, shape)
        nodes.append((path, node))
    meta = {"source": "norse", "time_steps": int(time_steps), "readout": readout,
            "step_mode": mode}
    return validate(Graph.chain(nodes, meta), type(net).__name__)


def _loop_neuron(path: str, m: nn.Module, shape) -> ir.LIFNeuron:
    if type(m) is _nt().LIF:
        raise _no(path, m, "runs a whole sequence; in a forward that loops over time call a "
                           "LIFCell (z, s = cell(x[t], s))")
    return neuron_node(path, m, shape)


def _fresh(path, m, arg, root, meaning):
    """The first call's state: None (Norse starts from v_leak and no current)."""
    return None if arg is None else ("takes a first state that is not None; start from s = "
                                     "None before the loop (Norse's own initial state)")


def _states(path, m) -> int:
    if type(m).__module__.startswith("norse") and type(m) not in (_nt().LIFCell,
                                                                   _nt().LIFBoxCell):
        _loop_neuron(path, m, (1,))  # its one-line refusal
    return 1


def loop_framework() -> Framework:
    """What time_loop needs to read a Norse forward that loops over time."""
    return Framework(
        FRAMEWORK, "norse", LAYERS + ("F.max_pool2d / avg_pool2d", "norse.torch.LIFCell / "
                                      "LIFBoxCell called with their state, in a forward "
                                      "that loops over time"),
        is_neuron=lambda m: type(m).__module__.startswith("norse"), states=_states,
        fresh=_fresh, neuron_node=_loop_neuron,
        membrane=lambda node, x_in, dtype: run_neuron(node, x_in, dtype)[0])


@torch.no_grad()
def run_norse_reference(net: nn.Module, graph: Graph, x: torch.Tensor,
                        dtype: torch.dtype = torch.float32) -> SimResult:
    """Run the Norse net itself from its initial state (cells: one call per step with the
    state handed back; LIF: one call on the sequence) and record every neuron's spikes. H
    (for telling threshold ties) is recomputed from each layer's recorded input with the IR's
    equations for it (module docstring: the same terms), in `dtype`. float64 runs a double
    copy (Norse's parameters stay the float32 values it holds, as in float32). A forward
    that loops over time runs itself (time_loop.run_loop_reference)."""
    if "time_loop" in graph.metadata:
        return run_loop_reference(net, graph, x, dtype, loop_framework())
    mode = graph.metadata.get("step_mode") or layers(net)[0]
    m = net if dtype == torch.float32 else copy.deepcopy(net).to(dtype)
    m.eval()
    modules = dict(m.named_modules())
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.LIFNeuron)]
    inputs: dict[str, list] = {n: [] for n in neurons}
    outputs: dict[str, list] = {n: [] for n in neurons}
    hooks = []
    for n in neurons:
        hooks.append(modules[n].register_forward_pre_hook(
            lambda _m, a, n=n: inputs[n].append(a[0])))
        hooks.append(modules[n].register_forward_hook(
            lambda _m, _a, o, n=n: outputs[n].append(o[0])))
    x_seq = encode(graph, x, None).to(dtype)

    def last(o):
        return o[-1] if isinstance(o, list) else o  # return_hidden=True gives every layer

    try:
        if mode == "s":
            state, outs = None, []
            for xt in x_seq:
                o, state = m(xt, state)
                outs.append(last(o))
            out = torch.stack(outs)
            seq = {n: (torch.stack(inputs[n]), torch.stack(outputs[n])) for n in neurons}
        else:
            o, _ = m(x_seq)
            out = last(o)
            seq = {n: (inputs[n][0], outputs[n][0]) for n in neurons}
    finally:
        for h in hooks:
            h.remove()
    spikes, membrane = {}, {}
    for n in neurons:
        x_in, s = seq[n]
        spikes[n] = s.to(dtype)
        membrane[n] = run_neuron(graph.nodes[n], x_in.to(dtype), dtype)[0]
    mode_r = graph.metadata.get("readout", "rate")
    return SimResult(out.to(dtype), readout_scores(out.to(dtype), mode_r, 1), spikes, membrane)
