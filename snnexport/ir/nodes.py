"""IR nodes: small dataclasses of numpy arrays, each stating its math (per sample, per step).

Shapes are per sample: (C, H, W) for maps, (N,) for vectors. A node maps `arity` inputs (one
for layers, two for the merge nodes) to one output of shape `out_shape(*in_shapes)`; stateless
nodes act on each time step independently, neuron nodes carry a membrane state over time.

Two families:
  * source-level nodes an importer produces (BatchNorm, Dropout, MaxPool2d, LIFNeuron, Voting);
  * hardware-native nodes the folding passes leave (Conv2d, Dense, Neuron, SpikePool, Flatten,
    Readout, and the merges Add, SEWAnd, SEWIAnd), which is all an exporter or the chip needs
    to see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import SnnexportError
from .neurons import keeps_current

Shape = tuple[int, ...]


def conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class IRError(SnnexportError, ValueError):
    """An IR that is not well formed; the message names the node."""


@dataclass(eq=False)
class Node:
    arity: ClassVar[int] = 1  # how many inputs the node takes

    def out_shape(self, in_shape: Shape) -> Shape:
        return in_shape

    def arrays(self) -> dict[str, np.ndarray]:
        """The array-valued fields (for saving and comparing)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}


@dataclass(eq=False)
class Input(Node):
    """The network input x_t of per-sample shape `shape`. kind='analog': real values (a static
    image repeated each step = direct encoding, or event frames); kind='spikes': {0, 1}."""

    shape: Shape
    kind: str = "analog"


def _synapse_arrays(node, ndim: int) -> None:
    w = np.asarray(node.weight)
    if w.ndim != ndim:
        raise IRError(f"weight of shape {w.shape} is not {ndim}-dimensional")
    if node.bias is not None and np.shape(node.bias) != (w.shape[0],):
        raise IRError(f"bias of shape {np.shape(node.bias)} does not match {w.shape[0]} outputs")


@dataclass(eq=False)
class Conv2d(Node):
    """y[o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] x[c, s*i + u - p, s*j + v - p]
    (cross-correlation, torch layout W [C_out, C_in/groups, kh, kw], zero padding)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def out_shape(self, in_shape):
        _synapse_arrays(self, 4)
        if len(in_shape) != 3 or in_shape[0] != self.weight.shape[1] * self.groups:
            raise IRError(f"Conv2d with weight {self.weight.shape} cannot take input {in_shape}")
        kh, kw = self.weight.shape[2:]
        return (self.weight.shape[0], conv_out(in_shape[1], kh, self.stride[0], self.padding[0]),
                conv_out(in_shape[2], kw, self.stride[1], self.padding[1]))


@dataclass(eq=False)
class Dense(Node):
    """y = W x + b, W [out, in]."""

    weight: np.ndarray
    bias: np.ndarray | None = None

    def out_shape(self, in_shape):
        _synapse_arrays(self, 2)
        if tuple(in_shape) != (self.weight.shape[1],):
            raise IRError(f"Dense with weight {self.weight.shape} cannot take input {in_shape}")
        return (self.weight.shape[0],)


@dataclass(eq=False)
class BatchNorm(Node):
    """y[c] = (x[c] - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c] (channel = axis 0)."""

    mean: np.ndarray
    var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float = 1e-5

    def out_shape(self, in_shape):
        if any(np.shape(a) != (len(self.mean),) for a in (self.mean, self.var, self.gamma,
                                                          self.beta)):
            raise IRError("mean, var, gamma and beta must be vectors of one length")
        if in_shape[0] != len(self.mean):
            raise IRError(f"BatchNorm over {len(self.mean)} channels cannot take input {in_shape}")
        return in_shape


@dataclass(eq=False)
class Dropout(Node):
    """Identity at inference (p is kept for the record)."""

    p: float = 0.5


@dataclass(eq=False)
class MaxPool2d(Node):
    """y[c, i, j] = max_{u, v < k} x[c, s*i + u - p, s*j + v - p] (padding never wins)."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    padding: tuple[int, int] = (0, 0)

    def out_shape(self, in_shape):
        c, h, w = in_shape
        return (c, conv_out(h, self.kernel[0], self.stride[0], self.padding[0]),
                conv_out(w, self.kernel[1], self.stride[1], self.padding[1]))


@dataclass(eq=False)
class AvgPool2d(MaxPool2d):
    """y[c, i, j] = mean_{u, v < k} x[c, s*i + u - p, s*j + v - p] (zero padding counted)."""


@dataclass(eq=False)
class SpikePool(MaxPool2d):
    """Pooling on spikes {0, 1}. mode='or': y = OR over the k x k window (binary in, binary
    out; what a max-pool after a spiking layer computes); mode='sum': y = count of spikes;
    mode='max': y = max over the window of values that are no spikes (a SEW ADD's 0 / 1 / 2,
    or a current pooled before its neuron, as snnTorch's Tutorial 6 writes it): the float
    targets compute it, no chip does."""

    mode: str = "or"


