"""Import snnTorch 1.0 networks into the IR directly (not through snnTorch's NIR exporter, which
needs full-shape beta tensors and ignore_dims and cannot export MaxPool2d; docs/semantics.md §7).

The form read: an nn.Sequential (nested nn.Sequentials are followed) of torch.nn Conv2d,
Linear, BatchNorm1d/2d, MaxPool2d, AvgPool2d, Flatten, Dropout and snntorch.Leaky with
init_hidden=True (output=True allowed on the last module), called once per time step,
`net(x_t)`, as snnTorch's tutorials run it. Nodes are named by module path ("0", "3",
"features.1", ...). Any other module is read as a forward that loops over time with explicit
state, `spk, mem = self.lif(cur, mem)` with init_hidden=False, and returns
`torch.stack(spk_rec, 0)` (snnexport.importers.time_loop; its reference is its own forward).

snnTorch's Leaky, step t (snntorch/_neurons/leaky.py, neurons.py; U = self.mem, which starts
at 0 for a new batch):
    R_t = [U_{t-1} > thr]                                     (mem_reset, the previous U)
    subtract:  U_t = clamp(beta, 0, 1) U_{t-1} + I_t - R_t thr
    zero:      U_t = clamp(beta, 0, 1) (1 - R_t) U_{t-1} + I_t
    S_t = [U_t - thr > 0] * graded_spikes_factor              (every surrogate's forward)
    reset_delay=False: after S_t, U_t -= (S_t - R_t) thr (subtract) or (S_t - R_t) U_t (zero)

Mapping onto the IR's Neuron (H_t = decay V_{t-1} + I_t, S_t = [H_t >= threshold]; reset to 0
'hard', or 'soft' by reset_by (None: the threshold), V_-1 = 0), term by term, with
decay = clamp(beta, 0, 1) (scalar, per channel or per neuron) and threshold =
nextafter(thr, +inf) (snnTorch fires on U > thr, the IR on H >= threshold: equal for every
float64 value):
  * zero, reset_delay=True: U_t = beta V_{t-1} + I_t with V = U (1 - S): the IR's hard reset.
  * zero, reset_delay=False: U_{t-1} is already reset, so R_t = [U_{t-1} > thr] is always 0
    (thr > 0) and the same hard reset results.
  * subtract, reset_delay=True, beta = 1: U_t = (U_{t-1} - thr S_{t-1}) + I_t: the IR's soft
    reset with decay 1.
  * subtract, reset_delay=True, 0 < beta < 1 (scalar, per channel or per neuron): snnTorch
    takes the threshold off *after* the decay, U_t = beta U_{t-1} + I_t - thr S_{t-1}
    = beta (U_{t-1} - (thr / beta) S_{t-1}) + I_t: the IR's soft reset by reset_by = thr / beta
    (V_t = U_t - (thr / beta) S_t, H_t = beta V_{t-1} + I_t = U_t). Exact in real arithmetic;
    in float the two orders round differently (by a few ulp of U), which can only flip a spike
    whose U lies within that of the threshold: a threshold tie, as the parity report counts.
Refused, each with a one-line error naming the module path and the fix:
  * subtract with beta = 0 (U_t = I_t - thr S_{t-1}: no reset amount before a zero decay
    states it);
  * subtract with reset_delay=False: when U after the reset is still above thr, R_t = 1 moves
    that step's firing level to 2 thr, which the IR cannot state;
  * reset_mechanism='none' (the IR's neurons always reset), per-neuron thresholds (the IR keeps
    one per layer), thr <= 0, graded_spikes_factor != 1, inhibition, state_quant, a spike
    function whose forward is not U - thr > 0;
  * Synaptic with reset_mechanism='zero' and reset_delay=True: the step after a spike clears
    the whole new U_t (input included), a refractory step. Every other snnTorch neuron
    (RLeaky, Alpha, Lapicque, ...) likewise.

snnTorch's Synaptic (snntorch/_neurons/synaptic.py) is Leaky with a synaptic current in front:
    syn_t = clamp(alpha, 0, 1) syn_{t-1} + I_t;   U_t = clamp(beta, 0, 1) U_{t-1} + syn_t ...
with the same reset terms on U (syn is never reset: its zero reset subtracts 0 from it). It is
the IR's current-based Neuron with current_decay = clamp(alpha, 0, 1) (J_t = current_decay
J_{t-1} + I_t, H_t = decay V_{t-1} + J_t: the same products and sums, bit for bit), and every
case above maps as for Leaky, except zero reset with reset_delay=True (refused, above); with
reset_delay=False the reset U is 0, so R_t is 0 and U_t = beta 0 + syn_t: the hard reset.
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
from .time_loop import Framework, import_loop, record_neurons, run_loop_reference, spikes_of
from .torch_layers import (
    LAYERS,
    UnsupportedModuleError,
    layer_node,
    out_shape,
    per_neuron,
    refuse,
    uniform,
)

SUPPORTED = ("snntorch.Leaky / Synaptic (init_hidden=True)",) + LAYERS + ("in nn.Sequential",)
FRAMEWORK = "snnTorch"


def _snn():
    try:
        import snntorch
    except ImportError as e:  # pragma: no cover - installed by make (dev extra)
        raise ImportError("snnTorch is not installed: pip install snntorch==1.0.0") from e
    return snntorch


def layers(net: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(module path, module) in call order of an nn.Sequential, nested ones followed."""
    if not isinstance(net, nn.Sequential) or type(net).forward is not nn.Sequential.forward:
        raise UnsupportedModuleError(
            f"{prefix or type(net).__name__}: {type(net).__name__} is not an nn.Sequential; "
            "import_snntorch reads an nn.Sequential of layers and snntorch.Leaky(init_hidden="
            "True), called once per time step (a custom forward that loops over time is not "
            "read: put its layers in an nn.Sequential in call order)")
    out = []
    for name, m in net.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(m, nn.Sequential):
            out += layers(m, path)
        else:
            out.append((path, m))
    return out


