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
from ..hw.cores import HardwareLoweringError
from ..ir.graph import Graph
from ..ir.io import save_ir
from ..readout import readout_scores
from ..sim.reference import SimResult
from .lowering import LavaCost, host_cost, lava_cost, lower

PACKAGE = Path(__file__).resolve().parents[1]  # the snnexport package, checkout or installed
_RUNNER_PATH: list[tempfile.TemporaryDirectory] = []


class LavaError(SnnexportError, RuntimeError):
    """The Lava runner failed; the message carries what it printed."""


class LavaTimeout(LavaError):
    """The Lava runner did not finish in time and was killed."""


class LavaTooLarge(LavaError, HardwareLoweringError):
    """Lava's CPU simulator would not finish within the runner's time limit, or its matrices
    would not fit in memory (lowering.lava_cost's estimate): refused before Lava starts."""


def available_bytes() -> int:
    """The memory available now (/proc/meminfo MemAvailable; else the free physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def refuse_too_large(target: str, cost: LavaCost, samples: int, t_steps: int, depth: int,
                     timeout: float) -> None:
    """Raises LavaTooLarge, in one line naming the cause, when the run of `samples` samples
    would pass `timeout` seconds or its synapse matrices (held by the runner, Lava's process
    and its model: 3 copies) more than half the memory available."""
    steps = samples * t_steps + depth + 1
    need, free = 3 * cost.matrix_bytes, available_bytes()
    if need > free / 2:
        raise LavaTooLarge(
            f"{target}: Lava's synapse matrices would take about {need / 2**30:.1f} GiB, more "
            f"than half the {free / 2**30:.1f} GiB available (the largest stage: "
            f"{cost.costliest!r}); check Lava at a smaller input size")
    secs = cost.seconds(steps)
    if secs > timeout:
        raise LavaTooLarge(
            f"{target}: Lava's CPU simulator would take about {secs:.0f} s for {samples} "
            f"sample(s) ({steps} steps of {cost.processes} processes, "
            f"{cost.step_s:.2f} s a step in synapses, the costliest {cost.costliest!r} at "
            f"{cost.costliest_s:.2f} s), more than the runner's limit of {timeout:g} s; check "
            "fewer samples (deploy --lava-samples) or a smaller input size")


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
        size, build_s, host = host_cost(graph)  # before `lower` builds the host matrix
        if size > available_bytes() / 4 or build_s > timeout:
            raise LavaTooLarge(
                f"lava-float: the host layer {host!r}: its dense matrix would take "
                f"{size / 2**30:.1f} GiB and about {build_s:.0f} s to build (in the core and "
                f"again in the Lava runner), more than a quarter of the "
                f"{available_bytes() / 2**30:.1f} GiB available or the runner's limit of "
                f"{timeout:g} s; check Lava at a smaller input size")
        _, _, self.stages, self.population = lower(graph)  # fail early, in the core
        self.cost = lava_cost(self.stages)
        self.cost.build_s = build_s
        residual = bool(self.stages) and self.stages[0].links is not None
        self.depth = max(st.depth for st in self.stages) if residual else len(self.stages) - 1

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        """x: static images [B, *input] or frames [T, B, *input]."""
        in_shape = tuple(self.graph.nodes[self.graph.order()[0]].shape)
        static = x.dim() == len(in_shape) + 1
        t_steps = int(self.graph.metadata["time_steps"]) if static else x.shape[0]
        xs = x if static else x.transpose(0, 1)  # samples first for the runner
        refuse_too_large("lava-float", self.cost, len(xs), t_steps, self.depth, self.timeout)
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            # absolute: the runner runs in its own folder (a deploy's -o may be relative)
            model = Path(self.artifact).resolve() if self.artifact is not None else \
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

    def __init__(self, net, netx: bool = False, timeout: float = 1200.0, artifact=None,
                 record_state: bool = True):
        self.net = net
        self.netx = netx
        self.artifact = artifact  # the written file (netx or fixed IR) run, read back from disk
        self.timeout = timeout
        self.cost = None  # a residual net's Lava cost (a chain's is small: netx's form)
        # a lava-dl netx file: u and v read after every step (one run call each), Lava's
        # time per sample (build + run + stop) and its stepping alone
        self.record_state = record_state
        self.seconds, self.run_seconds = np.zeros(0), np.zeros(0)
        if net.lava_timing:  # a lava-dl netx file: run as netx builds it (_run_netx_file)
            return
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

            stages = fixed_residual_stages(net)
            self.cost = lava_cost(stages)
            self.depth = max(st.depth for st in stages)
        if netx and artifact is None:  # refuse what netx cannot hold before starting Lava
            with tempfile.TemporaryDirectory() as d:
                from ..exporters.netx_export import write_netx

                write_netx(net, Path(d) / "model.net")

    def __call__(self, x: torch.Tensor, dtype=None) -> SimResult:
        from ..quant.emulator import host_bias_mant
        from ..quant.fixed import save_fixed

        net = self.net
        if net.lava_timing:
            return self._run_netx_file(x)
        static = x.dim() == len(net.input_shape) + 1
        t_steps = net.time_steps if static else x.shape[0]
        b = len(x) if static else x.shape[1]
        if self.cost is not None:
            refuse_too_large("lava-fixed", self.cost, b, t_steps, self.depth, self.timeout)
        mant, _ = host_bias_mant(net.layers[0], x.to(torch.float64), net.input_shape,
                                 t_steps=t_steps)
        # a current-based host layer's current changes every step, a static image's too
        per_step = not static or net.layers[0].i_decay is not None
        mant = mant.transpose(0, 1).reshape(b, t_steps, -1) if per_step else mant.reshape(b, -1)
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            if self.netx and self.artifact is not None:
                model, mode = Path(self.artifact).resolve(), "netx"
            elif self.netx:
                from ..exporters.netx_export import write_netx

                model, mode = write_netx(net, d / "model.net"), "netx"
            else:
                model, mode = (save_fixed(net, d / "model.fixed.npz") if self.artifact is None
                               else Path(self.artifact).resolve()), "fixed"
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

    def _run_netx_file(self, x: torch.Tensor) -> SimResult:
        """A lava-dl netx file (FixedNet.lava_timing) on x [T, B, *input] (integers, as
        net.input_drive says): each sample on a fresh `netx.hdf5.Network` built from the file
        (the runner's netx-file mode), from rest, every layer from step 0, u and v of every
        layer read after every step (`.state`), as the emulator records them."""
        net = self.net
        t_steps, b = x.shape[0], x.shape[1]
        rank = max(len(lay.shape) for lay in net.layers)
        shapes = np.zeros((len(net.layers), rank), np.int64)
        for k, lay in enumerate(net.layers):
            shapes[k, :len(lay.shape)] = lay.shape
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            np.savez(d / "inputs.npz", x=x.reshape(t_steps, b, -1).transpose(0, 1).to(
                torch.int64).numpy(), mode=np.array(net.input_drive), shapes=shapes,
                record_state=np.array(int(self.record_state)),
                num_layers=np.array(net.num_layers or 0),
                reset=np.array([net.reset_interval or 0, net.reset_offset], np.int64))
            run_runner(["netx-file", str(Path(net.netx_file).resolve()), str(d / "inputs.npz"),
                        str(d / "out.npz")], self.timeout)
            out = dict(np.load(d / "out.npz"))
        self.seconds = np.concatenate([self.seconds, out["seconds"]])
        self.run_seconds = np.concatenate([self.run_seconds, out["run_seconds"]])
        spikes, state, last = {}, {}, None
        for k, lay in enumerate(net.layers):
            s = torch.from_numpy(out[f"spikes:{k}"].astype(np.float64)).reshape(
                t_steps, b, *lay.shape)
            if self.record_state:
                state[lay.name] = (torch.from_numpy(out[f"u:{k}"]).reshape(t_steps, b, -1),
                                   torch.from_numpy(out[f"v:{k}"]).reshape(t_steps, b, -1))
            if lay.spiking:
                spikes[lay.name] = s
            last = s if lay.spiking or not self.record_state else \
                state[lay.name][1].to(torch.float64)
        voted = last.reshape(t_steps, b, -1, net.population).mean(-1)
        result = SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                           {})
        result.state = state
        return result