@dataclass(eq=False)
class Upsample(Node):
    """y[c, i, j] = x[c, i // sh, j // sw] (nearest-neighbour repetition by whole factors
    `scale` = (sh, sw)): what torch's AdaptiveAvgPool2d computes from H x W to (sh H) x (sw W),
    e.g. VGG's 7 x 7 pooling of a 1 x 1 map. Source-level only: folding composes it into the
    Dense it feeds (through a Flatten)."""

    scale: tuple[int, int] = (1, 1)

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise IRError(f"Upsample needs a (C, H, W) input, got {in_shape}")
        c, h, w = in_shape
        return (c, h * self.scale[0], w * self.scale[1])


@dataclass(eq=False)
class Flatten(Node):
    """(C, H, W) -> (C*H*W,), C-major (torch.flatten order)."""

    def out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)


class NeuronLayer(Node):
    """Base of the neuron nodes (each has a `shape`): the input must have the layer's shape."""

    def out_shape(self, in_shape):
        if tuple(in_shape) != tuple(self.shape):
            raise IRError(f"neuron layer of shape {self.shape} cannot take input {in_shape}")
        return in_shape


@dataclass(eq=False)
class LIFNeuron(NeuronLayer):
    """A leaky integrate-and-fire layer as the source framework states it (docs/semantics.md §2):
        H_t = V_{t-1} + k (X_t - (V_{t-1} - V_reset))   decay_input
        H_t = V_{t-1} - k (V_{t-1} - V_reset) + X_t     not decay_input
        H_t = V_{t-1} + X_t                             k is None (IF)
        S_t = [H_t >= v_threshold]
        V_t = H_t (1 - S_t) + V_reset S_t  (hard)  |  V_t = H_t - v_threshold S_t  (v_reset None)
        V_-1 = v_init
    k and v_init broadcast against `shape` (a scalar, or one value per neuron). A non-spiking
    layer (spiking=False) only integrates: S_t = 0, V_t = H_t; its output is V_t.
    k_syn (current-based LIF, Norse's LIFCell; None = no current): a synaptic current that the
    input jumps into and that decays by the Euler step k_syn after feeding the membrane,
    term by term as Norse writes it (norse/torch/functional/lif.py lif_feed_forward_step):
        J_t = C_{t-1} + X_t,   C_t = J_t + (-k_syn) J_t,   C_-1 = 0
    with J_t in place of X_t in the membrane equations above. k_syn = 1 everywhere is J_t = X_t
    (C_t = 0 exactly): stored as None. Folding makes it the Neuron's current_decay 1 - k_syn."""

    shape: Shape
    k: np.ndarray | None
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    v_init: np.ndarray = field(default_factory=lambda: np.zeros(()))
    spiking: bool = True
    # written to .snnir only when set (files without it read as None)
    k_syn: np.ndarray | None = field(default=None, metadata={"omit_if_none": True})

    def __post_init__(self):
        if self.k_syn is not None:
            k = np.asarray(self.k_syn, dtype=np.float64)
            self.k_syn = None if k.size and np.all(k == 1) else k

    # its kind in ir/neurons.py's table (the float step as stated above)
    neuron_kind: ClassVar[str] = "lif_source"


