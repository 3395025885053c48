"""The integer path on the CPU's integer kernels, measured in one run (issue 15).

    .venv/bin/python bench/integer_speed.py [--rounds 5] [--threads 2,1] [--emu-samples 200]
                                             [--candidates] [--clock wall|cpu]

The machine is shared, so engines are interleaved (A B A B ...): every round times each engine
once, and each ratio is the median of the per-round ratios, with their min-max. The baseline,
the timing and the machine's account (CPU flags, load, a reference GEMM at the start and the
end, and whether the ratios can be trusted) are bench/common.py's, shared with
bench/onnx_speed.py. Every thread count of --threads (default 2,1) is measured in turn.

1. Integer ONNX on the 000 MNIST net at width 128 (bench/onnx_speed.py's net: {c128k3-BN-PLIF-
   MP}*2-FC2048-PLIF-FC100-PLIF-vote10, T=8, B=16, random weights and BN statistics; conv1,
   conv2, fc1, fc_out scaled x3, x3, x8, x8 so that every layer spikes, which the exactness
   check needs; fixed point calibrated on 64 MNIST-5k training digits, run on 16 test digits):
     torch eager     snnexport's PLIFNet forward (bench/common.py torch_baseline: float32,
                     inference mode, the bench's threads, the same warm-up)
     int ONNX        the fixed-point net's deployment graph (exporters/onnx_fixed.py,
                     `to_onnx_fixed(net, debug=False)`: outputs only) in onnxruntime (graph
                     optimisations off, as the parity check runs it), plus the host current
                     mantissas it takes as input (`artifact_input`: torch, float64, in one
                     thread; int16, one row for all T)
     int ONNX debug  the artifact with every layer's spikes and membranes as outputs (the one
                     the parity check runs)
     int ONNX plain  the direct mapping (`to_onnx_fixed(net, plain=True)`): every synapse as
                     ConvInteger / MatMulInteger on uint8 weights, an int64 Scan per layer and
                     per OR-pool (the neuron loop of the artifact before this benchmark's work)
   Bit-exactness, checked in the run: every layer's spikes and integer membranes from the
   debug artifact and the plain one equal the emulator's, the deployment graph's outputs the
   debug one's, and the fast emulator equals the plain one.
2. The emulator on the bundled MNIST-5k model (examples/models/mnist5k_plif.pt; 200 test digits,
   T=8): sample-steps/s of `emulate` (the fast path) and `emulate(reference=True)` (the plain
   one, Lava's rules as written), their results checked equal.
3. Peak: each engine's synaptic multiply-accumulates (every MAC its synapse layers' GEMMs do,
   zero inputs included, counted from the net's layers; the OR-pools' few left out) per second
   of its whole run, as a fraction of a plain GEMM of its kernel kind, timed in the same round,
   the size of the net's largest synapse: float32 torch.mm for torch eager, MatMulInteger
   uint8 x int8 in onnxruntime for the integer ONNX, torch._int_mm for the emulator.
4. Without VNNI: where the deployment graph's time goes (GEMM or not, onnxruntime's profiler)
   and, on a CPU with VNNI, the int ONNX time estimated for one without (its GEMMs scaled by
   this CPU's int8 GEMM slow-down with oneDNN's non-VNNI kernels; `no_vnni`).
--candidates: the conv / depthwise / dense formulations and the neuron loops (Scan or
unrolled, chunked or not, float32 or float64 decay), the u wrap and the OR-pool forms the
integer exporter chose between, timed the same way (the numbers its comments cite).
--clock cpu: CPU time instead of wall time (see `clock`).
"""

from __future__ import annotations

import argparse
import statistics

import common
import numpy as np
import torch
from common import (
    CLOCK,
    Machine,
    fmt,
    interleave,
    paired,
    pct,
    thread_counts,
    timed,
    torch_baseline,
)

from snnexport.backends import fixed_point
from snnexport.check import load_model
from snnexport.data import load_dataset
from snnexport.exporters.onnx_common import GraphBuilder, session
from snnexport.exporters.onnx_fixed import _synaptic_sum, artifact_input, to_onnx_fixed
from snnexport.importers.plifnet import import_plifnet
from snnexport.models import NetConfig, build_network
from snnexport.passes.fold import fold
from snnexport.quant import emulate, quantize
from snnexport.quant.emulator import host_bias_mant
from snnexport.quant.fixed import FixedLayer

