"""The folded IR quantised to a Xylo net (XyloNet), and what that costs.

Which models: what snnexport.hw.fit's Xylo rules accept on the chip (dense layers only, at most
16 input channels, the hidden / output neuron limits of targets/chips/<chip>.toml), a spiking
output layer read as a rate, and inputs that are spike counts (whole numbers >= 0; a Xylo
input channel takes at most 15 events a step). Anything else is refused in one line,
"<chip> cannot take this model: ..." (XyloRefusal, a base.TargetRefusal: check says so and
exits 1, deploy reports it in the target's row).

Per neuron layer l (float: J_t = b J_{t-1} + W x_t + c, H_t = a V_{t-1} + J_t, spike at theta,
V_t = H_t - theta S_t; Xylo: module docstring of emulator.py):
  dash_mem = round(-log2(1 - a)) in 0..15 (Xylo's decay 1 - 2^-dash_mem), per neuron;
  dash_syn = round(-log2(1 - b)) in 1..15; a model without a synaptic current (b = 0) gets
    dash_syn 1: Xylo's current always decays before the membrane takes it, so b = 0 has no
    exact form (dash_syn 0 empties the current before it arrives): half of each step's input
    carries into the next (the report's `synapse` says so);
  weights W / b_x (b_x = 1 - 2^-dash_syn: Xylo decays the arriving input in its own step),
    times the layer's scale s_l (integer units per float unit), as int8 mantissas shifted by
    the matrix's bit shift (input, recurrent: every hidden layer after the first, output);
    s_l = 127 2^shift / max|W / b_x|: the largest weight at the top of int8;
  threshold round(theta s_l) (>= 1), bias round(c s_l / (1 - b)) (a constant input's level
    after its current settles), both int16, reset by subtraction (a hard reset is taken as
    subtraction: the report says so);
  the shifts: for each matrix in turn the largest (7 down to 0) at which the calibration
    inputs saturate at most 1 in 10^3 of its layers' v and i_syn values (on the first 64;
    emulator.at_bounds: v before its spikes' subtraction, i_syn before its decay, which is
    what reaches the bound: the recorded, decayed current of a saturated step is not at it).
A model trained as the neuron Xylo runs (models: current_decay 0.5, tau_pow2, decay_input
False, as the 'digits-rows-xylo' preset) maps exactly: dash_syn 1, dash_mem with no decay
change, no input gain in the weights (a per-neuron gain k = 1/tau folded into a matrix leaves
the long-tau neurons' weights only a few of int8's bits).
The report per layer: decays as time constants (tau = 1 / (1 - a)) before and after, the
largest decay change, the weight rounding error, shifts, scale and saturation counts.
`decay_cost` measures what the decays alone cost: the float model's accuracy with its own
decays, with Xylo's, and the Xylo emulator's.
"""

from __future__ import annotations

import numpy as np
import torch

from ...hw.cores import HardwareLoweringError
from ..base import TargetRefusal
from .net import MAX_DASH, MAX_SHIFT, V_MAX, V_MIN, W_MAX, W_MIN, XyloLayer, XyloNet

SATURATION_SHARE = 1e-3  # per layer: saturated v / i_syn values the shift search accepts
SEARCH_SAMPLES = 64  # the first calibration inputs the shift search runs


class XyloRefusal(TargetRefusal, HardwareLoweringError):
    """A model a Xylo chip cannot take; the message is the reason (base.TargetRefusal)."""


def _refuse(chip: str, why: str) -> XyloRefusal:
    return XyloRefusal(f"{why} ({chip})")


def _dash(decay: np.ndarray, lo: int) -> np.ndarray:
    """round(-log2(1 - decay)) in lo..15: Xylo's bit-shift decay nearest in the exponent."""
    leak = np.clip(1.0 - np.asarray(decay, np.float64), 2.0 ** -MAX_DASH, 1.0)
    return np.clip(np.rint(-np.log2(leak)), lo, MAX_DASH).astype(np.int64)


