"""The neuron-kind table (snnexport/ir/neurons.py): each kind's integer step written plainly and
fast gives the same values, and both the values of Lava's rule worked out with Python integers;
the float steps against values worked out by hand (every intermediate value exact in binary);
kinds found by name, an unknown one refused in one line, a new kind run by the simulator."""

import numpy as np
import pytest
import torch

from snnexport.ir import neurons as nk
from snnexport.ir import nodes as ir
from snnexport.ir.graph import Graph
from snnexport.sim.reference import simulate

WRAP = 1 << 23


def lava_trunc(p: int) -> int:
    """Lava's decay: sign(p) (|p| >> 12), on Python integers."""
    return (abs(p) >> 12) * (1 if p >= 0 else -1)


def lava_wrap(u: int) -> int:
    """Lava's 24-bit wrap of u (u - 2^24 above 2^23, u + 2^24 at or below -2^23)."""
    return u - (1 << 24) if u > WRAP else u + (1 << 24) if u <= -WRAP else u


def edge_values(n: int, seed: int) -> np.ndarray:
    """Integers near every edge the steps have: 0, +-1, the wrap at +-2^23, the 24-bit clip,
    and random ones within 25 bits."""
    rng = np.random.default_rng(seed)
    edges = [0, 1, -1, WRAP, WRAP + 1, -WRAP, -WRAP + 1, -WRAP - 1, WRAP - 1, (1 << 24) - 1,
             -(1 << 24) + 1, 4095, -4095, 4096, -4097]
    return np.concatenate([edges, rng.integers(-(1 << 24), 1 << 24, n - len(edges))])


@pytest.mark.parametrize("kind", ["lif", "cuba_lif"])
def test_integer_steps_plain_and_fast_agree_with_lava_rule(kind):
    k = nk.KINDS[kind]
    n = 4000
    keep = np.random.default_rng(1).integers(0, 4097, n)  # 4096 - dv or 4096 - i_decay
    state, drive = edge_values(n, 2), edge_values(n, 3)[::-1].copy()
    as_int = [torch.as_tensor(a, dtype=torch.int64) for a in (keep, state, drive)]
    as_f64 = [torch.as_tensor(a, dtype=torch.float64) for a in (keep, state, drive)]
    # the membrane: trunc(keep v / 4096) + drive
    plain = k.int_membrane(*as_int)
    fast = k.int_membrane_fast(as_f64[0], as_f64[1].clone(), as_f64[2])
    triples = list(zip(keep.tolist(), state.tolist(), drive.tolist(), strict=True))
    hand = [lava_trunc(kk * v) + d for kk, v, d in triples]
    assert plain.tolist() == hand
    assert fast.tolist() == [float(h) for h in hand]
    s, v = k.int_fire(torch.tensor(hand), 1000)
    assert s.tolist() == [h > 1000 for h in hand]
    assert v.tolist() == [0 if h > 1000 else h for h in hand]
    if not k.has_current:
        assert k.int_current is None and k.int_current_fast is None
        return
    # the current: wrap24(trunc(keep u / 4096) + a64), and the sum before the wrap
    u_p, cur_p = k.int_current(*as_int)
    u_f, cur_f = k.int_current_fast(*as_f64)
    sums = [lava_trunc(kk * u) + a for kk, u, a in triples]
    assert cur_p.tolist() == sums and cur_f.tolist() == [float(x) for x in sums]
    assert u_p.tolist() == [lava_wrap(x) for x in sums]
    assert u_f.tolist() == [float(lava_wrap(x)) for x in sums]
    assert sum(x != lava_wrap(x) for x in sums) > 10  # the wrap acted, both ways
    assert any(x > WRAP for x in sums) and any(x <= -WRAP for x in sums)


