"""Bit-accurate emulator of the fixed-point IR: Lava 0.10's `PyLifModelBitAcc` behind `Dense` /
`Conv` in `fixed_pt`, vectorised over batch and neurons (torch int64).

Lava's rules, as lava/proc/lif/models.py (AbstractPyLifModelFixed.subthr_dynamics) and
lava/proc/{dense,conv}/models.py write them, with du = 4095 (current not kept):
    a  = W s (Dense: int sum, `<< weight_exp`; Conv: the sum wrapped to 24 bit, signed_clamp)
    u  = a << 6, then wrapped: u - 2^24 if u > 2^23; u + 2^24 if u <= -2^23
    v  = sign(p) (|p| >> 12), p = v (4096 - dv)          (decay truncated toward zero)
    v  = clip(v + u + (bias_mant << 6), -(2^23 - 1), 2^23 - 1)
    s  = v > (vth_mant << 6);  v[s] = 0
A current-based layer (FixedLayer.i_decay) keeps its current, Lava's du = i_decay - 1, and its
synapse's bias is part of that current (the IR's J = current_decay J + W s + b), not of v:
    u  = wrap24(sign(p) (|p| >> 12) + (a << 6) + (bias_mant << 6)),  p = u_prev (4096 - i_decay)
    v  = clip(sign(q) (|q| >> 12) + u)
(`integer_current`, the netx emulator's too); its host layer's current is run on the host.
Delays: Lava's layer k answers k steps late (one per hop); the runners start every layer at
its own step (see lava/runner.py), so the emulator's step t is Lava's step t + k of layer k.
The synapse of every step is computed at once over T*B (exact: integer sums of 0/1 spikes
times |w| <= 256 are exact in float64), then the neuron recurrence loops over T.

Two implementations of the same rules, checked against each other bit for bit
(tests/test_integer_kernels.py):
  * `emulate_reference` (`emulate(..., reference=True)`): the plain one, Lava's formulas as
    written above in int64 (`synapse_sum`, `neuron_loop`), the version to read;
  * `emulate`: the fast path. Synapses on an exact GEMM for all T*B steps at once (`gemm_kernel`
    picks it per synapse from a bound on the sum): torch._int_mm (int8 x int8 -> int32, oneDNN's
    VNNI kernel) on the spikes and the halved even weights w / 2 in [-128, 127], where
    fan_in * 128 * max|x| < 2^31; else a float32 GEMM where fan_in * max|w| * max|x| < 2^24
    (every partial sum an integer float32 holds exactly, in any summation order), else float64
    (< 2^53). Convs as im2col + that GEMM (groups 1), depthwise convs (the OR-pools) as k*k
    shifted slices multiplied and added (elementwise, exact below the same bounds). The neuron
    loop in float64 on preallocated buffers (integers below 2^53 are exact): the decay
    trunc(v (4096 - dv) / 4096) as a product (|v| (4096 - dv) < 2^35: exact) and a truncating
    division by 2^12 (exact); the reset as a multiply by (v <= vth). Measured on the bundled
    MNIST-5k model by bench/integer_speed.py.

Residual nets (fixed.py): a layer takes the output of its `source` (a layer or a merge; the
layer before it when ""); a merge of spike trains is computed in integers when first taken
(ADD a + b, graded; AND a b; IAND (1 - a) b); a layer with further synapses adds their integer
sums to its own before the shift, a = sum_k W_k x_k (all at the layer's scale), then wraps
u = a << 6 as Lava's LIF wraps any input.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.neurons import KINDS, WRAP, kind_of, wrap24
from ..readout import readout_scores
from ..sim.reference import SimResult
from .fixed import (
    BIAS_MANT_MAX,
    STATE_MAX,
    FixedLayer,
    FixedMerge,
    FixedNet,
    FixedSynapse,
    host_current_float,
)


@dataclass
class EmulatorStats:
    """Per layer: membranes clipped at the 24-bit limit, currents wrapped, host current
    mantissas clipped at 13 bits."""

    v_clipped: dict[str, int] = field(default_factory=dict)
    u_wrapped: dict[str, int] = field(default_factory=dict)
    bias_clipped: dict[str, int] = field(default_factory=dict)
    # the last batch only: where any of the three happened, [T, B, n] bool per layer (what lets
    # parity call a divergence at such a neuron an overflow)
    saturated: dict[str, torch.Tensor] = field(default_factory=dict)

    def mark(self, name: str, where: torch.Tensor) -> None:
        where = where.reshape(*where.shape[:2], -1)
        old = self.saturated.get(name)
        self.saturated[name] = where if old is None else old | where


def host_bias_mant(layer: FixedLayer, x_seq: torch.Tensor, input_shape,
                   dtype=torch.int64, t_steps: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The host layer's current as a 13-bit bias mantissa (`dtype`: int16 holds every one),
    same shape as the current, and the rounded current before the clip (float64). A
    current-based host layer's current is run on the host over `t_steps` steps
    (fixed.host_current_float): [T, B, *shape]."""
    gain = layer.gain
    syn = _host_synapse(layer)
    current = host_current_float(syn, gain, x_seq, input_shape, layer.i_decay, t_steps)
    # in place: the current is this call's own (two fewer passes over a float64 layer, which
    # a deployment pays per batch: onnx_fixed.ONNXFixedTarget, bench/integer_speed.py)
    raw = current.mul_(layer.scale / 64).round_()
    return raw.clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX).to(dtype), raw


