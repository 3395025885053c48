"""Runs a netx HDF5 file as lava-dl's `netx.hdf5.Network` builds it, in Lava `fixed_pt`, one
sample at a time from rest (a fresh network per sample: every layer, every synapse buffer and
delay line starts empty, as a lava-dl user's run does). Executed by the Lava environment's
Python 3.10:

    python -m snnexport.lava.netx_import_runner MODEL.net INPUTS.npz OUT.npz [MODEL ...]

INPUTS: `x` [N, T, n_in] int (C-major input, the order snnexport keeps) and `mode`: 'a_in'
(a RingBuffer source into the Input block's neuron a_in: netx leaves the block's port unwired,
lava-dl #298), 'bias' (the Input block's bias mantissa set through the runtime before every
step) or 'spikes' (a RingBuffer into `net.inp`, the first synapse, for a file without an Input
block); `shapes` the C x H x W shape of every block (for the layout); `num_layers` netx's
(0: all); `reset` [reset_interval (0: none), reset_offset] netx's; `record_state` 1 to read
u and v of every block after every step (one step per run call), 0 to run T steps at once.
OUT: `spikes:<k>`, and with record_state `u:<k>`, `v:<k>`, each [T, N, n] C-major per block k;
`seconds` [N] the Lava time per sample (network built and compiled, run, stopped) and
`run_seconds` [N] the stepping alone.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _lava(a: np.ndarray, shape: tuple) -> np.ndarray:
    """C-major flat -> netx's W x H x C (a 1-D shape stays)."""
    return a.reshape(shape).transpose(tuple(reversed(range(len(shape)))))


def _ours(a: np.ndarray) -> np.ndarray:
    """netx's W x H x C (any rank) -> C-major flat."""
    return np.ascontiguousarray(a.transpose(tuple(reversed(range(a.ndim))))).reshape(-1)


def run_sample(path: str, x: np.ndarray, mode: str, shapes: list, record: bool,
               num_layers: int | None = None, reset: tuple[int, int] = (0, 0)) -> dict:
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.source import RingBuffer as Source

    from .runner import SpikeTap, run_cfg

    t_steps = x.shape[0]
    start = time.perf_counter()
    interval, offset = reset  # netx's periodic reset (LIFReset); interval 0: none
    net = hdf5.Network(net_config=path, num_layers=num_layers,
                       reset_interval=int(interval) or None, reset_offset=int(offset))
    if len(net.layers) != len(shapes):
        raise RuntimeError(f"{path}: netx built {len(net.layers)} blocks, snnexport read "
                           f"{len(shapes)}")
    in_shape = tuple(shapes[0]) if mode != "spikes" else None
    if mode == "spikes":
        lava_in = net.inp.shape
        data = np.stack([x[t].reshape(lava_in) if len(lava_in) == 1 else
                         _lava(x[t], tuple(reversed(lava_in))) for t in range(t_steps)], -1)
        source = Source(data=data.astype(np.int32))
        source.s_out.connect(net.inp)
    elif mode == "a_in":
        data = np.stack([_lava(x[t], in_shape) for t in range(t_steps)], -1)
        source = Source(data=data.astype(np.int32))
        source.s_out.connect(net.in_layer.neuron.a_in)
    else:
        net.in_layer.neuron.bias_mant.init = _lava(x[0], in_shape).astype(np.int32)
    sinks = [SpikeTap(block.neuron.s_out, t_steps) for block in net.layers]
    cfg = run_cfg("fixed_pt")
    out = {}
    n = [int(np.prod(s)) for s in shapes]
    if record:
        for k in range(len(shapes)):
            out[f"u:{k}"] = np.zeros((t_steps, n[k]), np.int64)
            out[f"v:{k}"] = np.zeros((t_steps, n[k]), np.int64)
    try:
        stepping = time.perf_counter()
        if record or mode == "bias":
            for t in range(t_steps):
                if mode == "bias" and t > 0:
                    net.in_layer.neuron.bias_mant.set(_lava(x[t], in_shape).astype(np.int32))
                net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
                if record:
                    for k, block in enumerate(net.layers):
                        out[f"u:{k}"][t] = _ours(block.neuron.u.get())
                        out[f"v:{k}"][t] = _ours(block.neuron.v.get())
        else:
            net.run(condition=RunSteps(num_steps=t_steps), run_cfg=cfg)
        run_s = time.perf_counter() - stepping
        for k, sink in enumerate(sinks):
            d = sink.data()  # [*W x H x C, T]
            out[f"spikes:{k}"] = np.stack([_ours(d[..., t]) for t in range(t_steps)])
    finally:
        net.stop()
    out["_seconds"] = time.perf_counter() - start
    out["_run_seconds"] = run_s
    return out


def run(model_path: str, inputs_path: str, out_path: str) -> None:
    data = np.load(inputs_path)
    x = data["x"].astype(np.int64)  # [N, T, n_in]
    mode = str(data["mode"])
    shapes = [tuple(int(v) for v in s[s > 0]) for s in data["shapes"]]
    record = bool(int(data["record_state"]))
    num_layers = int(data["num_layers"]) or None
    reset = tuple(int(v) for v in data["reset"]) if "reset" in data else (0, 0)
    per: dict[str, list] = {}
    for i in range(len(x)):
        for key, value in run_sample(model_path, x[i], mode, shapes, record, num_layers,
                                     reset).items():
            per.setdefault(key, []).append(value)
    result = {k: np.stack(v, 1) for k, v in per.items() if not k.startswith("_")}
    result["seconds"] = np.array(per["_seconds"], np.float64)
    result["run_seconds"] = np.array(per["_run_seconds"], np.float64)
    np.savez(out_path, **result)


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or len(args) % 3:
        sys.exit("usage: python -m snnexport.lava.netx_import_runner MODEL.net INPUTS.npz "
                 "OUT.npz [MODEL.net INPUTS.npz OUT.npz ...]")
    for i in range(0, len(args), 3):  # several networks in one process: Lava imported once
        run(*args[i:i + 3])
