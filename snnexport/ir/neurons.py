"""Neuron kinds: each kind of neuron written once, found by name.

A kind is one neuron family's math: its float step, its integer (Loihi) step, its fixed-point
parameters and its NIR / netx / Lava mapping. Every consumer finds it by the name its node
carries (`kind_of(node)`, the node's `neuron_kind`) instead of testing the node's class or
fields: the reference simulator and the energy counts (float step), the fixed-point emulator and
the integer ONNX model's host tables (integer step), the quantiser (fixed-point parameters),
the NIR writer and reader, the netx writer and the Lava lowering (mappings). The ONNX builders
keep one function per kind that emits the step as graph ops, in a table of their own keyed by
the kind's name (exporters/onnx_export.py CURRENT_OPS, exporters/onnx_fixed.py
INT_CURRENT_OPS): a kind missing from such a table is refused there in one line.

The kinds (the math, per neuron and step; docs/semantics.md states the same):

  'lif'       ir.Neuron without a synaptic current: LIF, PLIF (a trained decay), IF (decay 1)
                  H_t = decay V_{t-1} + gain I_t
                  S_t = [H_t >= threshold];  V_t = H_t (1 - S_t)  |  H_t - reset_by S_t  (soft)
              integer (Lava's PyLifModelBitAcc, du = 4095: no current kept):
                  v_t = clip24(trunc((4096 - dv) v_{t-1} / 4096) + u_t + (bias_mant << 6))
                  s_t = v_t > vth_mant << 6;  v_t = 0 where s_t
              fixed point: dv = round(4096 (1 - decay)) in 0..4095;  NIR: LIF / LI, IF / I at
              decay 1;  netx: iDecay 4096;  Lava: du = 1 (float), 4095 (fixed)
  'cuba_lif'  ir.Neuron with current_decay (current-based LIF, "CUBA"): the membrane of 'lif'
              driven by a synaptic current
                  J_t = current_decay J_{t-1} + I_t   (J_-1 = 0), then H_t as above with J_t
              integer (du = i_decay - 1):
                  u_t = wrap24(trunc((4096 - i_decay) u_{t-1} / 4096) + (a_t << 6)),  u_-1 = 0
              fixed point: i_decay = round(4096 (1 - current_decay)) in 1..4096;  NIR: CubaLIF /
              CubaLI with tau_syn = dt / (1 - current_decay), w_in = 1 / (1 - current_decay);
              netx: iDecay = i_decay;  Lava: du = 1 - current_decay (float), i_decay - 1 (fixed)
  'lif_source' ir.LIFNeuron, the source-level LIF as a framework states it (float only: the
              folding pass makes it a 'lif' or 'cuba_lif' Neuron before any other target)
                  H_t = V_{t-1} + k (X_t - (V_{t-1} - V_reset))  (decay_input; see the node)
                  current (Norse's order): J_t = C_{t-1} + X_t,  C_t = J_t + (-k_syn) J_t

The steps are pure functions over a kind's parameters and state. They take torch tensors and
call tensor methods only (this module imports no torch: the hardware lowering, which Lava's
Python 3.10 loads, imports it). Each integer step is written twice, plainly in int64 (the
version to read) and fast in float64 holding integers (exact below 2^53), and the two are
checked against each other (tests/test_neurons.py, test_integer_kernels.py).

Adding a kind (e.g. a Xylo neuron with its own integer step, backends/xylo): give its IR node
a `neuron_kind` name (a property or a class attribute), then

    from snnexport.ir.neurons import NeuronKind, register
    register(NeuronKind(name="xylo_lif", summary="...the math...", params=my_params,
                        charge=my_charge, fire_reset=my_fire_reset,
                        current=None or my_current, current_param="...",
                        int_current=..., int_current_fast=..., int_membrane=...,
                        int_membrane_fast=..., fixed_current=..., nir_types=(...),
                        netx_i_decay=..., lava_du_float=..., lava_du_fixed=...))

Fields a kind does not have stay None; a consumer that needs one refuses the kind in one line
(`NeuronKind.need`). A consumer in a later layer that maps kinds to its own objects (graph ops,
a chip's registers) keeps a dict keyed by the kind's name and reads it with `lookup`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import SnnexportError

WRAP = 1 << 23  # Lava's 24-bit current: u wraps past +-2^23
UNIT = 4096  # the 12-bit decays: a state keeps (4096 - d) / 4096 of itself per step


class NeuronKindError(SnnexportError, ValueError):
    """A neuron kind that is not registered, or that lacks what a consumer needs."""


# --- the float steps (torch tensors; float64 or float32) ---------------------------------------

class NeuronParams(NamedTuple):
    """ir.Neuron's parameters, converted by the consumer (`conv`: array -> tensor, None kept)."""

    decay: Any
    gain: Any
    threshold: float
    soft: bool
    amount: Any  # what a soft reset subtracts: reset_by, or the threshold
    level: float  # the hard reset's level (0 for ir.Neuron)
    current_decay: Any


