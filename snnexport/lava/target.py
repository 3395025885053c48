"""The core's side of the Lava target: hands the folded IR and the inputs to the runner in the
Lava environment (a separate Python 3.10 process), gets the aligned spike trains back.

A crash becomes LavaError with the runner's last output; a hang is ended after `timeout`
seconds by killing the runner's whole process group (no orphans), and reported as LavaTimeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SnnexportError
from ..ir.graph import Graph
from ..ir.io import save_ir
from ..readout import readout_scores
from ..sim.reference import SimResult
from .lowering import lower

PACKAGE = Path(__file__).resolve().parents[1]  # the snnexport package, checkout or installed
_RUNNER_PATH: list[tempfile.TemporaryDirectory] = []


class LavaError(SnnexportError, RuntimeError):
    """The Lava runner failed; the message carries what it printed."""


class LavaTimeout(LavaError):
    """The Lava runner did not finish in time and was killed."""


def lava_python() -> Path:
    """The Lava environment's interpreter: $SNNEXPORT_LAVA_PYTHON, else the `.venv-lava` that
    `make lava-env` creates beside the package in a source checkout."""
    env = os.environ.get("SNNEXPORT_LAVA_PYTHON")
    path = Path(env) if env else PACKAGE.parent / ".venv-lava" / "bin" / "python"
    if not path.exists():
        raise LavaError(f"{path}: no Lava environment; set SNNEXPORT_LAVA_PYTHON to a Python "
                        "3.10 with numpy<2 lava-nc==0.10.0 lava-dl==0.6.0 (in a checkout, "
                        "`make lava-env` creates .venv-lava)")
    return path


def runner_path() -> str:
    """A folder holding only `snnexport` (a link to this package): the runner's PYTHONPATH.
    Not the package's parent, which for an installed wheel is this Python 3.11's whole
    site-packages, whose numpy 2 would shadow the Lava environment's own."""
    if not _RUNNER_PATH:
        d = tempfile.TemporaryDirectory(prefix="snnexport-runner-")
        os.symlink(PACKAGE, Path(d.name) / "snnexport")
        _RUNNER_PATH.append(d)  # removed when this process exits
    return _RUNNER_PATH[0].name


