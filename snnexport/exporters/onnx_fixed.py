"""Fixed-point IR -> ONNX (opset 18): Loihi 2's integer arithmetic on an ordinary runtime.

    bias0 int16 [T or 1, B, *shape_1]  the host layer's current as 13-bit bias mantissas, one
                                  row per step, or one row for every step (a static image);
                                  the host synapse stays on the host, as on the chip:
                                  snnexport.quant.emulator.host_bias_mant computes them (values
                                  beyond 13 bits are clipped to them, as it does;
                                  `artifact_input` as a deployment does)
    -> `spikes:<name>` uint8 [T, B, *shape], `h:<name>` int64 (v before reset) per layer,
       `outputs` float32 [T, B, classes] (voted spikes, or v / S of a non-spiking readout)
T is fixed in the artifact (`to_onnx_fixed(net, time_steps=T)`, default the net's): the steps
are unrolled. `debug=False` leaves out the per-layer outputs (same arithmetic).

Synapses are integer AND-and-add on onnxruntime's integer GEMM (MLAS), for all T*B steps at
once. The weights are even 8-bit mantissas in [-256, 254] (Lava drops the last bit), so w / 2
is exactly an int8 in [-128, 127] and a = 2 (x @ (w / 2)):
  * dense: MatMulInteger, uint8 spikes x int8 w / 2 -> int32;
  * conv: im2col + the same MatMulInteger: one Gather takes each output pixel's window from the
    channels-last map (padding points at one zero pixel appended), [T*B*Ho*Wo, kh*kw*C] @
    [kh*kw*C, C_out] (a batched GEMM per group); its neurons then run channels-last (neurons
    are independent: no transpose of the sums, only of the uint8 spikes they give);
  * depthwise conv: ConvInteger, whose depthwise kernel takes uint8 weights w / 2 + 128 with
    zero point 128; an OR-pool layer (its sum of 128s into memoryless neurons at threshold 0)
    needs neither: it fires iff its window holds a spike (`or_pool` states why), so it is a
    MaxPool of the spikes (on float32: the uint8 MaxPool is slower), no synapse, no neurons;
    in the deployment graph a 2x2 OR-pool behind the host layer or an im2col conv is the Max
    of its window's four spikes, computed with that layer's neurons ('pool2' layouts,
    `_neuron_layer`; the conv's GEMM rows then come corner by corner, `_im2col`).
Chosen by measurement (bench/integer_speed.py --candidates: onnxruntime 1.32, 2 threads, the
000 MNIST net at width 128, T*B = 128, interleaved, medians of 7 rounds): conv 128->128 3x3 on
14x14: im2col + MatMulInteger 32 ms, ConvInteger with uint8 weights 65 ms, with int8 weights
157 ms (no optimised kernel), float Conv 52 ms; 2x2 depthwise sum on 28x28: ConvInteger 16 ms,
strided Slices + Add 29 ms; dense 6272->2048: MatMulInteger int8 weights 7 ms, uint8 weights
14 ms, float MatMul 17 ms. In the deployment graph such a conv (one group, its neuron chunks
whole pixels) runs one Gather and one GEMM per step and neuron chunk, whose windows stay in
the core's cache until the GEMM reads them, and whose sums are the chunk the neuron loop takes
(`_raw_sum`): conv2 of that net 28.3 -> 21.0 ms (1 thread, AVX-512 VNNI; the debug graph keeps
one GEMM per synapse).
Exactness (`integer_kernel`): int8 weights where the input's peak (1 for spikes, a SEW ADD's
graded values up to its peak) is <= 127, so that a pair x1 w1 + x2 w2 stays within int16 (the
vpmaddubsw of MLAS's AVX2 kernel, which saturates there; the VNNI / AMX kernels accumulate in
int32), and fan_in * 128 * peak < 2^31 (the int32 accumulator); else uint8 weights with zero
point 128 (16-bit products, no saturation) where fan_in * 255 * peak < 2^31; else Cast and an
int64 MatMul. Lava wraps a conv's sum to 24 bits and u = a << 6 to 24 bits; both keep a modulo
2^24, so u = 64 wrap18(a) of the raw sum (`_drive`), computed only where `sum_bound` (peak times
the largest row sum of |w|) lets u leave 24 bits, as a float32 Floor where that is exact, else
with Mod, per chunk in the neuron loop; and where it or v's clip could act, an If on the
batch's sums (their max and min, two reductions) runs a loop without either when the sums stay
below both (`unclipped_drive`): bench/integer_speed.py's net never comes near the wrap.
`to_onnx_fixed(net, plain=True)` keeps the direct mapping (ConvInteger / MatMulInteger with
uint8 weights for every synapse, an int64 Scan per layer), the benchmark's baseline.

Neurons: the rules of snnexport/quant/emulator.py, u = wrap24(a << 6) (a current-based layer:
u = wrap24(trunc((4096 - i_decay) u / 4096) + (a << 6)), its decay in float64 truncated by the
Cast to int32, and the host layer's current run on the host: bias0 then has T rows for a
static image too); v = trunc((4096 - dv)
v / 4096) + u + (bias_mant << 6), clipped to +-(2^23 - 1); s = v > vth_mant << 6; v = 0 where
s; in int32 (every value is below 2^24), each layer's T steps unrolled and run chunk by chunk
(onnx_common.CHUNK neurons per sample: a chunk's state stays in cache through its T steps).
Per step and chunk: the decay as a multiply by k / 4096 in floating point truncated toward zero
by the Cast back to int32 (exact: float32 where every k = 4096 - dv is a power of two, the
product then a shifted v; else float64, |k v| < 2^35; onnxruntime's integer Div is a scalar
division: on int64 10x a Cast); + u (+ bias << 6); the clip only where it can act
(|v_init| + T max|u + bias << 6| > 2^23 - 1: a decay never grows |v|, a reset zeroes it);
keep = clip(vth + 1 - h, 0, 1) (= [h <= vth] on integers; cheaper in onnxruntime than a
comparison + Cast, or Where), s = 1 - keep, v = h keep, both held negated (-keep, -v = h (-keep):
the decay is odd, so the next h = u - decay(-v); a pooled layer's spike is 1 + max(-keep) over
the window, one op instead of a 1 - keep per corner). Measured (bench/integer_speed.py
--candidates, the 128x28x28 layer of the bench net, T=8, B=16, 2 threads, medians of 5
interleaved rounds on a machine loaded 5-7 on its 2 cores): k = 2048, the Scan before 319 ms,
unrolled int32 with the float32 decay 121 ms unchunked, 166 ms in chunks; dv = 1000, the Scan
338 ms, unrolled with the float64 decay 219 ms unchunked, 182 ms in chunks; the whole
deployment artifact 2.9x the direct mapping with its int64 Scans. The chunking and the host
layer's pool in its neurons ('pool2') are worth 10-20 % in CPU time (1 thread: 94 -> 85 -> 75
ms for the whole artifact) and within the noise of the loaded 2-thread runs; kept for the
former. The u wrap's float32 form and Mod: equal there (144 ms with conv2's GEMM).

Static images in the deployment graph (`debug=False`, `export --lean`): a host neuron whose
drive is the same mantissa at every step has a spike train that is a function of that
mantissa and its (dv, v_init, bias_mant); `host_table` tabulates it (rows from the emulator's
own neuron loop) where the groups of equal parameters are few (a per-layer or per-channel tau,
no IMP), and an If on T_in = 1 looks the trains up, packed T bits a word (`_host_switch`:
GatherElements per pool corner, BitwiseOr, one unpacking) instead of running the T steps;
frames (T_in = T) take the other branch, the loop. Measured (bench/integer_speed.py's net, 2
threads): the deployment graph 100 -> 55 ms per batch with Gathers of byte rows (the host layer
had been half of it); the packed lookup 11.4 -> 5.3 ms, the conv's pool with its neurons and
the wrap / clip If 43.6 -> 31.9 ms for the whole graph (fastest of 25 runs, 2026-12-03).

Residual nets: a SEW merge of spike trains is computed on the uint8 values (ADD `Add`: graded
0, 1, 2, ... up to the merge's peak, at most 255; AND `Mul`; IAND `Mul(1 - a, b)` on binary a),
and the synapse behind it is the same integer GEMM on those values (an integer
multiply-accumulate, exact within the bounds above). A layer with further synapses (Spiking
ResNet) adds their raw integer sums before the one wrap (each Lava Conv's own 24-bit wrap
keeps its sum modulo 2^24, so the wrap of the total is the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..files import atomic_write
from ..ir.neurons import kind_of, lookup
from ..quant.fixed import BIAS_MANT_MAX, STATE_MAX, FixedLayer, FixedMerge, FixedNet, FixedSynapse
from .onnx_common import (
    GraphBuilder,
    ONNXExportError,
    artifact_model,
    chunk_const,
    chunk_groups,
    corner,
    corners,
    if_else,
    per_sample,
    per_step,
    pool2_order,
    session,
    step_rows,
)

I64, U8, F32, I32 = TensorProto.INT64, TensorProto.UINT8, TensorProto.FLOAT, TensorProto.INT32
I16, F64 = TensorProto.INT16, TensorProto.DOUBLE
# the integer artifact's opset: 18 for BitwiseOr / BitwiseAnd (`_host_switch`'s packed trains)
OPSET_FIXED = 18
WRAP = 1 << 23
# switch for bench/integer_speed.py --candidates (the alternative measured): the float32 form of
# u's wrap where exact
FLOAT_WRAP = True


def _i64(g: GraphBuilder, hint, value):
    return g.const(hint, value, np.int64)


def _neuron_scan(g: GraphBuilder, layer: FixedLayer, drive_seq: str, bias: np.ndarray | None,
                 batch: str, names: tuple[str, str] | None = None) -> tuple[str, str]:
    """Scan over T of one layer. drive_seq int64 [T, B, *shape] (u, or the host bias << 6).
    Returns (spikes uint8 seq, h int64 seq), named `names` if given (the graph's outputs: no
    copy)."""
    body = GraphBuilder(prefix="b_")
    keep = _i64(body, "keep", 4096 - np.asarray(layer.dv, np.int64))
    p = body.op("Mul", ["v_in", keep], "p")
    v = body.op("Div", [p, _i64(body, "unity", 4096)], "decayed")  # truncates toward zero
    v = body.op("Add", [v, "d_in"], "charged")
    if bias is not None:
        v = body.op("Add", [v, _i64(body, "bias", np.asarray(bias, np.int64) << 6)], "biased")
    v = body.op("Clip", [v, _i64(body, "lo", -STATE_MAX), _i64(body, "hi", STATE_MAX)], "h")
    fired = body.op("Greater", [v, _i64(body, "vth", int(layer.vth_mant) << 6)], "fired")
    # v = 0 where it fired, as v (not fired): measured faster than Where in onnxruntime 1.32
    kept = body.op("Cast", [body.op("Not", [fired], "quiet")], "kept", to=I64)
    v_new = body.op("Mul", [v, kept], "v_new")
    spikes = body.op("Cast", [fired], "spike", to=U8)
    h = v
    graph = helper.make_graph(
        body.nodes, f"{layer.name}_step",
        [helper.make_tensor_value_info("v_in", I64, None),
         helper.make_tensor_value_info("d_in", I64, None)],
        [helper.make_tensor_value_info(v_new, I64, None),
         helper.make_tensor_value_info(spikes, U8, None),
         helper.make_tensor_value_info(h, I64, None)], initializer=body.inits)
    full = g.op("Concat", [batch, _i64(g, "shape", list(layer.shape))], "state_shape", axis=0)
    v0 = g.op("Expand", [_i64(g, "v_init", np.asarray(layer.v_init, np.int64)), full], "v0")
    outs = [g.name(f"{layer.name}_v"), *(names or (g.name(f"{layer.name}_s"),
                                                  g.name(f"{layer.name}_h")))]
    g.nodes.append(helper.make_node("Scan", [v0, drive_seq], outs, body=graph,
                                    num_scan_inputs=1))
    return outs[1], outs[2]


# the layouts of a layer computed with the 2x2 OR-pool of its spikes (`_neuron_layer`)
POOL2 = ("pool2", "pool2_nhwc")


def _per_neuron(layer: FixedLayer, value, layout: str, dtype) -> np.ndarray:
    """A per-neuron array (or scalar) of `layer` as a flat [P] array in the layout's order:
    'nchw', 'nhwc', 'pool2' ([2, 2, C, H/2, W/2]: the four corners of every 2x2 window in
    four planes, `_neuron_layer`) or 'pool2_nhwc' (the same planes channels last, [2, 2, H/2,
    W/2, C])."""
    a = np.broadcast_to(np.asarray(value), layer.shape)
    if layout == "nhwc":
        a = a.transpose(1, 2, 0)
    elif layout in POOL2:
        a = pool2_order(a, channels_last=layout == "pool2_nhwc")
    return np.ascontiguousarray(a, dtype).reshape(-1)


def unclipped_drive(layer: FixedLayer, t_steps: int) -> int:
    """The largest bound D on |u| under which the layer's v never reaches +-STATE_MAX in
    `t_steps` steps (its clip never acts): |h_t| <= max|v_init| + (t+1) (D + max|bias << 6|),
    a decay never growing |v| and a reset setting it to 0. Negative where no D is."""
    bias = 0 if layer.bias_mant is None else int(np.abs(np.asarray(layer.bias_mant)).max()) << 6
    return (STATE_MAX - int(np.abs(np.asarray(layer.v_init)).max(initial=0))) // t_steps - bias


def _cuba_current_ops(layer: FixedLayer, layout: str, n: int):
    """'cuba_lif''s integer current (ir/neurons.py int_current) as ops, for `_neuron_layer`:
    a current-based layer (not the host's: its current is run on the host) keeps u,
    u = wrap24(trunc(ku u / 4096) + u_in), the decay in float64 truncated by the cast to int32
    (|ku u| < 2^36: exact), the bias << 6 part of the current. Returns step(g, d, u_prev, b,
    i) -> u of chunk i (d: this step's wrap24(a << 6); u_prev None at t = 0)."""
    ku = _per_neuron(layer, 4096 - np.asarray(layer.i_decay, np.int64), layout, np.int64)

    def step(g: GraphBuilder, d: str, u_prev: str | None, b: str | None, i: int) -> str:
        # u = wrap24(decayed u + wrap24(a << 6) + bias << 6): one wrap
        if b is not None:  # the bias is part of the current
            d = g.op("Add", [d, b], "u_biased")
        if u_prev is not None:
            du = g.op("Cast", [g.op("Mul", [
                g.op("Cast", [u_prev], "uf", to=F64),
                chunk_const(g, "ku", ku / 4096, n, i, np.float64)], "ku_u")],
                "u_decayed", to=I32)
            d = g.op("Add", [du, d], "u_sum")
        if u_prev is not None or b is not None:
            d = _wrap(g, d, 24, np.int32)
        return d
    return step


# each neuron kind's integer current as ops (ir/neurons.py, by the kind's name): a builder
# (layer, layout, chunks) -> step, or None for a kind without a current (u is the drive)
INT_CURRENT_OPS = {"lif": None, "cuba_lif": _cuba_current_ops}


def _neuron_layer(g: GraphBuilder, layer: FixedLayer, drive: str, t_steps: int, layout: str,
                  drive_bound: int, host: bool, with_h: bool, with_spikes: bool = True,
                  to_u=None) -> tuple[str | None, str | None, str | None]:
    """The layer's neurons over the T steps, unrolled, in int32, chunk by chunk (module
    docstring, "Neurons"). drive: int32 [T*B, ...] in `layout` order, from which `to_u` builds
    each chunk's u (`_drive`; None: drive is u; |u| <= drive_bound), or a list per step of the
    chunks' drives (`_raw_sum`: [t][i] [1, B, 1, m]), or, for the host layer,
    bias0 (int16 [T_in, B, *shape]). Returns (spikes uint8
    [T, B, *shape] if with_spikes, h int32 [T, B, *shape] if with_h, the spikes' 2x2 OR-pool
    uint8 [T, B, C, H/2, W/2] for the POOL2 layouts, else None).

    Layouts 'pool2' (a host layer) and 'pool2_nhwc' (an im2col conv whose GEMM rows come
    corner by corner, `_im2col`), for a layer whose spikes go only to a 2x2 stride-2 OR-pool
    (the 000 net's c-BN-PLIF-MP): the neurons in four planes, one per corner of the pool
    windows, each plane cut into chunks; the four chunks of the same windows run their steps
    together and the pool is the Max of their uint8 spikes, in cache (no MaxPool over the
    whole layer afterwards, no spikes of the whole layer assembled)."""
    to_u = to_u or (lambda b, u: u)
    n, m, groups = chunk_groups(layer.n, layout in POOL2)
    n_p = n // 4
    # a kind with a current (not the host layer's: its current is run on the host) keeps u,
    # its kind's ops (INT_CURRENT_OPS); u then reaches any 24-bit value
    current_ops = None if host else lookup(INT_CURRENT_OPS, layer, "the integer ONNX model")
    cuba = current_ops is not None
    if cuba:
        current_step = current_ops(layer, layout, n)
        drive_bound = WRAP
    k = _per_neuron(layer, 4096 - np.asarray(layer.dv, np.int64), layout, np.int64)
    v_init = _per_neuron(layer, layer.v_init, layout, np.int64)
    dec0 = np.sign(v_init) * ((np.abs(v_init) * k) >> 12)  # the decayed initial state
    bias = (None if layer.bias_mant is None or not np.asarray(layer.bias_mant).any() else
            _per_neuron(layer, layer.bias_mant, layout, np.int64) << 6)
    clip = unclipped_drive(layer, t_steps) < (64 * (BIAS_MANT_MAX + 1) if host else drive_bound)
    # trunc(k v / 4096) as v * (k / 4096) in floating point, truncated by the cast to int32:
    # exact in float32 when every k is a power of two (the product is v shifted), else in
    # float64 (|k v| < 2^35 < 2^53); k = 4096 everywhere: no decay at all
    decay = ("none" if (k == 4096).all() else
             "f32" if ((k & (k - 1)) == 0).all() else "f64")
    fdt, ftype = (np.float32, F32) if decay == "f32" else (np.float64, TensorProto.DOUBLE)
    if layout == "pool2":  # [T_in, B, C, H, W] -> four planes [T_in, B, C, H/2, W/2], corner
        # (a, b) = rows a::2, columns b::2 (strided Slices: measured 8.5 ms -> 1 ms against a
        # 7-d Transpose of the int16 bias0 on bench/integer_speed.py's net), plane q = 2a + b
        planes = [g.op("Reshape", [corner(g, drive, a, b, layer.shape[1:], (3, 4)), _i64(
            g, "tbnm", [-1, 0, n_p, m])], "plane") for a in (0, 1) for b in (0, 1)]
    elif isinstance(drive, str):
        seq = g.op("Reshape", [drive, _i64(g, "tbnm", [-1 if host else t_steps,
                                                       0 if host else -1, n, m])], "by_chunk")
    if host:  # bias0 [T_in, B, ...], T_in = T or 1: step t reads row min(t, T_in - 1)
        _, rows = step_rows(g, drive, t_steps)
    vth1 = g.const("vth1", (int(layer.vth_mant) << 6) + 1, np.int32)
    one = g.const("one", 1, np.int32)
    zero = g.const("zero", 0, np.int32)
    minus_one = g.const("minus_one", -1, np.int32)
    spikes = [[None] * n for _ in range(t_steps)]
    hs = [[None] * n for _ in range(t_steps)]
    pooled = [[None] * len(groups) for _ in range(t_steps)]
    for gi, group in enumerate(groups):
        consts, v, cur, nkeep = {}, {}, {}, {}
        for i in group:
            consts[i] = (
                chunk_const(g, "k", k / 4096, n, i, fdt) if decay != "none" else None,
                chunk_const(g, "bias", bias, n, i, np.int32) if bias is not None else None,
                chunk_const(g, "dec0", dec0, n, i, np.int32) if dec0.any() else None,
                None)
            if host:  # the chunk's 13-bit bias mantissas (host_bias_mant's range) << 6, int32
                # [T_in, B, 1, m]: converted once per chunk (once for all steps when T_in = 1)
                src, j = (planes[i // n_p], i % n_p) if layout == "pool2" else (seq, i)
                chunk = g.op("Slice", [src, _i64(g, "st", [j]), _i64(g, "en", [j + 1]),
                                       _i64(g, "ax", [2])], "chunk")
                chunk = g.op("Mul", [g.op("Clip", [g.op("Cast", [chunk], "b32", to=I32),
                                                   g.const("lo", -BIAS_MANT_MAX - 1, np.int32),
                                                   g.const("hi", BIAS_MANT_MAX, np.int32)],
                                          "b13"), g.const("act", 64, np.int32)], "host_u")
                consts[i] = (*consts[i][:3], chunk)
        for t in range(t_steps):
            for i in group:
                c, b, d0, chunk = consts[i]
                if not host:
                    d = to_u(g, drive[t][i] if not isinstance(drive, str) else g.op("Slice", [
                        seq, _i64(g, "st", [t, i]), _i64(g, "en", [t + 1, i + 1]),
                        _i64(g, "ax", [0, 2])], "d"))  # [1, B, 1, m]
                    if cuba:
                        d = cur[i] = current_step(g, d, cur[i] if t > 0 else None, b, i)
                else:
                    d = g.op("Slice", [chunk, *rows[t], _i64(g, "ax", [0])], "d")
                if t == 0:
                    h = g.op("Add", [d, d0], "h") if d0 is not None else d
                else:  # v[i] holds -v (below): h = u - decay(-v)
                    vi = v[i]
                    if c is not None:
                        vi = g.op("Cast", [g.op("Mul", [g.op("Cast", [vi], "vf", to=ftype), c],
                                                "kv")], "decayed", to=I32)
                    h = g.op("Sub", [d, vi], "h")
                if b is not None and not cuba:
                    h = g.op("Add", [h, b], "biased")
                if clip:
                    h = g.op("Clip", [h, g.const("lo", -STATE_MAX, np.int32),
                                      g.const("hi", STATE_MAX, np.int32)], "clipped")
                # keep = [h <= vth], as -keep = clip(h - vth - 1, -1, 0) on integers (cheaper
                # than a comparison + Cast in onnxruntime); the spike is 1 - keep, the reset
                # v = h keep, kept negated, h (-keep) = -v: the decay is odd (trunc(k (-v) /
                # 4096) = -trunc(k v / 4096)), so the next h = u - decay(-v), and an OR-pool's
                # spike is 1 + max(-keep) over its window, without each corner's 1 - keep
                nkeep[i] = g.op("Clip", [g.op("Sub", [h, vth1], "margin"), minus_one, zero],
                                "minus_keep")
                if with_spikes or layout not in POOL2:
                    spikes[t][i] = g.op("Cast", [g.op("Add", [one, nkeep[i]], "fired")], "s",
                                        to=U8)
                hs[t][i] = h
                if t < t_steps - 1:
                    v[i] = g.op("Mul", [h, nkeep[i]], "minus_v")
            if layout in POOL2 and with_spikes:
                pooled[t][gi] = g.op("Max", [spikes[t][i] for i in group], "or_pool")
            elif layout in POOL2:  # (no spikes asked: one Add and one Cast, of the pool's)
                pooled[t][gi] = g.op("Cast", [g.op("Add", [one, g.op(
                    "Max", [nkeep[i] for i in group], "max_minus_keep")], "or_fired")],
                                     "or_pool", to=U8)

    def assemble(parts, hint, shape=layer.shape, lay=layout):
        steps = [ps[0] if len(ps) == 1 else g.op("Concat", ps, hint, axis=2) for ps in parts]
        out = g.op("Concat", steps, hint, axis=0) if t_steps > 1 else steps[0]  # [T, B, n, m]
        c_, h_, w_ = shape if len(shape) == 3 else (0, 0, 0)
        if lay == "nhwc":
            out = g.op("Transpose", [g.op("Reshape", [out, _i64(
                g, "s", [t_steps, -1, h_, w_, c_])], hint)], hint, perm=[0, 1, 4, 2, 3])
        elif lay == "pool2":
            out = g.op("Transpose", [g.op("Reshape", [out, _i64(
                g, "s", [t_steps, -1, 2, 2, c_, h_ // 2, w_ // 2])], hint)], hint,
                perm=[0, 1, 4, 5, 2, 6, 3])
        elif lay == "pool2_nhwc":
            out = g.op("Transpose", [g.op("Reshape", [out, _i64(
                g, "s", [t_steps, -1, 2, 2, h_ // 2, w_ // 2, c_])], hint)], hint,
                perm=[0, 1, 6, 4, 2, 5, 3])
        return g.op("Reshape", [out, _i64(g, "s", [t_steps, -1, *shape])], hint)

    pool = None
    if layout in POOL2:  # [T, B, n_p, m]: the windows in the planes' order
        c_, h_, w_ = layer.shape
        pool = assemble(pooled, "pooled", (c_, h_ // 2, w_ // 2),
                        "nchw" if layout == "pool2" else "nhwc")
    return (assemble(spikes, "spikes") if with_spikes else None,
            assemble(hs, "h") if with_h else None, pool)


# the largest spike table `host_table` writes into a deployment graph (bytes), and the fewest
# neurons per table group on average (a group per neuron, IMP: the loop is the better form)
TABLE_BYTES = 4 << 20
TABLE_SHARE = 64


def host_table(layer: FixedLayer, t_steps: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The host layer's spike trains for a static input, tabulated: (table uint8 [G * E, T],
    offset int32 per neuron [*shape]), or None where it would exceed TABLE_BYTES (or the layer
    does not spike).

    With one image for every step, a host neuron's drive is the same 13-bit mantissa m at every
    step, so its T spikes are a function of m and its own (dv, v_init, bias_mant): G groups of
    neurons sharing those, E = 2^13 values of m. Row offset + m of the table is that neuron's
    spike train. The rows are computed by the emulator's own neuron loop
    (quant.emulator.neuron_loop), so they hold its arithmetic by construction. One Gather then
    replaces the layer's T unrolled steps (`_host_switch`): on bench/integer_speed.py's net
    the host layer was half of the deployment graph's time. One group (a per-layer tau, no
    IMP: the PLIF of Fang et al.) takes E * T bytes, per-channel parameters C E T; per-neuron
    tau or IMP make a group per distinct neuron: those keep the loop."""
    import types

    import torch

    from ..quant.emulator import neuron_loop

    if not layer.spiking:
        return None
    shape = tuple(layer.shape)
    bias = 0 if layer.bias_mant is None else layer.bias_mant
    cols = np.stack([np.broadcast_to(np.asarray(a, np.int64), shape).reshape(-1)
                     for a in (layer.dv, layer.v_init, bias)], 1)
    keys, group = np.unique(cols, axis=0, return_inverse=True)
    e = 2 * (BIAS_MANT_MAX + 1)
    if len(keys) * e * t_steps > TABLE_BYTES or len(keys) * TABLE_SHARE > len(cols):
        return None
    view = types.SimpleNamespace(name=layer.name, shape=(len(keys), e), dv=keys[:, :1],
                                 v_init=keys[:, 1:2], vth_mant=layer.vth_mant)
    m = np.arange(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX + 1, dtype=np.int64)
    drive = torch.from_numpy((m[None, :] + keys[:, 2:]) << 6)  # [G, E]: (m + bias_mant) << 6
    _, spikes = neuron_loop(view, None, drive.expand(t_steps, 1, *drive.shape))
    table = spikes[:, 0].permute(1, 2, 0).reshape(-1, t_steps).numpy().astype(np.uint8)
    offset = (group.reshape(shape) * e + BIAS_MANT_MAX + 1).astype(np.int32)
    return table, offset


def packed_trains(table: np.ndarray) -> list[np.ndarray]:
    """`host_table`'s trains [rows, T] (0 / 1) as words: bit j of word w of a row is its spike
    at step 64 w + j (uint8 words where T <= 8, uint32 where T <= 32, else uint64; one word
    per 64 steps)."""
    t_steps = table.shape[1]
    bits, dtype = (8, np.uint8) if t_steps <= 8 else (32, np.uint32) if t_steps <= 32 else (
        64, np.uint64)
    return [np.bitwise_or.reduce(table[:, w:w + bits].astype(dtype) << np.arange(
        min(bits, t_steps - w), dtype=dtype), axis=1) for w in range(0, t_steps, bits)]


def _wide_words(words: list[np.ndarray], n_rows: int) -> tuple[list[np.ndarray], int]:
    """`packed_trains`' words (n_rows = G groups of 2^13 mantissas) with a row for every int16
    value (the clipped mantissa's train), so that the lookup needs no Clip of its input, where
    that fits TABLE_BYTES: (words, G); else (words, 0). One group: row v for v >= 0, 2^16 + v
    for v < 0 (GatherElements counts a negative index from the end: the mantissa itself is the
    index, no offset); G groups: row 2^16 g + 2^15 + v."""
    e = 2 * (BIAS_MANT_MAX + 1)
    n_groups = n_rows // e
    if n_groups * (1 << 16) * sum(w.itemsize for w in words) > TABLE_BYTES:
        return words, 0
    v = np.arange(-(1 << 15), 1 << 15)
    if n_groups == 1:
        v = np.roll(v, -(1 << 15))  # 0 .. 2^15 - 1, then -2^15 .. -1
    src = np.clip(v, -BIAS_MANT_MAX - 1, BIAS_MANT_MAX) + BIAS_MANT_MAX + 1
    src = (np.arange(n_groups)[:, None] * e + src[None, :]).reshape(-1)
    return [w[src] for w in words], n_groups


def _host_switch(g: GraphBuilder, layer: FixedLayer, table, drive: str, pooled: bool,
                 loop) -> str:
    """The host layer's spikes uint8 [T, B, *shape] (`pooled`: their 2x2 OR-pool [T, B, C,
    H/2, W/2]) from bias0 [T_in, B, *shape]: an If on T_in = 1 (a static image) that looks the
    trains up in `host_table`'s table, else runs `loop(builder)` (the unrolled steps; it returns
    the same tensor).

    The trains are looked up packed (`packed_trains`: T bits in a word) by GatherElements on
    the flat table, a pool's four corners OR-ed as words (BitwiseOr), and the bits unpacked
    once (BitwiseAnd with 1 << t, then min 1): on bench/integer_speed.py's shapes (401,408
    lookups, 2 threads) Gather of [T]-byte rows took 1.8-2.2 ms per corner, GatherElements of
    one byte 0.33-0.55 ms, whatever the row's width (onnxruntime's Gather copies every row by
    memcpy)."""
    table, offset = table
    words = packed_trains(table)
    t_in, _ = step_rows(g, drive, 0)
    static = g.op("Equal", [t_in, _i64(g, "one", [1])], "static")
    lookup = GraphBuilder(prefix=f"{g.prefix}lut_")
    row0 = lookup.op("Gather", [drive, lookup.const("row", 0, np.int64)], "row0", axis=0)
    parts = [(row0, offset)]  # (mantissas int16 [B, *shape], their neurons' table offsets)
    if pooled:  # the four corners of every 2x2 window, before the lookup (`corners`: Splits
        # of the int16 mantissas)
        c, h, w = layer.shape
        parts = list(zip(corners(lookup, row0, (h, w), (-1, c, h // 2, w // 2)),
                         (offset[:, a::2, b::2] for a in (0, 1) for b in (0, 1)), strict=True))
    words, wide = _wide_words(words, table.shape[0])
    rows = []  # per part: the flat table row of each neuron, int32 [N]
    for part, off in parts:
        m = lookup.op("Cast", [part], "m32", to=I32)
        if wide:  # a row per int16 value (`_wide_words`): no Clip; one group: no offset
            off = None if wide == 1 else ((off - BIAS_MANT_MAX - 1) // (
                2 * BIAS_MANT_MAX + 2)) * (1 << 16) + (1 << 15)
        else:
            m = lookup.op("Clip", [m, lookup.const("lo", -BIAS_MANT_MAX - 1, np.int32),
                                   lookup.const("hi", BIAS_MANT_MAX, np.int32)], "m")
        if off is not None:
            off = off.reshape(-1)[0] if (off == off.flat[0]).all() else off
            m = lookup.op("Add", [m, lookup.const("offset", off, np.int32)], "row")
        rows.append(lookup.op("Reshape", [m, lookup.const("flat", [1, -1], np.int64)], "rows"))
    out_shape = (layer.shape[0], *(n // 2 for n in layer.shape[1:])) if pooled else layer.shape
    steps_out, t0 = [], 0
    for word in words:
        width = word.dtype.itemsize * 8
        w_const = lookup.const("words", word.reshape(1, -1), word.dtype)
        found = [lookup.op("GatherElements", [w_const, r], "train", axis=1) for r in rows]
        train = found[0]
        for other in found[1:]:  # a pool's spike: the OR of its window's four
            train = lookup.op("BitwiseOr", [train, other], "or_pool")
        n_t = min(width, len(table[0]) - t0)
        bit = lookup.op("BitwiseAnd", [train, lookup.const(  # [n_t, N]: spike t's bit
            "bit", (np.uint64(1) << np.arange(n_t, dtype=np.uint64)).reshape(-1, 1), word.dtype)],
                        "bit")
        spike = lookup.op("Clip", [bit, "", lookup.const("one", 1, word.dtype)], "spike")
        steps_out.append(spike if word.dtype == np.uint8 else lookup.op("Cast", [spike], "s8",
                                                                        to=U8))
        t0 += n_t
    out = (steps_out[0] if len(steps_out) == 1 else
           lookup.op("Concat", steps_out, "trains", axis=0))
    out = lookup.op("Reshape", [out, lookup.const("shape", [len(table[0]), -1, *out_shape],
                                                  np.int64)], "by_step")
    steps = GraphBuilder(prefix=f"{g.prefix}steps_")
    return if_else(g, static, "host_spikes", layer.name, (lookup, [out]),
                   (steps, [loop(steps)]), [U8])[0]


def _synapse(g: GraphBuilder, layer: FixedLayer, s_seq: str, tb: str, in_shape, peak: int = 1,
             extra=(), plain: bool = False) -> str:
    """u = wrap24((W s) << 6), int64 [T, B, *shape], from uint8 spikes [T, B, *in_shape] (values
    up to `peak`); extra: (FixedSynapse, its uint8 input, its input shape, its peak) summed into
    a before the shift."""
    a, bound = _synaptic_sum(g, layer, s_seq, in_shape, peak, plain)
    for syn, x, shape, syn_peak in extra:
        a_syn, b_syn = _synaptic_sum(g, syn, x, shape, syn_peak, plain)
        a, bound = g.op("Add", [a, a_syn], "a_sum"), bound + b_syn
    u = g.op("Mul", [a, _i64(g, "act", 64)], "u")
    if 64 * bound >= WRAP:  # (else |u| < 2^23 whatever the spikes: Lava's wrap is the identity)
        big = g.op("Greater", [u, _i64(g, "max", WRAP)], "big")
        u1 = g.op("Where", [big, g.op("Sub", [u, _i64(g, "r", 2 * WRAP)]), u], "u1")
        low = g.op("LessOrEqual", [u1, _i64(g, "min", -WRAP)], "low")
        u = g.op("Where", [low, g.op("Add", [u, _i64(g, "r2", 2 * WRAP)]), u1], "u2")
    return per_step(g, u, tb, layer.shape)


def sum_bound(weight: np.ndarray, peak: int) -> int:
    """The largest |a| = |sum_j w_ij x_j| inputs x in [0, peak] can give: peak times the
    largest row sum of |w| (a conv's row: one output channel's C_in/groups * kh * kw)."""
    w = np.abs(np.asarray(weight, np.int64))
    return int(w.reshape(len(w), -1).sum(1).max()) * peak if w.size else 0


I32_MAX = (1 << 31) - 1
U_UNITS = 1 / 64  # `_raw_sum`'s factor where its sums are u = 64 a itself


def integer_kernel(fan_in: int, peak: int, int8: bool = True) -> str:
    """The integer product that is exact for sums of `fan_in` terms x (w / 2), x in
    [0, peak] uint8, w / 2 in [-128, 127] (module docstring, "Synapses"): 'u8s8' (int8 weights:
    onnxruntime's fast integer GEMM) where peak <= 127 (a pair x1 w1 + x2 w2 stays within int16,
    the bound of the non-VNNI AVX2 kernel's vpmaddubsw) and fan_in 128 peak < 2^31 (the int32
    accumulator); else 'u8u8' (uint8 weights w / 2 + 128, zero point 128: 16-bit products, no
    saturation) where fan_in 255 peak < 2^31; else 'int64' (Cast + int64 MatMul, slow).
    `int8` False: not 'u8s8' (ConvInteger's fast kernels take uint8 weights)."""
    if int8 and peak <= 127 and fan_in * 128 * peak <= I32_MAX:
        return "u8s8"
    if peak <= 255 and fan_in * 255 * peak <= I32_MAX:
        return "u8u8"
    return "int64"


def _matmul(g: GraphBuilder, x: str, w_mat: np.ndarray, kernel: str) -> tuple[str, int]:
    """x uint8 [..., M, K] @ w_mat [..., K, N] (the even integer weights): (the sums, the factor
    they still need): int32 sums of w / 2 (factor 2) on the integer GEMMs, else int64 (1)."""
    if kernel == "int64":
        return g.op("MatMul", [g.op("Cast", [x], "x64", to=I64),
                               g.const("w", w_mat, np.int64)], "acc64"), 1
    return _gemm(g, x, _gemm_weights(g, w_mat, kernel)), 2


def _gemm_weights(g: GraphBuilder, w_mat: np.ndarray, kernel: str) -> list[str]:
    """The integer GEMM's weight inputs for `kernel` 'u8s8' or 'u8u8' (`integer_kernel`): w / 2
    (exact: even weights) as int8, or as uint8 w / 2 + 128 with zero points 0 and 128."""
    half = w_mat // 2
    if kernel == "u8s8":
        return [g.const("w", half, np.int8)]
    return [g.const("w", half + 128, np.uint8), g.const("zx", 0, np.uint8),
            g.const("zq", 128, np.uint8)]


def _gemm(g: GraphBuilder, x: str, weights: list[str]) -> str:
    """int32 x @ (w / 2): MatMulInteger of uint8 x and `_gemm_weights`."""
    w, *zero_points = weights
    return g.op("MatMulInteger", [x, w, *zero_points], "acc")


def _as_i64(g: GraphBuilder, acc: str, factor: int) -> str:
    if factor == 1:
        return acc
    return g.op("Mul", [g.op("Cast", [acc], "acc64", to=I64), _i64(g, "two", factor)], "a")


def _im2col(g: GraphBuilder, x: str, in_shape, kh: int, kw: int, stride, padding,
            corners: bool = False, pieces: tuple[int, int] | None = None, scale: int = 1):
    """uint8 [N, C, H, W] -> [N, Ho*Wo, kh*kw, C] (each output pixel's window, channels last) by
    one Gather of pixels: an index table [Ho*Wo, kh*kw] into the H*W pixels, padding pointing at
    one zero pixel appended after them. Returns (cols, Ho, Wo). `corners`: the output pixels
    ordered corner by corner of the 2x2 windows (a, b, Ho/2, Wo/2), pixel (2i + a, 2j + b)
    (layout 'pool2_nhwc'), else row by row. `pieces` (T, n), N = T*B: cols as a list per step
    t of n lists: piece [t][i] [1, B, Ho*Wo / n, kh*kw, C] holds the windows of output pixels
    i Ho*Wo / n to (i + 1) Ho*Wo / n of step t's B samples (`_raw_sum`). `scale`: the uint8
    values multiplied by it first."""
    c, h, w = in_shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    oi, oj, di, dj = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw),
                                 indexing="ij")
    ii, jj = oi * sh + di - ph, oj * sw + dj - pw
    inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
    idx = np.where(inside, ii * w + jj, h * w).reshape(ho * wo, kh * kw)
    if corners:
        idx = idx.reshape(ho // 2, 2, wo // 2, 2, -1).transpose(1, 3, 0, 2, 4).reshape(
            ho * wo, -1)
    pixels = g.op("Reshape", [g.op("Transpose", [x], "nhwc", perm=[0, 2, 3, 1]),
                              _i64(g, "pix", [-1, h * w, c])], "pixels")
    if scale != 1:
        pixels = g.op("Mul", [pixels, g.const("scale", scale, np.uint8)], "scaled")
    if not inside.all():
        pixels = g.op("Pad", [pixels, _i64(g, "zero_pixel", [0, 0, 0, 0, 1, 0])], "padded")
    if pieces is None:
        return g.op("Gather", [pixels, _i64(g, "windows", idx)], "cols", axis=1), ho, wo
    t_steps, n = pieces
    per_t = g.op("Reshape", [pixels, _i64(g, "tb_pix", [t_steps, -1, idx.max() + 1, c])],
                 "pixels_t")
    steps = (g.op("Split", [per_t], "pixels_step", outputs=t_steps, axis=0,
                  num_outputs=t_steps) if t_steps > 1 else [per_t])
    rows = ho * wo // n
    windows = [_i64(g, "windows", idx[i * rows:(i + 1) * rows]) for i in range(n)]
    return [[g.op("Gather", [step, w], "cols", axis=2) for w in windows] for step in steps], \
        ho, wo


def _raw_sum(g: GraphBuilder, layer: FixedLayer | FixedSynapse, s_seq: str, in_shape,
             peak: int = 1, plain: bool = False, nhwc: bool = False, corners: bool = False,
             t_steps: int = 0):
    """The GEMM part of a = W s from uint8 [T, B, *in_shape] values 0..peak: (acc, factor,
    bound, layout) with a = factor * acc (acc int32 from the integer GEMMs, factor 2; int64
    from the int64 fallback, factor 1), unwrapped, |a| <= bound; acc is [T*B, *out] in
    `layout` 'nchw' (a dense layer's [T*B, out] too), or 'nhwc' [T*B, Ho, Wo, C_out] for an
    im2col conv when `nhwc` (its neurons need no NCHW order: no transpose of the sums), or
    'pool2_nhwc' [T*B, 2, 2, Ho/2, Wo/2, C_out] for an im2col conv when `corners` (and
    `nhwc`; `_im2col`).

    `t_steps` given, an im2col conv in one group whose neuron chunks (`chunk_groups`, in the
    layout's order) hold whole pixels: acc is a list per step of the chunks' sums, [t][i]
    int32 [1, B, 1, m] (factor U_UNITS where the input is spikes: u itself, the spikes
    scaled by 128), each from its own Gather of windows and GEMM (rows B * m / C_out): the
    GEMM's uint8 input then stays in the core's cache between the Gather that writes it and
    the GEMM that reads it, and the neuron loop takes its chunks without slicing them. On
    bench/integer_speed.py's net (conv2: 25,088 x 1,152 rows, 29 MB of windows) one Gather
    and GEMM took 28.3 ms, 32 of 784 rows 21.0 ms (onnxruntime 1.32, 1 thread, CPU time,
    fastest of 20, AVX-512 VNNI: the GEMM 150 -> 218 GMAC/s)."""
    if getattr(layer, "weight_exp", 0) != 0:
        raise ONNXExportError(f"layer {layer.name!r}: weight_exp {layer.weight_exp} (the "
                              "fixed-point IR keeps 0)")
    w = np.asarray(layer.weight, np.int64)
    if (w % 2).any() or w.min() < -256 or w.max() > 254:
        raise ONNXExportError(f"layer {layer.name!r}: weights must be even in [-256, 254]")
    fan_in = int(np.prod(w.shape[1:]))
    kernel = integer_kernel(fan_in, peak, int8=not plain)
    bound = sum_bound(w, peak)
    if layer.kind != "conv":
        x = per_sample(g, s_seq, [int(np.prod(in_shape))])
        return *_matmul(g, x, w.T, kernel), bound, "nchw"
    x = per_sample(g, s_seq, in_shape)
    c_out, c_in_g, kh, kw = w.shape
    groups = int(layer.groups)
    depthwise = groups == c_in_g * groups == c_out
    if (plain or depthwise) and integer_kernel(fan_in, peak, int8=False) == "u8u8":
        # depthwise (the OR-pools): ConvInteger's depthwise kernel (uint8 weights, zero point
        # 128) measured faster than shifted slices (bench/integer_speed.py --candidates)
        acc = g.op("ConvInteger", [x, g.const("w", w // 2 + 128, np.uint8),
                                   g.const("zx", 0, np.uint8), g.const("zq", 128, np.uint8)],
                   "acc", strides=list(layer.stride), pads=[*layer.padding, *layer.padding],
                   group=groups)
        return acc, 2, bound, "nchw"
    # im2col (one Gather) + MatMulInteger: onnxruntime's ConvInteger has no optimised
    # kernel for int8 weights and a slower one for uint8 (bench/integer_speed.py
    # --candidates); the integer GEMM is the fast one
    g_out = c_out // groups
    wg = w.reshape(groups, g_out, c_in_g, kh, kw).transpose(0, 3, 4, 2, 1).reshape(
        groups, kh * kw * c_in_g, g_out)  # rows ordered (i, j, c) as the windows
    n, m, _ = chunk_groups(int(np.prod(layer.shape)), corners) if t_steps else (0, 0, 0)
    if t_steps and nhwc and groups == 1 and kernel != "int64" and m % c_out == 0:
        # binary spikes scaled by 128 before the GEMM give u = 64 a = 128 acc itself, no
        # multiply per chunk; exact: x w / 2 pairs stay within int16 (128 * (127 + 127),
        # -128 * (128 + 128) = -2^15: the AVX2 kernel's vpmaddubsw), sums within int32
        scaled = peak == 1 and kernel == "u8s8" and fan_in * 128 * 128 + WRAP <= I32_MAX
        cols, ho, wo = _im2col(g, x, in_shape, kh, kw, layer.stride, layer.padding,
                               corners, (t_steps, n), 128 if scaled else 1)
        flat, chunk = _i64(g, "k", [-1, kh * kw * c_in_g]), _i64(g, "bnm", [1, -1, 1, m])
        gemm = _gemm_weights(g, wg[0], kernel)
        acc = [[g.op("Reshape", [_gemm(g, g.op("Reshape", [c, flat], "rows"), gemm), chunk],
                     "chunk_acc") for c in step] for step in cols]
        return acc, U_UNITS if scaled else 2, bound, "pool2_nhwc" if corners else "nhwc"
    cols, ho, wo = _im2col(g, x, in_shape, kh, kw, layer.stride, layer.padding,
                           corners and nhwc)
    if groups == 1:
        acc, factor = _matmul(g, g.op("Reshape", [cols, _i64(g, "k", [-1, kh * kw * c_in_g])]),
                              wg[0], kernel)  # [N*L, C_out]
    else:  # [N*L, kh*kw, G, C/G] -> [G, N*L, kh*kw*C/G], one GEMM per group
        per_group = g.op("Transpose", [g.op("Reshape", [cols, _i64(
            g, "kg", [-1, kh * kw, groups, c_in_g])])], "by_group", perm=[2, 0, 1, 3])
        acc, factor = _matmul(g, g.op("Reshape", [per_group, _i64(
            g, "gk", [groups, -1, kh * kw * c_in_g])]), wg, kernel)  # [G, N*L, C_out/G]
        acc = g.op("Reshape", [g.op("Transpose", [acc], "t", perm=[1, 0, 2]),
                               _i64(g, "nl", [-1, c_out])], "acc_nl")
    acc = g.op("Reshape", [acc, _i64(g, "nhwc", [-1, ho, wo, c_out])], "acc_nhwc")
    if nhwc:
        return acc, factor, bound, "pool2_nhwc" if corners else "nhwc"
    return g.op("Transpose", [acc], "acc_nchw", perm=[0, 3, 1, 2]), factor, bound, "nchw"


def _synaptic_sum(g: GraphBuilder, layer: FixedLayer | FixedSynapse, s_seq: str,
                  in_shape, peak: int = 1, plain: bool = False) -> tuple[str, int]:
    """(a, a bound on |a|): a = W s, int64 [T*B, *out] (a conv's wrapped to 24 bits), from uint8
    [T, B, *in_shape] holding values 0..peak. `plain`: ConvInteger / MatMulInteger on uint8
    weights w / 2 + 128 with zero point 128 for every synapse (the direct mapping, exact while
    fan_in 255 peak < 2^31; kept as the baseline of bench/integer_speed.py)."""
    acc, factor, bound, _ = _raw_sum(g, layer, s_seq, in_shape, peak, plain)
    a = _as_i64(g, acc, factor)
    if layer.kind != "conv" or bound < WRAP:
        return a, bound  # |a| < 2^23 whatever the spikes: Lava's 24-bit wrap is the identity
    # Lava's Conv: signed_clamp(a, 24) = ((a + 2^23) mod 2^24) - 2^23
    return g.op("Sub", [g.op("Mod", [g.op("Add", [a, _i64(g, "half", WRAP)]),
                                     _i64(g, "range", 2 * WRAP)], fmod=0),
                        _i64(g, "half2", WRAP)], "a24"), WRAP


def _wrap(g: GraphBuilder, x: str, bits: int, dtype) -> str:
    """((x + 2^(bits-1)) mod 2^bits) - 2^(bits-1): x wrapped into [-2^(bits-1), 2^(bits-1))."""
    half = 1 << (bits - 1)
    return g.op("Sub", [g.op("Mod", [g.op("Add", [x, g.const("half", half, dtype)]),
                                     g.const("range", 2 * half, dtype)], fmod=0),
                        g.const("half", half, dtype)], f"wrap{bits}")


def _drive(g: GraphBuilder, layer: FixedLayer, x: str, in_shape, peak: int, extra,
           corners: bool = False, t_steps: int = 0):
    """The layer's synaptic sums, int32 [T*B, ...] in the layout they come in, and `to_u`, which
    builds u = wrap24(a << 6) (int32) from any slice of them; with a bound on |u|, the layout
    ('nchw', 'nhwc', or 'pool2_nhwc' where `corners` is asked and the synapse is an im2col
    conv: `_raw_sum`), and `unwrapped`, u's form where every sum is within +-(2^16 - 1) (no
    wrap can act; None on the int64 path). The neuron loop applies `to_u` chunk by chunk.

    Lava wraps each conv's sum to 24 bits, then u = a << 6 to 24 bits. Both wraps keep a's
    value modulo 2^24, so u = wrap24(64 a) = 64 wrap18(a) of the raw (unwrapped) sum of every
    synapse: one wrap, on the GEMMs' int32 sums (a = 2 acc: u = 128 wrap17(acc)), and only
    where 64 * sum_bound >= 2^23 (else every wrap is the identity). `t_steps` given, the sums
    may come as a list per step of the neuron chunks' (`_raw_sum`), and may be u itself (the
    spikes scaled by 128 before the GEMM: u = 128 acc with no multiply). The sixth value: what
    one unit of the sums is in units of the GEMM's acc (1, or 128 where the sums are u), for
    the bound the neurons' If compares them with."""
    terms = [_raw_sum(g, layer, x, in_shape, peak, nhwc=not extra, corners=corners,
                      t_steps=t_steps)]
    terms += [_raw_sum(g, syn, xs, shape, p) for syn, xs, shape, p in extra]
    layout = terms[0][3]
    bound = sum(t[2] for t in terms)
    wraps = 64 * bound >= WRAP
    per = 1 if terms[0][1] == U_UNITS else 128  # u per unit of the sums
    def unwrapped(b: GraphBuilder, a: str) -> str:  # u = 128 acc where |acc| < 2^16
        return a if per == 1 else b.op("Mul", [a, b.const("act", 128, np.int32)], "u")

    if (per == 1 or all(t[1] == 2 for t in terms)) and bound < I32_MAX:  # int32 throughout
        acc = terms[0][0]
        for t in terms[1:]:
            acc = g.op("Add", [acc, t[0]], "acc_sum")
        if wraps and FLOAT_WRAP and bound // 2 + (1 << 16) < 1 << 24:
            def to_u(b: GraphBuilder, a: str) -> str:
                # u = 128 acc - 2^24 floor((acc + 2^16) / 2^17) in float32 (of the sums x =
                # acc or 128 acc: per x - 2^24 floor((x + 2^23 / per) per / 2^24)): every
                # value an integer below 2^24 times a power of two, so exact
                # (bench/integer_speed.py --candidates: cheaper than Mod on int32)
                af = b.op("Cast", [a], "acc_f", to=F32)
                q = b.op("Floor", [b.op("Mul", [b.op("Add", [af, b.const("h", (1 << 23) // per)],
                                                     "acc_h"), b.const("r", per / 2.0 ** 24)],
                                        "acc_q")], "q")
                u = af if per == 1 else b.op("Mul", [af, b.const("act", 128.0)], "u128")
                u = b.op("Sub", [u, b.op("Mul", [q, b.const("m", float(1 << 24))], "q24")],
                         "u_f")
                return b.op("Cast", [u], "u", to=I32)
            return acc, to_u, WRAP, layout, unwrapped, 128 // per

        def to_u(b: GraphBuilder, a: str) -> str:
            if wraps:  # 128 wrap17(acc) = wrap24(128 acc)
                a = _wrap(b, a, 17 if per == 128 else 24, np.int32)
            return unwrapped(b, a)
        return acc, to_u, min(64 * bound, WRAP), layout, unwrapped, 128 // per
    a = _as_i64(g, terms[0][0], terms[0][1])
    for t in terms[1:]:
        a = g.op("Add", [a, _as_i64(g, t[0], t[1])], "a_sum")
    if wraps:
        a = _wrap(g, a, 18, np.int64)
    u = g.op("Mul", [a, _i64(g, "act", 64)], "u64")
    return (g.op("Cast", [u], "u", to=I32), lambda b, u: u, min(64 * bound, WRAP), layout, None,
            1)


def or_pool(layer: FixedLayer, peak: int) -> bool:
    """Whether `layer` is an OR-pool whose spikes are exactly "a window holds a nonzero input":
    a depthwise conv of positive weights, no bias, memoryless neurons (dv = 4095) at threshold 0
    from v = 0, its sum unwrapped (64 sum_bound < 2^23). Then u = 64 sum w x >= 0 at every step;
    any v > 0 fires and resets, and v <= 0 is 0, so the state entering every step is 0, v = u
    and it fires iff u > 0, i.e. iff a window holds an x > 0 (the quantiser's OR-pools)."""
    w = np.asarray(layer.weight)
    return (layer.pool and layer.kind == "conv" and not layer.synapses and w.ndim == 4
            and w.shape[1] == 1 and int(layer.groups) == w.shape[0] and bool((w > 0).all())
            and bool((np.asarray(layer.dv) == 4095).all()) and int(layer.vth_mant) == 0
            and not np.asarray(layer.v_init).any() and layer.bias_mant is None
            and getattr(layer, "weight_exp", 0) == 0 and 64 * sum_bound(w, peak) < WRAP
            and all(p < k for p, k in zip(layer.padding, w.shape[2:], strict=True)))


def _pool2_after(net: FixedNet, layer: FixedLayer) -> FixedLayer | None:
    """The OR-pool `_neuron_layer` can compute with `layer`'s neurons (layout 'pool2'): the
    next layer, an `or_pool` of 2x2 windows at stride 2 without padding on `layer`'s spikes,
    which nothing else takes (no merge, no other synapse), on an even map."""
    k = net.layers.index(layer)
    if k + 1 >= len(net.layers) or not layer.spiking or len(layer.shape) != 3:
        return None
    pool = net.layers[k + 1]
    takers = [x for x in net.layers[k + 2:] if x.source == layer.name]
    takers += [s for x in net.layers for s in x.synapses if s.source == layer.name]
    takers += [m for m in net.merges if layer.name in m.inputs]
    ok = (or_pool(pool, 1) and not pool.source and not takers
          and np.asarray(pool.weight).shape[2:] == (2, 2) and tuple(pool.stride) == (2, 2)
          and tuple(pool.padding) == (0, 0) and layer.shape[1] % 2 == 0
          and layer.shape[2] % 2 == 0)
    return pool if ok else None


def _or_pool(g: GraphBuilder, layer: FixedLayer, s_seq: str, tb: str, in_shape,
             peak: int) -> str:
    """An `or_pool` layer's spikes as a MaxPool of the values (padding takes no part, as the
    conv's zeros), > 0 as 0 / 1: uint8 [T, B, *shape]. On float32 (small integers: exact):
    onnxruntime's uint8 MaxPool measured 4x slower than Cast + float MaxPool + Cast
    (bench/integer_speed.py --candidates)."""
    x = g.op("Cast", [per_sample(g, s_seq, in_shape)], "s_float", to=F32)
    m = g.op("MaxPool", [x], "or_pool", kernel_shape=list(np.asarray(layer.weight).shape[2:]),
             strides=list(layer.stride), pads=[*layer.padding, *layer.padding])
    if peak > 1:
        m = g.op("Min", [m, g.const("one", 1.0)], "or_spike")
    return per_step(g, g.op("Cast", [m], "or_u8", to=U8), tb, layer.shape)


def _merge(g: GraphBuilder, merge: FixedMerge, a: str, b: str, tb: str) -> str:
    """A SEW merge on uint8 [T, B, ...] values (reshaped to the merge's shape), uint8 out."""
    if merge.peak > 255:
        raise ONNXExportError(f"merge {merge.name!r}: values up to {merge.peak} do not fit the "
                              "uint8 spike path")
    a, b = per_step(g, a, tb, merge.shape), per_step(g, b, tb, merge.shape)
    if merge.op == "add":
        return g.op("Add", [a, b], "sew_add")
    if merge.op == "and":
        return g.op("Mul", [a, b], "sew_and")
    if merge.op == "iand":
        return g.op("Mul", [g.op("Sub", [g.const("one", 1, np.uint8), a], "not_a"), b],
                    "sew_iand")
    raise ONNXExportError(f"merge {merge.name!r}: unknown op {merge.op!r}")


def _extreme(g: GraphBuilder, op: str, drive) -> str:
    """ReduceMax or ReduceMin (`op`) of the sums `drive`: a tensor, or `_raw_sum`'s list of
    chunks per step (each reduced, then the Max or Min of those)."""
    if isinstance(drive, str):
        return g.op(op, [drive], "sum_extreme", keepdims=0)
    parts = [g.op(op, [c], "chunk_extreme", keepdims=0) for step in drive for c in step]
    return parts[0] if len(parts) == 1 else g.op(op[6:], parts, "sum_extreme")


def _output(g: GraphBuilder, outputs: list, value: str, name: str, dtype, shape) -> None:
    g.nodes.append(helper.make_node("Identity", [value], [name]))
    outputs.append(helper.make_tensor_value_info(name, dtype, ["T", "B", *shape]))


def to_onnx_fixed(net: FixedNet, *, plain: bool = False, time_steps: int | None = None,
                  debug: bool = True, pool2: bool | None = None,
                  tables: bool = True) -> onnx.ModelProto:
    """The integer ONNX model of `net` (module docstring) for `time_steps` steps (default
    net.time_steps; the steps are unrolled); `debug` False: only `outputs` (no per-layer
    spikes and membranes: the deployment graph, the same arithmetic). `pool2`: the 2x2
    OR-pool of the host layer or an im2col conv computed with its neurons (`_neuron_layer`,
    layouts 'pool2' and 'pool2_nhwc') where it applies; default in the deployment graph only
    (the per-layer outputs of the debug graph would need the corner layout transposed back:
    slower). `plain`: the direct mapping, the benchmark's baseline: every synapse as
    ConvInteger / MatMulInteger with uint8 weights, every layer (OR-pools too) an int64
    Scan over a dynamic T. `tables`: in the deployment graph, a static image's host spikes
    looked up (`host_table`) where the table is small enough."""
    net.refuse_lava_timing("integer ONNX")  # a lava-dl netx file: its own timing
    if plain:  # the benchmark's baseline Scans hold v only
        net.refuse_current("the plain integer ONNX (the benchmark's baseline)")
    pool2 = not debug if pool2 is None else pool2
    t_steps = int(time_steps or net.time_steps)
    g = GraphBuilder()
    host = net.layers[0]
    bias0 = "bias0"
    shape = g.op("Shape", [bias0], "in_shape")
    batch = g.op("Slice", [shape, _i64(g, "b1", [1]), _i64(g, "b2", [2])], "batch")
    tb = (g.op("Slice", [shape, _i64(g, "s0", [0]), _i64(g, "s2", [2])], "tb") if plain else
          g.op("Concat", [_i64(g, "t", [t_steps]), batch], "tb", axis=0))
    outputs, out_seq = [], None
    last = [n for n, layer in enumerate(net.layers) if not layer.pool][-1]

    def named(layer: FixedLayer):  # a layer's Scan outputs are the graph's (pools: none)
        if layer.pool:
            return None
        s_name = f"spikes:{layer.name}" if layer.spiking else g.name("spikes")
        if layer.spiking:
            outputs.append(helper.make_tensor_value_info(s_name, U8, ["T", "B", *layer.shape]))
        outputs.append(helper.make_tensor_value_info(f"h:{layer.name}", I64,
                                                     ["T", "B", *layer.shape]))
        return s_name, f"h:{layer.name}"

    pooled = {}  # an OR-pool computed with its layer's neurons (the POOL2 layouts)

    def neurons(layer: FixedLayer, drive: str, layout: str = "nchw", bound: int = 0,
                to_u=None, unwrapped=None, unit: int = 1):
        """(spikes, h) of a layer; the graph's outputs when debug."""
        if plain:
            return _neuron_scan(g, layer, drive, layer.bias_mant, batch, named(layer))
        need_h = debug or (not layer.spiking and layer is net.layers[last])
        if layer is host and pool2 and _pool2_after(net, layer):
            layout = "pool2"
        pool = _pool2_after(net, layer) if layout in POOL2 else None
        def steps(b: GraphBuilder, to_u=to_u, bound=bound):  # the T steps unrolled, into b
            return _neuron_layer(b, layer, drive, t_steps, layout, bound, layer is host, need_h,
                                 with_spikes=debug or not pool, to_u=to_u)

        table = host_table(layer, t_steps) if layer is host and not need_h and tables and \
            not kind_of(layer).has_current else None
        if table is not None:  # (need_h False: the loop branch gives the spikes or the pool)
            y = _host_switch(g, layer, table, drive, pool is not None,
                             lambda b: steps(b)[2 if pool else 0])
            if pool:
                pooled[pool.name] = y
            return (None if pool else y), None
        # where u's wrap or v's clip could act, they run only when this batch's sums reach
        # them: below +-limit neither can (`unclipped_drive`), and the loop is built without
        # them (bench/integer_speed.py's net: the wrap and clip were a third of its conv
        # layer's neuron loop); the If picks the loop by the sums' extremes
        unclipped = unclipped_drive(layer, t_steps)
        limit = min((1 << 16) - 1, unclipped // 128)
        if unwrapped is not None and limit > 0 and (bound >= WRAP or unclipped < bound) and \
                not kind_of(layer).has_current:
            fast, full = (GraphBuilder(prefix=g.name(key) + "_") for key in ("fast", "full"))
            ys = [steps(fast, unwrapped, 128 * limit), steps(full)]
            lim = g.const("limit", limit * unit, np.int32)  # (in the sums' units)
            within = g.op("And", [
                g.op("LessOrEqual", [_extreme(g, "ReduceMax", drive), lim]),
                g.op("GreaterOrEqual", [_extreme(g, "ReduceMin", drive), g.op("Neg", [lim])])],
                "within")
            have = [k for k, y in enumerate(ys[0]) if y is not None]  # of (spikes, h, pool)
            got = if_else(g, within, "neurons", layer.name, (fast, [ys[0][k] for k in have]),
                          (full, [ys[1][k] for k in have]), [(U8, I32, U8)[k] for k in have])
            s, h, p = (got[have.index(k)] if k in have else None for k in range(3))
        else:
            s, h, p = steps(g)

        if pool:
            pooled[pool.name] = p
        if debug:
            if layer.spiking:
                _output(g, outputs, s, f"spikes:{layer.name}", U8, layer.shape)
            _output(g, outputs, g.op("Cast", [h], "h64", to=I64), f"h:{layer.name}", I64,
                    layer.shape)
        return s, h

    if plain:
        s_seq, h_seq = neurons(host, g.op("Mul", [g.op("Cast", [bias0], "b64", to=I64),
                                                  _i64(g, "act", 64)], "host_bias"))
    else:
        s_seq, h_seq = neurons(host, bias0)
    prev = host
    values = {host.name: s_seq}  # uint8 output of every layer and merge (residual nets)
    merges = {m.name: m for m in net.merges}

    def value(name: str) -> str:
        if name not in values:
            m = merges[name]
            values[name] = _merge(g, m, value(m.inputs[0]), value(m.inputs[1]), tb)
        return values[name]

    def peak_of(name: str) -> int:  # the largest value a layer's or merge's output holds
        return int(merges[name].peak) if name in merges else 1

    for layer in net.layers:
        if layer is not host:
            x_in, in_shape, peak = s_seq, prev.shape, 1
            if layer.source:
                x_in, in_shape = value(layer.source), net.shape_of(layer.source)
                peak = peak_of(layer.source)
            extra = [(syn, value(syn.source), net.shape_of(syn.source), peak_of(syn.source))
                     for syn in layer.synapses]
            if layer.name in pooled:
                s_seq = pooled[layer.name]
            elif not plain and or_pool(layer, peak):
                s_seq = _or_pool(g, layer, x_in, tb, in_shape, peak)
            elif plain:
                u = _synapse(g, layer, x_in, tb, in_shape, peak, extra, plain)
                s_seq, h_seq = neurons(layer, u)
            else:
                corners = pool2 and _pool2_after(net, layer) is not None
                sums, to_u, bound, layout, unwrapped, unit = _drive(
                    g, layer, x_in, in_shape, peak, extra, corners, 0 if debug else t_steps)
                s_seq, h_seq = neurons(layer, sums, layout, bound, to_u, unwrapped, unit)
            values[layer.name] = s_seq
            prev = layer
        if not layer.pool:
            out_seq = s_seq if layer.spiking else h_seq
    if net.layers[last].spiking:
        out_seq = g.op("Cast", [out_seq], "s_float", to=F32)
    else:
        out_seq = g.op("Div", [g.op("Cast", [out_seq], "h_float", to=F32),
                               g.const("scale", net.layers[last].scale)], "v_over_s")
    votes = g.op("Reshape", [out_seq, g.op("Concat", [tb, _i64(g, "v", [-1, net.population])],
                                           "vote_shape", axis=0)], "groups")
    _output(g, outputs, g.op("ReduceMean", [votes, _i64(g, "axes", [-1])], "voted", keepdims=0),
            "outputs", F32, [None])
    model = helper.make_model(
        helper.make_graph(g.nodes, "snnexport_fixed_point",
                          [helper.make_tensor_value_info("bias0", I16,
                                                         ["T_in", "B", *host.shape])], outputs,
                          initializer=g.inits),
        opset_imports=[helper.make_opsetid("", OPSET_FIXED)], producer_name="snnexport")
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx_fixed(net: FixedNet, path, lean: bool = False) -> Path:
    """The artifact with every layer's spikes and membranes as outputs (what the parity check
    runs), or `lean`: the deployment graph (`outputs` only, the same arithmetic; a static
    image's host spikes looked up, `host_table`)."""
    model = to_onnx_fixed(net, debug=not lean)
    return atomic_write(path, lambda tmp: onnx.save(model, tmp))


def artifact_input(net: FixedNet, x) -> np.ndarray:
    """bias0 for the artifact: the host layer's current mantissas (`host_bias_mant`), int16
    [1, B, *shape] for static images x [B, *input] (one row for every step), [T, B, *shape]
    for frames x [T, B, *input].

    Computed in one torch thread: after a parallel op torch's OpenMP workers spin for some
    milliseconds, and onnxruntime's pool, running the artifact right after on the same cores,
    lost them (bench/integer_speed.py's net, 2 cores: host part and deployment graph 57 -> 49
    ms median, the host part alone 2.5 -> 4.5 ms)."""
    import torch

    from ..quant.emulator import host_bias_mant

    x = torch.as_tensor(x)
    static = x.dim() == len(net.input_shape) + 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mant, _ = host_bias_mant(net.layers[0], x.unsqueeze(0) if static else x,
                                 net.input_shape, torch.int16,
                                 net.time_steps if static else len(x))
    finally:
        torch.set_num_threads(threads)
    return mant.numpy()


class ONNXFixedTarget:
    """Runs the fixed-point ONNX artifact in onnxruntime (optimisations off) on static images
    or frame sequences; the host layer's mantissas come from the emulator's own code."""

    def __init__(self, net: FixedNet, artifact=None):
        net.refuse_lava_timing("integer ONNX")
        self.net = net
        self.artifact = artifact  # a written file: run it, as read back from disk
        self.sessions: dict[int, object] = {}  # one per number of steps (unrolled)

    def _session(self, t_steps: int):
        if t_steps not in self.sessions:
            self.sessions[t_steps] = session(
                to_onnx_fixed(self.net, time_steps=t_steps) if self.artifact is None else
                artifact_model(self.artifact, t_steps, self.net.time_steps))
        return self.sessions[t_steps]

    def __call__(self, x, dtype=None):
        import torch

        from ..readout import readout_scores
        from ..sim.reference import SimResult

        net = self.net
        x = torch.as_tensor(x, dtype=torch.float64)
        static = x.dim() == len(net.input_shape) + 1
        t_steps = net.time_steps if static else x.shape[0]
        seq = artifact_input(net, x)  # [1, B, ...] for a static image: every step
        sess = self._session(t_steps)
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"bias0": seq}),
                       strict=True))
        spikes, membrane, last = {}, {}, None
        for layer in net.layers:
            if layer.pool:
                continue
            h = torch.from_numpy(out[f"h:{layer.name}"]).to(torch.float64) / layer.scale
            membrane[layer.name] = h
            if layer.spiking:
                spikes[layer.name] = torch.from_numpy(out[f"spikes:{layer.name}"]).to(
                    torch.float64)
                last = spikes[layer.name]
            else:
                last = h
        b = seq.shape[1]
        voted = last.reshape(t_steps, b, -1, net.population).mean(-1)
        return SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                         membrane)
