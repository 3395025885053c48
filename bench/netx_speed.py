"""Emulator / Lava speed on an imported netx conv net (written by lava-dl itself), the same
inputs, checked equal (a fast wrong answer is no answer):

    .venv/bin/python bench/netx_speed.py [--net FILE.net] [--samples 450] [--lava-samples 3]
                                         [--time-steps 16]

Without --net, tests/data/make_netx_nets.py writes conv.net (input 1x8x8 -> conv 1->4 3x3 s2
-> flatten -> dense 64->10, CUBA) with the Lava environment's Python. Inputs: the digits test
split as lava-dl users feed an Input block (a_in = 1024 x intensity). One "sample-step" is
one time step of one sample through every layer. Lava: netx.hdf5.Network in fixed_pt, one
fresh network per sample, its T steps in one run call (no state read back); timed as its
stepping alone and end to end per sample (build + compile + run + stop). The emulator: the
fast path on all samples in one batch (and the plain one for reference).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from snnexport.data import load_dataset
from snnexport.lava.target import LavaFixedTarget, lava_python
from snnexport.quant.emulator import emulate
from snnexport.quant.netx_import import read_netx
from snnexport.quant.netx_inputs import encode_images, inputs_of

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--net")
    ap.add_argument("--samples", type=int, default=450)
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--time-steps", type=int, default=16)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    path = args.net
    if path is None:
        subprocess.run([str(lava_python()), str(ROOT / "tests/data/make_netx_nets.py"),
                        tmp.name], check=True, capture_output=True)
        path = Path(tmp.name) / "conv.net"
    net = read_netx(path)
    t = args.time_steps
    images = load_dataset("digits", t).x_test[:args.samples].numpy()
    ins = inputs_of(net, {"x": encode_images(net, images, t)}, "digits")
    x = ins.x
    n = x.shape[1]
    emulate(net, x[:, :8])  # warm-up
    start = time.perf_counter()
    fast = emulate(net, x)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    plain = emulate(net, x, reference=True)
    t_plain = time.perf_counter() - start
    assert all(torch.equal(fast.spikes[k], plain.spikes[k]) for k in fast.spikes)
    m = args.lava_samples
    lava = LavaFixedTarget(net, netx=True, record_state=False)
    start = time.perf_counter()
    res = lava(x[:, :m])
    t_call = time.perf_counter() - start
    assert all(torch.equal(res.spikes[k], fast.spikes[k][:, :m]) for k in fast.spikes), \
        "Lava and the emulator differ"
    emu_rate, plain_rate = n * t / t_fast, n * t / t_plain
    step_rate = m * t / float(lava.run_seconds.sum())
    e2e_rate = m * t / float(lava.seconds.sum())
    call_rate = m * t / t_call
    print(f"{path}: {len(net.layers)} layers, T={t}; emulator on {n} samples, Lava on {m} "
          f"(spikes equal in every layer)")
    print(f"  emulator fast     {emu_rate:12.0f} sample-steps/s")
    print(f"  emulator plain    {plain_rate:12.0f} sample-steps/s")
    for what, rate, note in (("Lava stepping", step_rate, ""),
                             ("Lava per sample", e2e_rate, "  (build + compile + run + stop)"),
                             ("Lava whole call", call_rate, "  (runner process included)")):
        print(f"  {what:<17}{rate:12.1f} sample-steps/s   emulator / Lava "
              f"{emu_rate / rate:8.0f}x{note}")


if __name__ == "__main__":
    main()
