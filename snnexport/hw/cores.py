"""Hardware lowering, done once: the folded IR as cores, each a neuron population with the
synapses that feed it. Every hardware consumer (the fixed-point IR and through it netx and the
integer ONNX graph, the Lava float processes) builds from `lower(graph)`; this is the only walk
in the code base that pairs a synapse with the neuron layer behind it. Numpy only: the Lava
runner (Python 3.10, no torch needed) imports it.

What a core computes, per sample and step (the IR Neuron with hard reset; ir/nodes.py):

    I_t = sum_k syn_k(x_k,t)                 one synapse in a chain; several summed by an ir.Add
                                             (a residual merge: Spiking ResNet adds two conv
                                             currents, or a current and an identity shortcut)
    H_t = decay V_{t-1} + gain I_t
    S_t = [H_t >= threshold];  V_t = H_t (1 - S_t);  V_-1 = v_init

where syn(x) = W x + b is an IR Conv2d (cross-correlation) or Dense on the source's output x, or
the identity (x itself). The first core is the host's: its synapse takes the analog input, so
the host computes it and the current reaches the chip as that layer's bias. An OR-pool is a
core of its own (`PoolCore`): memoryless neurons behind a sum-pool of ones.

Layout: a core is `spatial` when its synapse is a convolution the target keeps as one and its
neurons stay a (C, H, W) map: the host's Conv2d, or a later Conv2d fed by a map whose neurons
have no per-neuron gain (one weight kernel serves every position only when no neuron scales its
own row). Any other synapse is a dense matrix on the flat C-major input (a conv unrolled by
`conv_matrix`, rows scaled by the gain) and the core's neurons a flat vector; so are the neurons
behind a Flatten. An OR-pool keeps its input's layout.

Refused, naming the node (HardwareLoweringError): soft reset (Loihi's and Lava's LIF reset to
0), two synapses in a row, a neuron layer without a synapse in front, a synapse without a
neuron layer behind it, a sum pool (the fold puts it into the next synapse), a spike merge
before a synapse (SEW ResNet) and any node with no hardware form. The consumers refuse a core
with more than one synapse (`Core.synapse`) until they lower residual merges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import SnnexportError
from ..ir import nodes as ir

Shape = tuple[int, ...]


class HardwareLoweringError(SnnexportError, ValueError):
    """A folded IR the hardware lowering cannot take; the message names the node and why."""


# --- synapses as matrices ---------------------------------------------------------------------

def conv_matrix(node: ir.Conv2d, in_shape) -> np.ndarray:
    """The Conv2d (without bias) as a dense matrix M with conv(x).flatten() == M @ x.flatten()
    (C-major flat vectors)."""
    c_in, h, w = in_shape
    c_out, _, kh, kw = node.weight.shape
    oh, ow = ir.conv_out(h, kh, node.stride[0], node.padding[0]), ir.conv_out(
        w, kw, node.stride[1], node.padding[1])
    m = np.zeros((c_out * oh * ow, c_in * h * w))
    per_group = c_in // node.groups
    for o in range(c_out):
        g = o // (c_out // node.groups)
        for ci in range(per_group):
            c = g * per_group + ci
            for u in range(kh):
                for v in range(kw):
                    wt = float(node.weight[o, ci, u, v])
                    if wt == 0.0:
                        continue
                    for y in range(oh):
                        iy = y * node.stride[0] + u - node.padding[0]
                        if not 0 <= iy < h:
                            continue
                        for x in range(ow):
                            ix = x * node.stride[1] + v - node.padding[1]
                            if 0 <= ix < w:
                                m[(o * oh + y) * ow + x, (c * h + iy) * w + ix] += wt
    return m


def pool_matrix(node: ir.SpikePool, in_shape) -> np.ndarray:
    """The sum over each pooling window as a 0/1 matrix on C-major flat vectors."""
    c, h, w = in_shape
    kh, kw = node.kernel
    oh = ir.conv_out(h, kh, node.stride[0], node.padding[0])
    ow = ir.conv_out(w, kw, node.stride[1], node.padding[1])
    m = np.zeros((c * oh * ow, c * h * w))
    for ch in range(c):
        for y in range(oh):
            for x in range(ow):
                for u in range(kh):
                    for v in range(kw):
                        iy = y * node.stride[0] + u - node.padding[0]
                        ix = x * node.stride[1] + v - node.padding[1]
                        if 0 <= iy < h and 0 <= ix < w:
                            m[(ch * oh + y) * ow + x, (ch * h + iy) * w + ix] = 1.0
    return m


# --- cores ------------------------------------------------------------------------------------

@dataclass(eq=False)
class Synapse:
    """One synapse into a core: I = W x + b on the source's output x of per-sample shape
    `in_shape` (node an IR Conv2d or Dense), or I = x (node None: an identity shortcut)."""

    name: str  # the synapse node's name (the source's for an identity)
    node: ir.Conv2d | ir.Dense | None
    source: str  # the node whose output x is
    in_shape: Shape

    @property
    def is_conv(self) -> bool:
        return isinstance(self.node, ir.Conv2d)

    @property
    def out_shape(self) -> Shape:
        return self.in_shape if self.node is None else tuple(self.node.out_shape(self.in_shape))

    def matrix(self) -> np.ndarray:
        """W as a dense float64 matrix on C-major flat vectors (a conv unrolled)."""
        if self.node is None:
            return np.eye(int(np.prod(self.in_shape)))
        if self.is_conv:
            return conv_matrix(self.node, self.in_shape)
        return np.asarray(self.node.weight, dtype=np.float64)

    def bias_vector(self) -> np.ndarray | None:
        """b per output neuron (C-major flat; a conv's per-channel bias repeated over the map),
        None when the synapse has none."""
        if self.node is None or self.node.bias is None:
            return None
        b = np.asarray(self.node.bias, np.float64)
        if self.is_conv:
            b = np.repeat(b, int(np.prod(self.out_shape)) // len(b))
        return b

    def conv_args(self) -> dict:
        """The conv as a target's Conv takes it: torch-layout float64 weight, (C, H, W) input
        shape, stride, padding, groups."""
        node = self.node
        return dict(weight=np.asarray(node.weight, np.float64), in_shape=tuple(self.in_shape),
                    stride=tuple(node.stride), padding=tuple(node.padding),
                    groups=int(node.groups))


@dataclass(eq=False)
class Core:
    """A neuron population and the synapses feeding it (math in the module docstring):
    I = sum of `synapses`; H = decay V + gain I; S = [H >= threshold]; hard reset to 0.

    host: the first core, whose synapse(s) take the analog input and run on the host.
    spatial: the synapse stays a convolution and the neurons a (C, H, W) map on the target;
    else a dense matrix into a flat C-major vector. merge: the ir.Add summing the synapses."""

    name: str  # the IR Neuron node's name
    neuron: ir.Neuron
    synapses: list[Synapse]
    host: bool
    spatial: bool
    merge: str | None = None

    @property
    def shape(self) -> Shape:
        return tuple(self.neuron.shape)

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    def synapse(self, target: str) -> Synapse:
        """The one synapse of a chain's core; a residual merge is refused for `target`."""
        if len(self.synapses) != 1:
            raise HardwareLoweringError(
                f"node {self.name!r}: fed by {len(self.synapses)} synapses summed in "
                f"{self.merge!r} (a residual merge); residual merges are not lowered to "
                f"{target} yet")
        return self.synapses[0]

    def gain(self) -> np.ndarray | None:
        """The per-neuron input gain as a flat C-major vector, None when folded away."""
        if self.neuron.gain is None:
            return None
        return np.broadcast_to(np.asarray(self.neuron.gain, np.float64), self.shape).reshape(
            self.n)

    def per_neuron(self, value) -> np.ndarray:
        """A scalar / per-channel / per-neuron neuron parameter as a flat C-major float64
        vector (a new array)."""
        return np.broadcast_to(np.asarray(value, np.float64), self.shape).reshape(self.n).copy()


@dataclass(eq=False)
class PoolCore:
    """An OR-pool as memoryless neurons behind a sum-pool of ones:
        H_t = sum of s_t over the k x k window;  S_t = [H_t > 0]  (any spike in the window)
    (float: threshold 0.5, decay 0; fixed point: vth_mant 0, dv 4095). spatial: its input is a
    (C, H, W) map on the target, the sum-pool a depthwise conv (groups = C); else a 0/1 matrix
    (`pool_matrix`) on the flat C-major vector."""

    name: str
    node: ir.SpikePool
    source: str
    in_shape: Shape
    shape: Shape  # its output's
    spatial: bool

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))


