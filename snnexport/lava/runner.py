"""Runs a folded IR in Lava's CPU simulator. Executed by the Lava environment's Python 3.10:

    python -m snnexport.lava.runner MODEL.snnir INPUTS.npz OUT.npz

INPUTS.npz: x [N, *input] static images (direct encoding), time_steps. OUT.npz: for every IR
neuron layer `spikes:<name>` [T, N, n] (spiking) or `v:<name>` [T, N, n] (non-spiking),
aligned to the reference time axis.

Method (checked against Lava itself, see tests/test_lava.py):
* the first synapse runs on the host: its current W1 x + b1 is constant for a static image and
  becomes the first LIF layer's bias, so that layer needs no hop;
* each later synapse is a Lava Dense and delays its output by one step: layer k, behind d_k
  hops, answers at Lava step t + d_k for reference step t;
* constant biases and the IMP would act during those d_k waiting steps: every LIF behind hops is
  built with bias 0 and v 0 (it sees no input and stays at rest), and its bias and initial
  membrane are set through the runtime right before step d_k, so that its first update is the
  reference's first update;
* Lava fires on v > vth, the IR on H >= threshold: vth = nextafter(threshold, -inf) (float64).
"""

from __future__ import annotations

import sys

import numpy as np

from ..ir.io import load_ir
from .lowering import lower


def run(graph_path: str, inputs_path: str, out_path: str) -> None:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.lif.process import LIF

    graph = load_ir(graph_path)
    m1, b1, stages, _ = lower(graph)
    data = np.load(inputs_path)
    x, t_steps = data["x"], int(data["time_steps"])
    hops = list(range(len(stages)))  # stage k waits k Dense hops
    steps = t_steps + hops[-1]
    cfg = Loihi2SimCfg(select_tag="floating_pt")
    out = {}
    for st in stages:
        if st.name:
            key = ("spikes:" if st.spiking else "v:") + st.name
            out[key] = np.zeros((t_steps, len(x), int(np.prod(st.shape))))
    for i, xi in enumerate(x):
        current = m1 @ xi.reshape(-1).astype(np.float64) + b1
        lifs, sinks = [], []
        for k, st in enumerate(stages):
            n = int(np.prod(st.shape))
            vth = float(np.nextafter(st.threshold, -np.inf)) if st.spiking else 1e300
            first = k == 0
            lif = LIF(shape=(n,), du=1.0, dv=1.0 - st.decay, vth=vth,
                      bias_mant=current if first else np.zeros(n),
                      v=st.v_init if first else np.zeros(n))
            if not first:
                dense = Dense(weights=st.weights)
                lifs[-1].s_out.connect(dense.s_in)
                dense.a_out.connect(lif.a_in)
            sink = Sink(shape=(n,), buffer=steps) if st.spiking else None
            if sink is not None:
                lif.s_out.connect(sink.a_in)
            lifs.append(lif)
            sinks.append(sink)
        v_trace = {k: np.zeros((steps, int(np.prod(st.shape)))) for k, st in enumerate(stages)
                   if not st.spiking}
        for t in range(steps):
            for k, st in enumerate(stages):
                if k and t == hops[k] and t > 0:
                    lifs[k].bias_mant.set(st.bias)
                    lifs[k].v.set(st.v_init)
            lifs[0].run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            for k in v_trace:
                v_trace[k][t] = lifs[k].v.get()
        for k, st in enumerate(stages):
            if not st.name:
                continue
            lo = hops[k]
            if st.spiking:
                s = sinks[k].data.get()  # [n, steps]
                out["spikes:" + st.name][:, i] = s[:, lo:lo + t_steps].T
            else:
                out["v:" + st.name][:, i] = v_trace[k][lo:lo + t_steps]
        lifs[0].stop()
    np.savez(out_path, **out)


if __name__ == "__main__":
    run(*sys.argv[1:4])