def _tau(decay) -> np.ndarray:
    d = np.asarray(decay, np.float64)
    return 1.0 / np.maximum(1.0 - d, 1e-12)


def _layers(folded, chip: str, decays: int | None):
    """(the cores of the chain, the readout population), refused where Xylo cannot take it."""
    from ...hw.cores import lower
    from ...hw.fit import as_hard_reset, fit_graph

    report = fit_graph(folded, chip, decays)
    if report.refused is not None:
        raise _refuse(chip, report.refused)
    if report.violation is not None:
        raise _refuse(chip, f"it does not fit: {report.violation.text()}")
    cg = lower(as_hard_reset(folded))  # the cores' neurons: the original's, reset and all
    cores = cg.neuron_cores
    for c in cores:
        c.neuron = folded.nodes[c.name]
    if cg.readout != "rate" or not cores[-1].neuron.spiking:
        raise _refuse(chip, f"its readout is {cg.readout!r} of a "
                      f"{'spiking' if cores[-1].neuron.spiking else 'non-spiking'} layer "
                      f"{cores[-1].name!r}; Xylo's output neurons spike (a rate readout)")
    for c in cores:
        if np.any(np.asarray(c.neuron.v_init) != 0):
            raise _refuse(chip, f"{c.name} starts from a learnt membrane (v_init); Xylo's "
                          "neurons start from 0")
    return cores, cg.population


def _float_layer(core) -> dict:
    """A core's float parameters per neuron: W [n, in] with the input gain, bias, decays."""
    syn = core.synapses[0]
    w = syn.matrix()
    gain = core.gain()
    bias = syn.bias_vector()
    if gain is not None:
        w = w * gain[:, None]
        bias = None if bias is None else bias * gain
    n = core.n
    cd = core.neuron.current_decay
    return dict(name=core.name, w=w, bias=np.zeros(n) if bias is None else bias,
                decay=core.per_neuron(core.neuron.decay),
                current_decay=None if cd is None else core.per_neuron(cd),
                threshold=float(core.neuron.threshold), reset=core.neuron.reset,
                reset_by=None if core.neuron.reset_by is None else
                core.per_neuron(core.neuron.reset_by))


