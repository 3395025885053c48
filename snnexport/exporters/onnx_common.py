"""What both ONNX exporters (float `onnx_export`, integer `onnx_fixed`) share: the opset, the
error class, a small graph builder, the [T, B, ...] <-> [T*B, ...] reshapes, and the parity
session (onnxruntime with every graph optimisation off: no fusion may rewrite the arithmetic
being compared, ConvMulFusion / ConvAddFusion would fold scales into weights)."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from ..errors import SnnexportError

OPSET = 17


class ONNXExportError(SnnexportError, ValueError):
    """An IR node (or fixed-point layer) the ONNX exporters cannot express; names it."""


class GraphBuilder:
    """A small graph builder: unique names, initializers, nodes."""

    def __init__(self, prefix=""):
        self.nodes, self.inits, self.n, self.prefix = [], [], 0, prefix

    def name(self, hint):
        self.n += 1
        return f"{self.prefix}{hint}_{self.n}"

    def const(self, hint, array, dtype=np.float32):
        nm = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), nm))
        return nm

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if outputs == 1 else outs


def if_else(g: GraphBuilder, cond: str, hint: str, name: str, then: tuple, other: tuple,
            types: list) -> list[str]:
    """An If on the bool `cond`: `then` and `other` are (GraphBuilder, [its outputs]) of the
    two branches, outputs pairwise the same tensors, of the given element types; the
    branches' graphs are named `name`_then / `name`_else. Returns the If's outputs."""
    graphs = {f"{key}_branch": helper.make_graph(
        sub.nodes, f"{name}_{key}", [],
        [helper.make_tensor_value_info(y, t, None) for y, t in zip(ys, types, strict=True)],
        initializer=sub.inits) for key, (sub, ys) in (("then", then), ("else", other))}
    out = g.op("If", [cond], hint, outputs=len(types), **graphs)
    return [out] if len(types) == 1 else out


def per_sample(g: GraphBuilder, x: str, shape) -> str:
    """[T, B, ...] -> [T*B, *shape]: every step of every sample at once."""
    return g.op("Reshape", [x, g.const("flat", [-1, *shape], np.int64)], "merged")


def per_step(g: GraphBuilder, y: str, tb: str, shape) -> str:
    """[T*B, ...] -> [T, B, *shape] (tb: the int64 [T, B] of the input)."""
    full = g.op("Concat", [tb, g.const("s", list(shape), np.int64)], "tb_shape", axis=0)
    return g.op("Reshape", [y, full], "split")


def step_rows(g: GraphBuilder, x: str, t_steps: int) -> tuple[str, list[tuple[str, str]]]:
    """For an input x [T_in, B, ...] whose T_in is T (a row per step) or 1 (one row for every
    step, a static image): T_in as int64 [1], and per step t the Slice bounds (start, end) of
    the row it reads, min(t, T_in - 1) and that + 1 (int64 [1] each), computed once for all
    the chunks and layers that read x."""
    t_in = g.op("Slice", [g.op("Shape", [x], "x_shape"), g.const("z", [0], np.int64),
                          g.const("o", [1], np.int64)], "t_in")
    if not t_steps:
        return t_in, []
    last = g.op("Sub", [t_in, g.const("o", [1], np.int64)], "last_row")
    one = g.const("o", [1], np.int64)
    rows = [g.op("Min", [g.const("t", [t], np.int64), last], "row") for t in range(t_steps)]
    return t_in, [(r, g.op("Add", [r, one], "row_end")) for r in rows]


# Neurons per sample in one chunk of an unrolled neuron layer: both exporters unroll the T steps
# of a layer and run them chunk by chunk (each chunk's state and temporaries stay in the core's
# cache through all T steps, instead of every step streaming the whole layer through memory);
# measured in onnxruntime 1.32 (the integer artifact of bench/integer_speed.py's net, 1 thread,
# fastest CPU time of 7 runs on a loaded machine): 85 ms at 8192 per sample, 87 at 4096, 86 at
# 16384, 94 unchunked; with the host layer's pool in its neurons (onnx_fixed 'pool2') 75, 81,
# 75, 74: the chunk size matters less than the nodes it adds (bench/integer_speed.py
# --candidates times the neuron loop alone).
CHUNK = 8192


def chunks(p: int) -> int:
    """How many chunks the p neurons of a sample are cut into: the divisor of p nearest to
    p / CHUNK."""
    target = max(1, round(p / CHUNK))
    return min((n for n in range(1, p + 1) if p % n == 0), key=lambda n: (abs(n - target), n))


def chunk_groups(p: int, pool2: bool) -> tuple[int, int, list[list[int]]]:
    """How the p neurons of a sample are cut: (n chunks, m neurons each, the groups of chunks
    stepped together). pool2 (a layer computed with the 2x2 OR-pool of its spikes): the
    neurons in four planes, one per corner of the pool windows (`pool2_order`), each plane cut
    into chunks, chunk j of every plane in group j (the four corners of the same windows);
    chunks per plane of about CHUNK per sample as elsewhere (four of CHUNK / 4, so that a
    group holds CHUNK, measured slower: four times the nodes). Else one chunk a group."""
    if pool2:
        n_p = chunks(p // 4)
        return 4 * n_p, p // (4 * n_p), [[q * n_p + j for q in range(4)] for j in range(n_p)]
    n = chunks(p)
    return n, p // n, [[i] for i in range(n)]


def pool2_order(a: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """A per-neuron array [C, H, W] in the four planes of `chunk_groups`' pool2: [2, 2, C, H/2,
    W/2] (plane 2a + b holds pixels (2i + a, 2j + b)), or [2, 2, H/2, W/2, C] channels_last."""
    c, h, w = a.shape
    return a.reshape(c, h // 2, 2, w // 2, 2).transpose(
        (2, 4, 1, 3, 0) if channels_last else (2, 4, 0, 1, 3))


def corner(g: GraphBuilder, x: str, a: int, b: int, hw, axes) -> str:
    """Corner (a, b) of every 2x2 window of x: rows a::2 and columns b::2 of its `axes` (the
    two spatial axes, of sizes hw), by one strided Slice."""
    return g.op("Slice", [x, g.const("ab", [a, b], np.int64), g.const("hw", list(hw), np.int64),
                          g.const("ax", list(axes), np.int64), g.const("st", [2, 2], np.int64)],
                "corner")


def corners(g: GraphBuilder, x: str, hw, shape) -> list[str]:
    """The four corners (a, b) of every 2x2 window of x [..., H, W] (hw = (H, W)), in the order
    2a + b, each reshaped to `shape` (x's leading dims, H/2, W/2; one of them may be -1): rows
    a::2 and columns b::2 by two Splits (rows in pairs, then columns in pairs) rather than
    `corner`'s strided Slices, whose element-by-element copies took 3x as long (int16 [16,
    128, 28, 28]: 0.60 vs 1.73 ms for the four, onnxruntime 1.32, 1 thread)."""
    h, w = hw
    rows = g.op("Split", [g.op("Reshape", [x, g.const("pairs", [-1, 2, w], np.int64)],
                               "row_pairs")], "rows", outputs=2, axis=1, num_outputs=2)
    out = []
    for r in rows:
        cols = g.op("Split", [g.op("Reshape", [r, g.const("pairs", [-1, w // 2, 2], np.int64)],
                                   "col_pairs")], "cols", outputs=2, axis=2, num_outputs=2)
        out += [g.op("Reshape", [c, g.const("shape", list(shape), np.int64)], "corner")
                for c in cols]
    return out


def chunk_const(g: GraphBuilder, hint, flat: np.ndarray, n: int, i: int, dtype):
    """Chunk i of n of a flat per-neuron array, broadcastable over [1, B, 1, m]; one scalar
    where the whole layer holds one value."""
    flat = np.asarray(flat).reshape(-1)
    if (flat == flat[0]).all():
        return g.const(hint, flat[0], dtype)
    return g.const(hint, flat.reshape(n, -1)[i], dtype)


def artifact_model(path, t_steps: int, unrolled: int):
    """The ONNX file at `path` (its steps unrolled: `unrolled`) for a run of `t_steps` steps;
    a run of another number of steps is refused: the file cannot run it."""
    import onnx

    from ..errors import UsageError

    if t_steps != unrolled:
        raise UsageError(f"{path}: the artifact unrolls {unrolled} time steps; these inputs "
                         f"have {t_steps}: check it on inputs of {unrolled} steps")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and others on damaged bytes
        raise UsageError(f"{path}: not a readable ONNX file ({type(exc).__name__}: "
                         f"{str(exc)[:160]}); export it again") from None


def session(model, optimise: bool = False, threads: int = 0):
    """An onnxruntime CPU session of `model` (an onnx.ModelProto), graph optimisations off
    unless `optimise`."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else
                                   ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=[
        "CPUExecutionProvider"])
