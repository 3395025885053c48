"""snnexport's emulator of a Xylo net (XyloNet), bit for bit as xylosim's XyloIAFNeuron.cpp /
XyloLayer.cpp compute it: a vectorised one over the batch (torch, int64) and a plain one
(Python integers, one neuron and one synapse at a time, the C++ loops transcribed), checked
against each other and against xylosim (tests/test_xylo.py).

One step t, in this order (all state 16-bit, saturating: sat(x) = min(max(x, -2^15), 2^15 - 1)):
  1. input spikes (n_j = min(x_j[t], 15) per channel) into the hidden neurons' currents, then
     the hidden spikes of step t - 1 (m_k = min(s_k[t-1], 31)) into hidden and output currents;
     each arrival adds its weight w << shift (int8 weight, the matrix's shift), saturating after
     every add, presynaptic neurons in index order:
         i_p <- sat(... sat(sat(i_p + n_0 w_0p) + n_1 w_1p) ...)
  2. every neuron: i <- i - d(i, dash_syn);  dv <- sat(w16(-d(v, dash_mem)) + i);
     dv <- sat(dv + bias);  v <- sat(v + dv);  while v >= threshold (at most 31 spikes a step
     for hidden neurons, 1 for outputs): one more spike, v <- v - threshold,
  with the bit-shift decay d(x, dash) = x >> dash (arithmetic), or sign(x) where that is 0,
  and w16 the int16 the C++ stores the leak in: -(-2^15) (v = -2^15, dash_mem 0) is -2^15.
Hidden layer l (1-based) is l - 1 steps behind the input (its spikes reach the next layer in
the next step); the output layer L steps. `emulate` pads the input with L zero steps and
returns each layer's records from its own delay on: aligned to the float model's steps.
"""

from __future__ import annotations

import numpy as np
import torch

from ...readout import readout_scores
from ...sim.reference import SimResult
from .net import MAX_IN, MAX_OUT, MAX_SPIKES, V_MAX, V_MIN, XyloNet, XyloRecord