def neuron_params(n, conv) -> NeuronParams:
    return NeuronParams(conv(n.decay), conv(n.gain), n.threshold, n.reset == "soft",
                        n.threshold if n.reset_by is None else conv(n.reset_by), 0.0,
                        conv(n.current_decay))


def neuron_charge(p: NeuronParams, v, x):
    """H_t = decay V_{t-1} + gain I_t (I_t: the current J_t of a current-based neuron)."""
    return p.decay * v + (x if p.gain is None else p.gain * x)


def fire_reset(p, h):
    """(S_t, V_t): S_t = [H_t >= threshold]; V_t = H_t - amount S_t (soft) or
    H_t (1 - S_t) + level S_t (hard)."""
    s = (h >= p.threshold).to(h.dtype)
    return s, (h - p.amount * s if p.soft else h * (1 - s) + p.level * s)


def cuba_current(current_decay, j, x):
    """J_t = current_decay J_{t-1} + I_t; returns (J_t, the carried state J_t)."""
    j = current_decay * j + x
    return j, j


class SourceParams(NamedTuple):
    """ir.LIFNeuron's parameters (converted as NeuronParams)."""

    k: Any
    decay_input: bool
    threshold: float
    soft: bool
    amount: float
    level: float
    k_syn: Any


def source_params(n, conv) -> SourceParams:
    level = 0.0 if n.v_reset is None else n.v_reset
    return SourceParams(conv(n.k), n.decay_input, n.v_threshold, n.v_reset is None,
                        n.v_threshold, level, conv(n.k_syn))


def source_charge(p: SourceParams, v, x):
    """ir.LIFNeuron's H_t: V + X (IF, k None); V + k (X - (V - V_reset)) (decay_input);
    V - k (V - V_reset) + X."""
    if p.k is None:
        return v + x
    if p.decay_input:
        return v + p.k * (x - (v - p.level))
    return v - p.k * (v - p.level) + x


def norse_current(k_syn, c, x):
    """Norse's current, term by term: J_t = C_{t-1} + X_t, C_t = J_t + (-k_syn) J_t; returns
    (J_t, C_t)."""
    j = c + x
    return j, j + (-k_syn) * j


# --- the integer (Loihi) steps -----------------------------------------------------------------

def wrap24(u):
    """Lava's LIF wrap of the current into 24 bits: u - 2^24 if u > 2^23, u + 2^24 if
    u <= -2^23 (int64, or float64 holding integers)."""
    w = (u - 2 * WRAP).where(u > WRAP, u)
    return (u + 2 * WRAP).where(w <= -WRAP, w)


def decay12(keep, x):
    """trunc(keep x / 4096) = sign(p) (|p| >> 12), p = keep x: Lava's decay, int64."""
    p = x * keep
    return p.sign() * (p.abs() >> 12)


def int_current(keep, u, a64):
    """The integer current step, plain (int64): u_t = wrap24(trunc(keep u_{t-1} / 4096) +
    a64_t), keep = 4096 - i_decay, a64 the input already shifted (a << 6). Returns (u_t, the
    sum before the wrap)."""
    cur = decay12(keep, u) + a64
    return wrap24(cur), cur


def int_current_fast(keep, u, a64):
    """`int_current` in float64 on integers (|keep u| < 2^36: exact; the truncating division
    by 2^12 exact): the same values."""
    cur = (u * keep).div(4096.0, rounding_mode="trunc") + a64
    return wrap24(cur), cur


def int_membrane(keep, v, drive):
    """The integer membrane step before the clip, plain (int64): trunc(keep v / 4096) + drive,
    keep = 4096 - dv, drive = u_t + (bias_mant << 6)."""
    return decay12(keep, v) + drive


