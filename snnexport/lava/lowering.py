"""Lower the folded IR to what Lava's Dense / Conv + LIF processes take (numpy only: this module
runs in the Python 3.10 Lava environment as well as in the core).

Per-neuron values are flat vectors in the IR's C-major order (the runner puts map layers into
Lava's W x H x C). An OR-pool is a sum of ones over its window into memoryless neurons
(du = dv = 1, threshold 0.5): at least one spike in the window fires.

One stage per core of `snnexport.hw.cores.lower` (which pairs each synapse with its neuron
layer): a host stage (the first synapse, fed the analog input, whose result W1 x + b1 is the
first neuron layer's bias), then stages of (synapse, bias, neuron parameters). A spatial core
(a conv on a map whose neurons have no per-neuron gain) and an OR-pool on a map are also
described as a conv (`Stage.conv`) for Lava's Conv process (the runner gives a conv on a small
map to Lava's Sparse as its unrolled matrix instead: `unrolled`); the dense matrix is the form for
everything else (a conv whose neurons have per-neuron gains: each neuron owns its row). A
chain keeps this form (`Stage.links` None); a residual graph (a core fed by several synapses, a
SEW merge of spike trains) is lowered as a graph of stages with explicit links, timed by hop
depth (`lower_residual`, `time_links`: the method and its timing are stated there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hw.cores import (
    Core,
    CoreGraph,
    HardwareLoweringError,
    PoolCore,
    SpikeMerge,
    pool_matrix,
)
from ..hw.cores import lower as lower_cores
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.neurons import kind_of

# the lowering errors are the hardware lowering's (hw.cores), under their old name too
LavaLoweringError = HardwareLoweringError


@dataclass
class Link:
    """One synapse into a LIF stage of a residual graph: a_in += W x, x the spikes of stage
    `source` (flat C-major as the synapse sees them, per-sample shape `in_shape`); W a dense
    [out, in] matrix (`weights`), a torch-layout conv (`conv`, Synapse.conv_args' form) or a
    scaled unit matrix (`unit`), delivered `delay` steps later than Lava's one step per hop
    (`time_links`)."""

    source: str  # the key of the stage whose spikes it takes
    weights: np.ndarray | None
    conv: dict | None = None
    in_shape: tuple[int, ...] = ()
    delay: int = 0
    # a relay's input (`time_links`): `unit` times the unit matrix, as Lava's Sparse (delay 0)
    # or DelaySparse; `weights` and `conv` are then None
    unit: float | None = None


@dataclass
class Stage:
    """One synapse + neuron layer: I = weights @ s_prev (+ bias through the neuron);
    H = decay V + I + bias; S = H >= threshold; hard reset (or soft) as the IR."""

    name: str  # the IR neuron node's name ('' for an OR-pool's helper neurons)
    weights: np.ndarray | None  # None for the first stage (host-computed)
    bias: np.ndarray
    decay: np.ndarray
    threshold: float
    v_init: np.ndarray
    spiking: bool
    shape: tuple[int, ...]
    # a conv kept as a conv (Lava's Conv process): torch-layout weight, input (C, H, W) shape,
    # stride, padding, groups; `weights` is then None
    conv: dict | None = None
    # residual graphs only (None in a chain): the synapses into this LIF, its unique key (the
    # IR node: core, OR-pool or SEW merge neuron) and its hop depth (`time_links`)
    links: list[Link] | None = None
    key: str = ""
    depth: int = 0
    # a current-based layer (the IR Neuron's current_decay, per neuron; None: no current):
    # Lava's u = u (1 - du) + a_in with du = 1 - current_decay (the host layer's current is
    # computed on the host instead)
    current_decay: np.ndarray | None = None
    # its neuron kind (ir/neurons.py): the runner takes Lava's du from it
    neuron_kind: str = "lif"


def lower(graph: Graph) -> tuple[np.ndarray, np.ndarray, list[Stage], int]:
    """(M1, b1, stages, population): the host matrix and bias of the first synapse, the
    Lava stages (one per core of `hw.cores.lower`), and the readout's voting group size."""
    if not graph.metadata.get("folded"):
        raise LavaLoweringError("lower the folded IR (snnexport fold)")
    cores = lower_cores(graph)
    if is_residual(cores):
        ir.refuse_current(graph, "Lava in a residual net", LavaLoweringError)
        return lower_residual(cores)
    cores.chain_only("Lava")
    stages: list[Stage] = []
    host = None
    for core in cores.cores:
        if isinstance(core, PoolCore):
            n = core.n
            conv = None
            if core.spatial:
                c = core.in_shape[0]
                conv = dict(weight=np.ones((c, 1, *core.node.kernel)),
                            in_shape=tuple(core.in_shape), stride=tuple(core.node.stride),
                            padding=tuple(core.node.padding), groups=c)
            stages.append(Stage("", None if conv else pool_matrix(core.node, core.in_shape),
                                np.zeros(n), np.zeros(n), 0.5, np.zeros(n), True,
                                tuple(core.shape), conv))
            continue
        syn = core.synapse("Lava")
        node, n = core.neuron, core.n
        gain = core.gain()
        gain = np.ones(n) if gain is None else gain
        b = syn.bias_vector()
        b = (np.zeros(n) if b is None else b) * gain
        args = (core.per_neuron(node.decay), float(node.threshold),
                core.per_neuron(node.v_init), node.spiking, core.shape)
        kind = kind_of(node)  # its current, if its kind keeps one (ir/neurons.py)
        cd = core.per_neuron(getattr(node, kind.current_param)) if kind.has_current else None
        if cd is not None and not core.host and np.any(b):
            raise LavaLoweringError(
                f"layer {core.name!r}: a current-based layer whose synapse has a bias is not "
                "lowered to Lava (the bias is part of the decaying current; Lava's LIF adds "
                "its bias to v); train that synapse without a bias, or check it with --target "
                "onnx")
        if core.host:  # the first synapse runs on the host; each neuron owns its row
            host = (syn.matrix() * gain[:, None], b)
            stages.append(Stage(core.name, None, np.zeros(n), *args, current_decay=cd,
                                neuron_kind=kind.name))
        else:
            conv = syn.conv_args() if core.spatial else None
            w = None if conv else syn.matrix() * gain[:, None]
            stages.append(Stage(core.name, w, b, *args, conv, current_decay=cd,
                                neuron_kind=kind.name))
    return host[0], host[1], stages, cores.population


# --- a convolution's form in Lava's CPU simulator ---------------------------------------------

# Lava 0.10's CPU Conv (lava.proc.conv.utils.conv_scipy: torch is disabled inside its processes)
# makes one scipy convolve2d call per (output, input) channel pair per step, whatever the map's
# size: 12.8-17 us a pair on a shared 2-core CPU (3.35 s a step for a 512 x 512 channel 3 x 3
# conv on a 1 x 1 map, SEW-ResNet18's layer4 at an 8 x 8 input: 26 steps of its ~15 such
# convs ran past the runner's 600 s). Its Sparse process sums the columns of the spiking
# inputs of a CSR matrix: 9-13 ns a connection (the same convs unrolled: 2.2 ms). So a conv
# whose map is small enough that its connections cost less than its channel pairs is given to
# Lava unrolled, as the C-major sparse matrix of its connections (`conv_sparse`): the same
# weights and sums (integer sums in fixed point: Sparse truncates its weights to 8-bit
# mantissas as Dense does, which the fixed-point IR's even weights in [-256, 254] survive).
CONV_PAIR_S = 13e-6  # Lava's Conv, seconds per channel pair per step
SPARSE_CONNECTION_S = 10e-9  # Lava's Sparse, seconds per connection per step
UNROLL_MAX_CONNECTIONS = 1 << 24  # ~200 MB of CSR: beyond it the conv stays a Conv


def _taps(size: int, k: int, stride: int, pad: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Along one axis: the output size, and for every (output, tap) pair the input index and
    whether it lies inside the map (not in the padding)."""
    out = (size + 2 * pad - k) // stride + 1
    idx = np.arange(out)[:, None] * stride + np.arange(k)[None, :] - pad
    return out, idx, (idx >= 0) & (idx < size)


def conv_connections(conv: dict) -> int:
    """How many (output neuron, input neuron) connections the conv (Synapse.conv_args' form:
    torch-layout weight, (C, H, W) in_shape, stride, padding, groups) makes: the nonzeros of
    its unrolled matrix when no weight is 0."""
    c_out, per_group, kh, kw = np.shape(conv["weight"])
    _, h, w = conv["in_shape"]
    (sh, sw), (ph, pw) = conv["stride"], conv["padding"]
    _, _, in_h = _taps(h, kh, sh, ph)
    _, _, in_w = _taps(w, kw, sw, pw)
    return int(c_out * per_group * in_h.sum() * in_w.sum())


def conv_channel_pairs(conv: dict) -> int:
    """Lava's Conv's convolve2d calls per step: output channels x input channels per group."""
    c_out, per_group = np.shape(conv["weight"])[:2]
    return int(c_out * per_group)


def unrolled(conv: dict) -> bool:
    """Whether the conv runs in Lava as its sparse matrix (cheaper than Lava's Conv, and not
    too large): see CONV_PAIR_S."""
    n = conv_connections(conv)
    return n <= UNROLL_MAX_CONNECTIONS and (
        n * SPARSE_CONNECTION_S < conv_channel_pairs(conv) * CONV_PAIR_S)


def conv_sparse(conv: dict, dtype=np.float64):
    """The conv (Synapse.conv_args' form) as a scipy CSR matrix M with conv(x).flatten() ==
    M @ x.flatten() on C-major flat vectors (hw.cores.conv_matrix's matrix, built by index
    arithmetic, its zeros not stored)."""
    from scipy.sparse import csr_matrix

    wt = np.asarray(conv["weight"])
    c_out, per_group, kh, kw = wt.shape
    c_in, h, w = conv["in_shape"]
    (sh, sw), (ph, pw) = conv["stride"], conv["padding"]
    oh, iy, ok_y = _taps(h, kh, sh, ph)  # [oh, kh]
    ow, ix, ok_x = _taps(w, kw, sw, pw)  # [ow, kw]
    o = np.arange(c_out)
    chan = (o // (c_out // int(conv["groups"])))[:, None] * per_group + np.arange(per_group)
    # [c_out, per_group, kh, kw, oh, ow]
    rows = ((o[:, None, None, None, None, None] * oh + np.arange(oh)[None, None, None, None, :,
             None]) * ow + np.arange(ow)[None, None, None, None, None, :])
    cols = ((chan[:, :, None, None, None, None] * h + iy.T[None, None, :, None, :, None]) * w
            + ix.T[None, None, None, :, None, :])
    keep = ok_y.T[None, None, :, None, :, None] & ok_x.T[None, None, None, :, None, :] & (
        wt != 0)[:, :, :, :, None, None]
    shape6 = (c_out, per_group, kh, kw, oh, ow)
    keep = np.broadcast_to(keep, shape6)
    vals = np.broadcast_to(wt[:, :, :, :, None, None], shape6)[keep]
    return csr_matrix((vals.astype(dtype), (np.broadcast_to(rows, shape6)[keep],
                                            np.broadcast_to(cols, shape6)[keep])),
                      shape=(c_out * oh * ow, c_in * h * w))


# --- what a run costs in Lava's CPU simulator, before it starts --------------------------------

# Lava's runtime runs every process in its own OS process and passes each step's messages
# between them; measured on SEW-ResNet18 at 3 x 8 x 8 (about 135 processes, every conv behind
# the host unrolled) on a shared 2-core CPU at load 15-24: 22 s to start and build, 0.29 s a
# step (tests/test_zoo_lava.py). The host layer's matrix is built by a Python loop
# (hw.cores.conv_matrix) in the core and again in the runner.
RUNNER_START_S = 10.0
PROCESS_BUILD_S = 0.1  # per process
PROCESS_STEP_S = 2e-3  # per process per step
DENSE_ENTRY_S = 1e-9  # Lava's Dense / DelayDense, per matrix entry per step
HOST_LOOP_S = 1e-6  # hw.cores.conv_matrix, per (out channel, in channel, tap, output) visit


@dataclass
class LavaCost:
    """Lava's cost of a lowered network (`lava_cost`): its processes, the seconds one Lava step
    of its synapses takes, the bytes of its synapse matrices, the costliest stage."""

    processes: int
    step_s: float
    matrix_bytes: int
    costliest: str
    costliest_s: float
    build_s: float = 0.0  # the host matrix's loop, both times

    def seconds(self, steps: int) -> float:
        return (RUNNER_START_S + self.build_s + PROCESS_BUILD_S * self.processes
                + steps * (self.step_s + PROCESS_STEP_S * self.processes))


def _synapse_cost(weights, conv, unit) -> tuple[float, int]:
    """(seconds a step, bytes) of one synapse process as the runner builds it."""
    if conv is not None:
        if unrolled(conv):
            n = conv_connections(conv)
            return n * SPARSE_CONNECTION_S, 12 * n
        return conv_channel_pairs(conv) * CONV_PAIR_S, 8 * int(np.size(conv["weight"]))
    if unit is not None:
        return 0.0, 0
    n = int(np.prod(np.shape(weights)))
    return n * DENSE_ENTRY_S, 8 * n


def lava_cost(stages: list[Stage]) -> LavaCost:
    """The cost of `lower`'s stages (a chain's or a residual graph's, float or fixed): per
    stage a LIF, its tap and its writer, one process per synapse."""
    processes, step, size, worst = 0, 0.0, 0, ("", 0.0)
    for st in stages:
        syns = [(lk.weights, lk.conv, lk.unit) for lk in st.links] if st.links is not None \
            else [(st.weights, st.conv, None)] if st.weights is not None or st.conv is not None \
            else []
        costs = [_synapse_cost(*syn) for syn in syns]
        here = sum(c for c, _ in costs)
        processes += 3 + len(syns)
        step += here
        size += sum(b for _, b in costs)
        if here > worst[1]:
            worst = (st.name or st.key, here)
    return LavaCost(processes, step, size, *worst)


def host_cost(graph: Graph) -> tuple[int, float, str]:
    """(bytes, seconds, name) of the host layer's dense matrix, which `lower` builds (twice:
    in the core and in the runner), from the cores alone, before it is built."""
    for core in lower_cores(graph).cores:
        if isinstance(core, Core) and core.host:
            syn = core.synapses[0]
            n_in = int(np.prod(syn.in_shape))
            loop = 0.0
            if syn.is_conv:
                c_out, per_group, kh, kw = np.shape(syn.node.weight)
                loop = c_out * per_group * kh * kw * int(np.prod(core.shape[1:])) * HOST_LOOP_S
            return 8 * core.n * n_in, 2 * loop, core.name
    return 0, 0.0, ""


# --- residual graphs --------------------------------------------------------------------------

MERGE_FLOAT = {"and": (1.0, 1.0, 1.5), "iand": (-1.0, 1.0, 0.5)}  # w_a, w_b, threshold
MERGE_FIXED = {"and": (2, 2, 2), "iand": (-2, 2, 1)}  # w_a, w_b, vth_mant
RELAY_FLOAT = (1.0, 0.5)  # a relay's weight (unit matrix) and threshold
RELAY_FIXED = (2, 1)  # weight, vth_mant: 2 << 6 = 128 > 64
MAX_DELAY = 63  # Loihi 2's synaptic delay field (6 bits)


def is_residual(cores: CoreGraph) -> bool:
    """A SEW merge of spike trains, or a core summing several synapses."""
    return any(isinstance(c, SpikeMerge) or (isinstance(c, Core) and len(c.synapses) > 1)
               for c in cores.cores)


def identity_link(source: str, in_shape, shape, weight, fixed: bool) -> Link:
    """x (of `in_shape`) times `weight` into a stage of `shape`: a 1x1 depthwise conv on a map
    of the same shape, else a (scaled) unit matrix on the flat C-major vectors."""
    in_shape, shape = tuple(in_shape), tuple(shape)
    if len(shape) == 3 and in_shape == shape:
        c = shape[0]
        return Link(source, None, dict(weight=np.full((c, 1, 1, 1), weight,
                                                      np.int64 if fixed else np.float64),
                                       in_shape=shape, stride=(1, 1), padding=(0, 0),
                                       groups=c), in_shape)
    n = int(np.prod(shape))
    return Link(source, (np.eye(n) * weight).astype(np.int64 if fixed else np.float64), None,
                in_shape)


def merge_stage(key: str, op: str, sources: list[str], shapes: list, shape,
                fixed: bool) -> Stage:
    """The memoryless LIF computing SEW AND / IAND of the spikes of `sources` (lower_residual):
    float Stage fields (decay 0, threshold), or fixed ones (`decay` holds dv = 4095,
    `threshold` vth_mant)."""
    w_a, w_b, thr = (MERGE_FIXED if fixed else MERGE_FLOAT)[op]
    n = int(np.prod(shape))
    links = [identity_link(src, sh, shape, w, fixed)
             for src, sh, w in zip(sources, shapes, (w_a, w_b), strict=True)]
    decay = np.full(n, 4095) if fixed else np.zeros(n)  # fixed: dv, no memory
    return Stage("", None, np.zeros(n), decay, float(thr), np.zeros(n), True, tuple(shape),
                 links=links, key=key)


def relay_stage(key: str, source: str, shape, wait: int, fixed: bool) -> Stage:
    """The memoryless LIF that repeats the spikes of `source` (of `shape`) `wait` steps later
    (lower_residual: Timing): a unit matrix of RELAY_FLOAT / RELAY_FIXED weights, delayed
    wait - 1 steps by a Sparse / DelaySparse, into one hop's neurons that fire on one input."""
    w, thr = RELAY_FIXED if fixed else RELAY_FLOAT
    n = int(np.prod(shape))
    decay = np.full(n, 4095) if fixed else np.zeros(n)  # fixed: dv, no memory
    link = Link(source, None, None, tuple(shape), delay=wait - 1, unit=w)
    return Stage("", None, np.zeros(n), decay, float(thr), np.zeros(n), True, tuple(shape),
                 links=[link], key=key)


def unit_weight(conv: dict):
    """w when the conv is w times the identity (identity_link's 1x1 depthwise conv), else
    None."""
    wt = np.asarray(conv["weight"])
    c = wt.shape[0]
    flat = wt.reshape(-1)
    if (wt.shape[1:] == (1, 1, 1) and int(conv["groups"]) == c == conv["in_shape"][0]
            and tuple(conv["stride"]) == (1, 1) and tuple(conv["padding"]) == (0, 0)
            and np.all(flat == flat[0])):
        return flat[0].item()
    return None


def time_links(stages: list[Stage], fixed: bool = False) -> list[Stage]:
    """Depth of every stage and delay of every link (lower_residual: Timing); a delayed
    identity becomes a unit link (`Link.unit`, Lava's DelaySparse), another delayed conv reads
    a relay stage (`relay_stage`, one per source and wait, inserted before the first stage
    that reads it). stages: in topological order, the host's first; returns the new list (the
    stages themselves are timed in place)."""
    depth: dict[str, int] = {}
    shapes = {st.key: tuple(st.shape) for st in stages}
    out: list[Stage] = []
    for st in stages:
        st.depth = max((depth[lk.source] + 1 for lk in st.links), default=0)
        for lk in st.links:
            lk.delay = st.depth - depth[lk.source] - 1
            if lk.delay > MAX_DELAY:
                raise HardwareLoweringError(
                    f"node {st.key!r}: a residual path waits {lk.delay} steps for the longer "
                    f"one, more than Loihi 2's synaptic delay of {MAX_DELAY}")
            if lk.delay and lk.conv is not None and unit_weight(lk.conv) is not None:
                lk.unit, lk.conv = unit_weight(lk.conv), None
            elif lk.delay and lk.conv is not None:
                key = f"{lk.source}@+{lk.delay}"
                if key not in depth:
                    relay = relay_stage(key, lk.source, shapes[lk.source], lk.delay, fixed)
                    relay.depth = depth[key] = depth[lk.source] + lk.delay
                    out.append(relay)
                lk.source, lk.delay = key, 0
        depth[st.key] = st.depth
        out.append(st)
    return out


def lower_residual(cores: CoreGraph) -> tuple[np.ndarray, np.ndarray, list[Stage], int]:
    """`lower`'s result for a residual graph: the stages with their links, timed.

    Residual graphs on Lava (floating_pt and fixed_pt build the same stages: the float ones
    from `hw.cores.lower` here, the fixed ones from the fixed-point IR in the runner,
    `runner.fixed_residual_stages`):

    * A core fed by several synapses (Spiking ResNet: BN(conv(x)) + shortcut before the
      neuron) is one LIF whose a_in takes every synapse's Dense / Conv: Lava's InPort adds
      what its connections send (PyInPortVectorDense.recv), so I = sum_k W_k x_k before the
      neuron, as the IR adds it. An identity shortcut is a 1x1 depthwise conv of ones on a map
      (a unit matrix on a vector); every path is scaled by the neuron's gain (float) or
      quantised at its one scale (fixed point, quant/fixed.py).
    * SEW ADD (a + b, graded 0 / 1 / 2) feeding a synapse W is no process: W gets one Dense /
      Conv per summand into the same a_in, W (a + b) = W a + W b (nested ADDs: one per leaf).
      Exact: the same integer sums in fixed point as long as nothing wraps (a wrap of u is
      counted by the emulator, `u_wrapped`), the same products in float. Chosen over graded
      spikes: lava 0.10's Dense / Conv CPU models do take graded input (num_message_bits > 0:
      weights @ s), but its LIF sends binary spikes only, so a + b as a payload needs a graded
      neuron (GradedVec) in between: one more hop and one more process per merge, for no more
      exactness.
    * SEW AND a b / IAND (1 - a) b of binary spikes: a memoryless LIF (float du = dv = 1;
      fixed du = dv = 4095, whose residue trunc(v / 4096) is 0 for |v| < 4096) behind two
      identity synapses, one hop: AND weights (1, 1), threshold 1.5 (fires on 1 + 1 only);
      IAND weights (-1 on a, +1 on b), threshold 0.5 (fires on a = 0, b = 1 only). Fixed
      point: (2, 2) with vth_mant 2 (a_in << 6: 256 > 128; one input, 128, is not); (-2, 2)
      with vth_mant 1 (128 > 64; 0 and -128 are not); even weights, which Lava's 8-bit
      truncation keeps.
    * Timing: every Dense / Conv delays by one step, so a stage's depth is its hop count from
      the host layer: depth(host) = 0, depth(s) = max over its links of depth(source) + 1; a
      link from a shallower source waits delay = depth(s) - depth(source) - 1 extra steps, so
      that every synapse into s delivers its source's spikes of the same reference step t, at
      Lava step t + depth(s) (as layer k of a chain answers at t + k); the runner's Schedule
      starts and aligns each stage at its depth. The wait (d = delay > 0) is Lava's own
      synaptic delay (a delay d' arrives d' + 1 steps after the spike, d' = 0 being Dense's
      step; Loihi 2 holds d' in 0..63), where the synapse has few connections:
      - a dense matrix: a DelayDense, every delay d;
      - an identity (identity_link's 1x1 depthwise conv of one weight w): a DelaySparse of w
        times the unit matrix, every delay d (n connections, not an n x n matrix);
      - any other conv: a relay stage (`relay_stage`) repeats the source's spikes d steps
        later (a unit DelaySparse of delay d - 1 into memoryless LIFs that fire on one input,
        one per source and wait, shared by every conv that waits as long on it), and the
        conv, undelayed, reads the relay. Exact: a binary spike train repeated, the conv's
        own numbers unchanged.
      A delayed conv is never unrolled to a matrix: a strided conv between 14 x 14 and 7 x 7
      maps of 32 / 64 channels (SEW-ResNet's downsample block) is 6272 x 3136 = 19.7 M entries
      dense. Its alternative, a DelaySparse of the conv's nonzero connections (3 x 3 x 32 per
      output, 0.9 M), is exact too but slower in Lava's CPU simulator: DelaySparse rebuilds
      its per-delay matrices on every step: for the 3 x 3 and 1 x 1 strided convs of that
      block, the relay plus the ordinary Conv took 93-102 ms a step (float) / 76-79 (fixed)
      against 130-235 / 167-219 ms, and 0.5-1.4 s to build against 3-6 s, over two runs on a
      shared 2-core CPU (bench/lava_delay_speed.py; both give the same currents).
      netx holds a chain of blocks and still refuses a residual net (exporters/netx_export.py)."""
    stages: list[Stage] = []
    shapes: dict[str, tuple] = {}
    leaves: dict[str, list[str]] = {}  # a SEW ADD: the stages whose spikes it sums
    host = None

    def sources(origin):
        return leaves.get(origin, [origin])

    for core in cores.cores:
        if isinstance(core, SpikeMerge):
            if core.op == "add":
                leaves[core.name] = [s for o in core.inputs for s in sources(o)]
            else:
                stages.append(merge_stage(core.name, core.op, list(core.inputs),
                                          [shapes[o] for o in core.inputs], core.shape, False))
                shapes[core.name] = tuple(core.shape)
            continue
        if isinstance(core, PoolCore):
            n = core.n
            c = core.in_shape[0]
            conv = dict(weight=np.ones((c, 1, *core.node.kernel)), in_shape=tuple(core.in_shape),
                        stride=tuple(core.node.stride), padding=tuple(core.node.padding),
                        groups=c) if core.spatial else None
            link = Link(core.source, None if conv else pool_matrix(core.node, core.in_shape),
                        conv, tuple(core.in_shape))
            stages.append(Stage("", None, np.zeros(n), np.zeros(n), 0.5, np.zeros(n), True,
                                tuple(core.shape), links=[link], key=core.name))
            shapes[core.name] = tuple(core.shape)
            continue
        node, n = core.neuron, core.n
        gain = core.gain()
        cg = core.channel_gain() if gain is not None else None
        gain = np.ones(n) if gain is None else gain
        biases = [b for b in (syn.bias_vector() for syn in core.synapses) if b is not None]
        b = (np.sum(biases, axis=0) if biases else np.zeros(n)) * gain
        args = (core.per_neuron(node.decay), float(node.threshold),
                core.per_neuron(node.v_init), node.spiking, core.shape)
        shapes[core.name] = tuple(core.shape)
        if core.host:
            syn = core.synapse("Lava (host layer)")
            host = (syn.matrix() * gain[:, None], b)
            stages.append(Stage(core.name, None, np.zeros(n), *args, links=[], key=core.name))
            continue
        links = []
        for syn in core.synapses:
            if core.spatial:
                conv = syn.conv_args()
                if cg is not None:
                    conv["weight"] = conv["weight"] * cg[:, None, None, None]
                w = None
            else:
                conv, w = None, syn.matrix() * gain[:, None]
            links += [Link(src, w, conv, tuple(syn.in_shape)) for src in sources(syn.origin)]
        stages.append(Stage(core.name, None, b, *args, links=links, key=core.name))
    if host is None:
        raise HardwareLoweringError("no host layer: the first neuron layer must take the input")
    return host[0], host[1], time_links(stages), cores.population