def test_float_steps_by_hand():
    """J_t = 0.5 J + I, H_t = 0.5 V + J (gain None), threshold 1, hard reset, on I = 1, 0, 1,
    1, 0: J = 1, 0.5, 1.25, 1.625, 0.8125; H = 1 (fires), 0.5, 1.5 (fires), 1.625 (fires),
    0.8125."""
    node = ir.Neuron((1,), np.array(0.5), current_decay=np.array(0.5))
    k = nk.kind_of(node)
    assert k.name == "cuba_lif"
    p = k.params(node, lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float64))
    j = v = torch.zeros(1, dtype=torch.float64)
    js, hs, ss = [], [], []
    for x in [1.0, 0.0, 1.0, 1.0, 0.0]:
        i, j = k.current(p.current_decay, j, torch.tensor([x], dtype=torch.float64))
        h = k.charge(p, v, i)
        s, v = k.fire_reset(p, h)
        js.append(i.item())
        hs.append(h.item())
        ss.append(s.item())
    assert js == [1.0, 0.5, 1.25, 1.625, 0.8125]
    assert hs == [1.0, 0.5, 1.5, 1.625, 0.8125]
    assert ss == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_fixed_point_and_chip_mappings_by_hand():
    cuba, lif = nk.KINDS["cuba_lif"], nk.KINDS["lif"]
    # i_decay = round(4096 (1 - current_decay)) in 1..4096; dv = round(4096 (1 - decay)) <= 4095
    assert cuba.fixed_current(np.array([0.75, 0.0, 1.0, 0.5])).tolist() == [1024, 4096, 1, 2048]
    assert lif.fixed_decay(np.array([0.5, 0.0, 1.0])).tolist() == [2048, 4095, 0]
    # NIR: tau_syn = dt / (1 - current_decay), w_in = 1 / (1 - current_decay)
    nir_p = cuba.nir_current(np.array(0.75), 1e-4)
    assert nir_p["tau_syn"] == pytest.approx(4e-4) and nir_p["w_in"] == 4.0
    decay, scale = cuba.current_from_nir(np.array(0.25), np.array(4.0))
    assert decay == 0.75 and scale == 1.0
    # netx's iDecay and Lava's du
    assert lif.netx_i_decay(None) == 4096 and cuba.netx_i_decay(1024) == 1024
    assert lif.lava_du_fixed(None) == 4095 and cuba.lava_du_fixed(1024) == 1023
    assert lif.lava_du_float(None) == 1.0 and cuba.lava_du_float(0.75) == 0.25
    roles = nk.nir_kinds()
    assert roles["CubaLIF"] == nk.NirRole("cuba_lif", True, True)
    assert roles["I"] == nk.NirRole("lif", False, False)


def test_kinds_are_found_by_name_and_an_unknown_one_is_refused():
    assert nk.kind_of(ir.Neuron((2,), np.array(0.5))).name == "lif"
    assert nk.kind_of(ir.LIFNeuron((2,), None)).name == "lif_source"

    class Odd:
        neuron_kind = "no_such_kind"

    with pytest.raises(nk.NeuronKindError, match="no neuron kind 'no_such_kind'"):
        nk.kind_of(Odd())
    with pytest.raises(nk.NeuronKindError, match="registered already"):
        nk.register(nk.NeuronKind("lif", "another", nk.neuron_params, nk.neuron_charge))
    with pytest.raises(nk.NeuronKindError, match="'lif_source' has no int_membrane"):
        nk.KINDS["lif_source"].need("int_membrane", "the emulator")


def test_a_registered_kind_runs_in_the_simulator_and_is_refused_where_it_has_no_form():
    """A new kind (as a chip's own neuron would register): a membrane that doubles its input,
    H_t = 2 I_t (no memory), threshold 1. The simulator runs it by name; the ONNX builder,
    which has no ops for it, refuses it in one line."""
    from snnexport.exporters.onnx_export import to_onnx

    kind = nk.register(nk.NeuronKind(
        "test_doubling", "H = 2 I", nk.neuron_params, lambda p, v, x: 2 * x))

    class Doubling(ir.Neuron):
        neuron_kind = "test_doubling"

    try:
        g = Graph.chain([("in", ir.Input((3,))), ("n", Doubling((3,), np.array(0.0)))],
                        {"time_steps": 2, "folded": True})
        x = torch.tensor([[0.25, 0.5, 0.75]], dtype=torch.float64)
        res = simulate(g, x, record_membrane=True)
        assert res.membrane["n"][:, 0].tolist() == [[0.5, 1.0, 1.5]] * 2
        assert res.spikes["n"][:, 0].tolist() == [[0.0, 1.0, 1.0]] * 2
        with pytest.raises(nk.NeuronKindError, match="the ONNX model has no form for the "
                                                     "neuron kind 'test_doubling'"):
            to_onnx(g)
    finally:
        del nk.KINDS[kind.name]
