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

Layout: a core is `spatial` when its synapses are convolutions the target keeps as ones (an
identity shortcut on a map is a 1x1 depthwise conv of ones) and its neurons stay a (C, H, W)
map: the host's Conv2d, or later convs fed by maps whose neurons have no per-neuron gain (one
weight kernel serves every position only when no neuron scales its own row; a gain constant
per channel, as a residual merge's neuron keeps it, scales each kernel). Any other synapse is a
dense matrix on the flat C-major input (a conv unrolled by `conv_matrix`, rows scaled by the
gain) and the core's neurons a flat vector; so are the neurons behind a Flatten. An OR-pool
keeps its input's layout.

Residual merges (docs/semantics.md; ir/nodes.py Add / SEWAnd / SEWIAnd):
  * an Add with a current among its inputs (Spiking ResNet: BN(conv(x)) + shortcut before the
    neuron) is the core's sum of synapses: each input its own synapse (a conv / dense current,
    or the identity of a spike train), `Core.merge` the Add's name;
  * an Add of spike trains (SEW ADD: graded values 0, 1, 2, ...) and SEW AND a*b / IAND
    (1 - a)*b of spike trains are `SpikeMerge`s in `cores`, in the order they run; what they
    feed (a synapse, an OR-pool for AND / IAND, another merge) names them as its `origin`.
    AND / IAND take binary spikes only (`SpikeMerge.peak`: the largest value a merge emits).
A sum pool of spikes (an average pool folded into the next synapse's weights) is composed into
the synapse it feeds (through Flattens): one dense synapse W P on the pool's input (P the 0/1
window matrix of `pool_matrix`), so no core ever sees a pooled value.

Refused, naming the node (HardwareLoweringError): soft reset (Loihi's and Lava's LIF reset to
0), two synapses in a row, a neuron layer without a synapse in front, a synapse without a
neuron layer behind it, a sum pool that feeds no synapse, a merge of the analog input or of a
current with spikes outside a neuron's input, SEW AND / IAND of graded values, a readout fed by
something other than a neuron layer, and any node with no hardware form. A consumer that takes
chains only (netx) refuses a core with more than one synapse (`Core.synapse`) and every
`SpikeMerge` (`CoreGraph.chain_only`), naming the merge node; Lava takes them
(lava/lowering.py, `lower_residual`).
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
    `in_shape` (node an IR Conv2d or Dense), or I = x (node None: an identity shortcut).
    A sum pool composed into it (`pooled`): node is the Dense W P on the pool's flat input."""

    name: str  # the synapse node's name (the source's for an identity)
    node: ir.Conv2d | ir.Dense | None
    source: str  # the node whose output x is
    in_shape: Shape
    # the core, OR-pool, SpikeMerge or input that produced x (the source through Flattens and
    # a composed sum pool): what a consumer that keeps one value per producer reads
    origin: str = ""
    pooled: str | None = None  # the sum-pool node composed into this synapse, if any

    @property
    def is_conv(self) -> bool:
        return isinstance(self.node, ir.Conv2d)

    @property
    def conv_node(self) -> ir.Conv2d:
        """The synapse as a Conv2d: itself, or an identity on a (C, H, W) map as a 1x1
        depthwise conv of ones (groups = C)."""
        if self.node is None and len(self.in_shape) == 3:
            c = self.in_shape[0]
            return ir.Conv2d(np.ones((c, 1, 1, 1)), None, (1, 1), (0, 0), c)
        if not self.is_conv:
            raise HardwareLoweringError(f"node {self.name!r}: not a convolution")
        return self.node

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
        node = self.conv_node
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

    def channel_gain(self) -> np.ndarray | None:
        """The input gain as one value per output channel of a (C, H, W) core, None when it is
        folded away or varies within a channel (or the core is a vector)."""
        return channel_gain(self.neuron)

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
class SpikeMerge:
    """A residual merge of spike trains (SEW ResNet), element-wise at each step:
        op 'add': y = a + b  (graded: 0, 1, 2, ... up to `peak`)
        op 'and': y = a b;   op 'iand': y = (1 - a) b   (a, b binary spikes: binary out)
    inputs: the producers (cores, OR-pools, merges; Flattens looked through) of a and b, in
    argument order; shape: the merge's per-sample output shape (the inputs reshaped to it)."""

    name: str  # the IR merge node's name
    op: str
    inputs: tuple[str, str]
    shape: Shape
    spatial: bool
    peak: int  # the largest value it emits (1: binary spikes)

    KINDS = {"add": "SEW ADD", "and": "SEW AND", "iand": "SEW IAND"}

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    def refuse(self, target: str) -> HardwareLoweringError:
        return HardwareLoweringError(
            f"node {self.name!r}: a {self.KINDS[self.op]} merge of spike trains (a residual "
            f"merge); residual merges are not lowered to {target} yet")


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

    @property
    def spike_merges(self) -> list[SpikeMerge]:
        return [c for c in self.cores if isinstance(c, SpikeMerge)]

    def chain_only(self, target: str) -> None:
        """For a consumer that takes a chain of cores: raises HardwareLoweringError naming the
        first residual merge (a SpikeMerge, or a core summing several synapses)."""
        for c in self.cores:
            if isinstance(c, SpikeMerge):
                raise c.refuse(target)
            if isinstance(c, Core):
                c.synapse(target)