T, B = 8, 16
MODEL = "examples/models/mnist5k_plif.pt"


def synapse_macs(net) -> tuple[int, tuple[int, int]]:
    """Per sample-step: the MACs of every non-pool synapse (host one included) and the
    (fan_in, outputs) of the largest."""
    total, largest = 0, (0, 0, 0)
    for layer in net.layers:
        if layer.pool:
            continue
        for w in [layer.weight, *(s.weight for s in layer.synapses)]:
            w = np.asarray(w)
            conv = layer.kind == "conv" or layer.host_kind == "conv"
            fan_in = int(np.prod(w.shape[1:]))
            outs = int(np.prod(layer.shape))
            macs = fan_in * outs
            total += macs
            if macs > largest[0]:  # a conv: one GEMM row per output pixel
                rows = outs // w.shape[0] if conv else 1
                largest = (macs, fan_in, w.shape[0], rows)
    return total, largest[1:]


def bench_net():
    torch.manual_seed(0)
    net = build_network(NetConfig(channels=128, fc_hidden=[2048], time_steps=T)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        layers = net.layers
        for mod, k in ((layers.conv1, 3), (layers.conv2, 3), (layers.fc1, 8), (layers.fc_out, 8)):
            mod.weight.mul_(k)
    return net


def host_mantissas(net, x):
    """The bench net's fixed-point net (calibrated on 64 MNIST-5k training digits) and the host
    current mantissas of x, int16 [1, B, ...] (a static image: the same at every step)."""
    fx = quantize(fold(import_plifnet(net)), load_dataset("mnist5k").x_train[:64])
    mant, _ = host_bias_mant(fx.layers[0], x.unsqueeze(0).double(), fx.input_shape)
    return fx, mant.to(torch.int16).numpy()


def ort_gemm(m, k, n, threads):
    """A plain MatMulInteger uint8 x int8 of [m, k] x [k, n] in onnxruntime: (run, MACs)."""
    from onnx import TensorProto, helper

    g = GraphBuilder()
    y = g.op("MatMulInteger", ["x", g.const("w", np.random.default_rng(0).integers(
        -128, 128, (k, n)), np.int8)])
    model = helper.make_model(helper.make_graph(
        g.nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info(y, TensorProto.INT32, [m, n])], initializer=g.inits),
        opset_imports=[helper.make_opsetid("", 17)])
    sess = session(model, threads=threads)
    x = (np.random.default_rng(1).random((m, k)) < 0.1).astype(np.uint8)
    return (lambda: sess.run(None, {"x": x})), m * k * n


def exact_onnx(sess, fx, seq, x) -> dict:
    names = [o.name for o in sess.get_outputs()]
    out = dict(zip(names, sess.run(None, {"bias0": seq}), strict=True))
    emu = emulate(fx, x, ir_units=False)
    ref = emulate(fx, x, ir_units=False, reference=True)
    same = all(torch.equal(emu.spikes[k], ref.spikes[k]) for k in ref.spikes) and all(
        torch.equal(emu.membrane[k], ref.membrane[k]) for k in ref.membrane)
    ok = all(np.array_equal(out[f"spikes:{k}"], emu.spikes[k].numpy().astype(np.uint8))
             for k in emu.spikes) and all(
        np.array_equal(out[f"h:{k}"], emu.membrane[k].numpy().astype(np.int64))
        for k in emu.membrane)
    return {"onnx == emulator": ok, "emulator == plain emulator": same,
            "spikes": {k: int(v.sum()) for k, v in emu.spikes.items()}}