def _no(path, m, why):
    return refuse(path, m, why, FRAMEWORK, SUPPORTED)


def neuron_node(path: str, m: nn.Module, shape, in_loop: bool = False) -> ir.Neuron:
    """snntorch.Leaky / Synaptic -> ir.Neuron exactly (module docstring), or an error naming
    the fix. in_loop: called with its state by a forward that loops over time
    (init_hidden=False), not in an nn.Sequential (init_hidden=True)."""
    snn = _snn()
    synaptic = type(m) is snn.Synaptic
    if type(m) is not snn.Leaky and not synaptic:
        raise _no(path, m, "is not supported (only snntorch.Leaky and Synaptic map exactly "
                           "onto the IR's neuron); use snntorch.Leaky or snntorch.Synaptic")
    if synaptic and int(m.reset_mechanism_val) == 1 and m.reset_delay:
        raise _no(path, m, "with reset_mechanism='zero' and reset_delay=True is not supported "
                           "(the step after a spike clears the whole new membrane, input "
                           "included: a refractory step the IR cannot state); use "
                           "reset_delay=False or reset_mechanism='subtract'")
    if not m.init_hidden and not in_loop:
        raise _no(path, m, "with init_hidden=False returns (spk, mem) and cannot sit in an "
                           "nn.Sequential; set init_hidden=True")
    if m.init_hidden and in_loop:
        raise _no(path, m, "with init_hidden=True keeps its state between forwards; in a "
                           "forward that loops over time use init_hidden=False and pass mem")
    if m.inhibition or m.state_quant:
        raise _no(path, m, "with inhibition or state_quant is not supported; train without "
                           "them")
    if uniform(np_(m.graded_spikes_factor), path, "graded_spikes_factor", "use 1") != 1.0:
        raise _no(path, m, "with graded_spikes_factor != 1 is not supported (the IR's spikes "
                           "are 0/1); use 1 and scale the next layer's weights")
    probe = torch.tensor([-1.0, -1e-30, 0.0, 1e-30, 1.0])
    with torch.no_grad():
        fired = m.spike_grad(probe)
    if not torch.equal(torch.as_tensor(fired).float(), (probe > 0).float()):
        raise _no(path, m, "has a spike function whose forward is not [U - thr > 0]; use a "
                           "snntorch.surrogate function")
    thr = uniform(np_(m.threshold), path, "threshold", "give one threshold per layer")
    if not thr > 0:
        raise _no(path, m, f"with threshold {thr:g} <= 0 is not supported (the IR resets to "
                           "0 and fires above it); use a positive threshold")
    beta = np_(m.beta.clamp(0, 1))  # what snnTorch multiplies by
    mechanism = int(m.reset_mechanism_val)
    if mechanism == 2:
        raise _no(path, m, "with reset_mechanism='none' is not supported (the IR's neurons "
                           "reset); use reset_mechanism='zero'")
    if mechanism == 0:
        if not m.reset_delay:
            raise _no(path, m, "with reset_mechanism='subtract' and reset_delay=False is not "
                               "supported (a membrane still above thr after its reset fires "
                               "at 2 thr next step); use reset_delay=True, or "
                               "reset_mechanism='zero'")
        if not np.all(beta > 0):
            raise _no(path, m, "with reset_mechanism='subtract' and beta = 0 is not supported "
                               "(U = I - S thr: the threshold comes off after a zero decay, "
                               "which no soft reset amount states); use beta > 0 or "
                               "reset_mechanism='zero'")
    decay = per_neuron(beta, shape, path, "beta")
    # subtract with beta < 1: the soft reset takes thr / beta (module docstring); beta = 1
    # everywhere keeps the plain soft reset (reset_by None), as before
    reset_by = None
    if mechanism == 0 and not np.all(decay == 1):
        reset_by = thr / np.asarray(decay, np.float64)
    current_decay = per_neuron(np_(m.alpha.clamp(0, 1)), shape, path, "alpha") \
        if synaptic else None
    return ir.Neuron(tuple(shape), decay, None, float(np.nextafter(thr, np.inf)),
                     "soft" if mechanism == 0 else "hard", reset_by=reset_by,
                     current_decay=current_decay)