def _sat(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(V_MIN, V_MAX)


def _decay(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    d = torch.bitwise_right_shift(x, dash)
    return torch.where(d == 0, torch.sign(x), d)


def _deliver(i: torch.Tensor, counts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """i [B, P] plus the arrivals counts [B, K] (>= 0) x w [K, P] (already shifted),
    saturating after every presynaptic neuron in index order. Where no partial sum can leave
    the 16-bit range (the positive and the negative arrivals each within it), one matrix
    product (float64: exact, the sums stay below 2^31); elsewhere xylosim's order, one
    presynaptic neuron at a time, for those neurons only."""
    c, wf = counts.double(), w.double()
    pos = (c @ wf.clamp(min=0)).to(i.dtype)
    neg = (c @ wf.clamp(max=0)).to(i.dtype)
    full = i + pos + neg
    unsafe = (i + pos > V_MAX) | (i + neg < V_MIN)
    if not bool(unsafe.any()):
        return full
    r, p = unsafe.nonzero(as_tuple=True)
    arrivals = counts[r] * w[:, p].T  # [U, K]: each unsafe neuron's arrivals, in order
    out = i[r, p]
    for k in range(arrivals.shape[1]):
        out = _sat(out + arrivals[:, k])
    full[r, p] = out
    return full


def _evolve(i, v, dash_syn, dash_mem, bias, th, max_spikes):
    i = i - _decay(i, dash_syn)
    leak = -_decay(v, dash_mem)  # an int16: -(-2^15) (v = -2^15, dash_mem 0) wraps to -2^15
    dv = _sat(torch.where(leak > V_MAX, leak - 2 ** 16, leak) + i)
    dv = _sat(dv + bias)
    v = _sat(v + dv)
    n = torch.div(v, th, rounding_mode="floor").clamp(0, max_spikes)
    return i, v - n * th, n


def at_bounds(rec: XyloRecord, net: XyloNet, lay) -> tuple[torch.Tensor, torch.Tensor]:
    """Where layer `lay`'s v and i_syn hit the 16-bit bounds, [T, B, n] each, from the records
    (which hold v after the spikes' subtraction and i_syn after its decay): v before the
    subtraction (v + spikes x threshold) at 2^15 - 1 or v at -2^15; i_syn that was at a bound
    when it decayed, i.e. at or beyond b - d(b, dash_syn) for b = 2^15 - 1 and -2^15 (the
    decayed value grows with the undecayed one)."""
    if lay.output:
        s, v, i = rec.spikes_out, rec.v_out, rec.i_syn_out
        th, ds = net.threshold_out, net.dash_syn_out
    else:
        sl = slice(lay.start, lay.start + lay.n)
        s, v, i = rec.spikes[..., sl], rec.v[..., sl], rec.i_syn[..., sl]
        th, ds = net.threshold[sl], net.dash_syn[sl]
    th, ds = torch.as_tensor(th, dtype=v.dtype), torch.as_tensor(ds, dtype=v.dtype)
    hi, lo = (b - _decay(torch.full_like(ds, b), ds) for b in (V_MAX, V_MIN))
    return (v + s * th >= V_MAX) | (v <= V_MIN), (i >= hi) | (i <= lo)


def run_raw(net: XyloNet, x) -> XyloRecord:
    """The net on input spike counts x [T, B, inputs] (integers >= 0; more than 15 in a step
    count as 15), from rest: every step's spikes, v and i_syn of every hidden and output
    neuron (XyloRecord, [T, B, n], int64), as xylosim records them. Computed in int32."""
    x = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(torch.int32)
    t_steps, b = x.shape[0], x.shape[1]
    t64 = torch.int32  # exact: a step's arrivals stay below 1016 x 31 x 2^14 < 2^31
    w_in = torch.as_tensor(net.w_in, dtype=t64) << net.shift_in
    w_rec = torch.as_tensor(net.w_rec, dtype=t64) << net.shift_rec
    w_out = torch.as_tensor(net.w_out, dtype=t64) << net.shift_out
    w_hid = torch.cat([w_in, w_rec], 0)  # inputs first, then the hidden neurons
    p = {k: torch.as_tensor(getattr(net, k), dtype=t64) for k in (
        "dash_mem", "dash_syn", "threshold", "bias", "dash_mem_out", "dash_syn_out",
        "threshold_out", "bias_out")}
    nh, no = net.n_hidden, net.n_out
    ih, vh, sh = (torch.zeros(b, nh, dtype=t64) for _ in range(3))
    io, vo = (torch.zeros(b, no, dtype=t64) for _ in range(2))
    rec = {k: [] for k in ("spikes", "v", "i_syn", "spikes_out", "v_out", "i_syn_out")}
    for t in range(t_steps):
        arrivals = torch.cat([x[t].clamp(0, MAX_IN), sh.clamp(0, MAX_SPIKES)], 1)
        ih = _deliver(ih, arrivals, w_hid)
        io = _deliver(io, sh.clamp(0, MAX_SPIKES), w_out)
        ih, vh, sh = _evolve(ih, vh, p["dash_syn"], p["dash_mem"], p["bias"], p["threshold"],
                             MAX_SPIKES)
        io, vo, so = _evolve(io, vo, p["dash_syn_out"], p["dash_mem_out"], p["bias_out"],
                             p["threshold_out"], MAX_OUT)
        for k, val in (("spikes", sh), ("v", vh), ("i_syn", ih), ("spikes_out", so),
                       ("v_out", vo), ("i_syn_out", io)):
            rec[k].append(val)
    empty = torch.zeros(0, b, 0, dtype=torch.int64)
    return XyloRecord(**{k: torch.stack(v).to(torch.int64) if v else empty
                         for k, v in rec.items()})


def run_plain(net: XyloNet, x) -> XyloRecord:
    """The same, one neuron and one synapse at a time in Python integers: the C++ transcribed
    (safe_add, decay, the spike loop), for checking the vectorised emulator."""
    x = np.asarray(x, dtype=np.int64)
    t_steps, b = x.shape[0], x.shape[1]
    nh, no = net.n_hidden, net.n_out

    def sat(a):
        return min(max(a, V_MIN), V_MAX)

    def decay(a, dash):
        d = a >> dash
        return (1 if a > 0 else -1 if a < 0 else 0) if d == 0 else d

    def evolve(i, v, ds, dm, bias, th, mx):
        i -= decay(i, ds)
        leak = -decay(v, dm)
        dv = sat((leak - 2 ** 16 if leak > V_MAX else leak) + i)
        dv = sat(dv + bias)
        v = sat(v + dv)
        n = 0
        while v >= th and n < mx:
            n += 1
            v -= th
        return i, v, n

    w_in = [[int(w) << net.shift_in for w in row] for row in np.asarray(net.w_in)]
    w_rec = [[int(w) << net.shift_rec for w in row] for row in np.asarray(net.w_rec)]
    w_out = [[int(w) << net.shift_out for w in row] for row in np.asarray(net.w_out)]
    hid = [tuple(int(getattr(net, k)[j]) for k in ("dash_syn", "dash_mem", "bias", "threshold"))
           for j in range(nh)]
    out = [tuple(int(getattr(net, k)[j]) for k in ("dash_syn_out", "dash_mem_out", "bias_out",
                                                     "threshold_out")) for j in range(no)]
    rec = np.zeros((6, t_steps, b, max(nh, no)), dtype=np.int64)
    for s in range(b):
        ih, vh, sh = [0] * nh, [0] * nh, [0] * nh
        io, vo = [0] * no, [0] * no
        for t in range(t_steps):
            for j in range(x.shape[2]):
                n = min(int(x[t, s, j]), MAX_IN)
                for p in range(nh):
                    for _ in range(n):
                        ih[p] = sat(ih[p] + w_in[j][p])
            for k in range(nh):
                n = min(sh[k], MAX_SPIKES)
                for p in range(nh):
                    for _ in range(n):
                        ih[p] = sat(ih[p] + w_rec[k][p])
            for k in range(nh):
                n = min(sh[k], MAX_SPIKES)
                for p in range(no):
                    for _ in range(n):
                        io[p] = sat(io[p] + w_out[k][p])
            for p in range(nh):
                ds, dm, bias, th = hid[p]
                ih[p], vh[p], sh[p] = evolve(ih[p], vh[p], ds, dm, bias, th, MAX_SPIKES)
            so = [0] * no
            for p in range(no):
                ds, dm, bias, th = out[p]
                io[p], vo[p], so[p] = evolve(io[p], vo[p], ds, dm, bias, th, MAX_OUT)
            for r, vals in enumerate((sh, vh, ih, so, vo, io)):
                rec[r, t, s, :len(vals)] = vals
    r = torch.from_numpy(rec)
    return XyloRecord(r[0, ..., :nh], r[1, ..., :nh], r[2, ..., :nh], r[3, ..., :no],
                      r[4, ..., :no], r[5, ..., :no])


def to_result(net: XyloNet, rec: XyloRecord, t_steps: int, stats=None) -> SimResult:
    """A run's records as check compares them: every layer from its own delay on, T steps
    (spike counts; membrane: v before the spikes' subtraction over the neuron's threshold, so
    a tie is at 1), outputs as votes per class, rate scores. `stats` (EmulatorStats): per
    layer the v (v_clipped) and i_syn (u_wrapped) values at the 16-bit bounds."""
    spikes, membrane = {}, {}
    for lay in net.layers:
        d = slice(lay.delay, lay.delay + t_steps)
        if lay.output:
            s, v, th = rec.spikes_out[d], rec.v_out[d], torch.as_tensor(net.threshold_out)
        else:
            sl = slice(lay.start, lay.start + lay.n)
            s, v, th = rec.spikes[d][..., sl], rec.v[d][..., sl], torch.as_tensor(net.threshold[sl])
        spikes[lay.name] = s.to(torch.float64)
        membrane[lay.name] = (v + s * th).to(torch.float64) / th
        if stats is not None:
            at_v, at_i = (a[d] for a in at_bounds(rec, net, lay))
            for counts, hit in ((stats.v_clipped, at_v), (stats.u_wrapped, at_i)):
                if int(hit.sum()):
                    counts[lay.name] = counts.get(lay.name, 0) + int(hit.sum())
            stats.saturated[lay.name] = at_v | at_i
    out = spikes[net.layers[-1].name]
    m = net.population
    outputs = out.reshape(*out.shape[:2], -1, m).sum(-1) / m
    return SimResult(outputs, readout_scores(outputs, net.readout, m), spikes, membrane)


def as_counts(net: XyloNet, xb) -> torch.Tensor:
    """A batch [T, B, ...] of spike counts as [T + delay, B, inputs]: the delay's zero steps
    appended, so that every layer runs all T of its steps."""
    from .quantise import counts_of

    x = counts_of(xb, net.chip, net.n_inputs).to(torch.int64)
    return torch.cat([x, torch.zeros(net.delay, *x.shape[1:], dtype=torch.int64)])


def emulate(net: XyloNet, xb, stats=None) -> SimResult:
    """snnexport's Xylo emulator on a batch [T, B, ...] of spike counts, aligned (to_result)."""
    return to_result(net, run_raw(net, as_counts(net, xb)), int(xb.shape[0]), stats)