@dataclass(eq=False)
class CoreGraph:
    """The folded IR as cores in the order they run (topological; a chain's layer order), with
    the per-sample input shape, the time steps (None when the IR does not say), the readout mode
    ('rate' | 'last' | 'membrane') and the voting group size of the readout."""

    cores: list[Core | PoolCore]
    input_name: str
    input_shape: Shape
    time_steps: int | None
    readout: str
    population: int
    readout_name: str | None = None
    merges: list[str] = field(default_factory=list)  # the ir.Add nodes summing synapses

    @property
    def neuron_cores(self) -> list[Core]:
        return [c for c in self.cores if isinstance(c, Core)]


# --- the walk ---------------------------------------------------------------------------------

@dataclass
class _Current:
    """A synapse output (or a sum of them) on its way to a neuron layer."""

    synapses: list[Synapse]
    host: bool  # fed by the analog input
    dense: bool = False  # cannot stay a conv: fed by a flat vector, or a Flatten follows it
    merge: str | None = None


def lower(graph) -> CoreGraph:
    """The folded IR `graph` as a CoreGraph (see the module docstring)."""
    if not graph.metadata.get("folded"):
        raise HardwareLoweringError("lower the folded IR (snnexport fold)")
    order = graph.order()
    shapes = graph.shapes()
    spatial: dict[str, bool] = {}  # a spike source's output is a (C, H, W) map on the target
    analog: set[str] = set()  # the input, and Flattens of it
    currents: dict[str, _Current] = {}
    used: set[str] = set()
    spike_merges: set[str] = set()  # an Add of spike trains (SEW): graded, not a current
    cores: list[Core | PoolCore] = []
    merges: list[str] = []
    input_name = None
    readout, population, readout_name = graph.metadata.get("readout", "rate"), 1, None

    def source_of(name):
        (src,) = graph.inputs(name)
        if src in spike_merges:
            raise HardwareLoweringError(
                f"node {name!r}: fed by {src!r}, a merge of spike trains (SEW residual); "
                "not lowered to hardware yet")
        return src

    for name in order:
        node = graph.nodes[name]
        if isinstance(node, ir.Input):
            input_name = name
            spatial[name] = True
            analog.add(name)
        elif isinstance(node, (ir.Conv2d, ir.Dense)):
            src = source_of(name)
            if src in currents:
                raise HardwareLoweringError(f"node {name!r}: two synapses in a row")
            currents[name] = _Current([Synapse(name, node, src, shapes[src])], src in analog,
                                      dense=not spatial[src])
        elif isinstance(node, ir.Add):
            syns, hosts, dense = [], set(), False
            for src in graph.inputs(name):
                if src in spike_merges:
                    raise HardwareLoweringError(f"node {name!r}: adds {src!r}, a merge of "
                                                "spike trains; not lowered to hardware yet")
                if src in currents:
                    used.add(src)
                    cur = currents[src]
                    syns += cur.synapses
                    dense = dense or cur.dense
                    hosts.add(cur.host)
                else:  # a spike train (or the input) added as it is: an identity synapse
                    syns.append(Synapse(src, None, src, shapes[src]))
                    dense = dense or not spatial[src]
                    hosts.add(src in analog)
            if len(hosts) > 1:
                raise HardwareLoweringError(f"node {name!r}: adds a current of the analog "
                                            "input (host) to one from spikes (chip)")
            if all(s.node is None for s in syns):
                spike_merges.add(name)  # graded spikes: only a neuron layer may take them
            currents[name] = _Current(syns, hosts.pop(), dense, merge=name)
            merges.append(name)
        elif isinstance(node, ir.Neuron):
            (src,) = graph.inputs(name)
            if src not in currents:
                raise HardwareLoweringError(
                    f"node {name!r}: a neuron layer needs a synapse in front")
            if node.reset != "hard":
                raise HardwareLoweringError(
                    f"node {name!r}: Loihi's and Lava's LIF reset to 0 (hard reset); soft "
                    "reset is not supported: retrain with v_reset=0")
            used.add(src)
            cur = currents[src]
            if cur.host and any(isinstance(c, Core) for c in cores):
                raise HardwareLoweringError(
                    f"node {name!r}: a second neuron layer fed by the analog input (only the "
                    f"first, {cores[0].name!r}, runs its synapse on the host)")
            convs = all(s.is_conv for s in cur.synapses) and not cur.dense
            is_spatial = convs and (cur.host or node.gain is None)
            cores.append(Core(name, node, list(cur.synapses), cur.host, is_spatial, cur.merge))
            spatial[name] = is_spatial
        elif isinstance(node, ir.SpikePool):
            if node.mode != "or":
                raise HardwareLoweringError(
                    f"node {name!r}: only the OR-pool is lowered to hardware (a sum pool of "
                    "spikes belongs in the next synapse: fold the IR)")
            src = source_of(name)
            if src in currents or src in analog:
                raise HardwareLoweringError(f"node {name!r}: an OR-pool takes spikes, not "
                                            f"the output of {src!r}")
            cores.append(PoolCore(name, node, src, shapes[src], shapes[name], spatial[src]))
            spatial[name] = spatial[src]
        elif isinstance(node, ir.Flatten):
            src = source_of(name)
            if src in currents:  # between a synapse and its neuron layer
                used.add(src)
                cur = currents[src]
                currents[name] = _Current(cur.synapses, cur.host, True, cur.merge)
            else:
                spatial[name] = False
                if src in analog:
                    analog.add(name)
        elif isinstance(node, ir.Readout):
            readout, population, readout_name = node.mode, node.population, name
        else:
            raise HardwareLoweringError(
                f"node {name!r}: {type(node).__name__} has no hardware form")
    left = [n for n in currents if n not in used]
    if left:
        raise HardwareLoweringError(f"node {left[0]!r}: a synapse with no neuron layer behind it")
    if not any(isinstance(c, Core) for c in cores):
        raise HardwareLoweringError("no neuron layer")
    steps = graph.metadata.get("time_steps")
    return CoreGraph(cores, input_name, tuple(graph.nodes[input_name].shape),
                     None if steps is None else int(steps), readout, population, readout_name,
                     merges)


__all__ = ["Core", "CoreGraph", "HardwareLoweringError", "PoolCore", "Synapse", "conv_matrix",
           "lower", "pool_matrix"]