def np_(t) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().numpy().copy()


def import_snntorch(net: nn.Module, input_shape, time_steps: int, readout: str = "rate",
                    input_kind: str = "analog") -> Graph:
    """net: an nn.Sequential of torch layers and snntorch.Leaky(init_hidden=True), or a module
    whose forward loops over time (module docstring). input_shape: per-sample input, e.g.
    (1, 28, 28). readout: rate | last | membrane (membrane for a net that ends in a
    non-spiking layer)."""
    snn = _snn()
    if not isinstance(net, nn.Sequential) or type(net).forward is not nn.Sequential.forward:
        return import_loop(net, input_shape, time_steps, readout, input_kind, loop_framework())
    named = layers(net)
    shape = tuple(int(s) for s in input_shape)
    nodes: list[tuple[str, ir.Node]] = [("input", ir.Input(shape, input_kind))]
    for i, (path, m) in enumerate(named):
        if isinstance(m, snn.SpikingNeuron):
            if m.output and i != len(named) - 1:
                raise _no(path, m, "with output=True returns (spk, mem) to the next layer; "
                                   "set output=True only on the last module")
            node = neuron_node(path, m, shape)
        else:
            node = layer_node(path, m, FRAMEWORK, SUPPORTED)
            if node is None:
                raise _no(path, m, "is not supported")
        shape = out_shape(path, node, shape)
        nodes.append((path, node))
    meta = {"source": "snntorch", "time_steps": int(time_steps), "readout": readout}
    return validate(Graph.chain(nodes, meta), type(net).__name__)


def _clear_state(net: nn.Module) -> None:
    """Every neuron back to snnTorch's own fresh state (an empty mem, zeros at the next call
    whatever the batch size), without snnTorch's class-wide reset_hidden."""
    snn = _snn()
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in ("mem", "syn"):
                if hasattr(m, name):
                    setattr(m, name, torch.zeros(0))


_STATES = ("mem", "syn")


