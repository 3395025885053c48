"""Bit-accurate emulator of an imported netx network (netx_import.NetxNet) as lava-dl's
`netx.hdf5.Network` runs it in Lava 0.10 `fixed_pt`, from rest, every layer from step 0,
vectorised over batch and neurons (torch int64 / exact float64).

Per layer k, Lava's rules (lava/proc/lif/models.py AbstractPyLifModelFixed, dense/models.py
PyDenseModelBitAcc / PyDelayDenseModelBitAcc, conv/models.py PyConvModelFixed):
    x_t     the input layer's a_in (integers), or the previous layer's spikes s_{t}
    A_d,t   = W_d x_t  (W_d: the synapses of delay d; dense: the sum shifted by weight_exp, a
              right shift flooring, per delay d separately; conv: wrapped to 24 bits)
    a_t     = sum_d A_d,t-1-d   (each Dense / Conv answers one step late, plus its delay;
              the input block's a_in is not delayed)
    u_t     = wrap24(sign(p) (|p| >> 12) + (a_t << 6)),  p = u_{t-1} (4096 - iDecay)
    v_t     = clip(sign(q) (|q| >> 12) + u_t + (bias << 6), +-(2^23 - 1)),
              q = v_{t-1} (4096 - vDecay)
    s_t     = v_t > vThMant << 6;  v_t = 0 where s_t
    u_-1 = v_-1 = 0; wrap24(x) = x - 2^24 if x > 2^23, x + 2^24 if x <= -2^23.
With netx's `reset_interval` (NetxNet.reset_steps) u and v are set to 0 before the steps where
layer k resets (each stretch between resets runs from rest); synapses keep their buffers.
Without an input neuron the input (0/1 spikes) feeds the first synapse (netx wires `net.inp`
to it). With one, the input is the Input block's a_in, or (`input_bias=True`) its bias
mantissa, one value per neuron per step.

Two implementations, checked against each other bit for bit (tests/test_netx_import.py):
`emulate_netx(..., reference=True)` in plain int64 (F.conv2d / matmul in float64 on integers,
exact below 2^53), and the fast one: the synapses of all T*B steps on the exact GEMM kernels of
emulator.py (int8 / float32 / float64 chosen from a bound on the sums), the neuron loop in
float64 on preallocated buffers (every value an integer below 2^53: exact).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from ..readout import readout_scores
from ..sim.reference import SimResult
from .emulator import WRAP, _fast_neurons, _fast_synapse, integer_current, neuron_loop, wrap24
from .fixed import FixedSynapse
from .netx_import import NetxLayer, NetxNet


def _conv(layer: NetxLayer, s: torch.Tensor) -> torch.Tensor:
    w = torch.as_tensor(layer.weight, dtype=torch.float64)
    a = F.conv2d(s.to(torch.float64), w, None, layer.stride, layer.padding, layer.dilation,
                 layer.groups).round().to(torch.int64)
    return (a + WRAP) % (2 * WRAP) - WRAP  # Lava's Conv: signed_clamp(x, 24)


def _shift(a: torch.Tensor, e: int) -> torch.Tensor:
    return a << e if e >= 0 else a >> -e


def _dense(layer: NetxLayer, s: torch.Tensor, w: np.ndarray, fast: bool) -> torch.Tensor:
    """[N, out]: the shifted sum of s [N, in] over the weights w; int64, or (fast) float64
    holding integers (a shift by a power of 2 and a floor are exact on them)."""
    e = layer.weight_exp
    if fast:
        a = _fast_synapse(FixedSynapse("", "", "dense", w), s, (w.shape[0],), "auto")
        return a.mul_(2.0 ** e).floor_() if e < 0 else a.mul_(2.0 ** e) if e else a
    a = (s.to(torch.float64) @ torch.as_tensor(w, dtype=torch.float64).T).round().to(
        torch.int64)
    return _shift(a, e)


def layer_input(layer: NetxLayer, x: torch.Tensor, t_steps: int, b: int,
                fast: bool) -> torch.Tensor:
    """a_t [T, B, n] for the layer's input x [T, B, *in_shape] (spikes or a_in): int64, or
    (fast) float64 holding the same integers."""
    n = layer.n
    dtype = torch.float64 if fast else torch.int64
    if layer.kind == "input":
        return x.reshape(t_steps, b, n).to(dtype)
    flat = x.reshape(t_steps * b, *layer.in_shape)
    if layer.kind == "conv":
        if fast and layer.dilation == (1, 1):
            syn = FixedSynapse("", "", "conv", layer.weight, layer.stride, layer.padding,
                               layer.groups)
            a = _fast_synapse(syn, flat, layer.shape, "auto")
        else:
            a = _conv(layer, flat)
        per_delay = {0: a.reshape(t_steps, b, n)}
    else:
        s = flat.reshape(t_steps * b, -1)
        w = np.asarray(layer.weight, np.int64)
        if layer.delay is None:
            per_delay = {0: _dense(layer, s, w, fast).reshape(t_steps, b, n)}
        else:
            per_delay = {}
            for d in np.unique(layer.delay).tolist():
                wd = np.where(layer.delay == d, w, 0)
                if wd.any():
                    per_delay[int(d)] = _dense(layer, s, wd, fast).reshape(t_steps, b, n)
    out = torch.zeros((t_steps, b, n), dtype=dtype)
    for d, a in per_delay.items():
        lag = 1 + d  # one step per hop (a_buff), plus the synapse's delay
        if lag < t_steps:
            out[lag:] += a[:t_steps - lag]
    return out


def _neuron_view(layer: NetxLayer, n: int) -> SimpleNamespace:
    """The netx layer as the fixed-point emulator's neuron step takes it (emulator.neuron_loop,
    _fast_neurons: the one membrane step): one value per neuron, from rest (v_init 0)."""
    return SimpleNamespace(name=layer.name, shape=(n,), vth_mant=int(layer.vth_mant),
                           dv=np.broadcast_to(np.asarray(layer.dv, np.int64), (n,)).copy(),
                           v_init=np.zeros(n, np.int64))


def cuba_reference(layer: NetxLayer, a: torch.Tensor, bias: torch.Tensor):
    """Lava's fixed-point LIF as written, int64: a [T, B, n] (a_in), bias [T or 1, B or 1, n]
    (mantissas). Returns u, H (v before the reset), v (after it, what Lava's `v` holds), s,
    each [T, B, n]. The emulator's own steps: integer_current, then neuron_loop."""
    t_steps, b, n = a.shape
    u, _ = integer_current(layer.i_decay, a << 6)
    h, s = neuron_loop(_neuron_view(layer, n), u, (bias << 6).expand(t_steps, b, n))
    return u, h, torch.where(s, torch.zeros_like(h), h), s


def cuba_fast(layer: NetxLayer, a: torch.Tensor, bias: torch.Tensor, keep_state: bool = True):
    """`cuba_reference` in float64 (integers below 2^53: exact), the emulator's fast steps
    (integer_current, _fast_neurons): a float64 [T, B, n]. Returns u, H, v (float64; u and v
    None unless keep_state), s."""
    t_steps, b, n = a.shape
    drive = a.to(torch.float64).mul_(64)
    # iDecay 4096 keeps no current: u is this step's input, wrapped
    u = wrap24(drive) if layer.i_decay == 4096 else integer_current(layer.i_decay, drive,
                                                                    fast=True)[0]
    h, s = _fast_neurons(_neuron_view(layer, n), u + (bias << 6).to(torch.float64), t_steps,
                         None, keep_h=True)
    v = h * (~s) if keep_state else None  # reset to 0 where it fired
    return (u if keep_state else None), h, v, s


def _cuba_with_resets(layer: NetxLayer, a: torch.Tensor, bias: torch.Tensor, resets: list[int],
                      reference: bool, keep_state: bool):
    """The layer's LIF over a [T, B, n], u and v set to 0 before each step in `resets` (netx's
    reset_interval, NetxNet.reset_steps): each stretch between resets runs from rest."""
    bounds = [0, *resets, a.shape[0]]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        b = bias[lo:hi] if bias.shape[0] > 1 else bias
        parts.append(cuba_reference(layer, a[lo:hi], b) if reference else
                     cuba_fast(layer, a[lo:hi], b, keep_state))
    if len(parts) == 1:
        return parts[0]
    return tuple(None if part[0] is None else torch.cat(part) for part in zip(*parts, strict=True))


def _check_input(net: NetxNet, x: torch.Tensor, input_bias: bool) -> None:
    from ..errors import UsageError

    shape = tuple(net.input_shape)
    if x.dim() != len(shape) + 2 or tuple(x.shape[2:]) != shape:
        raise UsageError(f"{net.path}: the input must be [T, B, {', '.join(map(str, shape))}] "
                         f"(C x H x W inside snnexport), got {list(x.shape)}")
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise UsageError(f"{net.path}: the input must be integers (a_in / bias mantissas or "
                         "0/1 spikes)")
    if input_bias and (x.max() > 4095 or x.min() < -4096):
        raise UsageError(f"{net.path}: input bias mantissas must be in -4096..4095 (13 bits)")
    if not net.has_input_neuron and not input_bias and ((x != 0) & (x != 1)).any():
        raise UsageError(f"{net.path}: the first block is a synapse: its input must be 0/1 "
                         "spikes (Lava's Dense / Conv read any nonzero value as a spike)")
    if x.abs().max() > (1 << 15) - 1:
        raise UsageError(f"{net.path}: a_in values must fit 16 bits (|x| < 32768)")


@torch.no_grad()
def emulate_netx(net: NetxNet, x: torch.Tensor, *, input_bias: bool = False,
                 reference: bool = False, record_state: bool = True) -> SimResult:
    """Runs the netx network on x [T, B, *input] (C x H x W order inside snnexport: a_in of the
    input block, or its bias mantissas with `input_bias`, or 0/1 spikes into the first synapse
    when the file has no input block). SimResult: spikes per layer [T, B, *shape] (every
    layer, non-spiking ones all 0), membrane = H (v before the reset) per layer, and
    `.state` {layer: (u, v)} int64 [T, B, n] when `record_state` (v after the reset: what
    Lava's LIF holds after the step). outputs: the last layer's spikes (its
    v where it cannot spike: a readout), scores their sum over T."""
    x = torch.as_tensor(x)
    _check_input(net, x, input_bias)
    if input_bias and not net.has_input_neuron:
        from ..errors import UsageError

        raise UsageError(f"{net.path}: the file has no input block; give spikes (x), not an "
                         "input bias")
    t_steps, b = x.shape[0], x.shape[1]
    fast = not reference
    spikes, membrane, state = {}, {}, {}
    prev = x.to(torch.int64)
    out = None
    for k, layer in enumerate(net.layers):
        n = layer.n
        if k == 0 and layer.kind == "input" and input_bias:
            a = torch.zeros((t_steps, b, n), dtype=torch.float64 if fast else torch.int64)
            bias = prev.reshape(t_steps, b, n)
        else:
            src = prev if fast else prev.to(torch.int64)
            a = layer_input(layer, src, t_steps, b, fast)
            bias = torch.zeros((1, 1, n), dtype=torch.int64) if layer.bias is None else \
                torch.from_numpy(np.array(layer.bias, np.int64)).reshape(1, 1, n)
        u, h, v, s = _cuba_with_resets(layer, a, bias, net.reset_steps(k, t_steps),
                                       reference, record_state)
        spikes[layer.name] = s.to(torch.float64).reshape(t_steps, b, *layer.shape)
        membrane[layer.name] = h.to(torch.float64).reshape(t_steps, b, *layer.shape)
        if record_state:
            state[layer.name] = (u.to(torch.int64), v.to(torch.int64))
        prev = s.reshape(t_steps, b, *layer.shape)
        out = s.to(torch.float64) if layer.spiking and not layer.is_readout else \
            h.to(torch.float64)
    scores = readout_scores(out, "rate", 1)
    result = SimResult(out, scores, spikes, membrane)
    result.state = state
    return result


__all__ = ["cuba_fast", "cuba_reference", "emulate_netx", "layer_input"]
