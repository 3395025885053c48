"""Steps per second of snnexport's bit-accurate emulator vs Lava fixed_pt on the same network
and inputs, measured in one run, printed as ratios (goal: emulator >= 100x Lava).

    .venv/bin/python bench/lava_speed.py [--model examples/models/digits_plif_layer.pt]
                                          [--lava-samples 4]

One "sample-step" is one time step of one sample through every layer (T per sample; Lava also
runs its hop steps, counted in its own column). Lava is timed twice: its stepping loop alone
(as the runner measures it) and end to end (start of the runner process to the spikes back,
the cost of a parity run). Both Lava paths (processes built from the fixed-point IR, and the
netx HDF5 file) are timed. The emulator runs the whole digits test split in one batch.
Every run is also checked to give the emulator's spikes (a fast wrong answer is no answer).
"""

from __future__ import annotations

import argparse
import time

import torch

from snnexport.backends import fixed_point
from snnexport.check import load_model
from snnexport.data import load_dataset
from snnexport.lava.target import LavaFixedTarget
from snnexport.passes.fold import fold
from snnexport.quant import emulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="examples/models/digits_plif_layer.pt")
    ap.add_argument("--lava-samples", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(1)  # Lava's simulator steps on one core per process; be fair
    loaded = load_model(args.model)
    ds = load_dataset("digits")
    net, _ = fixed_point(fold(loaded.graph), ds.x_train[:200])
    t_steps = net.time_steps
    x = ds.x_test

    emulate(net, x[:8])  # warm-up
    start = time.perf_counter()
    emu = emulate(net, x)
    emu_s = time.perf_counter() - start
    emu_rate = len(x) * t_steps / emu_s
    print(f"model {args.model}: {len(net.layers)} Lava layers, T={t_steps}, 1 torch thread")
    print(f"emulator: {len(x)} samples in {emu_s:.3f} s = {emu_rate:,.0f} sample-steps/s")

    n = args.lava_samples
    xs = x[:n]
    for netx in (False, True):
        target = LavaFixedTarget(net, netx=netx)
        start = time.perf_counter()
        res = target(xs)
        end_to_end = time.perf_counter() - start
        lava_steps = float(target.stepping[:, 0].sum())
        stepping_s = float(target.stepping[:, 1].sum())
        same = all(torch.equal(res.spikes[k], emu.spikes[k][:, :n]) for k in res.spikes)
        loop_rate = n * t_steps / stepping_s
        e2e_rate = n * t_steps / end_to_end
        name = "Lava netx" if netx else "Lava processes"
        print(f"{name} fixed_pt: {n} samples, {lava_steps:.0f} Lava steps; stepping "
              f"{stepping_s:.1f} s ({lava_steps / stepping_s:.1f} Lava steps/s, "
              f"{loop_rate:.2f} sample-steps/s), end to end {end_to_end:.1f} s "
              f"({e2e_rate:.2f} sample-steps/s); spikes equal to the emulator: {same}")
        print(f"  ratio emulator / {name}: {emu_rate / loop_rate:,.0f}x (stepping only), "
              f"{emu_rate / e2e_rate:,.0f}x (end to end)")


if __name__ == "__main__":
    main()