def _host_synapse(layer: FixedLayer):
    from ..ir import nodes as ir

    if layer.host_kind == "conv":
        return ir.Conv2d(layer.weight, layer.bias, layer.stride, layer.padding, layer.groups)
    return ir.Dense(layer.weight, layer.bias)


def synapse_sum(layer: FixedLayer | FixedSynapse, s: torch.Tensor,
                out_shape=None) -> torch.Tensor:
    """Integer synaptic sums [N, *shape] for input spikes s [N, *in] (0/1, or the integer
    values of a SEW ADD). A further synapse (FixedSynapse) of a layer gives that layer's
    `out_shape`."""
    out_shape = tuple(layer.shape) if out_shape is None else tuple(out_shape)
    w = torch.as_tensor(layer.weight, dtype=torch.float64)
    if layer.kind == "conv":
        a = F.conv2d(s.to(torch.float64), w, None, layer.stride, layer.padding,
                     getattr(layer, "dilation", (1, 1)), layer.groups)
        a = a.round().to(torch.int64)
        return (a + WRAP) % (2 * WRAP) - WRAP  # Lava's Conv: signed_clamp(x, 24)
    a = (s.flatten(1).to(torch.float64) @ w.T).round().to(torch.int64)
    e = getattr(layer, "weight_exp", 0)
    a = a << e if e >= 0 else a >> -e
    return a.reshape(len(s), *out_shape)