def candidates(threads, rounds, fx=None, seq=None):
    """The formulations onnx_fixed.py chose between, on the bench net's shapes (T*B = 128)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    n = T * B

    def model(g, out, in_shape):
        m = helper.make_model(helper.make_graph(
            g.nodes, "c", [helper.make_tensor_value_info("x", TensorProto.UINT8,
                                                         [1, n, *in_shape])],
            [helper.make_tensor_value_info(out, TensorProto.INT64, None)], initializer=g.inits),
            opset_imports=[helper.make_opsetid("", 17)])
        return session(m, threads=threads)

    def exporter(layer, in_shape, plain):
        g = GraphBuilder()
        return model(g, _synaptic_sum(g, layer, "x", in_shape, 1, plain)[0], in_shape)

    def conv_op(w, in_shape, stride, pads, group, dtype):
        g = GraphBuilder()
        x = g.op("Reshape", ["x", g.const("s", [-1, *in_shape], np.int64)])
        if dtype == "float":
            y = g.op("Conv", [g.op("Cast", [x], to=TensorProto.FLOAT),
                              g.const("w", w, np.float32)], strides=stride, pads=pads,
                     group=group)
        else:
            y = g.op("ConvInteger", [x, g.const("w", w // 2, np.int8)], strides=stride,
                     pads=pads, group=group)
            y = g.op("Add", [y, y])  # (w / 2 in int8: times 2)
        return model(g, g.op("Cast", [y], to=TensorProto.INT64), in_shape)

    def slices(w, in_shape):  # a 2x2 stride-2 sum pool as shifted uint8 slices
        g = GraphBuilder()
        x = g.op("Reshape", ["x", g.const("s", [-1, *in_shape], np.int64)])
        h = in_shape[1]
        parts = [g.op("Slice", [x, g.const("b", [i, j], np.int64),
                                g.const("e", [i + h - 1, j + h - 1], np.int64),
                                g.const("a", [2, 3], np.int64), g.const("t", [2, 2], np.int64)])
                 for i in range(2) for j in range(2)]
        s = parts[0]
        for p in parts[1:]:
            s = g.op("Add", [s, p])
        y = g.op("Mul", [g.op("Cast", [s], to=TensorProto.INT64),
                         g.const("w", w[:, 0, 0, 0].reshape(-1, 1, 1), np.int64)])
        return model(g, y, in_shape)

    def dense_op(w, k, kind):
        g = GraphBuilder()
        x = g.op("Reshape", ["x", g.const("s", [-1, k], np.int64)])
        y = g.op("MatMul", [g.op("Cast", [x], to=TensorProto.FLOAT),
                            g.const("w", w.T, np.float32)])
        return model(g, g.op("Cast", [y], to=TensorProto.INT64), [k])

    w2 = 2 * rng.integers(-128, 128, (128, 128, 3, 3))
    conv = FixedLayer("conv2", "conv", (128, 14, 14), w2, np.zeros(1), 0, np.zeros(1), 1.0,
                      padding=(1, 1))
    wp = np.full((128, 1, 2, 2), 128)
    pool = FixedLayer("pool1", "conv", (128, 14, 14), wp, np.zeros(1), 0, np.zeros(1), 1.0,
                      stride=(2, 2), groups=128)
    wd = 2 * rng.integers(-128, 128, (2048, 6272))
    dense = FixedLayer("fc1", "dense", (2048,), wd, np.zeros(1), 0, np.zeros(1), 1.0)
    cases = {
        "conv 128->128 3x3 on 14x14": ((128, 14, 14), {
            "im2col Gather + MatMulInteger u8s8 (chosen)": exporter(conv, (128, 14, 14), False),
            "ConvInteger uint8 weights, zero point 128": exporter(conv, (128, 14, 14), True),
            "ConvInteger int8 weights": conv_op(w2, (128, 14, 14), [1, 1], [1] * 4, 1, "int"),
            "Cast + float32 Conv + Cast": conv_op(w2, (128, 14, 14), [1, 1], [1] * 4, 1,
                                                  "float")}),
        "depthwise 2x2/2 sum pool on 28x28": ((128, 28, 28), {
            "ConvInteger depthwise uint8 weights (chosen)": exporter(pool, (128, 28, 28), False),
            "4 strided Slices + Add": slices(wp, (128, 28, 28))}),
        "dense 6272->2048": ((6272,), {
            "MatMulInteger u8s8 (chosen)": exporter(dense, (6272,), False),
            "MatMulInteger uint8 weights, zero point 128": exporter(dense, (6272,), True),
            "Cast + float32 MatMul + Cast": dense_op(wd, 6272, "float")})}
    for name, (shape, sessions) in cases.items():
        x = (rng.random((1, n, *shape)) < 0.15).astype(np.uint8)
        outs = [s.run(None, {"x": x})[0].reshape(-1) for s in sessions.values()]
        exact = all(np.array_equal(o, outs[0]) for o in outs)
        times = {k: [] for k in sessions}
        for _ in range(rounds):
            for k, s in sessions.items():
                times[k].append(timed(lambda s=s, x=x: s.run(None, {"x": x})))
        print(f"  {name}, T*B = {n} (all equal: {exact}):")
        for k, v in times.items():
            print(f"    {k:<46} {1e3 * statistics.median(v):8.1f} ms")
    neuron_candidates(threads, rounds, fx, seq)


def neuron_candidates(threads, rounds, fx=None, seq=None):
    """The neuron loops (and the u wrap, the OR-pool) onnx_fixed.py chose between, on conv1's
    layer of the bench net: 128x28x28 neurons, T=8, B=16, its drive int32 [T*B, ...] as input
    (a random drive, a fifth of it large enough to need the clip)."""
    from onnx import TensorProto, helper

    from snnexport.exporters import onnx_common
    from snnexport.exporters.onnx_fixed import _drive, _neuron_layer, _neuron_scan

    rng = np.random.default_rng(0)
    shape = (128, 28, 28)
    drive = (rng.integers(-3000, 3000, (T * B, *shape)) << 6).astype(np.int32)
    drive[: T * B // 5] = rng.integers(-(1 << 23), 1 << 23, (T * B // 5, *shape))

    def model(g, outs, dtype=TensorProto.INT32, in_shape=(T * B, *shape)):
        m = helper.make_model(helper.make_graph(
            g.nodes, "c", [helper.make_tensor_value_info("x", dtype, list(in_shape))],
            [helper.make_tensor_value_info(o, t, None) for o, t in outs], initializer=g.inits),
            opset_imports=[helper.make_opsetid("", 17)])
        return session(m, threads=threads)

    def layer(dv):
        return FixedLayer("n", "conv", shape, np.zeros((128, 1, 1, 1)), np.full(shape, dv), 319,
                          np.zeros(shape, np.int64), 1.0)

    def scan(dv):  # the Scan of every layer before: int64, T dynamic
        g = GraphBuilder()
        x = g.op("Reshape", [g.op("Cast", ["x"], to=TensorProto.INT64),
                             g.const("s", [T, B, *shape], np.int64)])
        s_seq, h = _neuron_scan(g, layer(dv), x, None, g.const("b", [B], np.int64))
        return model(g, [(s_seq, TensorProto.UINT8)])

    def unrolled(dv, chunk):
        g = GraphBuilder()
        old, onnx_common.CHUNK = onnx_common.CHUNK, chunk
        try:
            s_seq, _, _ = _neuron_layer(g, layer(dv), "x", T, "nchw", 1 << 23, False, False)
        finally:
            onnx_common.CHUNK = old
        return model(g, [(s_seq, TensorProto.UINT8)])

    n_per = int(np.prod(shape))
    cases = {
        "neuron loop, 128x28x28, T=8, B=16, dv = 2048 (k a power of two)": {
            "Scan, int64, Mul + Div (before)": scan(2048),
            "unrolled int32, float32 decay, unchunked": unrolled(2048, n_per),
            "unrolled int32, float32 decay, chunks 8192 (chosen)": unrolled(2048, 8192),
            "unrolled int32, float32 decay, chunks 2048": unrolled(2048, 2048)},
        "neuron loop, the same, dv = 1000 (float64 decay)": {
            "Scan, int64, Mul + Div (before)": scan(1000),
            "unrolled int32, float64 decay, unchunked": unrolled(1000, n_per),
            "unrolled int32, float64 decay, chunks 8192 (chosen)": unrolled(1000, 8192)}}
    for name, sessions in cases.items():
        run_cases(name, sessions, {"x": drive}, rounds)

    # u = wrap24(64 * 2 acc): Mod on int32 vs the float32 form, on conv2's sums [T*B, 14, 14, 128]
    w2 = 2 * rng.integers(-128, 128, (128, 128, 3, 3))
    conv = FixedLayer("conv2", "conv", (128, 14, 14), w2, np.zeros(1), 0, np.zeros(1), 1.0,
                      padding=(1, 1))
    x = (rng.random((T, B, 128, 14, 14)) < 0.15).astype(np.uint8)
    wraps = {}
    for label, flag in (("Mod on int32", False), ("float32 Floor form (chosen)", True)):
        g = GraphBuilder()
        old = onnx_fixed_float_wrap(flag)
        try:
            sums, to_u, _, _, _, _ = _drive(g, conv, "x", (128, 14, 14), 1, [])
            u = to_u(g, sums)
        finally:
            onnx_fixed_float_wrap(old)
        wraps[f"im2col GEMM + u wrap, {label}"] = model(g, [(u, TensorProto.INT32)],
                                                       TensorProto.UINT8, x.shape)
    run_cases("conv2 drive with the 24-bit wrap", wraps, {"x": x}, rounds)

    if fx is not None:  # the host layer's OR-pool with its neurons, or after them
        from snnexport.exporters import onnx_fixed

        whole = {}
        for label, flag in (("neurons, then Cast + float MaxPool + Cast", False),
                            ("pool as Max of the window corners' chunks (chosen)", True)):
            whole[label] = session(onnx_fixed.to_onnx_fixed(fx, debug=False, pool2=flag),
                                   threads=threads)
        run_cases("the bench net's deployment artifact, its host layer and OR-pool", whole,
                  {"bias0": seq}, rounds)

    pools = {}
    for label, cast in (("MaxPool on uint8", False),
                        ("Cast + float MaxPool + Cast (chosen)", True)):
        g = GraphBuilder()
        y = g.op("Cast", ["x"], to=TensorProto.FLOAT) if cast else "x"
        y = g.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
        y = g.op("Cast", [y], to=TensorProto.UINT8) if cast else y
        pools[label] = model(g, [(y, TensorProto.UINT8)], TensorProto.UINT8, (T * B, *shape))
    run_cases("OR-pool 2x2 of 128x28x28 spikes", pools,
              {"x": (rng.random((T * B, *shape)) < 0.1).astype(np.uint8)}, rounds)


def onnx_fixed_float_wrap(flag: bool) -> bool:
    """Switch onnx_fixed's float32 wrap on or off (for --candidates); returns the old value."""
    from snnexport.exporters import onnx_fixed

    old, onnx_fixed.FLOAT_WRAP = onnx_fixed.FLOAT_WRAP, flag
    return old


