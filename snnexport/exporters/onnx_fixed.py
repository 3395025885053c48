"""Fixed-point IR -> ONNX (opset 17): Loihi 2's integer arithmetic on an ordinary runtime.

    bias0 int64 [T, B, *shape_1]  the host layer's current mantissas per step (the host synapse
                                  stays on the host, as on the chip: snnexport.quant.emulator.
                                  host_bias_mant computes them)
    -> `spikes:<name>` uint8 [T, B, *shape], `h:<name>` int64 (v before reset) per layer,
       `outputs` float32 [T, B, classes] (voted spikes, or v / S of a non-spiking readout)

Synapses are integer AND-and-add: ConvInteger / MatMulInteger on uint8 spikes and the halved
even weights (w / 2 in [-128, 127], stored as uint8 with zero point 128), times 2; a Conv sum is
wrapped to 24 bits as Lava's Conv does. Each neuron layer is a Scan over T in int64 with the
rules of snnexport/quant/emulator.py: u = wrap24(a << 6); v = trunc((4096 - dv) v / 4096) + u +
(bias_mant << 6), clipped to +-(2^23 - 1); s = v > vth_mant << 6; v = 0 where s. ONNX integer
Div truncates toward zero, which is the decay's rounding.

Residual nets: a SEW merge of spike trains is computed on the uint8 values (ADD `Add`: graded
0, 1, 2, ... up to the merge's peak, at most 255; AND `Mul`; IAND `Mul(1 - a, b)` on binary a),
and the synapse behind it is the same ConvInteger / MatMulInteger on those values (an integer
multiply-accumulate, exact). A layer with further synapses (Spiking ResNet) adds their integer
sums (each conv's wrapped to 24 bits, as each Lava Conv wraps its own) before u = a << 6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..files import atomic_write
from ..quant.fixed import STATE_MAX, FixedLayer, FixedMerge, FixedNet, FixedSynapse
from .onnx_common import OPSET, GraphBuilder, ONNXExportError, per_sample, per_step, session

I64, U8, F32, I32 = TensorProto.INT64, TensorProto.UINT8, TensorProto.FLOAT, TensorProto.INT32
WRAP = 1 << 23


def _i64(g: GraphBuilder, hint, value):
    return g.const(hint, value, np.int64)


def _neuron_scan(g: GraphBuilder, layer: FixedLayer, drive_seq: str, bias: np.ndarray | None,
                 batch: str) -> tuple[str, str]:
    """Scan over T of one layer. drive_seq int64 [T, B, *shape] (u, or the host bias << 6).
    Returns (spikes uint8 seq, h int64 seq)."""
    body = GraphBuilder(prefix="b_")
    keep = _i64(body, "keep", 4096 - np.asarray(layer.dv, np.int64))
    p = body.op("Mul", ["v_in", keep], "p")
    v = body.op("Div", [p, _i64(body, "unity", 4096)], "decayed")  # truncates toward zero
    v = body.op("Add", [v, "d_in"], "charged")
    if bias is not None:
        v = body.op("Add", [v, _i64(body, "bias", np.asarray(bias, np.int64) << 6)], "biased")
    v = body.op("Clip", [v, _i64(body, "lo", -STATE_MAX), _i64(body, "hi", STATE_MAX)], "h")
    fired = body.op("Greater", [v, _i64(body, "vth", int(layer.vth_mant) << 6)], "fired")
    v_new = body.op("Where", [fired, _i64(body, "zero", 0), v], "v_new")
    spikes = body.op("Cast", [fired], "spike", to=U8)
    h = body.op("Identity", [v], "h_out")
    graph = helper.make_graph(
        body.nodes, f"{layer.name}_step",
        [helper.make_tensor_value_info("v_in", I64, None),
         helper.make_tensor_value_info("d_in", I64, None)],
        [helper.make_tensor_value_info(v_new, I64, None),
         helper.make_tensor_value_info(spikes, U8, None),
         helper.make_tensor_value_info(h, I64, None)], initializer=body.inits)
    full = g.op("Concat", [batch, _i64(g, "shape", list(layer.shape))], "state_shape", axis=0)
    v0 = g.op("Expand", [_i64(g, "v_init", np.asarray(layer.v_init, np.int64)), full], "v0")
    outs = g.op("Scan", [v0, drive_seq], f"{layer.name}_scan", outputs=3, body=graph,
                num_scan_inputs=1)
    return outs[1], outs[2]


def _synapse(g: GraphBuilder, layer: FixedLayer, s_seq: str, tb: str, in_shape,
             extra=()) -> str:
    """u = wrap24((W s) << 6), int64 [T, B, *shape], from uint8 spikes [T, B, *in_shape];
    extra: (FixedSynapse, its uint8 input, its input shape) summed into a before the shift."""
    a = _synaptic_sum(g, layer, s_seq, in_shape)
    for syn, x, shape in extra:
        a = g.op("Add", [a, _synaptic_sum(g, syn, x, shape)], "a_sum")
    u = g.op("Mul", [a, _i64(g, "act", 64)], "u")
    big = g.op("Greater", [u, _i64(g, "max", WRAP)], "big")
    u1 = g.op("Where", [big, g.op("Sub", [u, _i64(g, "r", 2 * WRAP)]), u], "u1")
    low = g.op("LessOrEqual", [u1, _i64(g, "min", -WRAP)], "low")
    u2 = g.op("Where", [low, g.op("Add", [u, _i64(g, "r2", 2 * WRAP)]), u1], "u2")
    return per_step(g, u2, tb, layer.shape)


def _synaptic_sum(g: GraphBuilder, layer: FixedLayer | FixedSynapse, s_seq: str,
                  in_shape) -> str:
    """a = W s, int64 [T*B, *out] (a conv's wrapped to 24 bits), from uint8 [T, B, *in_shape]."""
    if getattr(layer, "weight_exp", 0) != 0:
        raise ONNXExportError(f"layer {layer.name!r}: weight_exp {layer.weight_exp} (the "
                              "fixed-point IR keeps 0)")
    w = np.asarray(layer.weight, np.int64)
    if (w % 2).any() or w.min() < -256 or w.max() > 254:
        raise ONNXExportError(f"layer {layer.name!r}: weights must be even in [-256, 254]")
    q = (w // 2 + 128).astype(np.uint8)  # uint8 with zero point 128: exact
    zx, zq = g.const("zx", 0, np.uint8), g.const("zq", 128, np.uint8)
    if layer.kind == "conv":
        x = per_sample(g, s_seq, in_shape)
        acc = g.op("ConvInteger", [x, g.const("w", q, np.uint8), zx, zq], "acc",
                   strides=list(layer.stride), pads=[*layer.padding, *layer.padding],
                   group=int(layer.groups))
    else:
        x = per_sample(g, s_seq, [int(np.prod(in_shape))])
        acc = g.op("MatMulInteger", [x, g.const("w", q.T, np.uint8), zx, zq], "acc")
    a = g.op("Mul", [g.op("Cast", [acc], "acc64", to=I64), _i64(g, "two", 2)], "a")
    if layer.kind == "conv":  # Lava's Conv: signed_clamp(a, 24) = ((a + 2^23) mod 2^24) - 2^23
        a = g.op("Sub", [g.op("Mod", [g.op("Add", [a, _i64(g, "half", WRAP)]),
                                      _i64(g, "range", 2 * WRAP)], fmod=0),
                         _i64(g, "half2", WRAP)], "a24")
    return a


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


def _output(g: GraphBuilder, outputs: list, value: str, name: str, dtype, shape) -> None:
    g.nodes.append(helper.make_node("Identity", [value], [name]))
    outputs.append(helper.make_tensor_value_info(name, dtype, ["T", "B", *shape]))


def to_onnx_fixed(net: FixedNet) -> onnx.ModelProto:
    g = GraphBuilder()
    host = net.layers[0]
    bias0 = "bias0"
    shape = g.op("Shape", [bias0], "in_shape")
    tb = g.op("Slice", [shape, _i64(g, "s0", [0]), _i64(g, "s2", [2])], "tb")
    batch = g.op("Slice", [shape, _i64(g, "b1", [1]), _i64(g, "b2", [2])], "batch")
    drive = g.op("Mul", [bias0, _i64(g, "act", 64)], "host_bias")
    s_seq, h_seq = _neuron_scan(g, host, drive, None, batch)
    outputs, out_seq = [], None
    prev = host
    values = {host.name: s_seq}  # uint8 output of every layer and merge (residual nets)
    merges = {m.name: m for m in net.merges}

    def value(name: str) -> str:
        if name not in values:
            m = merges[name]
            values[name] = _merge(g, m, value(m.inputs[0]), value(m.inputs[1]), tb)
        return values[name]

    for layer in net.layers:
        if layer is not host:
            x_in, in_shape = s_seq, prev.shape
            if layer.source:
                x_in, in_shape = value(layer.source), net.shape_of(layer.source)
            extra = [(syn, value(syn.source), net.shape_of(syn.source))
                     for syn in layer.synapses]
            u = _synapse(g, layer, x_in, tb, in_shape, extra)
            s_seq, h_seq = _neuron_scan(g, layer, u, layer.bias_mant, batch)
            values[layer.name] = s_seq
            prev = layer
        if layer.pool:
            continue
        if layer.spiking:
            _output(g, outputs, s_seq, f"spikes:{layer.name}", U8, layer.shape)
            out_seq = g.op("Cast", [s_seq], "s_float", to=F32)
        else:
            out_seq = g.op("Div", [g.op("Cast", [h_seq], "h_float", to=F32),
                                   g.const("scale", layer.scale)], "v_over_s")
        _output(g, outputs, h_seq, f"h:{layer.name}", I64, layer.shape)
    votes = g.op("Reshape", [out_seq, g.op("Concat", [tb, _i64(g, "v", [-1, net.population])],
                                           "vote_shape", axis=0)], "groups")
    _output(g, outputs, g.op("ReduceMean", [votes], "voted", axes=[-1], keepdims=0), "outputs",
            F32, [None])
    model = helper.make_model(
        helper.make_graph(g.nodes, "snnexport_fixed_point",
                          [helper.make_tensor_value_info("bias0", I64,
                                                         ["T", "B", *host.shape])], outputs,
                          initializer=g.inits),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnexport")
    onnx.checker.check_model(model, full_check=True)
    return model


def write_onnx_fixed(net: FixedNet, path) -> Path:
    model = to_onnx_fixed(net)
    return atomic_write(path, lambda tmp: onnx.save(model, tmp))


class ONNXFixedTarget:
    """Runs the fixed-point ONNX artifact in onnxruntime (optimisations off) on static images
    or frame sequences; the host layer's mantissas come from the emulator's own code."""

    def __init__(self, net: FixedNet):
        self.net = net
        self.session = session(to_onnx_fixed(net))
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, x, dtype=None):
        import torch

        from ..quant.emulator import host_bias_mant
        from ..readout import readout_scores
        from ..sim.reference import SimResult

        net = self.net
        x = torch.as_tensor(x, dtype=torch.float64)
        static = x.dim() == len(net.input_shape) + 1
        mant, _ = host_bias_mant(net.layers[0], x.unsqueeze(0) if static else x,
                                 net.input_shape)
        t_steps = net.time_steps if static else x.shape[0]
        seq = mant.expand(t_steps, *mant.shape[1:]).contiguous().numpy()
        out = dict(zip(self.names, self.session.run(None, {"bias0": seq}), strict=True))
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