def merge_values(merge: FixedMerge, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A SEW merge in integers (int64 [T, B, *shape]): a + b, a b, or (1 - a) b."""
    a = a.reshape(*a.shape[:2], *merge.shape).to(torch.int64)
    b = b.reshape(*b.shape[:2], *merge.shape).to(torch.int64)
    if merge.op == "add":
        return a + b
    if merge.op == "and":
        return a * b
    if merge.op == "iand":
        return (1 - a) * b
    raise ValueError(f"merge {merge.name!r}: unknown op {merge.op!r}")


def integer_current(i_decay, a64: torch.Tensor, fast: bool = False,
                    kind: str = "cuba_lif") -> tuple[torch.Tensor, torch.Tensor]:
    """Loihi's integer synaptic current (Lava's PyLifModelBitAcc, du = i_decay - 1), over
    a64 [T, B, *shape], the input already shifted (a << 6): the integer current step of
    `kind` (ir/neurons.py int_current, 'cuba_lif'):
        u_t = wrap24(sign(p) (|p| >> 12) + a64_t),  p = u_{t-1} (4096 - i_decay),  u_-1 = 0
    i_decay: per neuron (broadcast against a step) or a number, 1..4096 (4096: u_t =
    wrap24(a64_t), the current of one step). Plain int64 (`fast` False), or float64 on
    integers (int_current_fast): the same values, checked against each other in tests.
    Returns (u, where the wrap acted), [T, B, *shape] each."""
    step = KINDS[kind].need("int_current_fast" if fast else "int_current", "the emulator")
    keep = torch.as_tensor(4096 - np.asarray(i_decay, np.int64),
                           dtype=torch.float64 if fast else torch.int64)
    out = torch.empty_like(a64)
    acted = torch.zeros(a64.shape, dtype=torch.bool)
    u = torch.zeros_like(a64[0])
    for t in range(len(a64)):
        u, cur = step(keep, u, a64[t])
        acted[t] = u != cur
        out[t] = u
    return out, acted


def neuron_loop(layer: FixedLayer, u: torch.Tensor | None, bias: torch.Tensor,
                stats: EmulatorStats | None = None):
    """u [T, B, *shape] (already wrapped) or None; bias int64 broadcastable to [T, B, *shape]
    (the host layer's varies per step). Returns (H, S) int64 / bool, [T, B, *shape]: the
    layer's kind's integer membrane step (ir/neurons.py int_membrane, int_fire), plain."""
    kind = kind_of(layer)
    membrane = kind.need("int_membrane", f"layer {layer.name!r}: the emulator")
    t_steps = bias.shape[0] if u is None else u.shape[0]
    b = u.shape[1] if u is not None else bias.shape[1]
    shape = (b, *layer.shape)
    keep = torch.as_tensor(4096 - layer.dv, dtype=torch.int64)
    vth = int(layer.vth_mant) << 6
    v = torch.as_tensor(layer.v_init, dtype=torch.int64).expand(shape).clone()
    hs, ss, clipped = [], [], []
    for t in range(t_steps):
        v = membrane(keep, v, (u[t] if u is not None else 0) + (
            bias[t] if bias.dim() > len(layer.shape) else bias))
        clipped.append(v.abs() > STATE_MAX)
        v = v.clamp(-STATE_MAX, STATE_MAX)
        hs.append(v)
        # Lava's rule holds for a non-spiking readout too: its vth_mant is the 17-bit maximum,
        # so only a membrane at the 24-bit limit fires (and is counted in v_clipped)
        s, v = kind.int_fire(v, vth)
        ss.append(s)
    if stats is not None:
        clipped = torch.stack(clipped)
        stats.v_clipped[layer.name] = stats.v_clipped.get(layer.name, 0) + int(clipped.sum())
        stats.mark(layer.name, clipped)
    return torch.stack(hs), torch.stack(ss)


def _input_sequence(net: FixedNet, x) -> tuple[torch.Tensor, int, int]:
    """(x as [T or 1, B, *input] float64, T, B): a static input is one current for every step."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() == len(net.input_shape) + 1:
        return x.unsqueeze(0), net.time_steps, x.shape[0]
    return x, x.shape[0], x.shape[1]


@torch.no_grad()
def emulate_reference(net: FixedNet, x: torch.Tensor, stats: EmulatorStats | None = None,
                      ir_units: bool = True) -> SimResult:
    """The plain emulator (Lava's rules as written, int64; `emulate` is the fast path checked
    against it). Runs the fixed-point IR on x ([B, *input] static or [T, B, *input] frames).
    Spikes per layer (pool helpers left out), membranes H (before reset) in IR units (v / S)
    or raw."""
    if net.lava_timing:  # a lava-dl netx file, in netx's own timing
        return emulate_lava_timing(net, x, stats, reference=True)
    x_seq, t_steps, b = _input_sequence(net, x)
    spikes, membrane = {}, {}
    prev = None
    out_seq = None
    if stats is not None:
        stats.saturated.clear()  # where saturation happened: this batch only
    values: dict[str, torch.Tensor] = {}  # each layer's (and merge's) output, residual nets
    merges = {m.name: m for m in net.merges}

    def value(name: str) -> torch.Tensor:
        if name not in values:
            m = merges[name]
            values[name] = merge_values(m, value(m.inputs[0]), value(m.inputs[1]))
        return values[name]

    for layer in net.layers:
        if layer.kind == "host":
            mant, raw = host_bias_mant(layer, x_seq, net.input_shape, t_steps=t_steps)
            bias = (mant << 6).expand(t_steps, *mant.shape[1:])
            if stats is not None:
                over = (raw.abs() > BIAS_MANT_MAX).expand(bias.shape)
                stats.bias_clipped[layer.name] = stats.bias_clipped.get(layer.name, 0) + int(
                    over.sum())
                stats.mark(layer.name, over)
            h, s = neuron_loop(layer, None, bias, stats)
        else:
            x_in = value(layer.source) if layer.source else prev
            a = synapse_sum(layer, x_in.flatten(0, 1)).reshape(t_steps, b, *layer.shape)
            for syn in layer.synapses:  # a residual merge: every path at the layer's scale
                a = a + synapse_sum(syn, value(syn.source).flatten(0, 1), layer.shape).reshape(
                    t_steps, b, *layer.shape)
            u = a << 6
            cuba = kind_of(layer).has_current
            if cuba:  # current-based: the current (its bias too) decays, wraps
                if layer.bias_mant is not None:
                    u = u + (torch.as_tensor(layer.bias_mant, dtype=torch.int64) << 6)
                wrapped, acted = integer_current(layer.i_decay, u)
            else:
                wrapped = wrap24(u)
                acted = wrapped != u
            if stats is not None:
                stats.u_wrapped[layer.name] = stats.u_wrapped.get(layer.name, 0) + int(
                    acted.sum())
                stats.mark(layer.name, acted)
            bias = torch.zeros((), dtype=torch.int64) if layer.bias_mant is None or cuba else \
                torch.as_tensor(layer.bias_mant, dtype=torch.int64) << 6
            h, s = neuron_loop(layer, wrapped, bias, stats)
        prev = s
        if not net.is_chain:
            values[layer.name] = s
        if not layer.pool:
            if layer.spiking:
                spikes[layer.name] = s.to(torch.float64)
            membrane[layer.name] = h.to(torch.float64) / (layer.scale if ir_units else 1.0)
            out_seq = s.to(torch.float64) if layer.spiking else h.to(torch.float64) / layer.scale
    voted = out_seq.reshape(t_steps, b, -1, net.population).mean(-1)
    return SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                     membrane)


