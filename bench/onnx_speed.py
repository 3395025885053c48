"""The float ONNX artifact vs torch eager (and SpikingJelly) on the 000 MNIST net (issue 15).

    .venv/bin/python bench/onnx_speed.py [--rounds 7] [--threads 2,1] [--no-sj] [--profile]
                                          [--clock wall|cpu]

The net is bench/integer_speed.py's ({c128k3-BN-PLIF-MP}*2-FC2048-PLIF-FC100-PLIF-vote10,
T=8, B=16, random weights and BN statistics, scaled so that every layer spikes), all on the
CPU in one process, no gradients:
  torch eager    snnexport's own PLIFNet (the torch reference model): bench/common.py's
                 torch_baseline (float32, inference mode, the bench's threads, the same
                 warm-up as bench/integer_speed.py)
  spikingjelly   parametric_lif_net.MNISTNet(128), multi-step (its default CPU kernels)
  float ONNX     the deployment artifact of the folded IR (`to_onnx(graph, debug=False)`) in
                 onnxruntime, all graph optimisations on (its spikes checked equal to the
                 parity session's); "noopt": optimisations off, as the parity check runs it;
                 fed the static images as one row x [1, B, ...] (the artifact computes what
                 depends on x alone, conv1 here, once per image, as the chip's host does; its
                 scores checked equal to those of x repeated over the T rows)
  float GEMM     a plain float32 MatMul in onnxruntime the size of the net's largest synapse
                 (conv2 as im2col: [T*B*14*14, 1152] x [1152, 128]), and torch.mm the same

The machine is shared, so engines are interleaved (A B A B ...): every round times each once,
each ratio is the median of the per-round ratios, with their min-max; every thread count of
--threads (default 2,1) in turn. The run starts and ends with bench/common.py's account of the
machine (CPU flags, load, a reference GEMM) and says whether its ratios can be trusted.
Fraction of peak: the engine's synaptic MACs (every MAC of its conv / dense layers, zero
inputs included) per second of its whole run over the plain GEMM's MACs/s in the same round
(torch.mm for torch eager).
Exactness, checked in the run: the parity check of the ONNX target against the torch model on
those 16 digits (spikes of every layer, mismatches other than threshold ties must be 0), and
the deployment graph's scores equal to the checked graph's.
--profile: where the float ONNX artifact's time goes (onnxruntime's profiler; per node the
fastest of the rounds, so that the machine's load weighs less), by kind of work (GEMM, the
im2col windows, layout, casts, the neurons' element-wise ops, reductions, the host lookup,
pools: KINDS) and by op type, and the same for the integer artifact (exporters/onnx_fixed.py);
for every thread count of --threads.
"""

from __future__ import annotations

import argparse
import statistics

import common
import numpy as np
import torch
from common import CLOCK, Machine, fmt, interleave, paired, pct, thread_counts, torch_baseline
from integer_speed import bench_net

from snnexport.check import LoadedModel, check
from snnexport.data import load_dataset
from snnexport.exporters.onnx_common import GraphBuilder
from snnexport.exporters.onnx_export import to_onnx
from snnexport.importers.plifnet import import_plifnet
from snnexport.ir import nodes as ir
from snnexport.onnx_run import session
from snnexport.passes.fold import fold

T, B = 8, 16


def synapse_macs(graph) -> tuple[int, tuple[int, int, int]]:
    """Per sample-step: the MACs of every Conv2d / Dense and the GEMM shape (rows per sample,
    fan_in, outputs) of the largest."""
    shapes = graph.shapes()
    total, largest = 0, (0, 0, 0, 0)
    for name, node in graph.ordered():
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            w = np.asarray(node.weight)
            fan_in, outs = int(np.prod(w.shape[1:])), int(np.prod(shapes[name]))
            total += fan_in * outs
            if fan_in * outs > largest[0]:
                largest = (fan_in * outs, outs // w.shape[0], fan_in, w.shape[0])
    return total, largest[1:]


def ort_gemm(m, k, n, threads):
    from onnx import TensorProto, helper

    g = GraphBuilder()
    y = g.op("MatMul", ["x", g.const("w", np.random.default_rng(0).standard_normal((k, n)))])
    model = helper.make_model(helper.make_graph(
        g.nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [m, n])], initializer=g.inits),
        opset_imports=[helper.make_opsetid("", 17)])
    sess = session(model, threads=threads)
    x = (np.random.default_rng(1).random((m, k)) < 0.1).astype(np.float32)
    return lambda: sess.run(None, {"x": x})