def int_membrane_fast_(keep, v, drive):
    """`int_membrane` in float64 on integers, in place on v (|keep v| < 2^35: exact)."""
    v.mul_(keep)
    v.div_(4096.0, rounding_mode="trunc")
    return v.add_(drive)


def int_fire(h, vth):
    """(s_t, v_t): s_t = h_t > vth; v_t = 0 where s_t (Lava's rule, a readout's too)."""
    s = h > vth
    return s, h.masked_fill(s, 0)


# --- fixed-point parameters and the chip mappings (numpy) -----------------------------------------

def decay_fixed(decay) -> np.ndarray:
    """dv = round(4096 (1 - decay)) in 0..4095 (the membrane keeps (4096 - dv) / 4096)."""
    return np.clip(np.rint(UNIT * (1 - np.asarray(decay, np.float64))), 0, UNIT - 1)


def current_decay_fixed(current_decay) -> np.ndarray:
    """i_decay = round(4096 (1 - current_decay)) in 1..4096 (the current keeps
    (4096 - i_decay) / 4096 of itself per step, truncated toward zero)."""
    return np.clip(np.rint(UNIT * (1 - np.asarray(current_decay, np.float64))), 1, UNIT)


def nir_current(current_decay, dt: float) -> dict:
    """NIR CubaLIF's current of J = current_decay J + I at time step dt: tau_syn = dt / k_s,
    w_in = 1 / k_s (k_s = 1 - current_decay; NIR's I += dt/tau_syn (w_in S - I) is then J)."""
    k_s = 1.0 - np.asarray(current_decay, np.float64)
    return dict(tau_syn=dt / k_s, w_in=1.0 / k_s)


def current_from_nir(k_s, w_in) -> tuple[np.ndarray, np.ndarray]:
    """(current_decay, input scale) of NIR's I += k_s (w_in S - I) (k_s = dt / tau_syn, Euler):
    J_t = (1 - k_s) J_{t-1} + S_t, I_t = k_s w_in J_t (the current is linear in S)."""
    return 1.0 - k_s, k_s * w_in


class NirTypes(NamedTuple):
    """The NIR node types a kind is written as and read from (None: the kind has no such
    form): spiking, non-spiking, and the two without leak (decay 1)."""

    spiking: str
    non_spiking: str
    no_leak: str | None = None
    no_leak_non_spiking: str | None = None


class NirRole(NamedTuple):
    """What a NIR node type is read as: a kind, spiking or not, with a leak or not."""

    kind: str
    spiking: bool
    leaky: bool


@dataclass(frozen=True)
class NeuronKind:
    """One neuron kind (module docstring). Callables a kind lacks are None."""

    name: str
    summary: str
    params: Callable  # (node, conv) -> the parameter tuple of the float steps
    charge: Callable  # (params, V_{t-1}, J_t) -> H_t
    fire_reset: Callable = fire_reset  # (params, H_t) -> (S_t, V_t)
    current: Callable | None = None  # (current parameter, carried state, I_t) -> (J_t, state)
    current_param: str | None = None  # the node's field `current` takes (None: no current)
    int_current: Callable | None = None  # (keep, u, a64) -> (u_t, sum before the wrap)
    int_current_fast: Callable | None = None
    int_membrane: Callable | None = None  # (keep, v, drive) -> h_t before the clip
    int_membrane_fast: Callable | None = None  # the same, in place on v (float64)
    int_fire: Callable | None = None  # (h, vth) -> (s, v)
    fixed_decay: Callable | None = None  # decay -> dv
    fixed_current: Callable | None = None  # current_decay -> i_decay
    fixed_field: str | None = None  # the fixed-point layer's field that marks the kind
    nir_types: NirTypes | None = None  # the NIR node types it is written as / read from
    nir_current: Callable | None = None  # (current_decay, dt) -> NIR's current parameters
    current_from_nir: Callable | None = None  # (k_s, w_in) -> (current_decay, input scale)
    netx_i_decay: Callable | None = None  # i_decay (or None) -> netx's iDecay
    lava_du_float: Callable | None = None  # current_decay (or None) -> Lava float du
    lava_du_fixed: Callable | None = None  # i_decay (or None) -> Lava fixed du

    @property
    def has_current(self) -> bool:
        """Whether the kind keeps a synaptic current (a second state)."""
        return self.current is not None

    def need(self, field: str, where: str):
        """The callable `field`, or a one-line refusal naming the kind and `where`."""
        f = getattr(self, field)
        if f is None:
            raise NeuronKindError(f"{where}: the neuron kind {self.name!r} has no {field} "
                                  f"(snnexport.ir.neurons); use a target that runs it")
        return f