# --- the fast path (module docstring) ----------------------------------------------------------

F32_EXACT = 1 << 24  # |integer| below this: exact in float32
F64_EXACT = 1 << 53
I32_MAX = (1 << 31) - 1
GEMMS = ("auto", "int8", "float")


@functools.cache
def int8_gemm_native() -> bool:
    """Whether torch._int_mm runs an optimised int8 GEMM here: ATen's _int_mm_out_cpu calls
    oneDNN only on a CPU with AVX512-VNNI (vpdpbusd: int32 accumulation, no int16 saturation),
    else a scalar loop (exact too, but slower than a float GEMM)."""
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the float GEMM
        return False
    return "avx512_vnni" in flags.split()


def float32_gemm_exact() -> bool:
    """float32 GEMMs run in IEEE single precision: no TF32 / BF16 downconversion allowed
    (torch.set_float32_matmul_precision, torch.backends.*.fp32_precision)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    settings = [getattr(torch.backends, "fp32_precision", "none"),
                getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", "none")]
    return all(p in ("none", "ieee") for p in settings)


def gemm_kernel(weight: np.ndarray, fan_in: int, peak: int, gemm: str = "auto") -> str:
    """The fastest exact kernel for sums of at most `fan_in` products w x, |x| <= peak:
    'int8' (torch._int_mm on x and w / 2: the weights even in [-256, 254], |x| <= 127 and
    fan_in * 128 * peak < 2^31, the int32 accumulator's bound), 'float32' (every partial sum
    below 2^24: fan_in * max|w| * peak < 2^24) or 'float64' (below 2^53). `gemm` 'float' never
    picks int8; 'int8' picks it where it is exact even without VNNI (ATen's exact loop)."""
    if gemm not in GEMMS:
        raise ValueError(f"gemm {gemm!r}: one of {GEMMS}")
    w = np.asarray(weight)
    w_max = int(np.abs(w).max()) if w.size else 0
    even8 = bool(w.size) and not (w % 2).any() and w.min() >= -256 and w.max() <= 254
    if (gemm == "int8" or (gemm == "auto" and int8_gemm_native())) and even8 \
            and peak <= 127 and fan_in * 128 * peak <= I32_MAX:
        return "int8"
    bound = fan_in * w_max * peak
    if bound < F32_EXACT and float32_gemm_exact():
        return "float32"
    if bound >= F64_EXACT:
        raise ValueError(f"synaptic sums up to {bound} are not exact in float64")
    return "float64"


def _peak(x: torch.Tensor) -> int:
    if x.dtype == torch.bool:
        return 1
    return int(x.abs().max()) if x.numel() else 0


_DTYPES = {"int8": torch.int8, "float32": torch.float32, "float64": torch.float64}


def _gemm(cols: torch.Tensor, w_mat: np.ndarray, kernel: str) -> torch.Tensor:
    """cols [M, K] (in the kernel's dtype) @ w_mat [K, out] (the integer weights): int32 sums
    of w / 2 for 'int8' (times 2 is the caller's), else float sums (exact integers)."""
    if kernel == "int8":  # w / 2 is exact (even weights)
        return torch._int_mm(cols, torch.from_numpy(np.ascontiguousarray(w_mat // 2).astype(
            np.int8)))
    return cols @ torch.from_numpy(np.ascontiguousarray(w_mat)).to(cols.dtype)


def _im2col(x: torch.Tensor, kh, kw, stride, padding, dtype) -> torch.Tensor:
    """x [N, C, H, W] -> [N*Ho*Wo, kh*kw*C] in `dtype`, columns ordered (i, j, c): the
    padded map copied channels-last once, each row a strided window of it."""
    (sh, sw), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xp = torch.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=dtype)
    xp[:, ph:ph + h, pw:pw + w, :] = x.permute(0, 2, 3, 1)
    row = xp.stride(1)
    win = xp.as_strided((n, ho, wo, kh, kw * c), (xp.stride(0), sh * row, sw * c, row, 1))
    return win.reshape(n * ho * wo, kh * kw * c), ho, wo


