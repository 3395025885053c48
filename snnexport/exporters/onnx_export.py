"""IR -> ONNX (opset 17), written node by node with onnx.helper.

Why by hand rather than torch.onnx: the folded IR is not a torch module, and building the graph
directly gives exactly the structure we want: stateless layers applied to all T*B samples at
once, each neuron layer's T steps unrolled (T is fixed in the sequence artifact) and run chunk
by chunk (onnx_common.CHUNK), spikes between layers as uint8 {0, 1}, the OR-pool as a MaxPool
of the spikes (on float32: onnxruntime's uint8 MaxPool is slower). In the deployment graph
(`debug=False`) a 2x2 OR-pool behind a neuron layer is the Max of its window's four spikes,
computed with that layer's neurons (`_unrolled` pool2), and a neuron layer driven from x alone
runs a static image's one row at every step without slicing it per step (`_rows_switch`):
bench/onnx_speed.py's net 98.8 -> 86.7 ms (fastest of 15-21 runs, 2026-12-03).

Two artifacts:
  sequence (to_onnx)         x float32 [T, B, *input] (T = the graph's time_steps, or
                             `time_steps`; the steps are unrolled), or [1, B, *input] for a
                             static image that every step reads (what depends on x alone,
                             the first conv, is then computed once) -> scores [B, classes],
                             outputs [T, B, classes], and per neuron layer `spikes:<name>`
                             uint8 [T, B, *shape] and `h:<name>` float32 (H_t, for telling
                             threshold ties), and per spike-fed synapse `in:<name>`, its
                             uint8 input (`debug=False`, `export --lean`: scores and outputs
                             only, the deployment form)
  streaming (to_onnx_step)   one time step: x_t [B, *input] and `v:<name>` states in, outputs
                             o_t, spikes and the new states out

Arithmetic is float32 with the IR's weights. The neuron step (each step of each chunk, and the
streaming artifact's one step) is the IR's Neuron docstring, op for op: J = current_decay*J + I
for a current-based neuron (else J = I), H = decay*V + gain*J;
S = H >= threshold; V = H*(1-S) | H - reset_by*S (reset_by = threshold unless the Neuron says
otherwise: snnTorch's subtract reset with beta < 1 removes threshold / beta).
Where the time goes (bench/onnx_speed.py --profile: onnxruntime's profiler, the 000 MNIST net
at width 128, T=8, B=16, 1 thread, per node its fastest of 5 runs, a loaded machine): before,
with a Scan per layer and the uint8 MaxPool, Conv 37 %, Scan 21 %, MatMul 20 %, MaxPool 18 %;
now Conv 63 %, MatMul 21 %, MaxPool (float) 3 %, Cast 3 %, the unrolled neuron ops (Slice, Mul,
Add, GreaterOrEqual, Less, Concat) 10 % together: the dense float work of the spike-fed
layers is what is left, and torch eager does the same float GEMMs.

Residual graphs: every node takes its inputs by name (graph.inputs), so any DAG the IR holds is
written. Merges, element-wise per step: Add of two uint8 values stays uint8 (SEW ADD: graded
0, 1, 2; the synapse behind it gets those values), of a current and anything is a float Add
(Spiking ResNet); SEWAnd a*b and SEWIAnd (1-a)*b on uint8 spikes stay uint8 (binary), on
graded or float values are float. Which synapse inputs are binary spikes and which graded
(integer values that may exceed 1: a SEW ADD's sums, or pooled counts of them) is recorded
in the model's metadata `snnexport.synapse_inputs` (JSON {layer: "binary" | "graded"}, for
the uint8-fed layers); the binary-spike (AND-and-add) check applies to the binary ones only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..files import atomic_write
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.neurons import kind_of, lookup
from .onnx_common import (
    OPSET,
    GraphBuilder,
    ONNXExportError,
    chunk_const,
    chunk_groups,
    corner,
    if_else,
    per_sample,
    per_step,
    pool2_order,
    step_rows,
)

F32, U8, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64


def _cuba_current(g: GraphBuilder, node, j: str | None, i: str) -> str:
    """'cuba_lif''s current (ir/neurons.py cuba_current) as ops: J_t = current_decay * J_{t-1}
    + I_t (the Neuron docstring); j None: J_{t-1} = 0, so J_t = I_t."""
    if j is None:
        return i
    cd = node.current_decay
    cd = cd if isinstance(cd, str) else g.const("current_decay", cd)
    return g.op("Add", [g.op("Mul", [cd, j], "current_decayed"), i], "current")


def _neuron_step(g: GraphBuilder, node, v: str | None, i: str,
                 decayed: bool = False) -> tuple[str, str, str]:
    """(H, S uint8, V_new) for one step, the Neuron docstring line by line. `node`: an
    ir.Neuron, or a `_ChunkNode` whose constants are graph names already; v None: V = 0 (H is
    the drive); `decayed`: v is decay * V already. `i`: the current J_t of a current-based
    neuron (its kind's current ops, KIND_OPS), else the input I_t."""
    def const(hint, value):
        return value if isinstance(value, str) else g.const(hint, value)

    drive = i if node.gain is None else g.op("Mul", [const("gain", node.gain), i], "drive")
    if v is None:
        h = drive
    else:
        h = g.op("Add", [v if decayed else g.op("Mul", [const("decay", node.decay), v],
                                                "decayed"), drive], "h")
    if not node.spiking:
        return h, None, h
    thr = const("threshold", node.threshold)
    fired = g.op("GreaterOrEqual", [h, thr], "fired")
    if node.reset == "hard":  # V = H (1 - S), with 1 - S = not S (a bool Not: cheaper than a
        # second float comparison; a NaN H gives V = NaN either way)
        v_new = g.op("Mul", [h, g.op("Cast", [g.op("Not", [fired])], "keep", to=F32)], "v")
    else:
        s = g.op("Cast", [fired], "s", to=F32)  # V = H - reset_by S (reset_by None: threshold)
        amount = thr if node.reset_by is None else const("reset_by", node.reset_by)
        v_new = g.op("Sub", [h, g.op("Mul", [amount, s], "sub")], "v")
    return h, g.op("Cast", [fired], "spike", to=U8), v_new


# each neuron kind's step as ONNX ops (ir/neurons.py, found by the kind's name): (its current's
# ops, None for a kind without one; its membrane's). A kind missing here is refused in one line.
KIND_OPS = {"lif": (None, _neuron_step), "cuba_lif": (_cuba_current, _neuron_step)}


def _unrolled(g: GraphBuilder, name: str, node: ir.Neuron, x_seq: str, t_steps: int,
              with_h: bool, rows: list | str | None = None, pool2: bool = False
              ) -> tuple[str, str | None, str | None]:
    """Neuron layer over x_seq float32 [T, B, *shape], its T steps unrolled, chunk by chunk
    (onnx_common.CHUNK): every step is `_neuron_step`'s ops on one chunk of neurons, so the
    arithmetic is the same op for op. Returns (out_seq, spikes_u8, h_seq): spikes (uint8) for
    a spiking layer, V_t for a non-spiking one; H_t only if with_h. Chosen over one Scan per
    layer (T dynamic) by measurement (bench/onnx_speed.py; module docstring).
    rows: x_seq is [T_in, B, *shape] (computed from the graph's input, T_in = T or 1), and
    step t reads the row between the bounds rows[t] (onnx_common.step_rows); "static": x_seq
    is one row [1, B, *shape] that every step reads (no per-step Slice).
    pool2 (a spiking layer whose spikes go only to a 2x2 stride-2 OR-pool, `_pool2_of`): the
    neurons in four planes, one per corner of the pool windows ([2, 2, C, H/2, W/2] order,
    strided Slices of x_seq), the four chunks of the same windows stepped together and the
    pool the Max of their uint8 spikes: out_seq is the pool's uint8 [T, B, C, H/2, W/2], no
    layer-wide spikes (no Cast + MaxPool + Cast of them), h_seq None."""
    shape = list(node.shape)
    n, m, groups = chunk_groups(int(np.prod(shape)), pool2)
    n_p = n // 4

    def flat(value):  # per-neuron constants in the chunks' order
        a = np.broadcast_to(np.asarray(value, np.float32), shape)
        return np.ascontiguousarray(pool2_order(a) if pool2 else a).reshape(-1)

    current_ops, membrane_ops = lookup(KIND_OPS, node, "the ONNX model")
    kind = kind_of(node)
    per = {k: flat(v) for k, v in (("decay", node.decay), ("threshold", node.threshold),
                                   ("gain", node.gain if node.gain is not None else 1.0))}
    if node.reset_by is not None:
        per["reset_by"] = flat(node.reset_by)
    if current_ops is not None:
        per[kind.current_param] = flat(getattr(node, kind.current_param))
    # decay * V_-1: float32, one rounding, as Mul
    v0 = per["decay"] * flat(node.v_init)
    lead = [0 if rows else t_steps, -1]
    if pool2:  # plane q = 2a + b: corner (a, b) of the windows
        planes = [g.op("Reshape", [corner(g, x_seq, a, b, shape[1:], (3, 4)), g.const(
            "tbnm", [*lead, n_p, m], np.int64)], "plane") for a in (0, 1) for b in (0, 1)]
    else:
        seq = g.op("Reshape", [x_seq, g.const("tbnm", [*lead, n, m], np.int64)], "by_chunk")
    outs = [[[None] * n for _ in range(t_steps)] for _ in range(2)]  # out, h
    pooled = [[None] * len(groups) for _ in range(t_steps)]
    for gi, group in enumerate(groups):
        subs, srcs, v, cur = {}, {}, {}, {}
        for i in group:
            subs[i] = _ChunkNode(node, {k: chunk_const(g, k, val, n, i, np.float32)
                                        for k, val in per.items()
                                        if k != "gain" or node.gain is not None})
            src, j = (planes[i // n_p], i % n_p) if pool2 else (seq, i)
            srcs[i] = (src, j)
            if rows:  # the chunk's T_in rows, once
                srcs[i] = (g.op("Slice", [src, g.const("st", [j], np.int64),
                                          g.const("en", [j + 1], np.int64),
                                          g.const("ax", [2], np.int64)], "chunk"), None)
        for t in range(t_steps):
            for i in group:
                src, j = srcs[i]
                if rows == "static":
                    x_t = src
                elif rows:
                    x_t = g.op("Slice", [src, *rows[t], g.const("ax", [0], np.int64)], "x_t")
                else:
                    x_t = g.op("Slice", [src, g.const("st", [t, j], np.int64),
                                         g.const("en", [t + 1, j + 1], np.int64),
                                         g.const("ax", [0, 2], np.int64)], "x_t")  # [1,B,1,m]
                if current_ops is not None:
                    x_t = cur[i] = current_ops(g, subs[i], cur.get(i), x_t)
                if t == 0 and not v0.any():  # decay * 0 + drive: the drive (0 + d = d)
                    h, s, v[i] = membrane_ops(g, subs[i], None, x_t)
                elif t == 0:
                    h, s, v[i] = membrane_ops(g, subs[i], chunk_const(g, "dv0", v0, n, i,
                                                                        np.float32),
                                              x_t, decayed=True)
                else:
                    h, s, v[i] = membrane_ops(g, subs[i], v[i], x_t)
                outs[0][t][i] = s if s is not None else v[i]
                outs[1][t][i] = h
            if pool2:
                pooled[t][gi] = g.op("Max", [outs[0][t][i] for i in group], "or_pool")

    def assemble(parts, hint, out_shape=shape):
        steps = [ps[0] if len(ps) == 1 else g.op("Concat", ps, hint, axis=2) for ps in parts]
        out = g.op("Concat", steps, hint, axis=0) if t_steps > 1 else steps[0]
        return g.op("Reshape", [out, g.const("s", [t_steps, -1, *out_shape], np.int64)], hint)

    if pool2:
        c, h_, w_ = shape
        return assemble(pooled, "pooled", [c, h_ // 2, w_ // 2]), None, None
    seq_out = assemble(outs[0], "seq")
    h_seq = assemble(outs[1], "h_seq") if with_h else None
    return seq_out, (seq_out if node.spiking else None), h_seq


def _rows_switch(g: GraphBuilder, name: str, t_in: str, branch, rows, dtype) -> str:
    """An If on T_in = 1: branch(builder, "static") for one row of x every step reads, else
    branch(builder, rows) (a row per step); both give the same tensor of type dtype."""
    static = g.op("Equal", [t_in, g.const("one", [1], np.int64)], "static")
    one_row, per_step_ = (GraphBuilder(prefix=g.name(key) + "_") for key in ("one_row",
                                                                              "per_step"))
    return if_else(g, static, "neurons", name, (one_row, [branch(one_row, "static")]),
                   (per_step_, [branch(per_step_, rows)]), [dtype])[0]


def _pool2_of(graph: Graph, name: str, node) -> str | None:
    """The OR-pool `_unrolled` can compute with neuron layer `name` (pool2): its one consumer,
    a 2x2 stride-2 OR SpikePool without padding, on an even map of spikes."""
    after = graph.consumers(name)
    if not (isinstance(node, ir.Neuron) and node.spiking and len(after) == 1
            and len(node.shape) == 3 and node.shape[1] % 2 == 0 and node.shape[2] % 2 == 0):
        return None
    pool = graph.nodes[after[0]]
    ok = (isinstance(pool, ir.SpikePool) and pool.mode == "or" and tuple(pool.kernel) == (2, 2)
          and tuple(pool.stride) == (2, 2) and tuple(pool.padding) == (0, 0))
    return after[0] if ok else None


class _ChunkNode:
    """A Neuron's view for `_neuron_step` with its per-neuron constants as graph names (one
    chunk's, or scalars)."""

    def __init__(self, node: ir.Neuron, consts: dict):
        self.spiking, self.reset = node.spiking, node.reset
        self.decay, self.threshold = consts["decay"], consts["threshold"]
        self.gain, self.reset_by = consts.get("gain"), consts.get("reset_by")
        self.current_decay = consts.get("current_decay")
        self.neuron_kind = node.neuron_kind


def _as_float(g: GraphBuilder, x: str, is_u8: bool) -> str:
    return g.op("Cast", [x], "float", to=F32) if is_u8 else x


def _prepare(graph: Graph) -> Graph:
    if not graph.metadata.get("folded"):  # exporters never fold: the caller folds once
        raise ONNXExportError("export the folded IR (snnexport fold, or passes.fold.fold)")
    g = graph
    for name, node in g.ordered():
        if not isinstance(node, (ir.Input, ir.Conv2d, ir.Dense, ir.Neuron, ir.SpikePool,
                                 ir.Flatten, ir.Readout, ir.AvgPool2d, ir.Add, ir.SEWAnd,
                                 ir.SEWIAnd)):
            raise ONNXExportError(f"node {name!r}: {type(node).__name__} has no ONNX form")
    return g


def _merge(g: GraphBuilder, node: ir.Merge, a, b) -> tuple[str, bool, bool]:
    """A merge of two (value, is_u8, binary) inputs: (value, is_u8, binary)."""
    (xa, ua, ba), (xb, ub, bb) = a, b
    if ua and ub and (isinstance(node, ir.Add) or isinstance(node, ir.SEWAnd) or ba):
        if isinstance(node, ir.Add):  # SEW ADD of spikes: graded 0, 1, 2 on the uint8 path
            return g.op("Add", [xa, xb], "sew_add"), True, False
        if isinstance(node, ir.SEWAnd):
            return g.op("Mul", [xa, xb], "sew_and"), True, ba and bb
        not_a = g.op("Sub", [g.const("one", 1, np.uint8), xa], "not_a")
        return g.op("Mul", [not_a, xb], "sew_iand"), True, bb
    fa, fb = _as_float(g, xa, ua), _as_float(g, xb, ub)
    if isinstance(node, ir.Add):
        return g.op("Add", [fa, fb], "add"), False, False
    if isinstance(node, ir.SEWAnd):
        return g.op("Mul", [fa, fb], "and"), False, False
    return g.op("Mul", [g.op("Sub", [g.const("one", 1.0), fa], "not_a"), fb], "iand"), False, \
        False


def _layers(g: GraphBuilder, graph: Graph, x: str, tb: str, batch: str, shapes, step_state=None,
            debug: bool = True, t_steps: int = 1, tb_in: str | None = None, rows=None,
            t_in: str | None = None):
    """Emit every layer. step_state: None for the sequence model (Scan), else a dict that
    collects (state input, state output) names for the one-step model. Returns the output,
    spikes and H per neuron layer, the uint8 inputs of synapses (name -> (value, shape,
    binary)) and the readout node. tb: the int64 [T, B] of values behind a neuron layer;
    tb_in and rows: x's [T_in, B] and, per step, the row of x a first neuron layer reads
    (`_unrolled`): what is computed from x alone has T_in rows (a static image: one); t_in:
    T_in as int64 [1] (the deployment graph's `_rows_switch`)."""
    tb_in = tb_in or tb
    fresh = set()  # nodes whose values are computed from x alone: T_in rows
    spikes, hs, spike_inputs, readout = {}, {}, {}, None
    pooled = {}  # an OR-pool computed with its neuron layer (`_unrolled` pool2): its spikes
    # every node's output: (value, is_u8, binary); uint8 values are spikes (binary) or the
    # integer sums of a SEW ADD (graded)
    values: dict[str, tuple[str, bool, bool]] = {}
    cur, is_u8, binary = x, False, False
    for name, node in graph.ordered():
        shape_in = None
        if isinstance(node, ir.Input):
            values[name] = (x, False, False)
            fresh.add(name)
            continue
        ins = graph.inputs(name)
        if all(i in fresh for i in ins) and not isinstance(node, ir.Neuron):
            fresh.add(name)
        rows_of = tb_in if name in fresh else tb  # (a merge of both broadcasts to T rows)
        if isinstance(node, ir.Merge):
            values[name] = _merge(g, node, values[ins[0]], values[ins[1]])
            cur, is_u8, binary = values[name]
            continue
        cur, is_u8, binary = values[ins[0]]
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            prev_shape = _prev_shape(graph, name, shapes)
            if is_u8 and debug:  # a spike-fed layer: its uint8 input, for the binary check
                spike_inputs[name] = (cur, prev_shape, binary)
            flat = per_sample(g, _as_float(g, cur, is_u8), prev_shape)
            if isinstance(node, ir.Conv2d):
                args = [flat, g.const("w", node.weight)] + (
                    [g.const("b", node.bias)] if node.bias is not None else [])
                y = g.op("Conv", args, "conv", strides=list(node.stride),
                         pads=[node.padding[0], node.padding[1]] * 2, group=node.groups)
            else:
                y = g.op("MatMul", [flat, g.const("wt", np.asarray(node.weight).T)], "matmul")
                if node.bias is not None:
                    y = g.op("Add", [y, g.const("b", node.bias)], "bias")
            cur, is_u8, binary = per_step(g, y, rows_of, shapes[name]), False, False
        elif isinstance(node, ir.Neuron):
            pool = None if debug or step_state is not None else _pool2_of(graph, name, node)
            x_seq = _as_float(g, cur, is_u8)
            r = rows if ins[0] in fresh else None
            if step_state is not None:
                v_in, ax0 = f"v:{name}", g.const("ax0", [0], np.int64)
                i_t = g.op("Squeeze", [x_seq, ax0], "i_t")  # [B, *shape]
                current_ops, membrane_ops = lookup(KIND_OPS, node, "the ONNX model")
                if current_ops is not None:  # the current is a second state, v:<name>:current
                    j_in = f"v:{name}:current"
                    i_t = current_ops(g, node, j_in, i_t)
                    step_state[f"{name}:current"] = (j_in, i_t, node.shape)
                h, s, v_new = membrane_ops(g, node, v_in, i_t)
                step_state[name] = (v_in, v_new, node.shape)
                cur = g.op("Unsqueeze", [s if s is not None else h, ax0], "out_t")
            elif r and not debug and t_in:
                # a drive from x alone in the deployment graph: an If on T_in = 1 (a static
                # image) runs the steps on its one row, no per-step Slice of it (bench/
                # onnx_speed.py's net: most of the graph's Slices were the first layer's)
                def branch(b: GraphBuilder, r_, x_seq=x_seq, node=node, name=name, pool=pool):
                    return _unrolled(b, name, node, x_seq, t_steps, False, r_,
                                     pool2=bool(pool))[0]
                cur = _rows_switch(g, name, t_in, branch, r, U8 if node.spiking else F32)
                s, h = (cur if node.spiking and not pool else None), None
            else:
                cur, s, h = _unrolled(g, name, node, x_seq, t_steps, debug, r, pool2=bool(pool))
            if pool:  # the pool's spikes computed with the neurons' (`_unrolled` pool2)
                pooled[pool] = cur
                values[name] = (None, True, True)  # (no layer-wide spikes: nothing reads them)
                continue
            is_u8 = binary = s is not None
            if s is not None:
                spikes[name] = s
            if h is not None:
                hs[name] = h
        elif name in pooled:
            cur, is_u8, binary = pooled[name], True, True
        elif isinstance(node, (ir.SpikePool, ir.AvgPool2d)):
            shape_in = _prev_shape(graph, name, shapes)
            pool = dict(kernel_shape=list(node.kernel), strides=list(node.stride),
                        pads=[node.padding[0], node.padding[1]] * 2)
            if isinstance(node, ir.SpikePool) and node.mode == "max":  # of integer counts
                y = g.op("MaxPool", [per_sample(g, _as_float(g, cur, is_u8), shape_in)],
                         "maxpool", **pool)
                if is_u8:  # the counts stay on the uint8 path (exact: 0 .. 255)
                    y = g.op("Cast", [y], "max_u8", to=U8)
                binary = False
            elif isinstance(node, ir.SpikePool) and node.mode == "or":
                if not is_u8:
                    raise ONNXExportError(f"node {name!r}: OR-pool of a non-spike input")
                # on float32 spikes (0 / 1: exact), back to uint8: onnxruntime's uint8
                # MaxPool measured 4x slower than Cast + float MaxPool + Cast
                y = g.op("Cast", [g.op("MaxPool", [g.op("Cast", [per_sample(
                    g, cur, shape_in)], "s_float", to=F32)], "orpool", **pool)], "or_u8", to=U8)
            else:
                y = g.op("AveragePool", [per_sample(g, _as_float(g, cur, is_u8), shape_in)],
                         "avgpool", count_include_pad=1, **pool)
                if isinstance(node, ir.SpikePool):  # sum = k*k * mean, exact for counts
                    y = g.op("Mul", [y, g.const("area", node.kernel[0] * node.kernel[1])])
                is_u8 = binary = False
            cur = per_step(g, y, rows_of, shapes[name])
        elif isinstance(node, ir.Flatten):
            cur = per_step(g, cur, rows_of, shapes[name])
        elif isinstance(node, ir.Readout):
            readout = node
            classes = shapes[name][0]
            grouped = per_step(g, _as_float(g, cur, is_u8), rows_of, (classes, node.population))
            cur, is_u8 = g.op("ReduceMean", [grouped], "vote", axes=[-1], keepdims=0), False
            binary = False
        values[name] = (cur, is_u8, binary)
    # the network output is float (scores, outputs): a net ending in a spiking layer without
    # a readout hands out its uint8 spikes
    return _as_float(g, cur, is_u8), spikes, hs, spike_inputs, readout


def _prev_shape(graph: Graph, name: str, shapes) -> tuple[int, ...]:
    return shapes[graph.inputs(name)[0]]


def _scores(g: GraphBuilder, o: str, readout: ir.Readout | None, t_steps: int,
            default_mode: str = "rate") -> str:
    """readout.readout_scores in ONNX; without a Readout node the graph's own readout mode
    (metadata 'readout', as the reference simulator takes it) over the last layer's output."""
    mode = readout.mode if readout else default_mode
    if mode in ("last", "lts"):
        return g.op("Gather", [o, g.const("last", -1, np.int64)], "scores", axis=0)
    if mode == "membrane":
        return g.op("ReduceMean", [o], "scores", axes=[0], keepdims=0)
    m = g.const("m", float(readout.population if readout else 1))
    counts = g.op("ReduceSum", [g.op("Round", [g.op("Mul", [o, m])]), g.const("ax", [0],
                                                                           np.int64)],
                  "counts", keepdims=0)
    return g.op("Div", [counts, g.op("Mul", [m, g.const("t", float(t_steps))])], "scores")


def to_onnx(graph: Graph, debug: bool = True, time_steps: int | None = None) -> onnx.ModelProto:
    """The sequence model: x [T, B, *input] float32, T = `time_steps` (default the graph's
    metadata 'time_steps'; the steps are unrolled). debug=False leaves out the per-layer
    spikes, H and spike-fed-input outputs that parity runs use (the deployment artifact)."""
    graph = _prepare(graph)
    t_steps = time_steps or graph.metadata.get("time_steps")
    if not t_steps:
        raise ONNXExportError("the sequence artifact unrolls its time steps: give the number "
                              "(--time-steps T; the model file does not say it)")
    t_steps = int(t_steps)
    shapes = graph.shapes()
    in_shape = graph.nodes[graph.order()[0]].shape
    g = GraphBuilder()
    shp = g.op("Shape", ["x"], "xshape")
    tb_in = g.op("Slice", [shp, g.const("z", [0], np.int64), g.const("two", [2], np.int64)],
                 "tb_in")
    batch = g.op("Slice", [shp, g.const("one", [1], np.int64), g.const("two", [2], np.int64)],
                 "batch")
    tb = g.op("Concat", [g.const("t", [t_steps], np.int64), batch], "tb", axis=0)
    # step t reads row min(t, T_in - 1) of what is computed from x (T_in = T or 1)
    t_in, rows = step_rows(g, "x", t_steps)
    o, spikes, hs, spike_inputs, readout = _layers(g, graph, "x", tb, batch, shapes,
                                                   debug=debug, t_steps=t_steps, tb_in=tb_in,
                                                   rows=rows, t_in=t_in)
    scores = _scores(g, o, readout, t_steps, graph.metadata.get("readout", "rate"))
    g.nodes.append(helper.make_node("Identity", [scores], ["scores"]))
    g.nodes.append(helper.make_node("Identity", [o], ["outputs"]))
    value_infos = [helper.make_tensor_value_info("scores", F32, ["B", None]),
                   helper.make_tensor_value_info("outputs", F32, ["T", "B", None])]
    for name, s in (spikes if debug else {}).items():
        g.nodes.append(helper.make_node("Identity", [s], [f"spikes:{name}"]))
        value_infos.append(helper.make_tensor_value_info(f"spikes:{name}", U8,
                                                         ["T", "B", *shapes[name]]))
    for name, (s, shape, _) in spike_inputs.items():
        g.nodes.append(helper.make_node("Identity", [s], [f"in:{name}"]))
        value_infos.append(helper.make_tensor_value_info(f"in:{name}", U8, ["T", "B", *shape]))
    for name, h in hs.items():
        g.nodes.append(helper.make_node("Identity", [h], [f"h:{name}"]))
        value_infos.append(helper.make_tensor_value_info(f"h:{name}", F32,
                                                         ["T", "B", *shapes[name]]))
    model = helper.make_model(
        helper.make_graph(g.nodes, "snnexport", [helper.make_tensor_value_info(
            "x", F32, ["T_in", "B", *in_shape])], value_infos, initializer=g.inits),
        opset_imports=[helper.make_opsetid("", OPSET)], producer_name="snnexport")
    model.metadata_props.append(onnx.StringStringEntryProto(
        key="snnexport.readout", value=readout.mode if readout else "rate"))
    if not graph.is_chain():  # which uint8-fed synapses take graded values (SEW ADD)
        kinds = {n: "binary" if b else "graded" for n, (_, _, b) in spike_inputs.items()}
        model.metadata_props.append(onnx.StringStringEntryProto(
            key="snnexport.synapse_inputs", value=json.dumps(kinds, sort_keys=True)))
    onnx.checker.check_model(model, full_check=True)
    return model


def synapse_inputs(graph: Graph) -> dict[str, str]:
    """Per synapse fed by uint8 values in the ONNX graph: 'binary' (spikes {0, 1} by
    construction) or 'graded' (integer values that may exceed 1, a SEW ADD's sums)."""
    from ..passes.fold import emits_integers, emits_spikes

    out = {}
    for name, node in graph.ordered():
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            src = graph.inputs(name)[0]
            if emits_spikes(graph, src):
                out[name] = "binary"
            elif emits_integers(graph, src) and not _pooled(graph, src):
                out[name] = "graded"
    return out


def _pooled(graph: Graph, name: str) -> bool:
    """A sum pool (through Flattens) makes float counts, not uint8 values."""
    node = graph.nodes[name]
    if isinstance(node, ir.Flatten):
        return _pooled(graph, graph.inputs(name)[0])
    return isinstance(node, (ir.SpikePool, ir.AvgPool2d))


def to_onnx_step(graph: Graph) -> onnx.ModelProto:
    """The streaming model: one step, x_t [B, *input] and the states v:<layer> [B, *shape]
    as inputs (and v:<layer>:current, the synaptic current of a current-based layer); o_t
    [B, classes], spikes:<layer> and the new states v_next:<layer>(:current) as outputs."""
    graph = _prepare(graph)
    shapes = graph.shapes()
    in_shape = graph.nodes[graph.order()[0]].shape
    g = GraphBuilder()
    x1 = g.op("Unsqueeze", ["x_t", g.const("ax0", [0], np.int64)], "x1")
    shp = g.op("Shape", [x1], "xshape")
    tb = g.op("Slice", [shp, g.const("z", [0], np.int64), g.const("two", [2], np.int64)], "tb")
    batch = g.op("Slice", [shp, g.const("one", [1], np.int64), g.const("two", [2], np.int64)],
                 "batch")
    state: dict = {}
    o, spikes, _, _, readout = _layers(g, graph, x1, tb, batch, shapes, step_state=state)
    g.nodes.append(helper.make_node("Squeeze", [o, g.const("ax0", [0], np.int64)], ["o_t"]))
    inputs = [helper.make_tensor_value_info("x_t", F32, ["B", *in_shape])]
    outputs = [helper.make_tensor_value_info("o_t", F32, ["B", None])]
    for name, (v_in, v_new, shape) in state.items():
        inputs.append(helper.make_tensor_value_info(v_in, F32, ["B", *shape]))
        g.nodes.append(helper.make_node("Identity", [v_new], [f"v_next:{name}"]))
        outputs.append(helper.make_tensor_value_info(f"v_next:{name}", F32, ["B", *shape]))
    for name, s in spikes.items():
        g.nodes.append(helper.make_node("Identity", [s], [f"spikes:{name}"]))
        outputs.append(helper.make_tensor_value_info(f"spikes:{name}", U8,
                                                     ["B", *shapes[name]]))
    model = helper.make_model(helper.make_graph(g.nodes, "snnexport_step", inputs, outputs,
                                                initializer=g.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="snnexport")
    onnx.checker.check_model(model, full_check=True)
    return model


def initial_states(graph: Graph, batch: int) -> dict[str, np.ndarray]:
    """The streaming model's state inputs at t = 0 (V_-1 = v_init, IMP included)."""
    graph = _prepare(graph)
    states = {}
    for n, node in graph.ordered():
        if isinstance(node, ir.Neuron):
            states[f"v:{n}"] = np.broadcast_to(np.asarray(node.v_init, np.float32),
                                               (batch, *node.shape)).copy()
            if kind_of(node).has_current:
                states[f"v:{n}:current"] = np.zeros((batch, *node.shape), np.float32)
    return states


def write_onnx(graph: Graph, path, step: bool = False, lean: bool = False) -> Path:
    """The sequence artifact (per-layer spikes, H and spike-fed inputs as outputs: what the
    parity check runs; `lean`: scores and outputs only, the deployment form), or with `step`
    the streaming one."""
    model = to_onnx_step(graph) if step else to_onnx(graph, debug=not lean)
    data = model.SerializeToString()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


__all__ = ["OPSET", "ONNXExportError", "initial_states", "to_onnx", "to_onnx_step",
           "write_onnx"]