def run_cases(name, sessions, feed, rounds):
    outs = [s.run(None, feed)[0] for s in sessions.values()]
    exact = all(np.array_equal(o.reshape(-1), outs[0].reshape(-1)) for o in outs)
    times = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            times[k].append(timed(lambda s=s: s.run(None, feed)))
    print(f"  {name} (all equal: {exact}):")
    for k, v in times.items():
        print(f"    {k:<52} {1e3 * statistics.median(v):8.1f} ms")


def main():
    common.fix_malloc()  # the one baseline: the same allocator behaviour in every bench
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="2,1",
                    help="torch and onnxruntime threads; a list measures each (default 2,1)")
    ap.add_argument("--emu-samples", type=int, default=200)
    ap.add_argument("--candidates", action="store_true")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="wall")
    args = ap.parse_args()
    common.clock = CLOCK[args.clock]
    counts = thread_counts(args.threads)
    machine = Machine(max(counts))
    ds = load_dataset("mnist5k")

    # 1. integer ONNX vs torch eager on the 000 MNIST net
    net = bench_net()
    fx = quantize(fold(import_plifnet(net)), ds.x_train[:64])
    x = ds.x_test[:B]
    # 2. the emulator on the bundled MNIST-5k model
    model = load_model(MODEL)
    mnet, _ = fixed_point(fold(model.graph), ds.x_train[:200])
    xe = ds.x_test[:args.emu_samples]
    for threads in counts:
        torch.set_num_threads(threads)
        measure(args, threads, net, fx, x, mnet, xe)
    machine.finish()