def _depthwise(x: torch.Tensor, w: np.ndarray, stride, padding, peak: int) -> torch.Tensor:
    """A depthwise conv (groups = channels: the OR-pools) as k*k shifted slices, float64.
    Equal weights per channel (a pool): the slices summed in the smallest integer type that
    holds k*k*peak, then times the weight; else multiplied and added in float32 / float64
    (exact below the bound `gemm_kernel` states)."""
    c, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    equal = bool((w == w[:, :, :1, :1]).all())
    if equal:
        most = kh * kw * peak
        dtype = torch.int8 if most <= 127 else torch.int16 if most < 1 << 15 else torch.int32
    else:
        dtype = _DTYPES[gemm_kernel(w, kh * kw, peak, "float")]
    xs = x.view(torch.int8) if x.dtype == torch.bool and dtype == torch.int8 else x.to(dtype)
    xp = F.pad(xs, (pw, pw, ph, ph)) if ph or pw else xs
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    a = None
    for i in range(kh):
        for j in range(kw):
            sl = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
            if equal:
                a = sl.clone() if a is None else a.add_(sl)
            else:
                wij = torch.from_numpy(w[:, 0, i, j].copy()).to(dtype).view(1, -1, 1, 1)
                a = sl * wij if a is None else a.addcmul_(sl, wij)
    a = a.to(torch.float64)
    if equal:
        a.mul_(torch.from_numpy(w[:, 0, 0, 0].astype(np.float64)).view(1, -1, 1, 1))
    return a


def _fast_synapse(layer: FixedLayer | FixedSynapse, x: torch.Tensor, out_shape,
                  gemm: str) -> torch.Tensor:
    """`synapse_sum` on an exact fast kernel: float64 [N, *out_shape] (a conv's sum wrapped
    to 24 bits as Lava's Conv wraps it)."""
    out_shape = tuple(out_shape)
    if getattr(layer, "weight_exp", 0) != 0 or getattr(layer, "dilation", (1, 1)) != (1, 1):
        # (the quantiser keeps exponent 0 and no dilation: netx files only; the plain path)
        return synapse_sum(layer, x, out_shape).to(torch.float64)
    w = np.asarray(layer.weight, np.int64)
    peak = _peak(x)
    n = len(x)
    if layer.kind != "conv":
        kernel = gemm_kernel(w, w.shape[1], peak, gemm)
        a = _gemm(x.flatten(1).to(_DTYPES[kernel]), w.T, kernel).to(torch.float64)
        if kernel == "int8":
            a.mul_(2)
        return a.reshape(n, *out_shape)
    c_out, c_in_g, kh, kw = w.shape
    groups = int(layer.groups)
    if groups == c_in_g * groups == c_out:  # depthwise (the OR-pools)
        a = _depthwise(x, w, layer.stride, layer.padding, peak)
    else:  # im2col + GEMM, per group
        kernel = gemm_kernel(w, c_in_g * kh * kw, peak, gemm)
        g_out = c_out // groups
        a = None
        for g in range(groups):
            cols, ho, wo = _im2col(x[:, g * c_in_g:(g + 1) * c_in_g], kh, kw, layer.stride,
                                   layer.padding, _DTYPES[kernel])
            wg = w[g * g_out:(g + 1) * g_out].transpose(0, 2, 3, 1).reshape(g_out, -1)
            acc = _gemm(cols, wg.T, kernel).view(n, ho, wo, g_out).permute(0, 3, 1, 2)
            if a is None:
                a = torch.empty((n, c_out, ho, wo), dtype=torch.float64)
            a[:, g * g_out:(g + 1) * g_out] = acc
        if kernel == "int8":
            a.mul_(2)
    a = a.reshape(n, *out_shape)
    lo, hi = torch.aminmax(a) if a.numel() else (torch.zeros(()), torch.zeros(()))
    if lo < -WRAP or hi >= WRAP:  # Lava's Conv: signed_clamp(x, 24) (the plain formula)
        a = ((a.to(torch.int64) + WRAP) % (2 * WRAP) - WRAP).to(torch.float64)
    return a


