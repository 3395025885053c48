"""Multi-step spiking neuron layers (inputs and outputs shaped [T, B, *neuron_shape]).

Semantics (docs/semantics.md §2, Fang et al. 2021 eq. 2-6, SpikingJelly's ParametricLIFNode):

    k   = sigmoid(a)                                   1/tau, tau in (1, inf)
    H_t = V_{t-1} + k (X_t - (V_{t-1} - V_reset))      decay_input=True
    H_t = V_{t-1} - k (V_{t-1} - V_reset) + X_t        decay_input=False
    S_t = 1 if H_t >= V_th else 0                      (>=, not >)
    V_t = H_t (1 - S_t) + V_reset S_t                  hard reset
    V_t = H_t - V_th S_t                               soft reset (v_reset=None)
    V_-1 = v_init                                      v_reset (0 if soft reset), or learnable IMP

With a synaptic current (current_decay b, fixed; the IR's current-based LIFNeuron, k_syn = 1 - b,
Norse's order term by term): J_t = C_{t-1} + X_t, C_t = J_t + (-k_syn) J_t, C_-1 = 0, and J_t
in place of X_t above. tau_pow2 (PLIF): k = 2^-round(-log2 sigmoid(a)) in 2^-15 .. 1, the
rounding straight-through in training: the decays 1 - 2^-n a bit-shift chip (Xylo) runs.

The pure step function `neuron_step` is the whole model; the modules only hold parameters
(Norse's functional-core style). LIF is PLIF with a fixed k; IF has no leak at all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UsageError
from ..ir.neurons import SourceParams, norse_current, source_charge

TAU_PER = ("layer", "neuron")


class SpikeATan(torch.autograd.Function):
    """Heaviside(x) forward (1 where x >= 0); surrogate gradient 1 / (1 + (pi x)^2).

    This is SpikingJelly's ATan surrogate with alpha = 2, the one used in 000.
    """

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / (1.0 + (math.pi * x) ** 2)


def spike(x: torch.Tensor) -> torch.Tensor:
    return SpikeATan.apply(x)


def neuron_step(
    v: torch.Tensor,
    x: torch.Tensor,
    k: torch.Tensor | float | None,
    v_threshold: float,
    v_reset: float | None,
    decay_input: bool,
    detach_reset: bool,
    spiking: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One time step. Returns (H_t, S_t, V_t). k=None means no leak (IF neuron). H_t is the
    'lif_source' kind's charge (ir/neurons.py, what the IR's LIFNeuron runs); the spike is the
    surrogate's, the reset detached or not (training)."""
    reset_level = 0.0 if v_reset is None else v_reset
    h = source_charge(SourceParams(k, decay_input, v_threshold, v_reset is None, v_threshold,
                                   reset_level, None), v, x)
    if not spiking:  # a non-spiking readout layer: the membrane only integrates
        return h, torch.zeros_like(h), h
    s = spike(h - v_threshold)
    s_reset = s.detach() if detach_reset else s
    if v_reset is None:
        v_next = h - v_threshold * s_reset
    else:
        v_next = h * (1.0 - s_reset) + v_reset * s_reset
    return h, s, v_next


def lognormal_tau(shape, mean: float = 2.0, std: float = 0.1, generator=None) -> torch.Tensor:
    """Sample tau = 1 + exp(Y), Y ~ N(mu_log, sigma_log^2) with Pazderka 2024 eq. 13.

    mu' = mean - 1;  mu_log = ln(mu'^2 / sqrt(std^2 + mu'^2));
    sigma_log = sqrt(ln(1 + std^2/mu'^2)),
    so tau has the requested mean and standard deviation and lies in (1, inf).
    """
    if mean <= 1.0 or std <= 0.0:
        raise UsageError(f"log-normal tau needs mean > 1 and std > 0, got mean={mean}, std={std}")
    mu = mean - 1.0
    mu_log = math.log(mu**2 / math.sqrt(std**2 + mu**2))
    sigma_log = math.sqrt(math.log(1.0 + std**2 / mu**2))
    y = torch.randn(shape, generator=generator, dtype=torch.float64) * sigma_log + mu_log
    return (1.0 + torch.exp(y)).float()


def tau_to_a(tau: torch.Tensor | float) -> torch.Tensor:
    """Eq. 14 of 002: a = -ln(tau - 1), so that sigmoid(a) = 1/tau."""
    tau = torch.as_tensor(tau, dtype=torch.float32)
    if not tau.is_meta and torch.any(tau <= 1.0):  # meta: shapes only (checkpoint check)
        raise UsageError("a PLIF neuron's tau must be > 1 (a = -ln(tau - 1) is infinite at "
                         "tau = 1, the memoryless neuron: give it as LIF with tau = 1)")
    return -torch.log(tau - 1.0)