def run_runner(args: list[str], timeout: float) -> None:
    path = runner_path()
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen([str(lava_python()), "-m", "snnexport.lava.runner", *args],
                            cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group, killed as one
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise LavaTimeout(f"the Lava runner did not finish within {timeout:g} s and was "
                          "killed (with its process group)") from None
    if proc.returncode != 0:
        tail = out.decode(errors="replace")[-2000:]
        raise LavaError(f"the Lava runner failed (exit {proc.returncode}):\n{tail}")


def _collect(out: dict, names_shapes, t_steps: int, b: int) -> tuple[dict, torch.Tensor]:
    """Spike trains per layer as [T, B, *shape] tensors, and the last layer's output."""
    spikes, last = {}, None
    for name, shape, spiking in names_shapes:
        key = ("spikes:" if spiking else "v:") + name
        seq = torch.from_numpy(np.asarray(out[key], np.float64)).reshape(t_steps, b, *shape)
        if spiking:
            spikes[name] = seq
        last = seq.reshape(t_steps, b, -1)
    return spikes, last


class LavaFloatTarget:
    """Runs batches (static images or frame sequences) through Lava's floating-point LIF +
    Dense/Conv processes."""

    def __init__(self, graph: Graph, timeout: float = 600.0, artifact=None):
        self.graph = graph
        self.timeout = timeout
        self.artifact = artifact  # the written .snnir file the runner reads, if given
        _, _, self.stages, self.population = lower(graph)  # fail early, in the core

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        """x: static images [B, *input] or frames [T, B, *input]."""
        in_shape = tuple(self.graph.nodes[self.graph.order()[0]].shape)
        static = x.dim() == len(in_shape) + 1
        t_steps = int(self.graph.metadata["time_steps"]) if static else x.shape[0]
        xs = x if static else x.transpose(0, 1)  # samples first for the runner
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            model = Path(self.artifact) if self.artifact is not None else \
                save_ir(self.graph, d / "model.snnir")
            np.savez(d / "inputs.npz", x=xs.numpy().astype(np.float64), time_steps=t_steps,
                     input_shape=np.array(in_shape))
            run_runner(["float", str(model), str(d / "inputs.npz"),
                        str(d / "out.npz")], self.timeout)
            out = dict(np.load(d / "out.npz"))
        b = len(xs)
        spikes, last = _collect(out, [(st.name, st.shape, st.spiking) for st in self.stages
                                      if st.name], t_steps, b)
        voted = last.reshape(t_steps, b, -1, self.population).mean(-1)
        mode = self.graph.metadata.get("readout", "rate")
        return SimResult(voted, readout_scores(voted, mode, self.population), spikes, {})


class LavaFixedTarget:
    """The fixed-point IR in Lava `fixed_pt`: as LIF + Dense/Conv processes built from it
    (`netx=False`), or as the netx HDF5 file lava-dl builds (`netx=True`). Static images or
    frames; the host layer's current mantissas are computed here, with the emulator's code."""

    def __init__(self, net, netx: bool = False, timeout: float = 1200.0, artifact=None):
        self.net = net
        self.netx = netx
        self.artifact = artifact  # the written file (netx or fixed IR) run, read back from disk
        self.timeout = timeout
        # netx holds a chain: a residual merge is refused here, naming the merge node, before
        # Lava starts; the processes take a residual net (lowering.lower_residual), built once
        # here too so that what Lava cannot take is refused before it starts
        if not net.is_chain:
            net.refuse_current("Lava fixed_pt in a residual net")
        net.refuse_current_bias("netx" if netx else "Lava fixed_pt")
        if netx or net.is_chain:
            net.chain_only("netx" if netx else "Lava fixed_pt")
        else:
            from .runner import fixed_residual_stages

            fixed_residual_stages(net)
        if netx and artifact is None:  # refuse what netx cannot hold before starting Lava
            with tempfile.TemporaryDirectory() as d:
                from ..exporters.netx_export import write_netx

                write_netx(net, Path(d) / "model.net")

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        from ..quant.emulator import host_bias_mant
        from ..quant.fixed import save_fixed

        net = self.net
        static = x.dim() == len(net.input_shape) + 1
        t_steps = net.time_steps if static else x.shape[0]
        mant, _ = host_bias_mant(net.layers[0], x.to(torch.float64), net.input_shape,
                                 t_steps=t_steps)
        b = len(x) if static else x.shape[1]
        # a current-based host layer's current changes every step, a static image's too
        per_step = not static or net.layers[0].i_decay is not None
        mant = mant.transpose(0, 1).reshape(b, t_steps, -1) if per_step else mant.reshape(b, -1)
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            if self.netx and self.artifact is not None:
                model, mode = Path(self.artifact), "netx"
            elif self.netx:
                from ..exporters.netx_export import write_netx

                model, mode = write_netx(net, d / "model.net"), "netx"
            else:
                model, mode = (save_fixed(net, d / "model.fixed.npz") if self.artifact is None
                               else Path(self.artifact)), "fixed"
            np.savez(d / "inputs.npz", bias0=mant.numpy(), time_steps=t_steps)
            run_runner([mode, str(model), str(d / "inputs.npz"), str(d / "out.npz")],
                       self.timeout)
            out = dict(np.load(d / "out.npz"))
        self.stepping = out.pop("stepping")  # (Lava steps, seconds) per sample
        layers = [(lay.name, lay.shape, lay.spiking) for lay in net.layers if not lay.pool]
        spikes, last = _collect(out, layers, t_steps, b)
        if not net.layers[-1].spiking:
            last = last / net.layers[-1].scale
        voted = last.reshape(t_steps, b, -1, net.population).mean(-1)
        return SimResult(voted, readout_scores(voted, net.readout, net.population), spikes, {})