def measure(args, threads, net, fx, x, mnet, xe):
    """Section 1-3 (and --candidates) in `threads` torch and onnxruntime threads."""
    sess = session(to_onnx_fixed(fx), threads=threads)
    deploy = session(to_onnx_fixed(fx, debug=False), threads=threads)
    plain = session(to_onnx_fixed(fx, plain=True), threads=threads)

    def host_seq():  # int16 [1, B, ...]: a static image's current, the same at every step
        return artifact_input(fx, x)

    def host_seq_t():  # the plain mapping's Scan takes one row per step
        return np.ascontiguousarray(np.broadcast_to(host_seq(), (T, *host_seq().shape[1:])))

    seq = host_seq()
    exact = exact_onnx(sess, fx, seq, x)
    exact["plain onnx == emulator"] = exact_onnx(plain, fx, host_seq_t(), x)["onnx == emulator"]
    exact["deploy outputs == debug outputs"] = bool(np.array_equal(
        deploy.run(None, {"bias0": seq})[0],
        sess.run(["outputs"], {"bias0": seq})[0]))
    macs, (fan_in, c_out, rows) = synapse_macs(fx)
    m_rows = rows * T * B
    a32, b32 = torch.rand(m_rows, fan_in), torch.rand(fan_in, c_out)
    gemm_ort, gemm_ort_macs = ort_gemm(m_rows, fan_in, c_out, threads)

    fast, ref = emulate(mnet, xe), emulate(mnet, xe, reference=True)
    emu_same = all(torch.equal(fast.spikes[k], ref.spikes[k]) for k in ref.spikes) and all(
        torch.equal(fast.membrane[k], ref.membrane[k]) for k in ref.membrane) and torch.equal(
        fast.scores, ref.scores)
    emacs, (efan, eout, erows) = synapse_macs(mnet)
    e_rows = erows * len(xe) * mnet.time_steps
    a8 = (torch.rand(e_rows, efan) < 0.1).to(torch.int8)
    b8 = torch.randint(-128, 128, (efan, eout), dtype=torch.int8)

    engines = {
        "torch eager": torch_baseline(net, x, threads),
        "int ONNX": lambda: deploy.run(None, {"bias0": host_seq()}),
        "int ONNX debug": lambda: sess.run(None, {"bias0": host_seq()}),
        "int ONNX plain": lambda: plain.run(None, {"bias0": host_seq_t()}),
        "float32 GEMM": lambda: torch.mm(a32, b32),
        "int8 GEMM ORT": gemm_ort,
        "emulator": lambda: emulate(mnet, xe),
        "emulator plain": lambda: emulate(mnet, xe, reference=True),
        "int8 GEMM torch": lambda: torch._int_mm(a8, b8),
    }
    rounds = interleave(engines, args.rounds)

    def med(k):
        return statistics.median(rounds[k])

    def frac(engine, gemm, engine_macs, gemm_macs):
        r = [(engine_macs / te) / (gemm_macs / tg)
             for te, tg in zip(rounds[engine], rounds[gemm], strict=True)]
        return statistics.median(r), min(r), max(r)

    per_run = macs * T * B
    print(f"{args.rounds} interleaved rounds, {threads} thread(s) (torch and onnxruntime), "
          f"{args.clock} time; ratios: median of the per-round ratios (min-max)")
    print(f"1. 000 MNIST net, width 128, FC 2048, T={T}, B={B}; "
          f"{per_run / 1e9:.2f} G synaptic MACs per batch")
    for k in ("torch eager", "int ONNX", "int ONNX debug", "int ONNX plain"):
        print(f"  {k:<15} {1e3 * med(k):8.1f} ms/batch (median)")
    print(f"  int ONNX / torch eager speed-up: {fmt(paired(rounds, 'int ONNX', 'torch eager'))}")
    print(f"  int ONNX debug / torch eager speed-up: "
          f"{fmt(paired(rounds, 'int ONNX debug', 'torch eager'))}")
    print(f"  int ONNX / int ONNX plain speed-up: "
          f"{fmt(paired(rounds, 'int ONNX', 'int ONNX plain'))}")
    print(f"  bit-exact: {exact}")
    print(f"2. emulator, {MODEL}, {len(xe)} samples x T={mnet.time_steps}, "
          f"{threads} torch thread(s)")
    steps = len(xe) * mnet.time_steps
    for k in ("emulator", "emulator plain"):
        print(f"  {k:<15} {med(k):8.3f} s = {steps / med(k):10,.0f} sample-steps/s")
    print(f"  fast / plain speed-up: {fmt(paired(rounds, 'emulator', 'emulator plain'))}; "
          f"same results: {emu_same}")
    print("3. fraction of the machine's peak for the kernel kind (synaptic MACs/s over the "
          "whole run / plain GEMM MACs/s)")
    f32_macs = m_rows * fan_in * c_out
    print(f"  float32 GEMM [{m_rows}x{fan_in}]x[{fan_in}x{c_out}] (torch.mm): "
          f"{2 * f32_macs / med('float32 GEMM') / 1e9:.1f} GFLOP/s; torch eager "
          f"{2 * per_run / med('torch eager') / 1e9:.1f}: "
          f"{pct(frac('torch eager', 'float32 GEMM', per_run, f32_macs))}")
    print(f"  int8 GEMM same size (onnxruntime MatMulInteger u8s8): "
          f"{2 * gemm_ort_macs / med('int8 GEMM ORT') / 1e9:.1f} GOP/s; int ONNX "
          f"{2 * per_run / med('int ONNX') / 1e9:.1f}: "
          f"{pct(frac('int ONNX', 'int8 GEMM ORT', per_run, gemm_ort_macs))}")
    e_run = emacs * len(xe) * mnet.time_steps
    i8_macs = e_rows * efan * eout
    print(f"  int8 GEMM [{e_rows}x{efan}]x[{efan}x{eout}] (torch._int_mm): "
          f"{2 * i8_macs / med('int8 GEMM torch') / 1e9:.1f} GOP/s; emulator "
          f"{2 * e_run / med('emulator') / 1e9:.2f}: "
          f"{pct(frac('emulator', 'int8 GEMM torch', e_run, i8_macs))}")
    no_vnni(fx, seq, threads, args.rounds, med("int ONNX"), med("torch eager"))
    if args.candidates:
        print("candidates (onnxruntime, median of the rounds):")
        candidates(threads, args.rounds, fx, seq)