# what each op type does in the artifacts, for --profile's account of where the time goes
KINDS = {
    "GEMM": ("MatMulInteger", "MatMul", "Conv", "ConvInteger", "Gemm"),
    "im2col windows (Gather)": ("Gather",),
    "layout (Transpose, Reshape, Slice, Split, Concat, Pad)": (
        "Transpose", "Reshape", "Slice", "Split", "Concat", "Pad", "Squeeze", "Unsqueeze",
        "Expand", "Identity", "Shape", "ReorderInput", "ReorderOutput"),
    "casts": ("Cast",),
    "neuron element-wise ops": ("Add", "Sub", "Mul", "Div", "Clip", "Max", "Min", "Floor",
                                "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal",
                                "Not", "And", "Where", "Neg", "Abs", "Mod", "Round"),
    "reductions (the wrap / clip If's extremes, votes)": (
        "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum"),
    "host spike lookup (GatherElements, bit ops)": (
        "GatherElements", "BitwiseAnd", "BitwiseOr", "BitShift"),
    "pools": ("MaxPool", "AveragePool"),
}
CONTAINERS = ("If", "Loop", "Scan")  # their time is their subgraphs' nodes' (counted there)


def kind_of_op(op: str) -> str:
    return next((k for k, ops in KINDS.items() if op in ops), "other")


def profile(model, feed, threads, rounds, optimise):
    """{op type: ms} of the nodes (subgraphs' included, If / Loop / Scan themselves left out:
    their time is their nodes'), per node the fastest of `rounds` runs (onnxruntime's
    profiler), and the run's own time ({"run": ms}, fastest, by the profiler)."""
    import collections
    import json
    import os
    import tempfile

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else
                                   ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = os.path.join(tmp, "p")
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        for _ in range(rounds):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    per, kind, runs = collections.defaultdict(list), {}, []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["name"]].append(e["dur"])
            kind[e["name"]] = e["args"].get("op_name")
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    by_op = collections.Counter()
    for name, durations in per.items():
        if kind[name] not in CONTAINERS:
            by_op[kind[name]] += min(durations) / 1e3
    return by_op, min(runs) / 1e3 if runs else float("nan")


def print_profile(title, result):
    by_op, run = result
    total = sum(by_op.values())
    print(f"  {title}: fastest run {run:.1f} ms; its nodes {total:.1f} ms (sum over nodes of "
          "each node's fastest run; the rest: the executor's per-node dispatch)")
    kinds = {}
    for op, ms in by_op.items():
        kinds[kind_of_op(op)] = kinds.get(kind_of_op(op), 0.0) + ms
    for k, ms in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {k:<56} {ms:7.1f} ms  {100 * ms / total:5.1f}%")
    print("    by op type: " + ", ".join(f"{op} {ms:.1f}" for op, ms in by_op.most_common(10)))


def main():
    common.fix_malloc()  # the one baseline: the same allocator behaviour in every bench
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", default="2,1",
                    help="torch and onnxruntime threads; a list measures each (default 2,1)")
    ap.add_argument("--no-sj", action="store_true", help="leave SpikingJelly out")
    ap.add_argument("--profile", action="store_true", help="where the artifacts' time goes")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="wall",
                    help="cpu: the process's CPU time (bench/common.py's note)")
    args = ap.parse_args()
    common.clock = CLOCK[args.clock]
    counts = thread_counts(args.threads)
    net = bench_net()
    x = load_dataset("mnist5k").x_test[:B]
    graph = fold(import_plifnet(net))
    x_seq = x.unsqueeze(0).expand(T, *x.shape).float().numpy()

    if args.profile:
        from integer_speed import host_mantissas

        from snnexport.exporters.onnx_fixed import to_onnx_fixed

        fx, seq = host_mantissas(net, x)
        for threads in counts:
            torch.set_num_threads(threads)
            print(f"onnxruntime profile, {threads} thread(s), {args.rounds} runs, T={T}, B={B}")
            feed = {"x": x_seq[:1]}
            print_profile("float ONNX, optimisations on", profile(
                to_onnx(graph, debug=False), feed, threads, args.rounds, True))
            print_profile("float ONNX, optimisations off", profile(
                to_onnx(graph, debug=False), feed, threads, args.rounds, False))
            print_profile("integer ONNX", profile(to_onnx_fixed(fx, debug=False),
                                                  {"bias0": seq}, threads, args.rounds, False))
        return
    machine = Machine(max(counts))
    report = check(LoadedModel("<bench net>", import_plifnet(net), net), "onnx",
                   inputs=(x, torch.zeros(B, dtype=torch.long)), samples=B)
    d = report.to_dict()
    debug_model = to_onnx(graph)
    names = [o.name for o in debug_model.graph.output]
    checked = dict(zip(names, session(debug_model).run(None, {"x": x_seq}), strict=True))
    opt = dict(zip(names, session(debug_model, optimise=True).run(None, {"x": x_seq}),
                   strict=True))
    same_opt = all(np.array_equal(opt[k], checked[k]) for k in names if k.startswith("spikes:"))
    for threads in counts:
        torch.set_num_threads(threads)
        measure(args, threads, net, x, graph, x_seq, checked)
    print(f"  exact against the torch model: {d['exact']}, non-tie mismatches "
          f"{d['unexplained']}, spikes per layer "
          f"{[layer['spikes_reference'] for layer in d['layers']]}; "
          f"optimised graph's spikes == checked graph's: {same_opt}")
    machine.finish()


