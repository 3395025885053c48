"""Neuron dynamics against values computed by hand (docs/semantics.md §2, Fang et al. 2021
eq. 2-6).

Inputs and k = 0.5 are chosen so that every intermediate value is exact in binary floating
point; the expected traces below were worked out on paper, step by step.
"""

import math

import pytest
import torch

from snnexport.models import IF, LIF, PLIF, lognormal_tau, neuron_step, tau_variance_penalty

X = [0.5, 1.0, 2.0, 0.25, 3.0]

# (decay_input, v_reset) -> (H trace, S trace, V trace), V_th = 1, k = 0.5, V_-1 = v_reset or 0
HAND = {
    # H_t = V + k (X - V)
    (True, 0.0): ([0.25, 0.625, 1.3125, 0.125, 1.5625], [0, 0, 1, 0, 1],
                  [0.25, 0.625, 0.0, 0.125, 0.0]),
    (True, None): ([0.25, 0.625, 1.3125, 0.28125, 1.640625], [0, 0, 1, 0, 1],
                   [0.25, 0.625, 0.3125, 0.28125, 0.640625]),
    # H_t = V - k V + X
    (False, 0.0): ([0.5, 1.25, 2.0, 0.25, 3.125], [0, 1, 1, 0, 1],
                   [0.5, 0.0, 0.0, 0.25, 0.0]),
    (False, None): ([0.5, 1.25, 2.125, 0.8125, 3.40625], [0, 1, 1, 0, 1],
                    [0.5, 0.25, 1.125, 0.8125, 2.40625]),
    # V_reset = -0.5: H_t = V + k (X - (V - V_reset)), starts at V_-1 = V_reset
    (True, -0.5): ([-0.25, 0.125, 0.8125, 0.28125, 1.390625], [0, 0, 0, 0, 1],
                   [-0.25, 0.125, 0.8125, 0.28125, -0.5]),
}


def run_plif(decay_input, v_reset, x=X, **kw):
    n = PLIF(shape=(1,), tau_init=2.0, decay_input=decay_input, v_reset=v_reset, **kw).double()
    xs = torch.tensor(x, dtype=torch.float64).reshape(-1, 1, 1)
    return [t.flatten().tolist() for t in n.run(xs)]


@pytest.mark.parametrize("decay_input,v_reset", sorted(HAND, key=str))
def test_plif_matches_hand_computation(decay_input, v_reset):
    h, s, v = run_plif(decay_input, v_reset)
    assert (h, s, v) == tuple(HAND[(decay_input, v_reset)])


def test_threshold_is_inclusive():
    # k = 0.5, V = 0, X = 2 gives H = 1.0 exactly = V_th: the neuron fires (>=, not >).
    h, s, _ = run_plif(True, 0.0, x=[2.0])
    assert h == [1.0] and s == [1.0]
    _, s, _ = run_plif(True, 0.0, x=[2.0 - 2**-40])
    assert s == [0.0]


def test_lif_equals_plif_at_same_tau_and_if_has_no_leak():
    xs = torch.tensor(X, dtype=torch.float64).reshape(-1, 1, 1)
    lif = LIF(shape=(1,), tau=2.0).double()
    assert [t.flatten().tolist() for t in lif.run(xs)] == list(HAND[(True, 0.0)])
    # IF: H = V + X; by hand: .5 | 1.5 -> fire, V=0 | 2 -> fire | .25 | 3.25 -> fire
    h, s, v = IF(shape=(1,)).double().run(xs)
    assert h.flatten().tolist() == [0.5, 1.5, 2.0, 0.25, 3.25]
    assert s.flatten().tolist() == [0, 1, 1, 0, 1]


def test_non_spiking_layer_only_integrates():
    n = PLIF(shape=(1,), spiking=False).double()
    out = n(torch.full((3, 1, 1), 2.0, dtype=torch.float64)).flatten().tolist()
    assert out == [1.0, 1.5, 1.75]  # never reset, never fires


def test_surrogate_gradient_is_atan_alpha2():
    x = torch.tensor([0.0, 0.3, -0.7], dtype=torch.float64, requires_grad=True)
    h, s, _ = neuron_step(torch.zeros(3, dtype=torch.float64), x, None, 0.0, 0.0, False, False)
    s.sum().backward()
    expected = [1.0 / (1.0 + (math.pi * v) ** 2) for v in (0.0, 0.3, -0.7)]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_detach_reset_changes_gradient_not_values():
    def grads(detach):
        x = torch.tensor([[[1.5]], [[0.4]]], dtype=torch.float64, requires_grad=True)
        n = PLIF(shape=(1,), detach_reset=detach).double()
        h, s, v = n.run(x)
        v[-1].sum().backward()
        return h.detach().tolist(), x.grad.flatten().tolist()

    (h1, g1), (h2, g2) = grads(False), grads(True)
    assert h1 == h2 and g1 != g2


def test_lognormal_tau_statistics_match_eq13():
    gen = torch.Generator().manual_seed(123)
    tau = lognormal_tau((200_000,), mean=2.0, std=0.1, generator=gen).double()
    assert float(tau.min()) > 1.0
    # standard errors: 0.1/sqrt(2e5) = 2.2e-4 for the mean; allow 5 of them
    assert abs(float(tau.mean()) - 2.0) < 1.2e-3
    assert abs(float(tau.std()) - 0.1) < 1.2e-3
    # eq. 13 parameters of the underlying normal, for mu' = 1, sd = 0.1
    y = torch.log(tau - 1.0)
    assert float(y.mean()) == pytest.approx(math.log(1 / math.sqrt(1.01)), abs=1e-3)
    assert float(y.std()) == pytest.approx(math.sqrt(math.log(1.01)), abs=1e-3)


def test_per_neuron_plif_tau_and_eq14():
    torch.manual_seed(0)
    n = PLIF(shape=(8, 6, 6), tau_per="neuron", tau_init=3.0, tau_std=0.2)
    assert n.a.shape == (8, 6, 6)
    tau = n.tau().detach()
    assert abs(float(tau.mean()) - 3.0) < 0.05 and abs(float(tau.std()) - 0.2) < 0.05
    # eq. 14: a = -ln(tau - 1)  <=>  sigmoid(a) = 1 / tau
    assert torch.allclose(torch.sigmoid(n.a.detach()), 1.0 / tau, atol=1e-6)
    assert PLIF(tau_init=2.0).a.item() == 0.0  # -ln(2 - 1)


def test_tau_variance_penalty_is_lambda_times_variance():
    n = PLIF(shape=(2,), tau_per="neuron")
    with torch.no_grad():
        n.a.copy_(torch.tensor([0.0, -math.log(3.0)]))  # tau = 2 and 4 -> Var = 1
    layer = PLIF(shape=(2,), tau_per="layer")  # per-layer tau carries no penalty
    model = torch.nn.Sequential(n, layer)
    assert float(tau_variance_penalty(model, 0.1).detach()) == pytest.approx(0.1, rel=1e-6)


def test_imp_is_initial_state_and_restored_every_sample():
    n = PLIF(shape=(2,), imp=True).double()
    with torch.no_grad():
        n.v_init.copy_(torch.tensor([0.75, 0.0]))
    x = torch.full((1, 1, 2), 0.25, dtype=torch.float64)
    # H_0 = v_init + 0.5 (0.25 - v_init): 0.5 for IMP 0.75, 0.125 for IMP 0
    h, _, _ = n.run(x)
    assert h.flatten().tolist() == [0.5, 0.125]
    xs = torch.full((4, 3, 2), 0.3, dtype=torch.float64)
    assert torch.equal(n(xs), n(xs))  # no state carried between calls