def _prepare(net: nn.Module) -> None:
    """Before a trace: every neuron's state a NaN marker, so that a first call that reads a
    state forward did not reset (init_leaky / reset_mem / init_synaptic) is seen."""
    snn = _snn()
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            for name in _STATES:
                if hasattr(m, name):
                    setattr(m, name, torch.full((1,), float("nan")))


def _fresh(path, m, arg, root, meaning):
    """The first call's state: the zeros init_leaky() / reset_mem() / init_synaptic() made
    (they return the neuron's own reset buffers) or torch.zeros(_like)."""
    if meaning is not None and meaning.kind == "zeros":
        return None
    target = getattr(arg, "target", None) if getattr(arg, "op", None) == "get_attr" else None
    if target in {f"{path}.{n}" for n in _STATES}:
        t = root.get_submodule(path)
        t = getattr(t, target.rpartition(".")[2])
        if isinstance(t, torch.Tensor) and bool((t == 0).all()):
            return None
        return (f"starts from the state its last forward left ({target}); reset it in forward "
                f"before the loop: mem = {path.split('.')[-1]}.init_leaky() (reset_mem())")
    return ("takes a first state that is not a fresh one; start from mem = "
            "lif.init_leaky() (or reset_mem() / init_synaptic()) made before the loop")


def _states(path, m) -> int:
    snn = _snn()
    if type(m) not in (snn.Leaky, snn.Synaptic):
        neuron_node(path, m, (1,), in_loop=True)  # its one-line refusal
    return 2 if type(m) is snn.Synaptic else 1


def loop_framework() -> Framework:
    """What time_loop needs to read an snnTorch forward that loops over time."""
    snn = _snn()
    return Framework(
        FRAMEWORK, "snntorch", LAYERS + ("F.max_pool2d / avg_pool2d", "snntorch.Leaky / "
                                         "Synaptic (init_hidden=False) called with their "
                                         "state, in a forward that loops over time"),
        is_neuron=lambda m: isinstance(m, snn.SpikingNeuron), states=_states, fresh=_fresh,
        neuron_node=lambda path, m, shape: neuron_node(path, m, shape, in_loop=True),
        membrane=lambda node, x_in, dtype: run_neuron(node, x_in, dtype)[0],
        prepare=_prepare, clear=_clear_state)


@torch.no_grad()
def run_snntorch_reference(net: nn.Module, graph: Graph, x: torch.Tensor,
                           dtype: torch.dtype = torch.float32) -> SimResult:
    """Run the snnTorch net itself, one call per time step from a fresh state, and record every
    Leaky's spikes. H (for telling threshold ties) is recomputed from each layer's recorded
    input with the IR's equations for it (module docstring: the same terms), in `dtype`.
    float64 runs a double copy; snnTorch's surrogates return float32 spikes (`.float()`),
    which a hook hands on in the copy's dtype (0 and 1 are exact in both). A forward that
    loops over time runs itself (time_loop.run_loop_reference)."""
    if "time_loop" in graph.metadata:
        return run_loop_reference(net, graph, x, dtype, loop_framework())
    _clear_state(net)  # a state left from a forward with autograd cannot be deep-copied
    m = net if dtype == torch.float32 else copy.deepcopy(net).to(dtype)
    m.eval()
    modules = dict(m.named_modules())
    neurons = [n for n, node in graph.ordered() if isinstance(node, ir.Neuron)]
    inputs, outputs, hooks = record_neurons(modules, neurons, dtype)
    x_seq = encode(graph, x, None).to(dtype)
    _clear_state(m)
    try:
        out = torch.stack([spikes_of(m(xt)) for xt in x_seq]).to(dtype)
    finally:
        for h in hooks:
            h.remove()
        _clear_state(m)
    spikes, membrane = {}, {}
    for n in neurons:
        spikes[n] = torch.stack(outputs[n]).to(dtype)
        membrane[n] = run_neuron(graph.nodes[n], torch.stack(inputs[n]), dtype)[0]
    mode = graph.metadata.get("readout", "rate")
    return SimResult(out, readout_scores(out, mode, 1), spikes, membrane)