def measure(args, threads, net, x, graph, x_seq, checked):
    """The engines interleaved in `threads` torch and onnxruntime threads, and their ratios."""
    sess = session(to_onnx(graph, debug=False), optimise=True, threads=threads)
    noopt = session(to_onnx(graph, debug=False), threads=threads)
    x_static = x_seq[:1]  # the images once: every step reads this row
    same_scores = all(np.array_equal(s.run(["scores"], {"x": xs})[0], checked["scores"])
                      for s in (sess, noopt) for xs in (x_seq, x_static))

    macs, (rows, fan_in, c_out) = synapse_macs(graph)
    per_run = macs * T * B
    m_rows = rows * T * B
    gemm_macs = m_rows * fan_in * c_out
    a32, b32 = torch.rand(m_rows, fan_in), torch.rand(fan_in, c_out)
    engines = {
        "torch eager": torch_baseline(net, x, threads),
        "float ONNX": lambda: sess.run(["scores"], {"x": x_static}),
        "float ONNX noopt": lambda: noopt.run(["scores"], {"x": x_static}),
        "GEMM ORT": ort_gemm(m_rows, fan_in, c_out, threads),
        "GEMM torch": lambda: torch.mm(a32, b32),
    }
    if not args.no_sj:
        from spikingjelly.activation_based import functional, neuron, surrogate
        from spikingjelly.activation_based.model import parametric_lif_net as pln

        sj = pln.MNISTNet(channels=128, spiking_neuron=neuron.ParametricLIFNode,
                          surrogate_function=surrogate.ATan(), detach_reset=True).eval()
        functional.set_step_mode(sj, "m")
        xs = torch.from_numpy(x_seq)

        def run_sj():
            sj(xs)
            functional.reset_net(sj)

        engines["spikingjelly"] = run_sj
    rounds = interleave(engines, args.rounds)

    def frac(engine, gemm):
        r = [(per_run / te) / (gemm_macs / tg)
             for te, tg in zip(rounds[engine], rounds[gemm], strict=True)]
        return statistics.median(r), min(r), max(r)

    print(f"000 MNIST net, width 128, FC 2048, T={T}, B={B}, {threads} thread(s), "
          f"{args.rounds} interleaved rounds, {args.clock} time; "
          f"{per_run / 1e9:.2f} G synaptic MACs per batch; "
          "ratios: median of the per-round ratios (min-max)")
    for k in engines:
        print(f"  {k:<13} {1e3 * statistics.median(rounds[k]):8.1f} ms (median)")
    print(f"  float ONNX / torch eager speed-up: "
          f"{fmt(paired(rounds, 'float ONNX', 'torch eager'))}")
    print(f"  float ONNX noopt / torch eager speed-up: "
          f"{fmt(paired(rounds, 'float ONNX noopt', 'torch eager'))}")
    if "spikingjelly" in engines:
        print(f"  float ONNX / spikingjelly speed-up: "
              f"{fmt(paired(rounds, 'float ONNX', 'spikingjelly'))}")
    print(f"  float32 GEMM [{m_rows}x{fan_in}]x[{fan_in}x{c_out}]: onnxruntime "
          f"{2 * gemm_macs / statistics.median(rounds['GEMM ORT']) / 1e9:.1f} GFLOP/s, torch.mm "
          f"{2 * gemm_macs / statistics.median(rounds['GEMM torch']) / 1e9:.1f} GFLOP/s")
    print(f"  float ONNX: {pct(frac('float ONNX', 'GEMM ORT'))} (onnxruntime MatMul)")
    print(f"  torch eager: {pct(frac('torch eager', 'GEMM torch'))} (torch.mm)")
    print(f"  deployment scores == checked graph's: {same_scores}")


if __name__ == "__main__":
    main()
