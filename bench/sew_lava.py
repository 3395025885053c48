"""The bundled SEW-ResNet on both Lava targets, 4 MNIST-5k test digits (issue 13): lava-float
against the float64 IR reference, lava-fixed against the emulator, every spike of every layer;
what tests/test_sew_lava.py asserts, with each target's wall time printed and the number of
samples a knob (Lava's CPU simulation is slow: Var.set sends a layer's values one item at a
time, and every layer's v is set at every sample start):

    .venv/bin/python bench/sew_lava.py [--model examples/models/mnist5k_sew.pt] [--samples 4]

Prints each parity report and its wall time; exits 1 unless both are exact with every layer
spiking and nothing saturated in fixed point.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from snnexport.backends import Lowered
from snnexport.check import check, load_model


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="examples/models/mnist5k_sew.pt")
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    loaded = load_model(args.model)
    lowered = Lowered(loaded.graph)
    ok = True
    for target in ("lava-float", "lava-fixed"):
        start = time.perf_counter()
        report = check(loaded, target, data="mnist5k", samples=args.samples, lowered=lowered,
                       reference_dtype=torch.float64)
        wall = time.perf_counter() - start
        print(report.text())
        good = report.exact and report.samples == args.samples and not report.silent_layers
        if report.quantisation:
            good = good and all(row["v_clipped"] == row["u_wrapped"] == row["bias_clipped"] == 0
                                for row in report.quantisation)
        print(f"{target}: {args.samples} samples in {wall:.1f} s: "
              f"{'exact' if good else 'NOT EXACT'}\n")
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
