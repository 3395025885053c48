"""The fixed-point IR: a folded IR quantised for Loihi 2's bit-accurate neuron (lava-nc 0.10
`PyLifModelBitAcc` with `Dense`/`Conv` in `fixed_pt`), and the calibration that builds it.

Per neuron layer k, with integer state v (24 bit) and a layer scale S_k (v units per unit of
the float IR's membrane):

    a_t   = sum_j w[i, j] s_{t-1}[j]                (integer weights; one step per hop)
    u_t   = wrap24(a_t << 6)                        (du = 4095: the current does not persist)
    v_t   = clip24(trunc((4096 - dv) v_{t-1} / 4096) + u_t + (bias_mant << 6))
    s_t   = [v_t > vth_mant << 6];  v_t = 0 where s_t   (hard reset; soft reset is refused)
    v_-1  = v_init

trunc rounds toward zero, clip24 saturates at +-(2^23 - 1), wrap24 folds u into 24 bits (these
are Lava's rules, copied in `emulator.py`). Integer strict-`>` semantics: this IR is the
reference the chip is checked against; its accuracy is compared with the float model.

One layer per core of `snnexport.hw.cores.lower` (which pairs each synapse with its neuron layer
and decides which convs stay convs); a core fed by several synapses (a residual merge) is
refused. Quantisation (per layer, from the weights and from the membrane ranges the float IR
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
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write
from ..hw.cores import Core, HardwareLoweringError, PoolCore, lower, pool_matrix
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..sim.reference import STATELESS, simulate

W_MAX = 254  # largest even 8-bit-mantissa weight (mixed sign)
BIAS_MANT_MAX = 4095
VTH_MANT_MAX = (1 << 17) - 1
STATE_MAX = (1 << 23) - 1
HEADROOM = 2 ** 22  # |v| the calibrated membranes may reach: half the 24-bit range
HOST_MARGIN = 1.5


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
    weight [out, in] on the flat (C-major) input. `pool`: an OR-pool's helper neurons."""

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

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class FixedNet:
    layers: list[FixedLayer]
    input_shape: tuple[int, ...]
    time_steps: int
    readout: str
    population: int
    report: list[dict] = field(default_factory=list)  # per-layer quantisation report


# --- calibration ------------------------------------------------------------------------------

@torch.no_grad()
def quantize(graph: Graph, calib_x: torch.Tensor) -> FixedNet:
    """The folded IR `graph` as a FixedNet, scales calibrated on `calib_x` (real inputs): one
    layer per core of `snnexport.hw.cores.lower`."""
    if not graph.metadata.get("folded"):
        raise QuantError("quantise the folded IR (snnexport fold)")
    try:
        cores = lower(graph)
        synapses = {c.name: c.synapse("fixed point") for c in cores.neuron_cores}
    except HardwareLoweringError as e:
        raise QuantError(str(e)) from None
    ref = simulate(graph, calib_x, dtype=torch.float64, record_membrane=True)
    layers: list[FixedLayer] = []
    report: list[dict] = []
    for core in cores.cores:
        if isinstance(core, PoolCore):
            layers.append(_pool_layer(core))
            continue
        name = core.name
        h_max = float(ref.membrane[name].abs().max()) if name in ref.membrane else 0.0
        if core.host:
            layer, rep = _host_layer(core, synapses[name], calib_x, cores.input_shape, h_max)
        else:
            layer, rep = _hop_layer(core, synapses[name], h_max)
        layers.append(layer)
        report.append(rep)
    return FixedNet(layers, cores.input_shape, int(graph.metadata["time_steps"]),
                    cores.readout, cores.population, report)


def _neuron_arrays(node: ir.Neuron, scale: float, n_shape):
    dv = np.clip(np.rint(4096 * (1 - np.asarray(node.decay, np.float64))), 0, 4095)
    dv = np.broadcast_to(dv, n_shape).astype(np.int64).copy()
    v0 = np.broadcast_to(np.asarray(node.v_init, np.float64), n_shape)
    v_init = np.clip(np.rint(scale * v0), -STATE_MAX, STATE_MAX).astype(np.int64)
    vth = int(np.rint(scale * node.threshold / 64)) if node.spiking else VTH_MANT_MAX
    if vth > VTH_MANT_MAX:
        raise QuantError(f"threshold mantissa {vth} > 17 bits")  # prevented by the scale
    decay_fixed = (4096 - dv) / 4096
    return dv, v_init, vth, decay_fixed


