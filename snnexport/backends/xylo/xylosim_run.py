"""A XyloNet in xylosim (SynSense's C++ simulator of the Xylo core, `xylosim.v2.XyloLayer`,
what Rockpool's XyloSim runs), without hardware and without samna: the synapses as fan-out
lists per presynaptic neuron, one synaptic current per neuron, biases on, no aliases."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import SnnexportError
from .net import XyloNet, XyloRecord


class XylosimMissing(SnnexportError, ImportError):
    """xylosim is not installed."""


def _xylosim():
    try:
        from xylosim import v2
    except ImportError:
        raise XylosimMissing("the Xylo targets run xylosim: pip install xylosim==0.1.3 (make "
                             "installs it; it builds with g++ and pybind11)") from None
    return v2


class XylosimNet:
    """The net built once in xylosim; `run(x)` runs each sample from rest (reset_all)."""

    def __init__(self, net: XyloNet):
        v2 = _xylosim()
        self.net = net

        def fan_out(w):  # per presynaptic neuron: a synapse to each target of a nonzero weight
            return [[v2.XyloSynapse(int(p), 0, int(w[k, p])) for p in np.flatnonzero(w[k])]
                    for k in range(w.shape[0])]

        self._syn = (fan_out(np.asarray(net.w_in)), fan_out(np.asarray(net.w_rec)),
                     fan_out(np.asarray(net.w_out)))  # kept alive: the layer holds pointers

        def ints(a):
            return [int(v) for v in np.asarray(a)]

        self.layer = v2.XyloLayer(
            *self._syn, [[] for _ in range(net.n_hidden)], ints(net.threshold),
            ints(net.threshold_out), True, ints(net.bias), ints(net.bias_out),
            int(net.shift_in), int(net.shift_rec), int(net.shift_out), ints(net.dash_mem),
            ints(net.dash_mem_out), [[int(d)] for d in net.dash_syn],
            [[int(d)] for d in net.dash_syn_out], "snnexport")

    def run(self, x) -> XyloRecord:
        """Input spike counts x [T, B, inputs] -> the records of every sample, [T, B, n]."""
        x = np.asarray(x.cpu() if torch.is_tensor(x) else x)
        t_steps, b = x.shape[0], x.shape[1]
        nh, no = self.net.n_hidden, self.net.n_out
        out = {k: np.zeros((t_steps, b, n), np.int64) for k, n in (
            ("spikes", nh), ("v", nh), ("i_syn", nh), ("spikes_out", no), ("v_out", no),
            ("i_syn_out", no))}
        counts = np.clip(x, 0, 255).astype(np.uint8)  # the chip's own limit (15) applies inside
        lay = self.layer
        for s in range(b):
            lay.reset_all()
            lay.evolve(counts[:, s].tolist())
            out["spikes"][:, s] = np.asarray(lay.rec_recurrent_spikes).reshape(t_steps, nh)
            out["spikes_out"][:, s] = np.asarray(lay.rec_out_spikes).reshape(t_steps, no)
            for key, rec, n in (("v", lay.rec_v_mem, nh), ("i_syn", lay.rec_i_syn, nh),
                                ("v_out", lay.rec_v_mem_out, no),
                                ("i_syn_out", lay.rec_i_syn_out, no)):
                out[key][:, s] = np.asarray(rec, np.int64).reshape(n, t_steps).T
        return XyloRecord(**{k: torch.from_numpy(v) for k, v in out.items()})