def _build(fl: list[dict], shifts: list[int], population: int, chip: str) -> XyloNet:
    """The XyloNet of the float layers `fl` at the matrix shifts (input, recurrent, output)."""
    hidden, out = fl[:-1], fl[-1]
    n_in = hidden[0]["w"].shape[1]
    nh = sum(f["w"].shape[0] for f in hidden)
    no = out["w"].shape[0]
    w_in = np.zeros((n_in, nh), np.int64)
    w_rec = np.zeros((nh, nh), np.int64)
    w_out = np.zeros((nh, no), np.int64)
    params = {k: [] for k in ("dash_mem", "dash_syn", "threshold", "bias")}
    layers, rows, start, prev = [], [], 0, None
    for li, f in enumerate(fl):
        is_out = f is out
        n = f["w"].shape[0]
        k = shifts[0] if li == 0 else shifts[2] if is_out else shifts[1]
        dm = _dash(f["decay"], 0)
        ds = _dash(np.zeros(n) if f["current_decay"] is None else f["current_decay"], 1)
        keep = 1.0 - 2.0 ** -ds.astype(np.float64)  # what Xylo leaves of this step's input
        w = f["w"] / keep[:, None]
        top = float(np.abs(w).max()) or 1.0
        scale = (W_MAX * 2.0 ** k) / top
        mant = np.clip(np.rint(w * scale / 2.0 ** k), W_MIN, W_MAX).astype(np.int64)  # [n, in]
        th = int(np.clip(np.rint(f["threshold"] * scale), 1, V_MAX))
        settle = 1.0 if f["current_decay"] is None else 1.0 / np.maximum(
            1.0 - f["current_decay"], 1e-12)
        b = np.rint(f["bias"] * settle * scale)
        bias = np.clip(b, V_MIN, V_MAX).astype(np.int64)
        if li == 0:
            w_in[:, start:start + n] = mant.T
        elif is_out:
            w_out[prev.start:prev.start + prev.n, :] = mant.T
        else:
            w_rec[prev.start:prev.start + prev.n, start:start + n] = mant.T
        for key, val in (("dash_mem", dm), ("dash_syn", ds), ("threshold", np.full(n, th)),
                         ("bias", bias)):
            params[key].append(val)
        lay = XyloLayer(f["name"], 0 if is_out else start, n, is_out, li, scale)
        layers.append(lay)
        a_x = 1.0 - 2.0 ** -dm.astype(np.float64)
        soft = f["reset"] == "soft" and (f["reset_by"] is None or np.allclose(
            f["reset_by"], f["threshold"]))
        rows.append({
            "layer": f["name"], "neurons": n,
            "matrix": "input" if li == 0 else "output" if is_out else "recurrent",
            "weight_shift": k, "scale": scale, "threshold": th,
            "tau": [float(_tau(f["decay"]).min()), float(_tau(f["decay"]).max())],
            "tau_xylo": [float(2.0 ** dm.min()), float(2.0 ** dm.max())],
            "dash_mem": sorted({int(d) for d in dm}),
            "decay_max_change": float(np.abs(a_x - f["decay"]).max()),
            "dash_syn": sorted({int(d) for d in ds}),
            "synapse": ("none in the model; Xylo's current decays by dash_syn 1 (half of each "
                        "step's input reaches the membrane a step later)"
                        if f["current_decay"] is None else "the model's current, as dash_syn"),
            "weight_max_error": float(np.abs(mant * 2.0 ** k / scale - w).max()),
            "bias_clipped": int((b != bias).sum()),
            "reset": "subtraction" if soft else
            f"the model's {f['reset']} reset taken as subtraction",
        })
        if not is_out:
            start += n
        prev = lay
    cat = {k: np.concatenate(v[:-1]) if len(v) > 1 else np.zeros(0, np.int64)
           for k, v in params.items()}
    net = XyloNet(w_in, w_rec, w_out, shifts[0], shifts[1], shifts[2],
                  cat["dash_mem"], cat["dash_syn"], cat["threshold"], cat["bias"],
                  params["dash_mem"][-1], params["dash_syn"][-1], params["threshold"][-1],
                  params["bias"][-1], layers, population, "rate", chip, rows)
    return net.validate()


def _saturated(net: XyloNet, rec) -> list[int]:
    """Per layer, its v and i_syn values at the 16-bit bounds (emulator.at_bounds)."""
    from .emulator import at_bounds

    return [sum(int(a.sum()) for a in at_bounds(rec, net, lay)) for lay in net.layers]


def counts_of(x: torch.Tensor, chip: str, n_in: int) -> torch.Tensor:
    """Inputs [N, T, ...] or [T, N, ...] as spike counts per channel, refused when they are
    not whole numbers >= 0."""
    x = torch.as_tensor(x)
    if x.numel() and (bool((x < 0).any()) or not bool(torch.equal(x, torch.round(x)))):
        raise _refuse(chip, "its inputs are no spike counts (whole numbers >= 0): Xylo takes "
                      "events per input channel, at most 15 a step (give count data, e.g. "
                      "--data digits-rows)")
    return x.reshape(*x.shape[:2], n_in)