def _fast_current(layer: FixedLayer, a: torch.Tensor, stats: EmulatorStats | None):
    """u = wrap24(a << 6) (current-based: `integer_current`) plus the bias << 6, float64
    [T, B, *shape] (in place on a)."""
    u = a.mul_(64)
    if kind_of(layer).has_current:  # the bias feeds the current (FixedLayer.i_decay)
        if layer.bias_mant is not None:
            u.add_(torch.from_numpy(np.asarray(layer.bias_mant, np.int64) << 6).to(u.dtype))
        u, acted = integer_current(layer.i_decay, u, fast=True)
        if stats is not None:
            stats.mark(layer.name, acted)
            stats.u_wrapped[layer.name] = stats.u_wrapped.get(layer.name, 0) + int(acted.sum())
        return u.add_(0.0)
    lo, hi = torch.aminmax(u) if u.numel() else (torch.zeros(()), torch.zeros(()))
    wrapped = 0
    if hi > WRAP or lo <= -WRAP:  # Lava's LIF wraps u
        ui = u.to(torch.int64)
        w = wrap24(ui)
        if stats is not None:
            stats.mark(layer.name, w != ui)
        wrapped = int((w != ui).sum())
        u = w.to(torch.float64)
    if stats is not None:
        stats.u_wrapped[layer.name] = stats.u_wrapped.get(layer.name, 0) + wrapped
    if layer.bias_mant is not None:  # (adding to -0.0 gives +0.0 too)
        return u.add_(torch.from_numpy(np.asarray(layer.bias_mant, np.int64) << 6).to(
            torch.float64))
    return u.add_(0.0)  # -0.0 (a float sum of 0 x negative weights) as +0.0


def _fast_neurons(layer: FixedLayer, drive: torch.Tensor, t_steps: int,
                  stats: EmulatorStats | None, keep_h: bool, scale: float = 1.0):
    """`neuron_loop` in float64 on preallocated buffers: drive [T or 1, B, *shape] (u plus the
    bias, << 6 done). Returns (H / scale float64, or None unless keep_h; S bool),
    [T, B, *shape]. The clip at +-(2^23 - 1) is skipped where it cannot act: the decay never
    grows |v|, so |v_t| <= max|v_init| + t max|drive| before the clip. The layer's kind's
    integer membrane step, fast (ir/neurons.py int_membrane_fast)."""
    membrane = kind_of(layer).need("int_membrane_fast", f"layer {layer.name!r}: the emulator")
    shape = (drive.shape[1], *layer.shape)
    f64 = torch.float64
    keep = torch.from_numpy((4096 - np.asarray(layer.dv, np.int64)).astype(np.float64))
    vth = float(int(layer.vth_mant) << 6)
    v_init = np.asarray(layer.v_init, np.int64)
    v = torch.from_numpy(v_init).to(f64).expand(shape).clone()
    lo, hi = torch.aminmax(drive) if drive.numel() else (torch.zeros(()), torch.zeros(()))
    reach = int(np.abs(v_init).max(initial=0)) + t_steps * int(max(-lo, hi))
    clip = reach > STATE_MAX
    not_s = torch.empty(shape, dtype=f64)
    h = torch.empty((t_steps, *shape), dtype=f64) if keep_h else None
    ht = torch.empty(shape, dtype=f64) if clip else v  # this step's v before the reset
    s = torch.empty((t_steps, *shape), dtype=torch.bool)
    clipped = None
    if stats is not None:  # (all False where the clip cannot act)
        clipped = (torch.empty if clip else torch.zeros)((t_steps, *shape), dtype=torch.bool)
    per_step = drive.shape[0] > 1
    for t in range(t_steps):
        membrane(keep, v, drive[t] if per_step else drive[0])  # in place on v
        if clip:
            torch.clamp(v, -STATE_MAX, STATE_MAX, out=ht)
            if clipped is not None:
                torch.ne(v, ht, out=clipped[t])
        if h is not None and scale == 1.0:
            h[t].copy_(ht)
        elif h is not None:
            torch.div(ht, scale, out=h[t])
        torch.gt(ht, vth, out=s[t])
        torch.le(ht, vth, out=not_s)
        torch.mul(ht, not_s, out=v)  # v = 0 where it fired (ht > vth >= 0 there: +0.0)
    if stats is not None:
        stats.v_clipped[layer.name] = stats.v_clipped.get(layer.name, 0) + int(clipped.sum())
        stats.mark(layer.name, clipped)
    return h, s