ISA_GEMM = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
a = (torch.rand(25088, 1152, generator=g) < 0.3).to(torch.int8)
b = torch.randint(-128, 128, (1152, 128), dtype=torch.int8, generator=g)
torch._int_mm(a, b)
ts = []
for _ in range(7):
    t0 = time.process_time(); torch._int_mm(a, b); ts.append(time.process_time() - t0)
print(min(ts))
"""


def isa_gemm_seconds(isa: str | None, threads: int) -> float:
    """CPU seconds of an int8 GEMM [25088 x 1152] x [1152 x 128] (torch._int_mm: oneDNN) with
    oneDNN's kernels limited to `isa` (ONEDNN_MAX_CPU_ISA; None: the CPU's best), fastest of
    7, in a fresh process (oneDNN reads the variable once)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": isa} if isa else {})}
    out = subprocess.run([sys.executable, "-c", ISA_GEMM, str(threads)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.split()[-1])


def no_vnni(fx, seq, threads, rounds, int_onnx, torch_eager):
    """4. What a CPU without VNNI would do, counted: the deployment graph's GEMM time (the
    onnxruntime profiler, MatMulInteger nodes, fastest per node) scaled by how much slower this
    CPU's int8 GEMM is without VNNI (oneDNN's AVX-512 and AVX2 kernels, ONEDNN_MAX_CPU_ISA:
    onnxruntime picks its u8s8 kernel by CPUID and cannot be told to skip VNNI, and its
    non-VNNI kernels are the same vpmaddubsw + vpmaddwd pair oneDNN's are), the rest as
    measured."""
    from onnx_speed import kind_of_op, profile

    from snnexport.exporters.onnx_fixed import to_onnx_fixed

    flags = common.cpu_info()[1]
    rounds = max(rounds, 10)  # (per node the fastest: more runs, less of the load)
    by_op, run = profile(to_onnx_fixed(fx, debug=False), {"bias0": seq}, threads, rounds,
                         False)
    total = sum(by_op.values())
    gemm = sum(ms for op, ms in by_op.items() if kind_of_op(op) == "GEMM")
    print(f"4. where the deployment graph's time goes ({threads} thread(s), onnxruntime "
          f"profiler, fastest of {rounds} per node): GEMM {gemm:.1f} ms of {total:.1f} ms in "
          f"nodes ({100 * gemm / total:.0f}%), fastest run {run:.1f} ms "
          "(bench/onnx_speed.py --profile: by kind)")
    if "avx512_vnni" not in flags and "avx_vnni" not in flags:
        print("  this CPU has no VNNI: the figures above are the non-VNNI ones")
        return
    base = isa_gemm_seconds(None, threads)
    for isa, what in (("AVX512_CORE", "AVX-512 without VNNI"), ("AVX2", "AVX2 only")):
        slower = isa_gemm_seconds(isa, threads) / base
        est = int_onnx + (slower - 1) * gemm / 1e3
        print(f"  without VNNI ({what}): int8 GEMM {slower:.2f}x slower on this CPU (oneDNN, "
              f"torch._int_mm [25088x1152]x[1152x128]); int ONNX ~ {1e3 * est:.1f} ms/batch "
              f"= ~{torch_eager / est:.2f}x torch eager (estimate: the GEMMs scaled, the rest "
              "as measured; torch eager's float32 kernels do not use VNNI)")


if __name__ == "__main__":
    main()