@dataclass(eq=False)
class Neuron(NeuronLayer):
    """A hardware-native neuron layer (reset level 0, the form Loihi and NIR-LIF take):
        J_t = current_decay * J_{t-1} + I_t   (J_-1 = 0; J_t = I_t when current_decay is None)
        H_t = decay * V_{t-1} + gain * J_t
        S_t = [H_t >= threshold]
        V_t = H_t (1 - S_t)  (reset='hard')  |  V_t = H_t - reset_by S_t  (reset='soft')
        V_-1 = v_init
    decay: scalar, per channel ([C, 1, 1] for maps) or per neuron (`shape`); gain: None when the
    input gain is folded into the synapse before it, else an array (per neuron). A non-spiking
    layer (spiking=False) outputs V_t and never fires.
    reset_by: the amount a soft reset subtracts, > 0, scalar / per channel / per neuron like
    decay; None = the threshold (the usual soft reset). Only with reset='soft'. It states
    snnTorch's subtract reset with beta < 1 (U_t = beta U_{t-1} + I_t - thr S_{t-1}, the
    threshold taken off after the decay): with V = U - (thr / beta) S, U_t = beta V_{t-1} + I_t
    is H_t, so reset_by = thr / beta. A reset_by equal to the threshold everywhere is stored as
    None, so that graph is the default one (the same files, exports and results).
    current_decay (current-based LIF, "CUBA"; None = no current state, the default): the
    synaptic current J decays by current_decay in [0, 1] per step (scalar / per channel / per
    neuron like decay) and this step's input is added before the membrane takes it, the order
    of Loihi / Lava's LIF (u = u (1 - du) + a_in; v = v (1 - dv) + u), lava-dl's CUBA neuron,
    snnTorch's Synaptic (syn = alpha syn + I; mem = beta mem + syn) and Norse's LIFCell. NIR's
    CubaLIF (tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I) is it at
    current_decay = 1 - dt/tau_syn (Euler) with the input gain dt/tau_syn w_in dt/tau_mem r
    taken into `gain`. current_decay = 0 everywhere is J_t = I_t: stored as None, so that graph
    is the default one."""

    shape: Shape
    decay: np.ndarray
    gain: np.ndarray | None = None
    threshold: float = 1.0
    reset: str = "hard"
    v_init: np.ndarray = field(default_factory=lambda: np.zeros(()))
    spiking: bool = True
    # written to .snnir only when set (files without it read as None)
    reset_by: np.ndarray | None = field(default=None, metadata={"omit_if_none": True})
    current_decay: np.ndarray | None = field(default=None, metadata={"omit_if_none": True})

    def __post_init__(self):
        if self.reset_by is not None:
            r = np.asarray(self.reset_by, dtype=np.float64)
            self.reset_by = None if r.size and np.all(r == float(self.threshold)) else r
        if self.current_decay is not None:
            c = np.asarray(self.current_decay, dtype=np.float64)
            self.current_decay = None if c.size and np.all(c == 0) else c

    @property
    def cuba(self) -> bool:
        """Has a synaptic current state (current-based LIF)."""
        return self.current_decay is not None

    @property
    def neuron_kind(self) -> str:
        """Its kind in ir/neurons.py's table: 'cuba_lif' with a current, else 'lif'."""
        return "cuba_lif" if self.cuba else "lif"

    def reset_amount(self):
        """What a soft reset subtracts: reset_by, or the threshold (a float) when None."""
        return self.threshold if self.reset_by is None else self.reset_by


@dataclass(eq=False)
class Voting(Node):
    """o[c] = mean of inputs c*M .. c*M + M - 1 (population voting, AvgPool1d k = s = M)."""

    population: int = 10

    def out_shape(self, in_shape):
        if len(in_shape) != 1 or in_shape[0] % self.population:
            raise IRError(f"voting over M={self.population} cannot take input {in_shape}")
        return (in_shape[0] // self.population,)


@dataclass(eq=False)
class Readout(Voting):
    """The network output: o_t = voting over groups of `population` inputs, then a class score
    over time: mode 'rate' and 'membrane' -> mean_t o_t, mode 'last' -> o_{T-1}."""

    mode: str = "rate"


class Merge(Node):
    """Base of the two-input, element-wise merge nodes (residual connections): both inputs
    have one shape, which is the output's; stateless, applied at each step."""

    arity: ClassVar[int] = 2

    def out_shape(self, a_shape, b_shape=None):
        if b_shape is None or tuple(a_shape) != tuple(b_shape):
            raise IRError(f"{type(self).__name__} needs two inputs of one shape, got "
                          f"{a_shape} and {b_shape}")
        return tuple(a_shape)


@dataclass(eq=False)
class Add(Merge):
    """y_t = a_t + b_t. Of two spike trains (SEW ADD) the output is graded, in {0, 1, 2}; of a
    spike train and a current (Spiking ResNet: BN(conv(x)) + identity before the neuron), or of
    two currents, it is a current."""


@dataclass(eq=False)
class SEWAnd(Merge):
    """y_t = a_t * b_t: SEW's connect function AND (for spikes, a AND b; binary out)."""


@dataclass(eq=False)
class SEWIAnd(Merge):
    """y_t = (1 - a_t) * b_t: SEW's connect function IAND (for spikes, (NOT a) AND b; binary
    out). In SEW-ResNet, a is the block's output spikes and b the identity path."""


NODE_TYPES: dict[str, type[Node]] = {cls.__name__: cls for cls in (
    Input, Conv2d, Dense, BatchNorm, Dropout, MaxPool2d, AvgPool2d, SpikePool, Upsample, Flatten,
    LIFNeuron, Neuron, Voting, Readout, Add, SEWAnd, SEWIAnd)}


# the targets that take current-based neurons everywhere (the refusals of the others say)
CUBA_TARGETS = "reference, onnx, nir, fixed or onnx-fixed"


def refuse_current(graph, target: str, error: type[Exception] = IRError) -> None:
    """For a target that does not lower current-based neurons (yet): raises `error` naming
    the first layer with a synaptic current (Neuron.current_decay, LIFNeuron.k_syn), so that
    no target ever drops the current silently."""
    for name, node in graph.ordered():
        if keeps_current(node):
            raise error(f"layer {name!r}: a current-based neuron (a synaptic current that "
                        f"decays, CUBA) is not lowered to {target} yet; check it with --target "
                        f"{CUBA_TARGETS}")
