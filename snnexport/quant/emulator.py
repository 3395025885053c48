"""Bit-accurate emulator of the fixed-point IR: Lava 0.10's `PyLifModelBitAcc` behind `Dense` /
`Conv` in `fixed_pt`, vectorised over batch and neurons (torch int64).

Lava's rules, as lava/proc/lif/models.py (AbstractPyLifModelFixed.subthr_dynamics) and
lava/proc/{dense,conv}/models.py write them, with du = 4095 (current not kept):
    a  = W s (Dense: int sum, `<< weight_exp`; Conv: the sum wrapped to 24 bit, signed_clamp)
    u  = a << 6, then wrapped: u - 2^24 if u > 2^23; u + 2^24 if u <= -2^23
    v  = sign(p) (|p| >> 12), p = v (4096 - dv)          (decay truncated toward zero)
    v  = clip(v + u + (bias_mant << 6), -(2^23 - 1), 2^23 - 1)
    s  = v > (vth_mant << 6);  v[s] = 0
Delays: Lava's layer k answers k steps late (one per hop); the runners start every layer at
its own step (see lava/runner.py), so the emulator's step t is Lava's step t + k of layer k.
The synapse of every step is computed at once over T*B (exact: integer sums of 0/1 spikes
times |w| <= 256 are exact in float64), then the neuron recurrence loops over T.

Residual nets (fixed.py): a layer takes the output of its `source` (a layer or a merge; the
layer before it when ""); a merge of spike trains is computed in integers when first taken
(ADD a + b, graded; AND a b; IAND (1 - a) b); a layer with further synapses adds their integer
sums to its own before the shift, a = sum_k W_k x_k (all at the layer's scale), then wraps
u = a << 6 as Lava's LIF wraps any input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..readout import readout_scores
from ..sim.reference import SimResult
from .fixed import (
    BIAS_MANT_MAX,
    STATE_MAX,
    FixedLayer,
    FixedMerge,
    FixedNet,
    FixedSynapse,
    host_current_float,
)

WRAP = 1 << 23


@dataclass
class EmulatorStats:
    """Per layer: membranes clipped at the 24-bit limit, currents wrapped, host current
    mantissas clipped at 13 bits."""

    v_clipped: dict[str, int] = field(default_factory=dict)
    u_wrapped: dict[str, int] = field(default_factory=dict)
    bias_clipped: dict[str, int] = field(default_factory=dict)
    # the last batch only: where any of the three happened, [T, B, n] bool per layer (what lets
    # parity call a divergence at such a neuron an overflow)
    saturated: dict[str, torch.Tensor] = field(default_factory=dict)

    def mark(self, name: str, where: torch.Tensor) -> None:
        where = where.reshape(*where.shape[:2], -1)
        old = self.saturated.get(name)
        self.saturated[name] = where if old is None else old | where


def host_bias_mant(layer: FixedLayer, x_seq: torch.Tensor, input_shape) -> torch.Tensor:
    """The host layer's current as a 13-bit bias mantissa (int64), same shape as the current."""
    gain = layer.gain
    syn = _host_synapse(layer)
    current = host_current_float(syn, gain, x_seq, input_shape)
    raw = torch.round(current * (layer.scale / 64))
    return raw.clamp(-BIAS_MANT_MAX - 1, BIAS_MANT_MAX).to(torch.int64), raw


def _host_synapse(layer: FixedLayer):
    from ..ir import nodes as ir

    if layer.host_kind == "conv":
        return ir.Conv2d(layer.weight, layer.bias, layer.stride, layer.padding, layer.groups)
    return ir.Dense(layer.weight, layer.bias)


def synapse_sum(layer: FixedLayer | FixedSynapse, s: torch.Tensor,
                out_shape=None) -> torch.Tensor:
    """Integer synaptic sums [N, *shape] for input spikes s [N, *in] (0/1, or the integer
    values of a SEW ADD). A further synapse (FixedSynapse) of a layer gives that layer's
    `out_shape`."""
    out_shape = tuple(layer.shape) if out_shape is None else tuple(out_shape)
    w = torch.as_tensor(layer.weight, dtype=torch.float64)
    if layer.kind == "conv":
        a = F.conv2d(s.to(torch.float64), w, None, layer.stride, layer.padding, 1, layer.groups)
        a = a.round().to(torch.int64)
        return (a + WRAP) % (2 * WRAP) - WRAP  # Lava's Conv: signed_clamp(x, 24)
    a = (s.flatten(1).to(torch.float64) @ w.T).round().to(torch.int64)
    e = getattr(layer, "weight_exp", 0)
    a = a << e if e >= 0 else a >> -e
    return a.reshape(len(s), *out_shape)


