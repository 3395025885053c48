"""Two exact ways to delay a conv in Lava's CPU simulator, timed on SEW-ResNet's downsample
block (mnist5k-sew: the 32 x 14 x 14 spikes of the stem's pool, 2 steps late, into the block's
3 x 3 stride-2 conv and its 1 x 1 stride-2 shortcut, both to 64 x 7 x 7; dense, each would be
a 3136 x 6272 matrix, 19.7 M entries, more than lava 0.10 builds in reasonable time):

  sparse: each conv as a DelaySparse of its nonzero connections (scipy CSR), every delay 2;
  relay:  one unit DelaySparse (delay 1) into memoryless relay LIFs, then both convs as
          ordinary Lava Conv processes (what snnexport.lava.lowering.time_links builds).

Runs in the Lava environment (Python 3.10), from the checkout's root:

    PYTHONPATH=. .venv-lava/bin/python bench/lava_delay_speed.py [--steps 30]

Prints, per method and per Lava model (floating_pt, fixed_pt), the build + compile + first
step time and the mean time of the later steps' run calls; random input spikes (15 %) and
random weights (even integers in fixed point), the same for both methods. Both methods are also
checked to deliver the same currents in the first steps (the relay's one hop + one step of
delay = 2 steps).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIF
from lava.proc.sparse.process import DelaySparse
from scipy.sparse import csr_matrix, identity

from snnexport.hw.cores import conv_matrix
from snnexport.ir import nodes as ir
from snnexport.lava.lowering import RELAY_FIXED, RELAY_FLOAT
from snnexport.lava.runner import lava_conv_args

C_IN, HW, C_OUT, DELAY = 32, 14, 64, 2
CONVS = ((3, 2, 1), (1, 2, 0))  # kernel, stride, padding
CHECKED = 6  # steps whose currents are compared


def build(method: str, fixed: bool, spikes: np.ndarray, weights: list[np.ndarray]):
    """The two output LIFs (never firing; their u is the current delivered each step)."""
    src = Source(data=spikes.astype(float))  # flat C-major, [n_in, steps]
    quiet = (dict(du=4095, dv=0, vth=1 << 20, bias_exp=6) if fixed
             else dict(du=1.0, dv=0.0, vth=1e300))
    outs = []
    if method == "sparse":
        for wt, (_, s, p) in zip(weights, CONVS, strict=True):
            m = csr_matrix(conv_matrix(ir.Conv2d(wt, None, (s, s), (p, p), 1),
                                       (C_IN, HW, HW)).astype(wt.dtype))
            delays = m.copy().astype(int)
            delays.data[:] = DELAY
            syn = DelaySparse(weights=m, delays=delays)
            lif = LIF(shape=(m.shape[0],), **quiet)
            src.s_out.connect(syn.s_in)
            syn.a_out.connect(lif.a_in)
            outs.append(lif)
        return outs
    n = C_IN * HW * HW
    w, thr = RELAY_FIXED if fixed else RELAY_FLOAT
    syn = DelaySparse(weights=identity(n, dtype=np.int64 if fixed else float, format="csr") * w,
                      delays=identity(n, dtype=int, format="csr") * (DELAY - 1))
    relay = LIF(shape=(HW, HW, C_IN), **(dict(du=4095, dv=4095, vth=thr, bias_exp=6) if fixed
                                         else dict(du=1.0, dv=1.0, vth=thr)))
    src.s_out.connect(syn.s_in)
    syn.a_out.reshape((C_IN, HW, HW)).transpose([2, 1, 0]).connect(relay.a_in)
    for wt, (_, s, p) in zip(weights, CONVS, strict=True):
        conv = Conv(**lava_conv_args(wt, (C_IN, HW, HW), (s, s), (p, p), 1))
        lif = LIF(shape=(HW // 2, HW // 2, C_OUT), **quiet)
        relay.s_out.connect(conv.s_in)
        conv.a_out.connect(lif.a_in)
        outs.append(lif)
    return outs


def run(method: str, tag: str, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    fixed = tag == "fixed_pt"
    weights = []
    for k, _, _ in CONVS:
        a = rng.normal(size=(C_OUT, C_IN, k, k))
        weights.append((np.round(a * 20) * 2).astype(np.int64) if fixed else a)
    spikes = rng.random((C_IN * HW * HW, steps)) < 0.15
    start = time.perf_counter()
    outs = build(method, fixed, spikes, weights)
    cfg = Loihi2SimCfg(select_tag=tag)
    us = []
    outs[0].run(condition=RunSteps(num_steps=1), run_cfg=cfg)
    first = time.perf_counter() - start
    loop = 0.0
    try:
        for _ in range(steps - 1):
            t = time.perf_counter()
            outs[0].run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            loop += time.perf_counter() - t
            if len(us) >= CHECKED:  # Var.get sends item by item: a few steps only, untimed
                continue
            # u = the current delivered this step (du = 1 / 4095 keeps none), C-major flat
            us.append([np.asarray(o.u.get()).reshape(-1) if method == "sparse" else
                       np.asarray(o.u.get()).transpose(2, 1, 0).reshape(-1) for o in outs])
    finally:
        outs[0].stop()
    return first, loop / (steps - 1), us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    print(f"{C_IN} x {HW} x {HW} spikes, {DELAY} steps late, into 3x3 and 1x1 stride-2 convs "
          f"to {C_OUT} x {HW // 2} x {HW // 2}; {args.steps} Lava steps")
    for tag in ("floating_pt", "fixed_pt"):
        got = {}
        for method in ("sparse", "relay"):
            first, per_step, us = run(method, tag, args.steps)
            got[method] = us
            print(f"  {tag:11s} {method:6s}: build + compile + first step {first:5.1f} s, "
                  f"{per_step * 1000:6.1f} ms a step")
        # fixed point: equal; float: Lava's Conv computes in float32 (torch), Sparse in float64
        same = all((np.array_equal(a, b) if tag == "fixed_pt" else np.allclose(a, b, 1e-5, 1e-4))
                   for sa, sb in zip(got["sparse"], got["relay"], strict=True)
                   for a, b in zip(sa, sb, strict=True))
        print(f"  {tag}: the same currents in the first {CHECKED} steps: {same}"
              + ("" if tag == "fixed_pt" else " (to float32 rounding)"))


if __name__ == "__main__":
    main()