@torch.no_grad()
def emulate(net: FixedNet, x: torch.Tensor, stats: EmulatorStats | None = None,
            ir_units: bool = True, *, reference: bool = False, gemm: str = "auto") -> SimResult:
    """Runs the fixed-point IR on x ([B, *input] static or [T, B, *input] frames). Spikes per
    layer (pool helpers left out), membranes H (before reset) in IR units (v / S) or raw.

    The fast path (module docstring), bit for bit `emulate_reference`'s result (which
    `reference=True` runs). `gemm`: 'auto' (int8 where this CPU has the fast int8 GEMM), 'int8'
    or 'float' (the float32 / float64 GEMMs only): which exact kernel the synapses take."""
    if reference:
        return emulate_reference(net, x, stats, ir_units)
    if gemm not in GEMMS:
        raise ValueError(f"gemm {gemm!r}: one of {GEMMS}")
    if net.lava_timing:  # a lava-dl netx file, in netx's own timing
        return emulate_lava_timing(net, x, stats, reference=False, gemm=gemm)
    x_seq, t_steps, b = _input_sequence(net, x)
    spikes, membrane = {}, {}
    prev = None
    out_seq = None
    if stats is not None:
        stats.saturated.clear()
    values: dict[str, torch.Tensor] = {}
    merges = {m.name: m for m in net.merges}

    def value(name: str) -> torch.Tensor:
        if name not in values:
            m = merges[name]
            values[name] = merge_values(m, value(m.inputs[0]), value(m.inputs[1]))
        return values[name]

    for layer in net.layers:
        if layer.kind == "host":
            mant, raw = host_bias_mant(layer, x_seq, net.input_shape, t_steps=t_steps)
            if stats is not None:
                over = (raw.abs() > BIAS_MANT_MAX).expand(t_steps, *mant.shape[1:])
                stats.bias_clipped[layer.name] = stats.bias_clipped.get(layer.name, 0) + int(
                    over.sum())
                stats.mark(layer.name, over)
            drive = (mant << 6).to(torch.float64)
        else:
            x_in = value(layer.source) if layer.source else prev
            a = _fast_synapse(layer, x_in.flatten(0, 1), layer.shape, gemm)
            for syn in layer.synapses:  # a residual merge: every path at the layer's scale
                a += _fast_synapse(syn, value(syn.source).flatten(0, 1), layer.shape, gemm)
            drive = _fast_current(layer, a.reshape(t_steps, b, *layer.shape), stats)
        h, s = _fast_neurons(layer, drive, t_steps, stats, keep_h=not layer.pool,
                             scale=layer.scale if ir_units else 1.0)
        prev = s
        if not net.is_chain:
            values[layer.name] = s
        if not layer.pool:
            if layer.spiking:
                spikes[layer.name] = out_seq = s.to(torch.float64)
            membrane[layer.name] = h  # v / S (ir_units), else v
            if not layer.spiking:
                out_seq = h if ir_units else h / layer.scale
    voted = out_seq.reshape(t_steps, b, -1, net.population).mean(-1)
    return SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                     membrane)


# --- netx's own timing (a lava-dl netx file: FixedNet.lava_timing) -----------------------------

def _lava_synapse(layer: FixedLayer, s: torch.Tensor, fast: bool, gemm: str) -> torch.Tensor:
    """a_t [T, B, *shape] of a layer in netx's timing: sum_d A_d,t-1-d, A_d = W_d s (the
    synapses of delay d; a dense layer's weight_exp shift acting on each A_d alone): each
    Dense / Conv answers one step late, plus its delay. int64, or (fast) float64 holding the
    same integers."""
    t_steps, b = s.shape[0], s.shape[1]
    flat = s.flatten(0, 1)
    w = np.asarray(layer.weight)
    if layer.delay is None:
        per_delay = {0: layer}
    else:
        per_delay = {int(d): dataclasses.replace(layer, weight=np.where(layer.delay == d, w, 0))
                     for d in np.unique(layer.delay).tolist() if (w[layer.delay == d] != 0).any()}
    out = torch.zeros((t_steps, b, *layer.shape), dtype=torch.float64 if fast else torch.int64)
    for d, syn in per_delay.items():
        a = (_fast_synapse(syn, flat, layer.shape, gemm) if fast else
             synapse_sum(syn, flat.to(torch.int64))).reshape(t_steps, b, *layer.shape)
        lag = 1 + d  # one step per hop (Lava's a_buff), plus the synapse's delay
        if lag < t_steps:
            out[lag:] += a[:t_steps - lag].to(out.dtype)
    return out


