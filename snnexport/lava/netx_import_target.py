"""The core's side of the imported-netx target: runs a netx file in Lava through
`netx_import_runner` (the Lava environment's Python 3.10, a separate process killed with its
process group on timeout, as lava/target.py runs its runner) and returns what Lava computed,
layer by layer, in snnexport's C x H x W order."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..quant.netx_import import NetxNet
from ..readout import readout_scores
from ..sim.reference import SimResult
from .target import LavaError, LavaTimeout, lava_python, runner_path


def _run(args: list[str], timeout: float) -> None:
    path = runner_path()
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen([str(lava_python()), "-m", "snnexport.lava.netx_import_runner",
                             *args], cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise LavaTimeout(f"the Lava netx runner did not finish within {timeout:g} s and was "
                          "killed (with its process group)") from None
    if proc.returncode != 0:
        tail = out.decode(errors="replace")[-2000:]
        raise LavaError(f"the Lava netx runner failed (exit {proc.returncode}):\n{tail}")


class NetxLavaTarget:
    """Runs batches x [T, B, *input] (C x H x W) of an imported netx network in Lava: each
    sample on a fresh `netx.hdf5.Network` from rest. `input_bias`: x is the Input block's bias
    mantissa per step, else its a_in (or the first synapse's spikes without an Input block).
    `record_state`: u and v of every layer after every step (one Lava call per step)."""

    def __init__(self, net: NetxNet, input_bias: bool = False, record_state: bool = True,
                 timeout: float = 1200.0):
        self.net, self.input_bias, self.record_state = net, input_bias, record_state
        self.timeout = timeout
        self.seconds = np.zeros(0)
        self.run_seconds = np.zeros(0)

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        return run_many([(self, x)], self.timeout)[0]

    def _write(self, x: torch.Tensor, path: Path) -> None:
        net = self.net
        t_steps, b = x.shape[0], x.shape[1]
        mode = "bias" if self.input_bias else ("a_in" if net.has_input_neuron else "spikes")
        xs = x.reshape(t_steps, b, -1).transpose(0, 1).to(torch.int64).numpy()
        rank = max(len(lay.shape) for lay in net.layers)
        shapes = np.zeros((len(net.layers), rank), np.int64)
        for k, lay in enumerate(net.layers):
            shapes[k, :len(lay.shape)] = lay.shape
        np.savez(path, x=xs, mode=np.array(mode), shapes=shapes,
                 record_state=np.array(int(self.record_state)),
                 num_layers=np.array(net.num_layers or 0),
                 reset=np.array([net.reset_interval or 0, net.reset_offset], np.int64))

    def _read(self, x: torch.Tensor, out: dict) -> SimResult:
        net = self.net
        t_steps, b = x.shape[0], x.shape[1]
        self.seconds = np.concatenate([self.seconds, out.pop("seconds")])
        self.run_seconds = np.concatenate([self.run_seconds, out.pop("run_seconds")])
        spikes, state = {}, {}
        last = None
        for k, lay in enumerate(net.layers):
            s = torch.from_numpy(out[f"spikes:{k}"].astype(np.float64)).reshape(
                t_steps, b, *lay.shape)
            spikes[lay.name] = s
            if self.record_state:
                u = torch.from_numpy(out[f"u:{k}"]).reshape(t_steps, b, -1)
                v = torch.from_numpy(out[f"v:{k}"]).reshape(t_steps, b, -1)
                state[lay.name] = (u, v)
            last = s.reshape(t_steps, b, -1) if (lay.spiking and not lay.is_readout) or \
                not self.record_state else \
                state[lay.name][1].to(torch.float64)
        result = SimResult(last, readout_scores(last, "rate", 1), spikes, {})
        result.state = state
        return result


def run_many(jobs: list[tuple[NetxLavaTarget, torch.Tensor]], timeout: float = 1200.0):
    """Each (target, x) run in Lava, all in one runner process (Lava imported once)."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        args = []
        for i, (target, x) in enumerate(jobs):
            target._write(x, d / f"in{i}.npz")
            args += [str(Path(target.net.path).resolve()), str(d / f"in{i}.npz"),
                     str(d / f"out{i}.npz")]
        _run(args, timeout)
        return [target._read(x, dict(np.load(d / f"out{i}.npz")))
                for i, (target, x) in enumerate(jobs)]