class SpikingNeuron(nn.Module):
    """Shared state handling: threshold, reset, optional learnable initial potential (IMP).

    `shape` is the per-sample neuron shape (e.g. (C, H, W)); it is needed for per-neuron
    parameters (IMP, per-neuron tau) and checked against the input otherwise ignored.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        imp: bool = False,
        spiking: bool = True,
        current_decay: float | None = None,
    ):
        super().__init__()
        if current_decay is not None and not 0.0 <= current_decay < 1.0:
            raise UsageError(f"current_decay must be in [0, 1), got {current_decay}")
        self.current_decay = None if not current_decay else float(current_decay)
        self.shape = tuple(shape) if shape is not None else None
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.detach_reset = bool(detach_reset)
        self.spiking = bool(spiking)
        if imp:
            if self.shape is None:
                raise UsageError("a learnable initial potential (IMP) needs the neuron shape")
            # Shen et al. 2024 make V_-1 learnable per neuron; it starts at the default V_-1.
            self.v_init = nn.Parameter(torch.full(self.shape, self.default_v_init()))
        else:
            self.v_init = None

    def default_v_init(self) -> float:
        # SpikingJelly starts the membrane at v_reset (0 for soft reset).
        return 0.0 if self.v_reset is None else self.v_reset

    def k(self) -> torch.Tensor | float | None:
        raise NotImplementedError

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        if self.v_init is None:
            return torch.full_like(x0, self.default_v_init())
        return self.v_init.to(x0.dtype).expand_as(x0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """x_seq: [T, B, *shape] -> spikes [T, B, *shape] (membrane for a non-spiking layer)."""
        if self.shape is not None and tuple(x_seq.shape[2:]) != self.shape:
            raise UsageError(
                f"{type(self).__name__}: expected input [T, B, {', '.join(map(str, self.shape))}],"
                f" got {list(x_seq.shape)}"
            )
        trace = self.run(x_seq)
        return trace[1] if self.spiking else trace[2]

    def current(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The synaptic current J [T, B, *shape] the membrane takes (the input itself when the
        layer has none)."""
        if self.current_decay is None:
            return x_seq
        k_syn, c, js = 1.0 - self.current_decay, torch.zeros_like(x_seq[0]), []
        for x in x_seq:
            j, c = norse_current(k_syn, c, x)
            js.append(j)
        return torch.stack(js)

    def input_gain(self) -> torch.Tensor | float:
        """What H_t takes of J_t: k with decay_input, else 1."""
        k = self.k()
        return k if self.decay_input and k is not None else 1.0

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the traces (H, S, V), each [T, B, *shape]."""
        k = self.k()
        v = self.initial_state(x_seq[0])
        hs, ss, vs = [], [], []
        for x in self.current(x_seq):
            h, s, v = neuron_step(
                v, x, k, self.v_threshold, self.v_reset, self.decay_input, self.detach_reset,
                self.spiking,
            )
            hs.append(h)
            ss.append(s)
            vs.append(v)
        return torch.stack(hs), torch.stack(ss), torch.stack(vs)

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"hard(v_reset={self.v_reset})"
        return (
            f"shape={self.shape}, v_threshold={self.v_threshold}, reset={reset}, "
            f"decay_input={self.decay_input}, imp={self.v_init is not None}, spiking={self.spiking}"
            + ("" if self.current_decay is None else f", current_decay={self.current_decay}")
        )


class PLIF(SpikingNeuron):
    """Parametric LIF: learnable a with k = sigmoid(a) = 1/tau.

    tau_per="layer": one a for the layer (Fang et al. 2021), initialised at tau_init.
    tau_per="neuron": one a per neuron (Pazderka 2024), tau drawn log-normal (eq. 13) with
    mean tau_init and sd tau_std, then a = -ln(tau - 1) (eq. 14).
    """

    def __init__(self, shape=None, tau_init: float = 2.0, tau_per: str = "layer",
                 tau_std: float = 0.1, tau_pow2: bool = False, **kw):
        super().__init__(shape, **kw)
        self.tau_pow2 = bool(tau_pow2)
        if tau_per not in TAU_PER:
            raise UsageError(f"tau_per must be one of {TAU_PER}, got {tau_per!r}")
        self.tau_per = tau_per
        if tau_per == "layer":
            self.a = nn.Parameter(tau_to_a(tau_init))
        else:
            if self.shape is None:
                raise UsageError("per-neuron tau needs the neuron shape")
            self.a = nn.Parameter(tau_to_a(lognormal_tau(self.shape, tau_init, tau_std)))

    def k(self) -> torch.Tensor:
        k = torch.sigmoid(self.a)
        if not self.tau_pow2:
            return k
        q = torch.exp2(-torch.round(-torch.log2(k.detach())).clamp(0, 15))
        return q + (k - k.detach())  # exactly the power of two forward, sigmoid's gradient back

    def tau(self) -> torch.Tensor:
        return 1.0 / self.k()

    def extra_repr(self) -> str:
        return (f"tau_per={self.tau_per}, " + ("tau_pow2=True, " if self.tau_pow2 else "")
                + super().extra_repr())


class LIF(SpikingNeuron):
    """LIF with a fixed tau (k = 1/tau, not learned)."""

    def __init__(self, shape=None, tau: float = 2.0, **kw):
        super().__init__(shape, **kw)
        if not tau >= 1.0:  # tau = 1: k = 1, the memoryless neuron (the IR's tau >= 1)
            raise UsageError(f"tau must be >= 1 (k = 1/tau in (0, 1]), got {tau}")
        self.register_buffer("k_fixed", torch.tensor(1.0 / tau))

    def k(self) -> torch.Tensor:
        return self.k_fixed

    def tau(self) -> torch.Tensor:
        return 1.0 / self.k_fixed


class IF(SpikingNeuron):
    """Integrate-and-fire: H_t = V_{t-1} + X_t (no leak)."""

    def __init__(self, shape=None, **kw):
        kw["decay_input"] = False
        super().__init__(shape, **kw)

    def k(self) -> None:
        return None


def tau_variance_penalty(model: nn.Module, lam: float) -> torch.Tensor:
    """Pazderka 2024: lam * sum over per-neuron PLIF layers l of Var(tau_l) (biased variance)."""
    terms = [m.tau().var(unbiased=False) for m in model.modules()
             if isinstance(m, PLIF) and m.tau_per == "neuron"]
    if not terms:
        return torch.zeros(())
    return lam * torch.stack(terms).sum()
