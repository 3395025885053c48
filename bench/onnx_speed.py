"""Throughput of onnxruntime vs torch eager vs SpikingJelly on the 000 MNIST net, full width.

    .venv/bin/python bench/onnx_speed.py [--repeat 5] [--threads 2]

Architecture {c128k3s1-BN-PLIF-MPk2s2}*2-DP-FC2048-PLIF-DP-FC100-PLIF-vote10, T=8, B=16,
random weights and BN statistics, eval mode, no gradients, all on the CPU in one process:
  torch eager   snnexport's own PLIFNet (the torch reference model)
  spikingjelly  parametric_lif_net.MNISTNet(128), multi-step (its default CPU kernels)
  onnxruntime   the ONNX artifact of the folded IR (all graph optimisations on)
Each is timed as the median of --repeat runs after one warm-up; ratios are printed.
"""

import argparse
import statistics
import time

import torch

from snnexport.exporters.onnx_export import to_onnx
from snnexport.importers.plifnet import import_plifnet
from snnexport.models import NetConfig, build_network
from snnexport.onnx_run import session
from snnexport.passes.fold import fold

T, B = 8, 16


def timed(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = build_network(NetConfig(channels=128, fc_hidden=[2048], time_steps=T)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(B, 1, 28, 28)
    x_seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    from spikingjelly.activation_based import functional, neuron, surrogate
    from spikingjelly.activation_based.model import parametric_lif_net as pln

    sj = pln.MNISTNet(channels=128, spiking_neuron=neuron.ParametricLIFNode,
                      surrogate_function=surrogate.ATan(), detach_reset=True).eval()
    functional.set_step_mode(sj, "m")

    sess = session(to_onnx(fold(import_plifnet(net)), debug=False), optimise=True,
                   threads=args.threads)
    feed = {"x": x_seq.numpy()}

    def run_torch():
        with torch.no_grad():
            net(x)

    def run_sj():
        with torch.no_grad():
            sj(x_seq)
        functional.reset_net(sj)

    def run_onnx():
        sess.run(["scores"], feed)

    t_torch = timed(run_torch, args.repeat)
    t_sj = timed(run_sj, args.repeat)
    t_onnx = timed(run_onnx, args.repeat)
    print(f"000 MNIST net, width 128, FC 2048, T={T}, B={B}, {args.threads} threads, "
          f"median of {args.repeat}:")
    for name, t in (("torch eager", t_torch), ("spikingjelly", t_sj), ("onnxruntime", t_onnx)):
        print(f"  {name:<13} {1000 * t:8.1f} ms/batch  {B / t:8.1f} samples/s")
    print(f"  onnxruntime / torch eager speed-up: {t_torch / t_onnx:.2f}x")
    print(f"  onnxruntime / spikingjelly speed-up: {t_sj / t_onnx:.2f}x")


if __name__ == "__main__":
    main()