KINDS: dict[str, NeuronKind] = {}


def register(kind: NeuronKind) -> NeuronKind:
    """Adds a kind to the table (a name is registered once)."""
    if kind.name in KINDS and KINDS[kind.name] is not kind:
        raise NeuronKindError(f"neuron kind {kind.name!r} is registered already")
    KINDS[kind.name] = kind
    return kind


def kind_of(node) -> NeuronKind:
    """The kind of a neuron node, by its `neuron_kind` name; of a fixed-point layer
    (quant/fixed.py FixedLayer, which names no kind), the kind whose fixed parameter it holds
    (`fixed_field`: 'cuba_lif' with i_decay), else 'lif'."""
    name = getattr(node, "neuron_kind", None)
    if name is None and hasattr(node, "dv"):
        name = next((k.name for k in KINDS.values() if k.fixed_field and
                     getattr(node, k.fixed_field, None) is not None), LIF.name)
    if name not in KINDS:
        raise NeuronKindError(f"{type(node).__name__}: no neuron kind {name!r} is registered "
                              f"(snnexport.ir.neurons.register)")
    return KINDS[name]


def keeps_current(node) -> bool:
    """Whether an IR node is a neuron whose kind keeps a synaptic current and whose current
    parameter is set (ir.Neuron.current_decay, ir.LIFNeuron.k_syn); False for any other node."""
    kind = KINDS.get(getattr(node, "neuron_kind", None))
    return bool(kind and kind.current_param and getattr(node, kind.current_param, None)
                is not None)


def lookup(table: dict, node, what: str):
    """A consumer's own entry for the node's kind (`table` keyed by kind name), or a one-line
    refusal naming `what` (e.g. 'the integer ONNX model')."""
    kind = kind_of(node)
    if kind.name not in table:
        raise NeuronKindError(f"{what} has no form for the neuron kind {kind.name!r}")
    return table[kind.name]


_MEMBRANE = dict(params=neuron_params, charge=neuron_charge, int_membrane=int_membrane,
                 int_membrane_fast=int_membrane_fast_, int_fire=int_fire,
                 fixed_decay=decay_fixed)

LIF = register(NeuronKind(
    "lif", "H = decay V + gain I; S = [H >= threshold]; hard or soft reset (LIF, PLIF, IF)",
    **_MEMBRANE, nir_types=NirTypes("LIF", "LI", "IF", "I"),
    netx_i_decay=lambda i_decay: UNIT, lava_du_float=lambda cd: 1.0,
    lava_du_fixed=lambda i_decay: UNIT - 1))

CUBA_LIF = register(NeuronKind(
    "cuba_lif", "J = current_decay J + I; the membrane of 'lif' driven by J (current-based LIF)",
    **_MEMBRANE, current=cuba_current, current_param="current_decay",
    int_current=int_current, int_current_fast=int_current_fast,
    fixed_current=current_decay_fixed, fixed_field="i_decay",
    nir_types=NirTypes("CubaLIF", "CubaLI"),
    nir_current=nir_current, current_from_nir=current_from_nir,
    netx_i_decay=lambda i_decay: i_decay,
    lava_du_float=lambda cd: 1.0 - np.asarray(cd, np.float64),
    lava_du_fixed=lambda i_decay: np.asarray(i_decay, np.int64) - 1))

LIF_SOURCE = register(NeuronKind(
    "lif_source", "ir.LIFNeuron as the source framework states it (folded before export)",
    params=source_params, charge=source_charge, current=norse_current, current_param="k_syn"))



def nir_kinds() -> dict[str, NirRole]:
    """NIR node type name -> what it is read as, over every registered kind."""
    return {t: NirRole(k.name, i % 2 == 0, i < 2) for k in KINDS.values() if k.nir_types
            for i, t in enumerate(k.nir_types) if t is not None}