def quantise(folded, calib_x: torch.Tensor, decays: int | None = None, *, chip: str):
    """(XyloNet for `chip`, the decay grouping report or None): `calib_x` [N, T, ...] frame
    sequences of spike counts (the shift search's calibration inputs)."""
    from ...passes.group_decays import group_decays
    from .emulator import run_raw

    grouping = None
    if decays is not None:
        folded, grouping = group_decays(folded, decays)
    cores, population = _layers(folded, chip, None)  # (grouped above already)
    fl = [_float_layer(c) for c in cores]
    n_in = fl[0]["w"].shape[1]
    if calib_x.dim() < 3:
        raise _refuse(chip, "its inputs are static; Xylo takes spike events over time (frame "
                      "sequences [N, T, channels])")
    x = counts_of(calib_x[:SEARCH_SAMPLES], chip, n_in).transpose(0, 1)  # [T, N, inputs]
    depth = len(fl) - 1
    x = torch.cat([x, torch.zeros(depth, *x.shape[1:], dtype=x.dtype)])
    shifts = [MAX_SHIFT, MAX_SHIFT if depth > 1 else 0, MAX_SHIFT]
    for m, layer_ids in ((0, [0]), (1, list(range(1, depth))), (2, [depth])):
        if not layer_ids:
            continue

        def ok(k, m=m, layer_ids=layer_ids):
            trial = list(shifts)
            trial[m] = k
            net = _build(fl, trial, population, chip)
            sat = _saturated(net, run_raw(net, x))
            return all(sat[i] <= SATURATION_SHARE * 2 * x.shape[0] * x.shape[1] *
                       net.layers[i].n for i in layer_ids)
        lo, hi = 0, MAX_SHIFT  # the largest k that saturates little (taken as monotone in k)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        shifts[m] = lo
    net = _build(fl, shifts, population, chip)
    for row, n in zip(net.report, _saturated(net, run_raw(net, x)), strict=True):
        row["calibration_saturated"] = n
        row["text"] = (
            f"xylo {row['layer']}: {row['neurons']} neurons, {row['matrix']} weights int8 << "
            f"{row['weight_shift']} (rounding at most {row['weight_max_error']:.3g}), scale "
            f"{row['scale']:.4g}, threshold {row['threshold']}; tau {row['tau'][0]:.3g}-"
            f"{row['tau'][1]:.3g} -> {row['tau_xylo'][0]:g}-{row['tau_xylo'][1]:g} (dash_mem "
            f"{row['dash_mem']}, decay moved at most {row['decay_max_change']:.3g}); synapse: "
            f"{row['synapse']}; reset: {row['reset']}; saturated v / i_syn values on the "
            f"calibration inputs: {n}")
    return net, grouping


def decay_cost(folded, net: XyloNet, x: torch.Tensor, y: torch.Tensor,
               batch_size: int = 200) -> dict:
    """Accuracy on frame sequences x [N, T, ...] of the float model, of the float model with
    Xylo's decays (1 - 2^-dash_mem, everything else as trained), and of the Xylo net (the
    emulator): what the decays alone cost, and what all of Xylo's quantisation costs."""
    import copy

    from ...sim.reference import simulate
    from .emulator import emulate

    changed = {}
    for lay in net.layers:
        node = folded.nodes[lay.name]
        dm = (net.dash_mem_out if lay.output else net.dash_mem[lay.start:lay.start + lay.n])
        new = copy.copy(node)
        new.decay = (1.0 - 2.0 ** -np.asarray(dm, np.float64)).reshape(node.shape)
        changed[lay.name] = new
    xylo_decays = folded.with_nodes(changed)
    correct = {"float": 0, "float_xylo_decays": 0, "xylo": 0}
    for lo in range(0, len(y), batch_size):
        xb, yb = x[lo:lo + batch_size].transpose(0, 1), y[lo:lo + batch_size]
        for key, run in (("float", lambda b: simulate(folded, b, dtype=torch.float64)),
                         ("float_xylo_decays",
                          lambda b: simulate(xylo_decays, b, dtype=torch.float64)),
                         ("xylo", lambda b: emulate(net, b))):
            correct[key] += int((run(xb).scores.argmax(1) == yb).sum())
    return {k: v / max(1, len(y)) for k, v in correct.items()} | {"samples": len(y)}


__all__ = ["XyloRefusal", "counts_of", "decay_cost", "quantise"]