def _lava_neurons(layer: FixedLayer, a: torch.Tensor, bias: torch.Tensor, fast: bool,
                  stats: EmulatorStats | None):
    """Lava's LIF in netx's form over a [T, B, *shape] from rest: the current
    (`integer_current`; none kept where iDecay is 4096) and the membrane with the bias << 6
    added to v (`neuron_loop` / `_fast_neurons`). Returns u, H, s."""
    t_steps = a.shape[0]
    a64 = a * 64
    if layer.i_decay is None:
        u = wrap24(a64)
    else:
        u = integer_current(layer.i_decay, a64, fast=fast)[0]
    bias = bias * 64
    if fast:
        h, s = _fast_neurons(layer, u + bias.to(torch.float64), t_steps, stats, keep_h=True)
    else:
        h, s = neuron_loop(layer, u, bias.expand(t_steps, *u.shape[1:]), stats)
    return u, h, s


@torch.no_grad()
def emulate_lava_timing(net: FixedNet, x: torch.Tensor, stats: EmulatorStats | None = None,
                        *, reference: bool = False, gemm: str = "auto") -> SimResult:
    """A net read from a lava-dl netx file as `netx.hdf5.Network` runs it in Lava 0.10
    `fixed_pt`, from rest, every layer from step 0 (FixedNet.lava_timing), on x [T, B, *input]
    (integers: the Input block's a_in, or its bias mantissas when net.input_drive is 'bias',
    or 0/1 spikes into the first synapse). Per layer k:
        a_t = sum_d A_d,t-1-d (each synapse a step late plus its delay; the Input block's a_in
              is not delayed)
        u_t = wrap24(sign(p) (|p| >> 12) + (a_t << 6)),  p = u_{t-1} (4096 - iDecay)
        v_t = clip(sign(q) (|q| >> 12) + u_t + (bias << 6)),  q = v_{t-1} (4096 - vDecay)
        s_t = v_t > vThMant << 6;  v_t = 0 where s_t;  u_-1 = v_-1 = 0
    With netx's reset_interval (FixedNet.reset_steps) u and v are set to 0 before the steps
    where layer k resets (each stretch between resets runs from rest); synapses keep their
    buffers. `reference`: the plain int64 steps, else the fast float64 ones (the same
    values). SimResult as `emulate`'s, plus `.state` {layer: (u, v after the reset)} int64
    [T, B, n]: what Lava's LIF holds after each step."""
    x = torch.as_tensor(x)
    t_steps, b = x.shape[0], x.shape[1]
    fast = not reference
    spikes, membrane, state = {}, {}, {}
    prev = x
    out = None
    if stats is not None:
        stats.saturated.clear()
    for k, layer in enumerate(net.layers):
        n = layer.n
        zero = torch.zeros((1, 1, *layer.shape), dtype=torch.int64)
        bias = zero if layer.bias_mant is None else zero + torch.from_numpy(
            np.array(layer.bias_mant, np.int64))
        if layer.kind == "input" and net.input_drive == "bias":
            a = torch.zeros((t_steps, b, *layer.shape), dtype=torch.int64)
            bias = prev.reshape(t_steps, b, *layer.shape).to(torch.int64)
        elif layer.kind == "input":
            a = prev.reshape(t_steps, b, *layer.shape).to(torch.int64)
        else:
            a = _lava_synapse(layer, prev, fast, gemm)
        a = a.to(torch.float64) if fast else a.to(torch.int64)
        bounds = [0, *net.reset_steps(k, t_steps), t_steps]
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            parts.append(_lava_neurons(layer, a[lo:hi], bias[lo:hi] if len(bias) > 1 else bias,
                                       fast, stats if len(bounds) == 2 else None))
        u, h, s = parts[0] if len(parts) == 1 else (torch.cat(p) for p in zip(*parts,
                                                                              strict=True))
        h = h.to(torch.float64)
        if layer.spiking:
            spikes[layer.name] = s.to(torch.float64)
        membrane[layer.name] = h
        state[layer.name] = (u.to(torch.int64).reshape(t_steps, b, n),
                             (h * ~s).to(torch.int64).reshape(t_steps, b, n))
        prev = s
        out = s.to(torch.float64) if layer.spiking else h
    voted = out.reshape(t_steps, b, -1, net.population).mean(-1)
    result = SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                       membrane)
    result.state = state
    return result


def fixed_threshold(layer: FixedLayer) -> float:
    """The threshold in IR units (v > this fires)."""
    return (int(layer.vth_mant) << 6) / layer.scale


__all__ = ["EmulatorStats", "emulate", "emulate_lava_timing", "emulate_reference",
           "fixed_threshold", "gemm_kernel",
           "host_bias_mant", "integer_current", "merge_values", "neuron_loop", "synapse_sum",
           "wrap24"]