def merge_values(merge: FixedMerge, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A SEW merge in integers (int64 [T, B, *shape]): a + b, a b, or (1 - a) b."""
    a = a.reshape(*a.shape[:2], *merge.shape).to(torch.int64)
    b = b.reshape(*b.shape[:2], *merge.shape).to(torch.int64)
    if merge.op == "add":
        return a + b
    if merge.op == "and":
        return a * b
    if merge.op == "iand":
        return (1 - a) * b
    raise ValueError(f"merge {merge.name!r}: unknown op {merge.op!r}")


def neuron_loop(layer: FixedLayer, u: torch.Tensor | None, bias: torch.Tensor,
                stats: EmulatorStats | None = None):
    """u [T, B, *shape] (already wrapped) or None; bias int64 broadcastable to [T, B, *shape]
    (the host layer's varies per step). Returns (H, S) int64 / bool, [T, B, *shape]."""
    t_steps = bias.shape[0] if u is None else u.shape[0]
    b = u.shape[1] if u is not None else bias.shape[1]
    shape = (b, *layer.shape)
    keep = torch.as_tensor(4096 - layer.dv, dtype=torch.int64)
    vth = int(layer.vth_mant) << 6
    v = torch.as_tensor(layer.v_init, dtype=torch.int64).expand(shape).clone()
    hs, ss, clipped = [], [], []
    for t in range(t_steps):
        p = v * keep
        v = torch.sign(p) * (p.abs() >> 12)
        v = v + (u[t] if u is not None else 0) + (bias[t] if bias.dim() > len(layer.shape) else
                                                  bias)
        clipped.append(v.abs() > STATE_MAX)
        v = v.clamp(-STATE_MAX, STATE_MAX)
        hs.append(v)
        # Lava's rule holds for a non-spiking readout too: its vth_mant is the 17-bit maximum,
        # so only a membrane at the 24-bit limit fires (and is counted in v_clipped)
        s = v > vth
        v = torch.where(s, torch.zeros_like(v), v)
        ss.append(s)
    if stats is not None:
        clipped = torch.stack(clipped)
        stats.v_clipped[layer.name] = stats.v_clipped.get(layer.name, 0) + int(clipped.sum())
        stats.mark(layer.name, clipped)
    return torch.stack(hs), torch.stack(ss)


@torch.no_grad()
def emulate(net: FixedNet, x: torch.Tensor, stats: EmulatorStats | None = None,
            ir_units: bool = True) -> SimResult:
    """Runs the fixed-point IR on x ([B, *input] static or [T, B, *input] frames). Spikes per
    layer (pool helpers left out), membranes H (before reset) in IR units (v / S) or raw."""
    x = torch.as_tensor(x, dtype=torch.float64)
    t_steps = net.time_steps
    if x.dim() == len(net.input_shape) + 1:
        x_seq = x.unsqueeze(0)  # static: one current for every step
    else:
        x_seq = x
        t_steps = x.shape[0]
    b = x_seq.shape[1]
    spikes, membrane = {}, {}
    prev = None
    out_seq = None
    if stats is not None:
        stats.saturated.clear()  # where saturation happened: this batch only
    values: dict[str, torch.Tensor] = {}  # each layer's (and merge's) output, residual nets
    merges = {m.name: m for m in net.merges}

    def value(name: str) -> torch.Tensor:
        if name not in values:
            m = merges[name]
            values[name] = merge_values(m, value(m.inputs[0]), value(m.inputs[1]))
        return values[name]

    for layer in net.layers:
        if layer.kind == "host":
            mant, raw = host_bias_mant(layer, x_seq, net.input_shape)
            bias = (mant << 6).expand(t_steps, *mant.shape[1:])
            if stats is not None:
                over = (raw.abs() > BIAS_MANT_MAX).expand(bias.shape)
                stats.bias_clipped[layer.name] = stats.bias_clipped.get(layer.name, 0) + int(
                    over.sum())
                stats.mark(layer.name, over)
            h, s = neuron_loop(layer, None, bias, stats)
        else:
            x_in = value(layer.source) if layer.source else prev
            a = synapse_sum(layer, x_in.flatten(0, 1)).reshape(t_steps, b, *layer.shape)
            for syn in layer.synapses:  # a residual merge: every path at the layer's scale
                a = a + synapse_sum(syn, value(syn.source).flatten(0, 1), layer.shape).reshape(
                    t_steps, b, *layer.shape)
            u = a << 6
            wrapped = torch.where(u > WRAP, u - 2 * WRAP, u)
            wrapped = torch.where(wrapped <= -WRAP, u + 2 * WRAP, wrapped)
            if stats is not None:
                stats.u_wrapped[layer.name] = stats.u_wrapped.get(layer.name, 0) + int(
                    (wrapped != u).sum())
                stats.mark(layer.name, wrapped != u)
            bias = torch.zeros((), dtype=torch.int64) if layer.bias_mant is None else \
                torch.as_tensor(layer.bias_mant, dtype=torch.int64) << 6
            h, s = neuron_loop(layer, wrapped, bias, stats)
        prev = s
        if not net.is_chain:
            values[layer.name] = s
        if not layer.pool:
            if layer.spiking:
                spikes[layer.name] = s.to(torch.float64)
            membrane[layer.name] = h.to(torch.float64) / (layer.scale if ir_units else 1.0)
            out_seq = s.to(torch.float64) if layer.spiking else h.to(torch.float64) / layer.scale
    voted = out_seq.reshape(t_steps, b, -1, net.population).mean(-1)
    return SimResult(voted, readout_scores(voted, net.readout, net.population), spikes,
                     membrane)


def fixed_threshold(layer: FixedLayer) -> float:
    """The threshold in IR units (v > this fires)."""
    return (int(layer.vth_mant) << 6) / layer.scale


__all__ = ["EmulatorStats", "emulate", "fixed_threshold", "host_bias_mant", "merge_values",
           "neuron_loop", "synapse_sum"]
