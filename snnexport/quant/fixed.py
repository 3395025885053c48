"""The fixed-point IR: a folded IR quantised for Loihi 2's bit-accurate neuron (lava-nc 0.10
`PyLifModelBitAcc` with `Dense`/`Conv` in `fixed_pt`), and the calibration that builds it.

Per neuron layer k, with integer state v (24 bit) and a layer scale S_k (v units per unit of
the float IR's membrane):

    a_t   = sum_j w[i, j] s_{t-1}[j]                (integer weights; one step per hop)
    u_t   = wrap24(a_t << 6)                        (du = 4095: the current does not persist)
    v_t   = clip24(trunc((4096 - dv) v_{t-1} / 4096) + u_t + (bias_mant << 6))
    s_t   = [v_t > vth_mant << 6];  v_t = 0 where s_t   (hard reset; soft reset is refused)
    v_-1  = v_init

A current-based layer (the IR Neuron's current_decay, CUBA) keeps its current (Lava's du =
i_decay - 1, netx's iDecay = i_decay), `emulator.integer_current`:
    u_t   = wrap24(trunc((4096 - i_decay) u_{t-1} / 4096) + (a_t << 6)),   u_-1 = 0
with i_decay = round(4096 (1 - current_decay)) in 1..4096 per neuron, and bias_mant << 6 added
to u, not to v (the synapse's bias is part of the IR's current J); its scale also keeps the
largest current the float IR reaches on the calibration inputs, |S gain J| < 2^22. A
current-based host layer runs its current on the host in float64 with the chip's decay
(4096 - i_decay) / 4096 (`host_current_float`), sent per step as the bias mantissa.

trunc rounds toward zero, clip24 saturates at +-(2^23 - 1), wrap24 folds u into 24 bits (these
are Lava's rules, copied in `emulator.py`). Integer strict-`>` semantics: this IR is the
reference the chip is checked against; its accuracy is compared with the float model.

One layer per core of `snnexport.hw.cores.lower` (which pairs each synapse with its neuron layer
and decides which convs stay convs). Residual merges, as the lowering describes them:
  * a core fed by several synapses (Spiking ResNet: BN(conv(x)) + shortcut, the shortcut a conv
    current or the identity of a spike train) is one layer with one scale S: every synapse's
    integer weights are quantised at that S (the identity as the weight 1, i.e. 2 round(S/128)),
    so a_t = sum_k w_k x_k is the float current in the neuron's units, S/64 per unit, whichever
    path it came by (see `_hop_layer`); the first synapse is the layer's own `weight`, the
    others `FixedSynapse`s in `synapses`;
  * a SEW merge of spike trains is a `FixedMerge` (ADD: integer a + b, graded; AND: a b; IAND:
    (1 - a) b on binary spikes), computed exactly in integers by the emulator; a layer whose
    synapse takes it names it as its `source` (its weights multiply graded values 0, 1, 2, ...:
    the sum stays exact in integers);
  * a layer's `source` is "" when it takes the layer before it (a chain, the form a file of a
    net without merges keeps, version 1), else the layer or merge whose output it takes.
Quantisation (per layer, from the weights and from the membrane ranges the float IR
reaches on calibration inputs):
  * weights: w = 2 round(S W / 128), even in [-256, 254] (mixed-sign Loihi weights are 8-bit
    mantissas, Lava drops the last bit); S = 64 * 254 / max|W| puts the largest weight at full
    scale, unless the threshold (17-bit vth_mant) or the membrane range (|S H| < 2^22, half of
    the 24-bit state) asks for a smaller S; weight_exp stays 0 (Lava's fixed Conv ignores it,
    lava #803, and netx recomputes it from the integers);
  * threshold vth_mant = round(S theta / 64); decay dv = round(4096 (1 - decay)) (12 bit);
    bias_mant = round(S b / 64) with bias_exp = 6 (13-bit mantissa, netx's fixed exponent);
    v_init = round(S v0);
  * the first synapse runs on the host (the analog image is not a spike): its current
    S (W1 x + b1) is sent as that layer's bias mantissa, at a scale that puts 1.5x the largest
    calibration current at the 13-bit limit;
  * a per-neuron input gain (per-neuron tau with decay_input) scales each neuron's weights, so
    a conv with one is lowered to a dense layer (its unrolled matrix, rows scaled): one
    threshold per layer is all the LIF takes (an array vth hangs Lava 0.10);
  * the OR-pool is a layer of memoryless neurons (dv = 4095, vth_mant = 0) behind a sum-pool
    synapse of equal weights (128): at least one spike in the window fires.
A net read from a netx file (quant/netx_import.py) is the same FixedNet with no float model
behind it (`netx_file`): scale 1, netx's Input block as a layer of kind 'input' driven by x
itself, a dense layer's per-synapse `delay`, and (a lava-dl file) netx's own timing
(`lava_timing`: every layer from step 0, each synapse a step late plus its delays, the bias
adding to v, netx's periodic reset); the emulator runs it (emulator.emulate_lava_timing).
Bounds (`check_bounds`; each row of the report states them as `vth_mant_min` and
`weight_bits_min`); a quantisation that breaks one is refused, QuantError naming the layer
and the fix, never run and reported "exact":
  * a spiking layer's threshold is > 0 (Loihi's LIF resets to 0 and fires at v > vth_mant << 6;
    a threshold <= 0 would give a scale <= 0);
  * vth_mant >= VTH_MANT_MIN = 16 (4 bits: the threshold is rounded by at most 1/32 of
    itself). With the weights at full scale vth_mant = 254 theta / max|W|, so the largest
    weight may be at most 254 / 16 = 15.9 times the threshold; on the host, the largest
    calibration current at most 4095 / (1.5 * 16) = 171 times it;
  * the weights of a hop layer keep >= WEIGHT_BITS_MIN = 4 of their 8 mantissa bits
    (max |w| >= 8: the largest weight rounded by at most 1/8 of itself). At the 17-bit
    threshold's scale, max |w| = 2 round(65535.5 max|W| / theta): the largest weight must be at
    least 5.3e-5 of the threshold (below, the layer is all or mostly zero weights).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write
from ..hw.cores import Core, HardwareLoweringError, PoolCore, SpikeMerge, lower, pool_matrix
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.neurons import keeps_current, kind_of
from ..sim.reference import STATELESS, neuron_current, simulate, synaptic_current

W_MAX = 254  # largest even 8-bit-mantissa weight (mixed sign)
BIAS_MANT_MAX = 4095
VTH_MANT_MAX = (1 << 17) - 1
STATE_MAX = (1 << 23) - 1
HEADROOM = 2 ** 22  # |v| the calibrated membranes may reach: half the 24-bit range
HOST_MARGIN = 1.5
VTH_MANT_MIN = 16  # 4 bits of threshold: rounded by at most 1/32 of itself (module docstring)
WEIGHT_BITS_MIN = 4  # of the 8-bit weight mantissa: the largest weight within 1/8 of itself


class QuantError(HardwareLoweringError):
    """A network the fixed-point path cannot take (names the node), or a file that is not a
    fixed-point IR (names the file). A HardwareLoweringError: hw.cores' refusals reach the
    caller of `quantize` as this class."""


@dataclass(eq=False)
class FixedLayer:
    """One synapse + neuron layer of the fixed-point IR (math in the module docstring).

    kind 'host': the synapse is float (`weight`, `bias`, `gain`, an IR Conv2d/Dense computed on
    the host); its current becomes the bias mantissa per sample. kind 'conv': integer weight
    [C_out, C_in/groups, kh, kw] (cross-correlation, torch layout). kind 'dense': integer
    weight [out, in] on the flat (C-major) input. `pool`: an OR-pool's helper neurons. kind
    'input' (a net read from a netx file only): netx's Input block, a neuron layer with no
    synapse (an empty `weight`) driven by x itself (FixedNet.input_drive). A layer whose
    vth_mant is at the top of its range (VTH_MANT_MAX) cannot spike by design: a readout
    (`spiking` False), its membrane is its output."""

    name: str
    kind: str
    shape: tuple[int, ...]
    weight: np.ndarray
    dv: np.ndarray  # per neuron, `shape`
    vth_mant: int
    v_init: np.ndarray  # per neuron, `shape`
    scale: float
    spiking: bool = True
    pool: bool = False
    bias_mant: np.ndarray | None = None  # per neuron (hop layers)
    bias: np.ndarray | None = None  # host layer: float synapse bias
    gain: np.ndarray | None = None  # host layer: float per-neuron gain
    host_kind: str = ""  # host layer: 'conv' or 'dense'
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    weight_exp: int = 0
    # residual nets only (a chain keeps the defaults): the layer or merge the synapse takes
    # ("" = the layer before it), the IR Add summing its synapses, the further synapses
    source: str = ""
    merge: str = ""
    synapses: list[FixedSynapse] = field(default_factory=list)
    # current-based layers only (None: du = 4095, the current of one step): per neuron, the
    # current keeps (4096 - i_decay) / 4096 of itself per step (netx's iDecay, Lava du + 1)
    i_decay: np.ndarray | None = None
    # a net read from a netx file (FixedNet.netx_file) only: a dense layer's per-synapse
    # delays ([out, in] ints 0..62, netx's DelayDense: A_d = W_d s of the synapses of delay d
    # reaches the neuron d steps later, its weight_exp shift acting on each A_d alone); a
    # conv's dilation
    delay: np.ndarray | None = None
    dilation: tuple[int, int] = (1, 1)

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))


@dataclass(eq=False)
class FixedSynapse:
    """A further synapse into a layer fed by a residual merge: integer weights at the layer's
    scale on the output of `source` (a layer or merge), of the layer's `kind` ('conv':
    [C_out, C_in/groups, kh, kw]; 'dense': [out, in] on the flat input). `name`: its IR node
    (the source's name for an identity shortcut)."""

    name: str
    source: str
    kind: str
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1


@dataclass(eq=False)
class FixedMerge:
    """A SEW merge of spike trains, element-wise per step (hw.cores.SpikeMerge): op 'add'
    y = a + b (integers, graded), 'and' y = a b, 'iand' y = (1 - a) b (binary spikes); a, b
    the outputs of the layers / merges `inputs`, reshaped to `shape`."""

    name: str
    op: str
    inputs: tuple[str, str]
    shape: tuple[int, ...]
    peak: int = 1  # the largest value it emits


@dataclass
class FixedNet:
    layers: list[FixedLayer]
    input_shape: tuple[int, ...]
    time_steps: int
    readout: str
    population: int
    report: list[dict] = field(default_factory=list)  # per-layer quantisation report
    merges: list[FixedMerge] = field(default_factory=list)  # SEW merges of spike trains
    # a net read from a netx file (quant/netx_import.py), not quantised from a float model:
    # `netx_file` the file (no float model behind it: every target is compared with the
    # emulator, the emulator with outputs recorded elsewhere); `lava_timing`: netx's own
    # timing (a lava-dl file): every layer runs from step 0 and from rest, each synapse
    # answers one step late plus its delays, the bias of a current-based layer adds to v
    # (Lava's LIF); False: snnexport's aligned layers (its own netx files read back).
    # `input_drive`: what the input x drives: 'host' (the host layer's float synapse),
    # 'a_in' / 'bias' (netx's Input block: its a_in, or its bias mantissa, per step) or
    # 'spikes' (0/1 spikes into the first synapse). `num_layers`, `reset_interval`,
    # `reset_offset`: netx.hdf5.Network's arguments (reset_steps); `notes`: what the file
    # holds that netx does not run
    netx_file: str = ""
    lava_timing: bool = False
    input_drive: str = "host"
    num_layers: int | None = None
    reset_interval: int | None = None
    reset_offset: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def float_model(self) -> bool:
        """A float model stands behind this net (it was quantised from one): False for a net
        read from a netx file, which float targets, decay groupings and calibration refuse."""
        return not self.netx_file

    @property
    def has_input_neuron(self) -> bool:
        """netx's Input block: a neuron layer with no synapse, driven by x (a_in or bias)."""
        return self.layers[0].kind == "input"

    def reset_steps(self, k: int, t_steps: int) -> list[int]:
        """The steps (0-based, > 0) before which layer k's u and v are set to 0, as netx's
        `reset_interval` makes Lava's LIFReset do: block k (in build order) gets reset_offset
        + 1 + k, and resets at Lava time step t (from 1) where t % interval == that % interval,
        before the step's dynamics. Synapse buffers and delay lines are not reset."""
        if not self.reset_interval:
            return []
        i = int(self.reset_interval)
        phase = (int(self.reset_offset) + 1 + k) % i
        return [t for t in range(1, t_steps) if (t + 1) % i == phase]

    @property
    def is_chain(self) -> bool:
        """Every layer takes the one before it through one synapse (no residual merge)."""
        return not self.merges and not any(lay.source or lay.synapses for lay in self.layers)

    @property
    def current_based(self) -> bool:
        """Some layer has a synaptic current that decays (FixedLayer.i_decay)."""
        return any(lay.i_decay is not None for lay in self.layers)

    def refuse_current(self, target: str) -> None:
        """For a target that does not run current-based layers (yet): QuantError naming the
        first one (never a silently dropped current)."""
        for lay in self.layers:
            if lay.i_decay is not None:
                raise QuantError(f"layer {lay.name!r}: a current-based neuron (a synaptic "
                                 f"current that decays, CUBA) is not lowered to {target} "
                                 "yet; check it with --target fixed (the emulator)")

    def refuse_current_bias(self, target: str) -> None:
        """For Lava's LIF, whose bias feeds v, not u: QuantError naming the first
        current-based layer (not the host's: its current is computed on the host) whose
        synapse has a bias (in the IR it is part of the current, which decays)."""
        for lay in self.layers:
            if lay.i_decay is not None and lay.kind != "host" and lay.bias_mant is not None \
                    and np.any(lay.bias_mant):
                raise QuantError(f"layer {lay.name!r}: a current-based layer whose synapse has "
                                 f"a bias is not lowered to {target} (the bias is part of the "
                                 "decaying current; Lava's LIF adds its bias to v); train that "
                                 "synapse without a bias, or check it with --target fixed or "
                                 "onnx-fixed")

    def refuse_lava_timing(self, target: str) -> None:
        """For a target that runs snnexport's aligned layers only: QuantError in one line for
        a net read from a lava-dl netx file, which runs in netx's own timing (lava_timing)."""
        if self.lava_timing:
            raise QuantError(f"{self.netx_file}: a lava-dl netx file runs in netx's own timing "
                             "(every layer from step 0, each synapse a step late plus its "
                             f"delays, netx's Input block), which is not lowered to {target} "
                             "yet; check it with --target fixed, netx or lava-fixed")

    def shape_of(self, name: str) -> tuple[int, ...]:
        """The per-sample shape of a layer's or merge's output."""
        for x in (*self.layers, *self.merges):
            if x.name == name:
                return tuple(x.shape)
        raise QuantError(f"no layer or merge {name!r} in the fixed-point IR")

    def chain_only(self, target: str) -> None:
        """For a target that takes a chain of layers (netx; Lava takes residual nets): raises
        QuantError naming the first residual merge."""
        for layer in self.layers:
            if layer.synapses:
                raise QuantError(
                    f"node {layer.merge!r}: sums {1 + len(layer.synapses)} synapses into "
                    f"{layer.name!r} (a residual merge); residual merges are not lowered to "
                    f"{target} yet")
            merge = next((m for m in self.merges if m.name == layer.source), None)
            if merge is not None:
                kind = SpikeMerge.KINDS[merge.op]
                raise QuantError(f"node {merge.name!r}: a {kind} merge of spike trains (a "
                                 f"residual merge); residual merges are not lowered to "
                                 f"{target} yet")
        if self.merges:
            merge = self.merges[0]
            raise QuantError(f"node {merge.name!r}: a {SpikeMerge.KINDS[merge.op]} merge of "
                             f"spike trains (a residual merge); residual merges are not "
                             f"lowered to {target} yet")
        if not self.is_chain:
            lay = next(lay for lay in self.layers if lay.source)
            raise QuantError(f"layer {lay.name!r} takes {lay.source!r}, not the layer before "
                             f"it; {target} takes a chain of layers")


# --- calibration ------------------------------------------------------------------------------

@torch.no_grad()
def quantize(graph: Graph, calib_x: torch.Tensor) -> FixedNet:
    """The folded IR `graph` as a FixedNet, scales calibrated on `calib_x` (real inputs): one
    layer per core of `snnexport.hw.cores.lower`."""
    if not graph.metadata.get("folded"):
        raise QuantError("quantise the folded IR (snnexport fold)")
    _positive_thresholds(graph)
    try:
        cores = lower(graph)
        for core in cores.neuron_cores:
            if core.host:  # the host current is one synapse's (sent as the bias mantissa)
                core.synapse("fixed point (host layer)")
    except HardwareLoweringError as e:
        raise QuantError(str(e)) from None
    currents: dict[str, float] = {}  # current-based layers: the largest |gain J| reached

    def observe(name, node, x_in, _y):
        if keeps_current(node):  # its kind's current (ir/neurons.py)
            j = neuron_current(node, x_in)
            if node.gain is not None:
                j = j * torch.as_tensor(np.asarray(node.gain, np.float64))
            currents[name] = float(j.abs().max()) if j.numel() else 0.0

    ref = simulate(graph, calib_x, dtype=torch.float64, record_membrane=True, observe=observe)
    layers: list[FixedLayer] = []
    report: list[dict] = []
    merges: list[FixedMerge] = []
    for core in cores.cores:
        if isinstance(core, SpikeMerge):
            merges.append(FixedMerge(core.name, core.op, tuple(core.inputs), tuple(core.shape),
                                     int(core.peak)))
            continue
        if isinstance(core, PoolCore):
            layer, source = _pool_layer(core), core.source
        else:
            name = core.name
            h_max = float(ref.membrane[name].abs().max()) if name in ref.membrane else 0.0
            h_max = max(h_max, currents.get(name, 0.0))  # the 24-bit u holds the current
            if core.host:
                layer, rep = _host_layer(core, core.synapses[0], calib_x, cores.input_shape,
                                         h_max, len(ref.outputs))
            else:
                layer, rep = _hop_layer(core, h_max)
            source = core.synapses[0].origin
            report.append(rep)
        # "" where the layer takes the one before it (always in a chain); the host takes x
        if layers and source != layers[-1].name:
            layer.source = source
        layers.append(layer)
    check_bounds(graph, report)
    return FixedNet(layers, cores.input_shape, int(graph.metadata["time_steps"]),
                    cores.readout, cores.population, report, merges)


def current_decay_fixed(node: ir.Neuron, n_shape) -> np.ndarray | None:
    """A current-based layer's i_decay per neuron (netx's iDecay; Lava's du = i_decay - 1):
    round(4096 (1 - current_decay)) in 1..4096, the current keeping (4096 - i_decay) / 4096
    of itself per step (truncated toward zero); None for a layer without a current. Its
    kind's fixed_current (ir/neurons.py)."""
    kind = kind_of(node)
    if not kind.has_current:
        return None
    i_decay = kind.need("fixed_current", "fixed point")(getattr(node, kind.current_param))
    return np.broadcast_to(i_decay, n_shape).astype(np.int64).copy()


def _neuron_arrays(node: ir.Neuron, scale: float, n_shape):
    dv = kind_of(node).need("fixed_decay", "fixed point")(node.decay)  # (ir/neurons.py)
    dv = np.broadcast_to(dv, n_shape).astype(np.int64).copy()
    v0 = np.broadcast_to(np.asarray(node.v_init, np.float64), n_shape)
    v_init = np.clip(np.rint(scale * v0), -STATE_MAX, STATE_MAX).astype(np.int64)
    vth = int(np.rint(scale * node.threshold / 64)) if node.spiking else VTH_MANT_MAX
    if vth > VTH_MANT_MAX:
        raise QuantError(f"threshold mantissa {vth} > 17 bits")  # prevented by the scale
    decay_fixed = (4096 - dv) / 4096
    return dv, v_init, vth, decay_fixed


def _host_layer(core: Core, synapse, calib_x, input_shape, h_max, t_steps: int):
    name, node, syn_name, syn = core.name, core.neuron, synapse.name, synapse.node
    x_seq = torch.as_tensor(calib_x, dtype=torch.float64)
    i_decay = current_decay_fixed(node, node.shape)
    current = host_current_float(syn, node.gain, x_seq, tuple(input_shape), i_decay,
                                 t_steps)
    i_max = float(current.abs().max()) or 1.0
    scale = 64 * BIAS_MANT_MAX / (HOST_MARGIN * i_max)
    scale = min(scale, 64 * VTH_MANT_MAX / node.threshold, HEADROOM / max(h_max, 1e-12))
    dv, v_init, vth, decay_fixed = _neuron_arrays(node, scale, node.shape)
    gain = None if node.gain is None else np.broadcast_to(
        np.asarray(node.gain, np.float64), node.shape).copy()
    layer = FixedLayer(name, "host", tuple(node.shape), np.asarray(syn.weight, np.float64), dv,
                       vth, v_init, scale, node.spiking,
                       bias=None if syn.bias is None else np.asarray(syn.bias, np.float64),
                       gain=gain, host_kind="conv" if isinstance(syn, ir.Conv2d) else "dense",
                       stride=tuple(getattr(syn, "stride", (1, 1))),
                       padding=tuple(getattr(syn, "padding", (0, 0))),
                       groups=int(getattr(syn, "groups", 1)), i_decay=i_decay)
    step = 64 / scale
    return layer, {
        "layer": name, "synapse": syn_name, "kind": "host", "scale": scale,
        "vth_mant": vth, "threshold_error": abs(vth * 64 / scale - node.threshold),
        "weight_bits": "float (host)", "current_step": step,
        "current_calib_max": i_max, "current_limit": BIAS_MANT_MAX * step,
        "decay_max_error": float(np.abs(decay_fixed - np.asarray(node.decay)).max()),
        "decays": int(len(np.unique(dv))), "membrane_calib_max": h_max,
    }


def host_current_float(syn, gain, x_seq: torch.Tensor, input_shape, i_decay=None,
                       t_steps: int | None = None) -> torch.Tensor:
    """g (W1 x_t + b1) in float64, [T, B, *shape] or [B, *shape] for static input. A
    current-based host layer (`i_decay`, per neuron) runs its current on the host:
    J_t = (4096 - i_decay) / 4096 J_{t-1} + g (W1 x_t + b1), J_-1 = 0, over `t_steps` steps
    ([T, B, *shape]; a static input is the same x every step), the chip's decay in float64."""
    x = x_seq.to(torch.float64)
    lead = x.shape[:x.dim() - len(input_shape)]
    flat = x.reshape(-1, *input_shape)
    if isinstance(syn, ir.Dense):  # a Dense on a map's Flatten (C-major, torch.flatten)
        flat = flat.flatten(1)
    y = STATELESS[type(syn)](syn, flat, torch.float64)
    y = y.reshape(*lead, *y.shape[1:])
    if gain is not None:
        y = y * torch.as_tensor(np.asarray(gain, np.float64))
    if i_decay is None:
        return y
    if len(lead) == 1:  # a static image: one current every step
        y = y.unsqueeze(0)
    y = y.expand(t_steps or len(y), *y.shape[1:])
    keep = torch.as_tensor((4096 - np.asarray(i_decay, np.int64)) / 4096.0)
    return synaptic_current(y, keep)


def _hop_layer(core: Core, h_max):
    """One layer at one scale S for all the synapses summed into the core's neuron.

    Scales of a residual merge (Spiking ResNet, I = BN(conv(x)) + shortcut): the neuron adds
    its synapses' integer sums a = sum_k W_k x_k before any shift (u = a << 6), so the sum is
    the float current I only if every path is in the same units. Each synapse k is therefore
    quantised at the neuron's S: w_k = 2 round(S g W_k / 128) (g the input gain, per channel
    or per neuron, applied to every path alike, as H = decay V + g (I_1 + I_2) states it); an
    identity shortcut is W = 1 (1x1 depthwise ones on a map, the identity matrix on a vector),
    w = 2 round(S g / 128); the biases are summed before the one bias mantissa. S is limited
    by the largest |g W| over all paths, so no path's weights leave the 8-bit range."""
    name, node = core.name, core.neuron
    n_shape = core.shape
    gain = core.gain()
    as_conv = core.spatial  # convs on a map, no per-neuron gain: stay convs
    per_channel = core.channel_gain() if as_conv and gain is not None else None
    convs, ws = [], []
    for synapse in core.synapses:
        if as_conv:
            conv = synapse.conv_node  # the identity on a map: 1x1 depthwise ones
            w = np.asarray(conv.weight, np.float64)
            if per_channel is not None:  # (residual cores only: a chain's is folded)
                w = w * per_channel[:, None, None, None]
            convs.append(conv)
        else:
            w = synapse.matrix()  # a conv unrolled: flat vectors stay in the IR's C-major order
            if gain is not None:
                w = w * gain[:, None]
        ws.append(w)
    biases = [b for b in (syn.bias_vector() for syn in core.synapses) if b is not None]
    b = None if not biases else biases[0] if len(biases) == 1 else np.sum(biases, axis=0)
    if b is not None and gain is not None:
        b = b * gain
    w = ws[0]
    w_max = max(float(np.abs(x).max()) for x in ws) or 1.0
    limits = {"weights": 64 * W_MAX / w_max,
              "threshold": 64 * VTH_MANT_MAX / node.threshold if node.spiking else np.inf,
              "range": HEADROOM / max(h_max, 1e-12)}
    limited_by = min(limits, key=limits.get)
    scale = limits[limited_by]
    w_ints = [np.clip(2 * np.rint(scale * x / 128), -256, W_MAX).astype(np.int64) for x in ws]
    w_int = w_ints[0]
    dv, v_init, vth, decay_fixed = _neuron_arrays(node, scale, n_shape)
    bias_mant, clipped = None, 0
    if b is not None:
        raw = np.rint(scale * b / 64)
        clipped = int((np.abs(raw) > BIAS_MANT_MAX).sum())
        bias_mant = np.clip(raw, -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64).reshape(
            n_shape)
    if len(ws) > 1:  # the errors and bits over every path
        w = np.concatenate([x.ravel() for x in ws])
        w_int = np.concatenate([q.ravel() for q in w_ints])
    err = w_int * 64 / scale - w
    kind = "conv" if as_conv else "dense"
    first = convs[0] if as_conv else None
    layer = FixedLayer(name, kind, n_shape, w_ints[0], dv, vth, v_init,
                       scale, node.spiking, bias_mant=bias_mant,
                       i_decay=current_decay_fixed(node, n_shape),
                       stride=tuple(first.stride) if as_conv else (1, 1),
                       padding=tuple(first.padding) if as_conv else (0, 0),
                       groups=int(first.groups) if as_conv else 1,
                       merge=core.merge or "",
                       synapses=[FixedSynapse(
                           syn.name, syn.origin, kind, q,
                           tuple(conv.stride) if as_conv else (1, 1),
                           tuple(conv.padding) if as_conv else (0, 0),
                           int(conv.groups) if as_conv else 1)
                           for syn, q, conv in zip(core.synapses[1:], w_ints[1:],
                                                   convs[1:] if as_conv else
                                                   [None] * (len(ws) - 1), strict=True)])
    syn_name = "+".join(syn.name for syn in core.synapses)
    rep = {
        "layer": name, "synapse": syn_name, "kind": layer.kind, "scale": scale,
        "limited_by": limited_by, "vth_mant": vth,
        "threshold_error": abs(vth * 64 / scale - node.threshold) if node.spiking else 0.0,
        "weight_bits": int(np.ceil(np.log2(np.abs(w_int).max() // 2 + 1))) + 1,
        "weight_max_error": float(np.abs(err).max()),
        "weight_rms_error_relative": float(np.sqrt((err ** 2).mean()) / w_max),
        "weights_zeroed": int(((w_int == 0) & (w != 0)).sum()),
        "bias_clipped": clipped,
        "decay_max_error": float(np.abs(decay_fixed - np.asarray(node.decay)).max()),
        "decays": int(len(np.unique(dv))), "membrane_calib_max": h_max,
    }
    return layer, rep


def _positive_thresholds(graph: Graph) -> None:
    for name, node in graph.ordered():
        if isinstance(node, ir.Neuron) and node.spiking and not float(node.threshold) > 0:
            raise QuantError(f"layer {name!r}: threshold {float(node.threshold):g} must be > 0 "
                             "for Loihi's LIF (it resets to 0 and fires above a threshold "
                             "mantissa >= 0; a threshold <= 0 gives a negative scale); fix the "
                             "model's threshold and reset (V_th > V_reset)")


def check_bounds(graph: Graph, report: list[dict]) -> list[dict]:
    """States the bounds in every report row (`vth_mant_min`, `weight_bits_min`; None where one
    does not apply) and raises QuantError at the first layer that breaks one, naming it, what
    limited its scale and the fix (module docstring: Bounds)."""
    for row in report:
        node = graph.nodes[row["layer"]]
        spiking, host = bool(node.spiking), row["kind"] == "host"
        row["vth_mant_min"] = VTH_MANT_MIN if spiking else None
        row["weight_bits_min"] = None if host else WEIGHT_BITS_MIN
        theta, where = float(node.threshold), f"layer {row['layer']!r}"
        if spiking and row["vth_mant"] < VTH_MANT_MIN:
            if host:
                cause = (f"the largest calibration current {row['current_calib_max']:.3g} is "
                         f"more than {BIAS_MANT_MAX / (HOST_MARGIN * VTH_MANT_MIN):.0f} times "
                         f"the threshold {theta:g}")
            elif row.get("limited_by") == "range":
                cause = (f"the membrane reaches {row['membrane_calib_max']:.3g} on the "
                         f"calibration inputs, more than {HEADROOM / 64 / VTH_MANT_MIN:.0f} "
                         f"times the threshold {theta:g}")
            else:
                cause = (f"the largest weight is more than {W_MAX / VTH_MANT_MIN:.3g} times "
                         f"the threshold {theta:g} (8-bit weights at full scale)")
            raise QuantError(
                f"{where}: threshold mantissa {row['vth_mant']} < {VTH_MANT_MIN} (4 bits): "
                f"the threshold {theta:g} would be rounded to "
                f"{row['vth_mant'] * 64 / row['scale']:.3g}, because {cause}; fix: retrain "
                "with smaller weights / currents relative to the threshold (weight decay, "
                "clipping), or a larger threshold")
        bits = row.get("weight_bits")
        if not host and isinstance(bits, int) and bits < WEIGHT_BITS_MIN:
            # |w| = 2 round(S W / 128) >= 2^(bits - 1) needs W >= 128 (2^(bits - 2) - 1/2) / S
            least = 128 * (2 ** (WEIGHT_BITS_MIN - 2) - 0.5) / row["scale"]
            raise QuantError(
                f"{where}: weights keep {bits} bit(s) < {WEIGHT_BITS_MIN} of their 8-bit "
                f"mantissa at scale {row['scale']:.6g} (limited by {row.get('limited_by')}): "
                f"the largest weight must be at least {least:.3g} ({least / theta:.2g} of the "
                f"threshold {theta:g}) to keep {WEIGHT_BITS_MIN} bits, so the layer would run "
                "on (nearly) all-zero weights; fix: its weights are too small for its "
                "threshold (a dead layer): check or retrain them")
    return report


POOL_WEIGHT = 128  # netx re-derives a dense exponent from the integers: 128 keeps it 0


def _pool_layer(core: PoolCore) -> FixedLayer:
    name, node, in_shape = core.name, core.node, core.in_shape
    n_shape = tuple(core.shape)
    zeros = np.zeros(n_shape, np.int64)
    if core.spatial:
        c = in_shape[0]
        w = np.full((c, 1, *node.kernel), POOL_WEIGHT, np.int64)
        return FixedLayer(name, "conv", n_shape, w, zeros + 4095, 0, zeros, 1.0, pool=True,
                          stride=tuple(node.stride), padding=tuple(node.padding), groups=c)
    w = pool_matrix(node, in_shape).astype(np.int64) * POOL_WEIGHT
    return FixedLayer(name, "dense", n_shape, w, zeros + 4095, 0, zeros, 1.0, pool=True)


# --- file format ------------------------------------------------------------------------------

FIXED_MAGIC = "snnexport-fixed-ir"
FIXED_VERSION = 4  # 2: residual merges (sources, further synapses, merges); a chain writes 1
# 3: current-based layers (i_decay), written only by a net that has one (an older reader
# refuses it rather than drop the current)
_RESIDUAL_FIELDS = ("source", "merge", "synapses")  # absent from a chain's file (version 1)
# 4: a net read from a netx file (delays, netx's timing and arguments; FixedNet.netx_file)
_NETX_FIELDS = ("netx_file", "lava_timing", "input_drive", "num_layers", "reset_interval",
                "reset_offset", "notes")


def save_fixed(net: FixedNet, path) -> Path:
    """One .npz: a JSON header (format, version, scalars) and the arrays of every layer.
    A chain is written as version 1 (what it always was); a net with residual merges as
    version 2, which older readers refuse rather than misread."""
    version = 4 if net.netx_file else 3 if net.current_based else 1 if net.is_chain else 2
    arrays, header = {}, {"format": FIXED_MAGIC, "version": version,
                          "input_shape": list(net.input_shape), "time_steps": net.time_steps,
                          "readout": net.readout, "population": net.population,
                          "report": net.report, "layers": []}
    for k, layer in enumerate(net.layers):
        meta = {}
        for key, value in asdict(layer).items():
            if key in _RESIDUAL_FIELDS:
                continue
            if isinstance(value, np.ndarray):
                arrays[f"{k}/{key}"] = value
            elif value is not None and not (key == "dilation" and value == (1, 1)):
                meta[key] = list(value) if isinstance(value, tuple) else value
        if layer.source:
            meta["source"] = layer.source
        if layer.merge:
            meta["merge"] = layer.merge
        for j, syn in enumerate(layer.synapses):
            arrays[f"{k}/synapse{j}/weight"] = np.asarray(syn.weight)
            meta.setdefault("synapses", []).append(
                {"name": syn.name, "source": syn.source, "kind": syn.kind,
                 "stride": list(syn.stride), "padding": list(syn.padding),
                 "groups": int(syn.groups)})
        header["layers"].append(meta)
    if net.merges:
        header["merges"] = [{"name": m.name, "op": m.op, "inputs": list(m.inputs),
                             "shape": list(m.shape), "peak": int(m.peak)} for m in net.merges]
    if net.netx_file:  # version 4: a net read from a netx file
        header["netx"] = {key: getattr(net, key) for key in _NETX_FIELDS}
    arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def load_fixed(path) -> FixedNet:
    path = Path(path)
    try:
        data = np.load(path)
        header = json.loads(data["header"].tobytes())
    except Exception as exc:
        raise QuantError(f"{path}: not a snnexport fixed-point IR file ({exc})") from None
    if header.get("format") != FIXED_MAGIC or \
            header.get("version") not in range(1, FIXED_VERSION + 1):
        raise QuantError(f"{path}: not a snnexport fixed-point IR file of version 1 to "
                         f"{FIXED_VERSION}")
    layers = []
    for k, meta in enumerate(header["layers"]):
        syns = meta.pop("synapses", [])
        kw = {key: tuple(v) if isinstance(v, list) else v for key, v in meta.items()}
        for key in ("weight", "dv", "v_init", "bias_mant", "bias", "gain", "i_decay", "delay"):
            if f"{k}/{key}" in data:
                kw[key] = data[f"{k}/{key}"]
        kw["synapses"] = [FixedSynapse(sm["name"], sm["source"], sm["kind"],
                                       data[f"{k}/synapse{j}/weight"], tuple(sm["stride"]),
                                       tuple(sm["padding"]), int(sm["groups"]))
                          for j, sm in enumerate(syns)]
        layers.append(FixedLayer(**kw))
    merges = [FixedMerge(m["name"], m["op"], tuple(m["inputs"]), tuple(m["shape"]),
                         int(m["peak"])) for m in header.get("merges", [])]
    return FixedNet(layers, tuple(header["input_shape"]), header["time_steps"],
                    header["readout"], header["population"], header["report"], merges,
                    **header.get("netx", {}))


__all__ = ["FixedLayer", "FixedMerge", "FixedNet", "FixedSynapse", "QuantError", "load_fixed",
           "quantize", "save_fixed", "host_current_float"]