def channel_gain(neuron: ir.Neuron) -> np.ndarray | None:
    """A (C, H, W) neuron layer's input gain as one value per channel, or None (no gain, a
    vector layer, or a gain that varies within a channel)."""
    if neuron.gain is None or len(neuron.shape) != 3:
        return None
    full = np.broadcast_to(np.asarray(neuron.gain, np.float64), neuron.shape).reshape(
        neuron.shape[0], -1)
    return full[:, 0].copy() if np.all(full == full[:, :1]) else None


# --- the walk ---------------------------------------------------------------------------------

@dataclass
class _Current:
    """A synapse output (or a sum of them) on its way to a neuron layer."""

    synapses: list[Synapse]
    host: bool  # fed by the analog input
    dense: bool = False  # cannot stay a conv: fed by a flat vector, or a Flatten follows it
    merge: str | None = None


@dataclass
class _SumPool:
    """A sum pool of spikes on its way (through Flattens) to the synapse it is composed into."""

    name: str
    node: ir.SpikePool
    source: str
    in_shape: Shape


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
    origin: dict[str, str] = {}  # a value's producer: core, OR-pool, SpikeMerge, input
    peak: dict[str, int] = {}  # spike values (not the input, not V): the largest, 1 = binary
    pools: dict[str, _SumPool] = {}  # sum pools (and Flattens of them) not yet composed
    cores: list[Core | PoolCore | SpikeMerge] = []
    merges: list[str] = []
    input_name = None
    readout, population, readout_name = graph.metadata.get("readout", "rate"), 1, None

    def source_of(name):
        (src,) = graph.inputs(name)
        return src

    def spike_input(name, src, what):
        """src feeds `name` as a spike value (not a current, not a pending sum pool)."""
        if src in pools:
            raise HardwareLoweringError(f"node {name!r}: {what} the sum pool {pools[src].name!r}"
                                        "; a sum pool of spikes is lowered only into the "
                                        "synapse it feeds")
        if src in currents:
            raise HardwareLoweringError(f"node {name!r}: {what} {src!r}, a current (a synapse "
                                        "output), where spikes are expected")

    def spike_merge(name, op):
        ins = graph.inputs(name)
        for src in ins:
            spike_input(name, src, "merges")
            if src in analog:
                raise HardwareLoweringError(f"node {name!r}: merges the analog input "
                                            f"{src!r}; not lowered to hardware")
            if src not in peak:
                raise HardwareLoweringError(f"node {name!r}: merges {src!r}, which is no spike "
                                            "train (a non-spiking layer's membrane)")
        if op != "add" and any(peak[s] != 1 for s in ins):
            raise HardwareLoweringError(
                f"node {name!r}: SEW {op.upper()} of graded values (a SEW ADD's sums) has no "
                "hardware form; AND / IAND take binary spikes")
        peak[name] = peak[ins[0]] + peak[ins[1]] if op == "add" else 1
        spatial[name] = all(spatial[s] for s in ins)
        origin[name] = name
        cores.append(SpikeMerge(name, op, (origin[ins[0]], origin[ins[1]]), shapes[name],
                                spatial[name], peak[name]))

    for name in order:
        node = graph.nodes[name]
        if isinstance(node, ir.Input):
            input_name = name
            spatial[name] = True
            analog.add(name)
            origin[name] = name
        elif isinstance(node, (ir.Conv2d, ir.Dense)):
            src = source_of(name)
            if src in currents:
                raise HardwareLoweringError(f"node {name!r}: two synapses in a row")
            if src in pools:  # sum pool (+ Flattens) + synapse: one dense synapse W P
                pool = pools[src]
                used.add(pool.name)
                window = pool_matrix(pool.node, pool.in_shape)
                through = Synapse(name, node, src, shapes[src])
                composed = ir.Dense(through.matrix() @ window, through.bias_vector())
                syn = Synapse(name, composed, src, (window.shape[1],), origin[pool.source],
                              pooled=pool.name)
                currents[name] = _Current([syn], False, dense=True)
                continue
            currents[name] = _Current([Synapse(name, node, src, shapes[src], origin[src])],
                                      src in analog, dense=not spatial[src])
        elif isinstance(node, ir.Add):
            ins = graph.inputs(name)
            consumers = [graph.nodes[c] for c in graph.consumers(name)]
            if not any(src in currents for src in ins) and not (
                    consumers and all(isinstance(c, ir.Neuron) for c in consumers)):
                spike_merge(name, "add")  # SEW ADD: graded spikes for the synapses behind
                continue
            syns, hosts, dense = [], set(), False
            for src in ins:
                if src in pools:
                    spike_input(name, src, "adds")
                if src in currents:
                    used.add(src)
                    cur = currents[src]
                    syns += cur.synapses
                    dense = dense or cur.dense
                    hosts.add(cur.host)
                else:  # a spike train (or the input) added as it is: an identity synapse
                    syns.append(Synapse(src, None, src, shapes[src], origin[src]))
                    dense = dense or not spatial[src]
                    hosts.add(src in analog)
            if len(hosts) > 1:
                raise HardwareLoweringError(f"node {name!r}: adds a current of the analog "
                                            "input (host) to one from spikes (chip)")
            currents[name] = _Current(syns, hosts.pop(), dense, merge=name)
            merges.append(name)
        elif isinstance(node, (ir.SEWAnd, ir.SEWIAnd)):
            spike_merge(name, "and" if isinstance(node, ir.SEWAnd) else "iand")
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
            convs = not cur.dense and all(
                s.is_conv or (s.node is None and len(s.in_shape) == 3) for s in cur.synapses)
            is_spatial = convs and (cur.host or node.gain is None or (
                cur.merge is not None and channel_gain(node) is not None))
            cores.append(Core(name, node, list(cur.synapses), cur.host, is_spatial, cur.merge))
            spatial[name] = is_spatial
            origin[name] = name
            if node.spiking:
                peak[name] = 1
        elif isinstance(node, ir.SpikePool):
            src = source_of(name)
            if node.mode == "max":
                raise HardwareLoweringError(
                    f"node {name!r}: a max-pool of graded values (a SEW ADD's 0/1/2 or a "
                    f"current, from {src!r}) has no form on the chip; pool the spikes after "
                    "the neuron, use an average pool, or check it on the float targets "
                    "(reference, onnx)")
            spike_input(name, src, "pools")
            if src in analog or src not in peak:
                raise HardwareLoweringError(f"node {name!r}: an OR-pool takes spikes, not "
                                            f"the output of {src!r}")
            if node.mode != "or":  # composed into the synapse it feeds
                pools[name] = _SumPool(name, node, src, shapes[src])
                continue
            if peak[src] != 1:
                raise HardwareLoweringError(f"node {name!r}: an OR-pool of graded values (a "
                                            f"SEW ADD's sums, {src!r}) has no hardware form")
            cores.append(PoolCore(name, node, src, shapes[src], shapes[name], spatial[src]))
            spatial[name] = spatial[src]
            origin[name] = name
            peak[name] = 1
        elif isinstance(node, ir.Flatten):
            src = source_of(name)
            if src in currents:  # between a synapse and its neuron layer
                used.add(src)
                cur = currents[src]
                currents[name] = _Current(cur.synapses, cur.host, True, cur.merge)
            elif src in pools:
                pools[name] = pools[src]
            else:
                spatial[name] = False
                origin[name] = origin[src]
                if src in analog:
                    analog.add(name)
                if src in peak:
                    peak[name] = peak[src]
        elif isinstance(node, ir.Readout):
            src = source_of(name)
            fed = graph.nodes.get(origin.get(src, ""))
            if src in currents or src in pools or not isinstance(fed, ir.Neuron):
                raise HardwareLoweringError(f"node {name!r}: the readout takes {src!r}, not a "
                                            "neuron layer's output")
            readout, population, readout_name = node.mode, node.population, name
        else:
            raise HardwareLoweringError(
                f"node {name!r}: {type(node).__name__} has no hardware form")
    left = [n for n in currents if n not in used]
    if left:
        raise HardwareLoweringError(f"node {left[0]!r}: a synapse with no neuron layer behind it")
    left = [p.name for p in pools.values() if p.name not in used]
    if left:
        raise HardwareLoweringError(f"node {left[0]!r}: a sum pool of spikes with no synapse "
                                    "behind it (it is lowered only into the synapse it feeds)")
    if not any(isinstance(c, Core) for c in cores):
        raise HardwareLoweringError("no neuron layer")
    steps = graph.metadata.get("time_steps")
    return CoreGraph(cores, input_name, tuple(graph.nodes[input_name].shape),
                     None if steps is None else int(steps), readout, population, readout_name,
                     merges)


__all__ = ["Core", "CoreGraph", "HardwareLoweringError", "PoolCore", "SpikeMerge", "Synapse",
           "channel_gain", "conv_matrix", "lower", "pool_matrix"]