def _host_layer(core: Core, synapse, calib_x, input_shape, h_max):
    name, node, syn_name, syn = core.name, core.neuron, synapse.name, synapse.node
    x_seq = torch.as_tensor(calib_x, dtype=torch.float64)
    current = host_current_float(syn, node.gain, x_seq, tuple(input_shape))
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
                       groups=int(getattr(syn, "groups", 1)))
    step = 64 / scale
    return layer, {
        "layer": name, "synapse": syn_name, "kind": "host", "scale": scale,
        "vth_mant": vth, "threshold_error": abs(vth * 64 / scale - node.threshold),
        "weight_bits": "float (host)", "current_step": step,
        "current_calib_max": i_max, "current_limit": BIAS_MANT_MAX * step,
        "decay_max_error": float(np.abs(decay_fixed - np.asarray(node.decay)).max()),
        "decays": int(len(np.unique(dv))), "membrane_calib_max": h_max,
    }


def host_current_float(syn, gain, x_seq: torch.Tensor, input_shape) -> torch.Tensor:
    """g (W1 x_t + b1) in float64, [T, B, *shape] or [B, *shape] for static input."""
    x = x_seq.to(torch.float64)
    lead = x.shape[:x.dim() - len(input_shape)]
    y = STATELESS[type(syn)](syn, x.reshape(-1, *input_shape), torch.float64)
    y = y.reshape(*lead, *y.shape[1:])
    if gain is not None:
        y = y * torch.as_tensor(np.asarray(gain, np.float64))
    return y


def _hop_layer(core: Core, synapse, h_max):
    name, node, syn_name, syn = core.name, core.neuron, synapse.name, synapse.node
    n_shape = core.shape
    gain = core.gain()
    as_conv = core.spatial  # a conv on a map, no per-neuron gain: stays a conv
    if as_conv:
        w = np.asarray(syn.weight, np.float64)
    else:
        w = synapse.matrix()  # a conv unrolled: flat vectors stay in the IR's C-major order
        if gain is not None:
            w = w * gain[:, None]
    b = synapse.bias_vector()
    if b is not None and gain is not None:
        b = b * gain
    w_max = float(np.abs(w).max()) or 1.0
    limits = {"weights": 64 * W_MAX / w_max,
              "threshold": 64 * VTH_MANT_MAX / node.threshold if node.spiking else np.inf,
              "range": HEADROOM / max(h_max, 1e-12)}
    limited_by = min(limits, key=limits.get)
    scale = limits[limited_by]
    w_int = np.clip(2 * np.rint(scale * w / 128), -256, W_MAX).astype(np.int64)
    dv, v_init, vth, decay_fixed = _neuron_arrays(node, scale, n_shape)
    bias_mant, clipped = None, 0
    if b is not None:
        raw = np.rint(scale * b / 64)
        clipped = int((np.abs(raw) > BIAS_MANT_MAX).sum())
        bias_mant = np.clip(raw, -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64).reshape(
            n_shape)
    err = w_int * 64 / scale - w
    layer = FixedLayer(name, "conv" if as_conv else "dense", n_shape, w_int, dv, vth, v_init,
                       scale, node.spiking, bias_mant=bias_mant,
                       stride=tuple(syn.stride) if as_conv else (1, 1),
                       padding=tuple(syn.padding) if as_conv else (0, 0),
                       groups=int(syn.groups) if as_conv else 1)
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
FIXED_VERSION = 1


def save_fixed(net: FixedNet, path) -> Path:
    """One .npz: a JSON header (format, version, scalars) and the arrays of every layer."""
    arrays, header = {}, {"format": FIXED_MAGIC, "version": FIXED_VERSION,
                          "input_shape": list(net.input_shape), "time_steps": net.time_steps,
                          "readout": net.readout, "population": net.population,
                          "report": net.report, "layers": []}
    for k, layer in enumerate(net.layers):
        meta = {}
        for key, value in asdict(layer).items():
            if isinstance(value, np.ndarray):
                arrays[f"{k}/{key}"] = value
            elif value is not None:
                meta[key] = list(value) if isinstance(value, tuple) else value
        header["layers"].append(meta)
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
    if header.get("format") != FIXED_MAGIC or header.get("version") != FIXED_VERSION:
        raise QuantError(f"{path}: not a snnexport fixed-point IR file of version "
                         f"{FIXED_VERSION}")
    layers = []
    for k, meta in enumerate(header["layers"]):
        kw = {key: tuple(v) if isinstance(v, list) else v for key, v in meta.items()}
        for key in ("weight", "dv", "v_init", "bias_mant", "bias", "gain"):
            if f"{k}/{key}" in data:
                kw[key] = data[f"{k}/{key}"]
        layers.append(FixedLayer(**kw))
    return FixedNet(layers, tuple(header["input_shape"]), header["time_steps"],
                    header["readout"], header["population"], header["report"])


__all__ = ["FixedLayer", "FixedNet", "QuantError", "load_fixed", "quantize", "save_fixed",
           "host_current_float"]
