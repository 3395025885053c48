"""Time a deploy and the part of it spent in reference runs (issue 15: each reference run once).

    .venv/bin/python bench/reference_runs.py examples/models/mnist5k_plif.pt --data mnist5k \
        --targets all --lava-samples 2 -o /tmp/bench_refruns
    PYTHONPATH=/path/to/older/tree .venv/bin/python bench/reference_runs.py ...   # an older copy

Works on any copy of snnexport, including one from before the reference runs were kept: it
times the reference where a check calls it (the trained model's forward through
LoadedModel.reference; the emulator when snnexport/check.py calls it, not when the `fixed`
target runs it as its target), so the same instrument measures both. Prints the package it
ran, the deploy's wall time, the reference calls and seconds per kind, and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--targets", default="all")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--lava-samples", type=int, default=2)
    ap.add_argument("-o", "--out", required=True, help="output folder (removed first)")
    args = ap.parse_args()

    import snnexport
    import snnexport.quant.emulator as emulator
    from snnexport.check import load_source
    from snnexport.deploy import deploy

    check_py = os.path.realpath(os.path.join(os.path.dirname(snnexport.__file__), "check.py"))
    spent = {"model": [0, 0.0], "emulator": [0, 0.0]}  # kind -> [calls, seconds]

    loaded = load_source(args.model)
    forward = loaded.reference

    def model_reference(x, dtype):
        start = time.perf_counter()
        try:
            return forward(x, dtype)
        finally:
            spent["model"][0] += 1
            spent["model"][1] += time.perf_counter() - start

    loaded.reference = model_reference
    emulate = emulator.emulate

    def timed_emulate(*a, **k):
        caller = os.path.realpath(sys._getframe(1).f_code.co_filename)
        if caller != check_py:  # the `fixed` target running the emulator: not a reference
            return emulate(*a, **k)
        start = time.perf_counter()
        try:
            return emulate(*a, **k)
        finally:
            spent["emulator"][0] += 1
            spent["emulator"][1] += time.perf_counter() - start

    emulator.emulate = timed_emulate
    shutil.rmtree(args.out, ignore_errors=True)
    load = os.getloadavg()
    start = time.perf_counter()
    summary = deploy(loaded, args.out, data=args.data, targets=args.targets,
                     samples=args.samples, lava_samples=args.lava_samples, progress=False)
    wall = time.perf_counter() - start
    print(f"snnexport from {os.path.dirname(snnexport.__file__)}")
    print(f"deploy {args.model} --data {args.data} --targets {args.targets} --samples "
          f"{args.samples} --lava-samples {args.lava_samples}: {wall:.1f} s wall, trusted "
          f"{summary['trusted']}")
    for kind, (calls, seconds) in spent.items():
        print(f"  reference runs, {kind}: {calls} batch run(s), {seconds:.2f} s")
    total = sum(s for _, s in spent.values())
    print(f"  reference runs in all: {total:.2f} s ({100 * total / wall:.1f} % of the wall time)")
    print(f"  load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
