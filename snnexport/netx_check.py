"""Checking an imported netx file (lava-dl's HDF5, read by quant/netx_import.py): the Lava run of
the file against snnexport's emulator of it, layer by layer, on the user's inputs.

    snnexport inspect net.net
    snnexport check net.net --target netx  --data inputs.npz   # Lava netx.hdf5.Network vs emulator
    snnexport check net.net --target fixed --data inputs.npz   # the emulator alone (fast vs plain)

Inputs (`--data FILE.npz`, read with allow_pickle=False), as a lava-dl user gives them, in the
layout netx uses (W x H x C, the file's shape reversed; a flat input is [n]):
  x     [N, T, *WHC] integers: the Input block's a_in per step (spikes or graded event frames);
        for a file without an Input block, 0/1 spikes into the first synapse (net.inp)
  bias  instead of x: the Input block's bias mantissa (13 bit), [N, T, *WHC], or [N, *WHC]
        with `time_steps` (one value per sample, held for every step)
  y     optional [N] class labels (the last layer's spike count, or its v summed, is the score)
Every layer starts from rest (u = v = 0, empty synapse buffers and delay lines) for every
sample, as a fresh `netx.hdf5.Network` does; every layer runs from step 0 (one step per hop, so
layer k first hears the input at step k).

'netx' compares the spikes of every layer, and u and v (after the reset: what Lava's LIF holds)
of every layer at every step, with the emulator's: any difference is a failure, the first one
reported (layer, step, sample, neuron, both values). 'fixed' runs the fast emulator against the
plain one (quant/netx_emulator.py) over all the samples given.

Outputs recorded elsewhere (lava-dl's stored ground truth) are compared with the emulator too,
value for value: in FILE.npz `s:<g>`, `u:<g>`, `v:<g>` [N, T_r, *WHC] (spikes, current,
voltage after the reset of layer group g, `layer/<g>`, in netx's layout) covering the steps
from `t0:<g>` (default 0); any difference fails the check. A layer whose threshold is at the
top of its range (NetxLayer.is_readout) cannot spike by design: it is a readout, its u and v
(compared at every step) are its output, not a silent layer. Accuracy is given only with `y`.
netx.hdf5.Network's own arguments (`num_layers`, `reset_interval`, `reset_offset`) are given
on the command line as `--netx num_layers=5,reset_interval=16`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import UsageError
from .parity import ParityReport, compare
from .quant.netx_import import NetxNet
from .quant.netx_inputs import NetxInputs, encode_images, inputs_of, read_inputs

TARGETS = ("netx", "fixed")


@dataclass
class NetxParityReport(ParityReport):
    """A ParityReport of spikes (spiking layers), plus the state rows: per layer, the u and v
    values compared and how many differ; `first_state_divergence` the first of them."""

    state: list[dict] = field(default_factory=list)
    first_state_divergence: dict | None = None
    lava_seconds_per_sample: float | None = None
    labelled: bool = True  # labels given: accuracy means something
    readouts: list[str] = field(default_factory=list)  # layers that cannot spike by design
    recorded: list[dict] = field(default_factory=list)  # vs outputs recorded elsewhere
    recorded_source: str = ""

    @property
    def state_mismatches(self) -> int:
        return sum(r["u_mismatches"] + r["v_mismatches"] for r in self.state) + sum(
            r["mismatches"] for r in self.recorded)

    @property
    def unexplained(self) -> int:
        return super().unexplained + self.state_mismatches

    @property
    def exact(self) -> bool:
        return super().exact and self.state_mismatches == 0

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["state"] = self.state
        d["first_state_divergence"] = self.first_state_divergence
        d["lava_seconds_per_sample"] = self.lava_seconds_per_sample
        d["readouts"] = self.readouts
        if self.recorded:
            d["recorded"] = {"source": self.recorded_source, "rows": self.recorded}
        d["labelled"] = self.labelled  # False: no labels, the accuracies mean nothing
        return d

    def text(self) -> str:
        lines = super().text().splitlines()
        if not self.labelled:  # no labels: no accuracy, only the agreement
            lines[1] = "  no labels given (y): accuracy not computed; agreement " + \
                lines[1].rsplit("agreement", 1)[1].strip()
        if self.readouts:
            lines.append(f"  readout {', '.join(self.readouts)}: threshold at the top of its "
                         "range (cannot spike by design); its u and v are its output, compared "
                         "at every step below")
        if self.state:
            lines.append("  state (u, v after the reset, every step): " + ", ".join(
                f"{r['layer']} u {'=' if not r['u_mismatches'] else r['u_mismatches']} "
                f"v {'=' if not r['v_mismatches'] else r['v_mismatches']}"
                for r in self.state))
        if self.first_state_divergence:
            fd = self.first_state_divergence
            lines.append(f"  first state divergence: {fd['layer']} {fd['var']} at step "
                         f"{fd['step']}, sample {fd['sample']}, neuron {fd['neuron']}: "
                         f"reference {fd['reference']}, target {fd['target']}")
        for r in self.recorded:
            first = "" if r["first"] is None else (
                f" (first at step {r['first']['step']}, sample {r['first']['sample']}, neuron "
                f"{r['first']['neuron']}: recorded {r['first']['recorded']}, emulator "
                f"{r['first']['emulator']})")
            lines.append(f"  recorded {r['layer']} {r['var']} steps {r['steps'][0]}.."
                         f"{r['steps'][1]} ({self.recorded_source}): {r['values']} values, "
                         f"{'all equal' if not r['mismatches'] else r['mismatches']}"
                         f"{'' if not r['mismatches'] else ' differ'}{first}")
        return "\n".join(lines)


def _compare_recorded(report: NetxParityReport, ref, recorded: dict, lo: int, b: int) -> None:
    """Every recorded value (NetxInputs.recorded) of samples lo..lo+b against the emulator."""
    rows = {(r["layer"], r["var"]): r for r in report.recorded}
    for (name, var), (t0, arr) in recorded.items():
        rec = arr[:, lo:lo + b]
        got = ref.spikes[name] if var == "s" else ref.state[name]["uv".index(var)]
        got = got.reshape(got.shape[0], got.shape[1], -1)[t0:t0 + rec.shape[0]].to(torch.int64)
        row = rows.get((name, var))
        if row is None:
            row = {"layer": name, "var": var, "steps": [t0, t0 + rec.shape[0] - 1], "values": 0,
                   "mismatches": 0, "first": None}
            report.recorded.append(row)
            rows[(name, var)] = row
        diff = got != rec
        row["values"] += int(rec.numel())
        row["mismatches"] += int(diff.sum())
        if diff.any() and row["first"] is None:
            t, s, j = diff.nonzero()[0].tolist()
            row["first"] = {"step": t0 + t, "sample": lo + s, "neuron": j,
                            "recorded": int(rec[t, s, j]), "emulator": int(got[t, s, j])}


def _compare_state(report: NetxParityReport, net: NetxNet, ref, tgt, offset: int) -> None:
    rows = {r["layer"]: r for r in report.state}
    for k, lay in enumerate(net.layers):
        if lay.name not in ref.state or lay.name not in tgt.state:
            continue
        row = rows.get(lay.name)
        if row is None:
            row = {"layer": lay.name, "values": 0, "u_mismatches": 0, "v_mismatches": 0}
            report.state.append(row)
            rows[lay.name] = row
        for i, var in enumerate(("u", "v")):
            r = ref.state[lay.name][i].reshape(*ref.state[lay.name][i].shape[:2], -1)
            t = tgt.state[lay.name][i].reshape(r.shape)
            diff = (r != t)
            row["values"] += int(r.numel()) if i == 0 else 0
            row[f"{var}_mismatches"] += int(diff.sum())
            if diff.any():
                step, s, j = diff.nonzero()[0].tolist()
                key = (step, k, offset + s, j)
                fd = report.first_state_divergence
                if fd is None or key < fd["_key"]:
                    report.first_state_divergence = {
                        "_key": key, "layer": lay.name, "var": var, "step": step,
                        "sample": offset + s, "neuron": j, "reference": int(r[step, s, j]),
                        "target": int(t[step, s, j])}


def _spiking_only(res, net: NetxNet):
    from .sim.reference import SimResult

    keep = {lay.name for lay in net.layers if lay.spiking and not lay.is_readout}
    return SimResult(res.outputs, res.scores,
                     {k: v for k, v in res.spikes.items() if k in keep},
                     {k: v for k, v in res.membrane.items() if k in keep})


def check_netx(net: NetxNet, target: str, inputs: NetxInputs, batch_size: int = 50,
               timeout: float = 1200.0, target_result=None) -> NetxParityReport:
    """The parity report of `target` ('netx': Lava; 'fixed': the fast emulator) against the
    emulator ('netx') or the plain emulator ('fixed') on `inputs`. `target_result`: the
    target's run of all of `inputs` already made (lava.netx_import_target.run_many)."""
    from .quant.netx_emulator import emulate_netx

    if target not in TARGETS:
        raise UsageError(f"{net.path}: a netx file is checked with --target netx (Lava vs "
                         f"the emulator) or fixed (the emulator alone), not {target!r}")
    x, y = inputs.x, inputs.y
    n = x.shape[1]
    if y is None:
        y = torch.zeros(n, dtype=torch.int64)
    if target == "netx":
        from .lava.netx_import_target import NetxLavaTarget

        runner = NetxLavaTarget(net, inputs.input_bias, record_state=True, timeout=timeout)
        name = "netx (lava-dl netx.hdf5.Network in Lava fixed_pt, from rest) vs the emulator"
    else:
        def runner(xb):
            return emulate_netx(net, xb, input_bias=inputs.input_bias)
        name = "fixed (snnexport's emulator of the netx file) vs the plain emulator"
    report = NetxParityReport(name, labelled=inputs.y is not None,
                              readouts=[lay.name for lay in net.layers if lay.is_readout],
                              recorded_source=inputs.source)
    thresholds = {lay.name: (int(lay.vth_mant) << 6) + 0.5 for lay in net.layers}
    if target_result is not None:
        batch_size = n
    for lo in range(0, n, batch_size):
        xb, yb = x[:, lo:lo + batch_size], y[lo:lo + batch_size]
        ref = emulate_netx(net, xb, input_bias=inputs.input_bias, reference=target == "fixed")
        tgt = runner(xb) if target_result is None else target_result
        compare(report, _spiking_only(ref, net), _spiking_only(tgt, net), yb, thresholds, 0.0,
                sample_offset=lo)
        _compare_state(report, net, ref, tgt, lo)
        if inputs.recorded:
            _compare_recorded(report, ref, inputs.recorded, lo, len(yb))
    if report.first_state_divergence:
        report.first_state_divergence.pop("_key", None)
    if target == "netx" and len(runner.seconds):
        report.lava_seconds_per_sample = float(np.mean(runner.seconds))
    return report


def check_model(loaded, target: str, data=None, samples: int | None = None,
                inputs=None) -> NetxParityReport:
    """`snnexport check` / `verify` of a loaded netx file (`loaded.graph` the NetxNet): on
    `data` (FILE.npz, module docstring) or `inputs` = (x [N, T, *WHC], labels or None)."""
    net = loaded.graph
    if inputs is not None:
        x, y = inputs
        arrays = {"x": np.asarray(x)}
        if y is not None:
            arrays["y"] = np.asarray(y)
        ins = inputs_of(net, arrays, "the given inputs", samples)
    elif data is None or not str(data).endswith(".npz"):
        raise UsageError(f"{loaded.path}: a netx file is checked on its own inputs: --data "
                         f"FILE.npz with x [N, T, {', '.join(map(str, net.netx_input_shape))}] "
                         "(netx's W x H x C) or bias")
    else:
        ins = read_inputs(net, data, samples)
    return check_netx(net, target, ins)


__all__ = ["NetxInputs", "NetxParityReport", "check_model", "check_netx", "encode_images",
           "inputs_of", "read_inputs"]
