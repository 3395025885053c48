"""Current-based LIF (CUBA): snnTorch's Synaptic and Norse's default LIFCell, run for real on
real MNIST-5k digits, imported, folded and compared spike for spike with the framework's own
forward on the reference simulator and the float ONNX model; the .snnir file of a CUBA graph
(version 3) and the unchanged version-2 file of every other graph."""

import re
from pathlib import Path

import norse.torch as nt
import numpy as np
import pytest
import snntorch as snn
import torch
from test_snntorch_norse import SAMPLES, T, assert_matches_framework, norse_counts, seeded
from torch import nn

from snnexport.check import check, from_norse, from_snntorch
from snnexport.importers.norse import import_norse
from snnexport.importers.snntorch import import_snntorch
from snnexport.importers.spikingjelly import UnsupportedModuleError
from snnexport.ir import io as ir_io
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate


@pytest.fixture(scope="module")
def mnist():
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


def synaptic_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.BatchNorm2d(8),
        snn.Synaptic(alpha=0.7, beta=0.9, init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5),
        # per-channel alpha and beta; subtract reset (beta < 1: reset_by = thr / beta)
        snn.Synaptic(alpha=torch.rand(16, 1, 1), beta=0.5 + 0.5 * torch.rand(16, 1, 1),
                     threshold=0.5, init_hidden=True),
        nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 64),
        snn.Synaptic(alpha=torch.rand(64), beta=0.8, init_hidden=True,
                     reset_mechanism="zero", reset_delay=False),
        nn.Linear(64, 10),
        snn.Synaptic(alpha=0.5, beta=1.0, init_hidden=True, output=True))
    return seeded(net, gain=(0.5, 1.0, 1.0, 1.0))


@torch.no_grad()
def synaptic_counts(net, x):
    """Spikes per Synaptic, counted from snnTorch's own outputs (hooks), fresh state."""
    counts, hooks = {}, []
    for name, m in net.named_modules():
        if isinstance(m, snn.Synaptic):
            counts[name] = 0

            def hook(_m, _a, o, name=name):
                counts[name] += int((o[0] if isinstance(o, tuple) else o).sum())
            hooks.append(m.register_forward_hook(hook))
    snn.utils.reset(net)
    for _ in range(T):
        net(x)
    for h in hooks:
        h.remove()
    snn.utils.reset(net)
    return counts


def test_snntorch_synaptic_matches_snntorch(mnist):
    x, y = mnist
    net = synaptic_net()
    loaded = from_snntorch(net, (1, 28, 28), T)
    g = loaded.graph
    lif2 = g.nodes["5"]
    # alpha as snnTorch clamps it is the current decay, per channel
    assert lif2.current_decay.shape == (16, 1, 1)
    assert torch.equal(torch.as_tensor(lif2.current_decay), net[5].alpha.clamp(0, 1))
    assert float(g.nodes["2"].current_decay) == pytest.approx(0.7)
    assert lif2.reset == "soft" and lif2.reset_by is not None
    folded = fold(g)
    assert all(folded.nodes[n].cuba for n in ("2", "5", "9", "11"))
    assert_matches_framework(loaded, x, y, synaptic_counts(net, x))


def test_snntorch_synaptic_on_onnx(mnist):
    x, y = mnist
    loaded = from_snntorch(synaptic_net(), (1, 28, 28), T)
    report = check(loaded, target="onnx", inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.unexplained == 0, report.text()
    assert all(layer.spikes_target > 0 for layer in report.layers), report.text()


def norse_default_net():
    """Norse's default LIFCell (tau_syn_inv 200, tau_mem_inv 100, dt 1e-3: the current keeps
    0.8 of itself per step) and an LIF over the sequence with per-neuron tau_syn_inv."""
    torch.manual_seed(0)
    net = nt.SequentialState(
        nn.Conv2d(1, 8, 5, stride=2), nt.LIFCell(),
        nn.Flatten(), nn.Linear(8 * 12 * 12, 40),
        nt.LIFCell(nt.LIFParameters(tau_syn_inv=100.0 + 800.0 * torch.rand(40),
                                    v_th=torch.as_tensor(0.4))),
        nn.Linear(40, 10), nt.LIFCell())
    return seeded(net, gain=(6.0, 4.0, 6.0))


def norse_lif_seq_net():
    torch.manual_seed(1)
    net = nt.SequentialState(
        nt.Lift(nn.Conv2d(1, 8, 5, stride=2)), nt.LIF(),
        nn.Flatten(start_dim=2), nn.Linear(8 * 12 * 12, 10), nt.LIF())
    return seeded(net, gain=(6.0, 6.0))


@pytest.mark.parametrize("make", [norse_default_net, norse_lif_seq_net], ids=["cells", "LIF"])
def test_norse_default_lifcell_matches_norse(mnist, make):
    x, y = mnist
    net = make()
    loaded = from_norse(net, (1, 28, 28), T)
    neurons = [n for n in loaded.graph.nodes.values() if isinstance(n, ir.LIFNeuron)]
    # k_syn = dt * tau_syn_inv as Norse computes it (float32): 0.2 for the default
    assert float(neurons[0].k_syn) == -float(-1e-3 * torch.tensor(200.0))
    assert float(neurons[0].k) == float(1e-3 * torch.tensor(100.0))
    assert_matches_framework(loaded, x, y, norse_counts(net, x))


def test_norse_default_lifcell_on_onnx(mnist):
    x, y = mnist
    report = check(from_norse(norse_default_net(), (1, 28, 28), T), target="onnx",
                   inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.unexplained == 0, report.text()


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.5, beta=0.9,
                                                         init_hidden=True,
                                                         reset_mechanism="zero")),
     r"1: .*Synaptic with reset_mechanism='zero' and reset_delay=True is not supported"),
    (lambda: nn.Sequential(nn.Linear(4, 3), snn.Synaptic(alpha=0.5, beta=0.0,
                                                         init_hidden=True)),
     r"1: .*Synaptic with reset_mechanism='subtract' and beta = 0 is not supported"),
])
def test_synaptic_refusals_name_the_module_and_the_fix(make, message):
    with pytest.raises(UnsupportedModuleError) as e:
        import_snntorch(make(), (4,), T)
    assert "\n" not in str(e.value)
    assert re.match(message, str(e.value)), str(e.value)


def test_norse_current_step_outside_0_1_is_refused():
    net = nt.SequentialState(nn.Linear(4, 3), nt.LIFCell(nt.LIFParameters(
        tau_syn_inv=torch.as_tensor(3000.0))))
    with pytest.raises(UnsupportedModuleError, match=r"^1: .*LIFCell with dt \* tau_syn_inv = "
                                                     r"3 \.\. 3 outside \[0, 1\]"):
        import_norse(net, (4,), T)


def test_cuba_graph_is_snnir_version_3_and_reads_back(tmp_path):
    g = fold(import_snntorch(synaptic_net(), (1, 28, 28), T))
    data = ir_io.to_bytes(g)
    assert b'"version":3' in data
    back = ir_io.from_bytes(data)
    for name, node in g.nodes.items():
        if isinstance(node, ir.Neuron):
            assert (back.nodes[name].current_decay == node.current_decay).all()
    x = torch.rand(5, 1, 28, 28)
    a, b = simulate(g, x, T), simulate(back, x, T)
    assert all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)


def test_without_a_current_the_file_stays_version_2():
    """A Leaky net (no current) writes the version-2 file it always wrote; a Synaptic with
    alpha = 0 is that same net (its current is the input), so the same bytes."""
    def net(cls, **kw):
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(6, 4), cls(beta=0.9, init_hidden=True, **kw))

    leaky = ir_io.to_bytes(import_snntorch(net(snn.Leaky), (6,), T))
    assert b'"version":2' in leaky and b"current_decay" not in leaky
    syn0 = ir_io.to_bytes(import_snntorch(net(snn.Synaptic, alpha=0.0), (6,), T))
    assert syn0 == leaky


def test_streaming_onnx_carries_the_current(mnist):
    """The one-step ONNX model takes and returns the current as a second state
    (v:<layer>:current), looped here for T steps: the reference simulator's spikes."""
    from snnexport.exporters.onnx_export import initial_states, to_onnx_step
    from snnexport.onnx_run import session

    x = mnist[0][:32].numpy()
    graph = fold(import_snntorch(synaptic_net(), (1, 28, 28), T))
    step = session(to_onnx_step(graph))
    names = [o.name for o in step.get_outputs()]
    state, spikes = initial_states(graph, len(x)), {}
    assert "v:2:current" in state and not state["v:2:current"].any()
    for _ in range(T):
        out = dict(zip(names, step.run(None, {"x_t": x, **state}), strict=True))
        state = {k.replace("v_next:", "v:"): v for k, v in out.items() if k.startswith("v_next")}
        for k, v in out.items():
            if k.startswith("spikes:"):
                spikes.setdefault(k[7:], []).append(v)
    ref = simulate(graph, torch.from_numpy(x), dtype=torch.float32)
    assert sorted(spikes) == sorted(ref.spikes) and all(s.sum() > 0 for s in ref.spikes.values())
    for name, s in ref.spikes.items():
        assert np.array_equal(np.stack(spikes[name]).astype(np.float32), s.numpy()), name


# --- NIR CubaLIF -------------------------------------------------------------------------------

def zero_reset_synaptic_net():
    """Synaptic layers NIR can state: zero reset at once (reset_delay=False), scalar or
    per-neuron alpha / beta, thresholds of the full shape (what snnTorch's exporter needs)."""
    torch.manual_seed(0)
    shape1, shape2 = (6, 14, 14), (40,)
    lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, stride=2, padding=1),
        snn.Synaptic(alpha=torch.full(shape1, 0.6), beta=torch.full(shape1, 0.8),
                     threshold=torch.full(shape1, 1.0), **lif),
        nn.Flatten(), nn.Linear(6 * 14 * 14, 40),
        snn.Synaptic(alpha=0.3 + 0.6 * torch.rand(shape2), beta=torch.full(shape2, 0.6),
                     threshold=torch.full(shape2, 0.5), **lif))
    with torch.no_grad():
        net[0].weight.mul_(1.5)
        net[3].weight.mul_(2)
    return net.eval()


def test_snnexports_own_nir_cubalif_matches_snntorch(mnist):
    """check --target nir: the folded IR written as NIR CubaLIF nodes, read back, run, and
    compared with snnTorch's own forward."""
    x, y = mnist
    report = check(from_snntorch(zero_reset_synaptic_net(), (1, 28, 28), T), target="nir",
                   inputs=(x, y), samples=SAMPLES)
    assert report.samples == SAMPLES and report.unexplained == 0, report.text()
    assert all(layer.spikes_target > 0 for layer in report.layers), report.text()


def test_snntorch_export_to_nir_of_synaptic_reproduced(mnist):
    """snnTorch's own export_to_nir of a Synaptic net (CubaLIF, dt 1e-4) imports, and runs as
    snnTorch runs the net."""
    import warnings

    from snntorch.export_nir import export_to_nir

    from snnexport.importers.nir_import import from_nir
    from snnexport.parity import ParityReport, compare
    from snnexport.readout import readout_scores
    from snnexport.sim.reference import SimResult

    x, y = mnist
    net = zero_reset_synaptic_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = export_to_nir(net, x[:1], ignore_dims=[0])
    assert {type(n).__name__ for n in exported.nodes.values()} >= {"CubaLIF"}
    graph = from_nir(exported)
    assert [n.cuba for n in graph.nodes.values() if isinstance(n, ir.Neuron)] == [True, True]
    spikes = {"1": [], "4": []}
    hooks = [net[int(k)].register_forward_hook(lambda _m, _i, o, k=k: spikes[k].append(
        o.detach())) for k in spikes]
    snn.utils.reset(net)
    with torch.no_grad():
        for _ in range(T):
            net(x)
    for h in hooks:
        h.remove()
    out = torch.stack(spikes["4"])
    theirs = SimResult(out, readout_scores(out, "rate", 1),
                       {k: torch.stack(v) for k, v in spikes.items()})
    mine = simulate(graph, x, T, record_membrane=True)
    report = ParityReport("snnexport vs snnTorch")
    compare(report, mine, theirs, y, {k: graph.nodes[k].threshold for k in spikes}, 1e-5)
    assert [layer.spikes_reference > 0 for layer in report.layers] == [True, True]
    assert report.unexplained == 0 and report.agree == len(y), report.text()


def nir_equations(x_seq, layers, dt):
    """NIR's CubaLIF, Euler at dt, written from its docstring (independent of snnexport):
    I += dt/tau_syn (w_in S - I); v += dt/tau_mem (v_leak - v + r I); z = v > v_th;
    v = v_reset where z. layers: (weight, bias, CubaLIF)."""
    s, out = x_seq, []
    for w, b, n in layers:
        i = v = np.zeros((s.shape[1], w.shape[0]))
        zs = []
        for st in s:
            i = i + dt / n.tau_syn * (n.w_in * (st @ w.T + b) - i)
            v = v + dt / n.tau_mem * (n.v_leak - v + n.r * i)
            z = v > n.v_threshold
            v = np.where(z, n.v_reset, v)
            zs.append(z.astype(np.float64))
        s = np.stack(zs)
        out.append(s)
    return out


def test_hand_written_nir_cubalif_follows_nir_equations(mnist):
    import nir

    from snnexport.importers.nir_import import from_nir

    x = mnist[0][:SAMPLES].reshape(SAMPLES, -1).double().numpy()
    rng = np.random.default_rng(0)
    dt = 1e-3
    w1, b1 = rng.normal(0, 0.15, (30, 784)), rng.normal(0, 0.1, 30)
    w2, b2 = rng.normal(0, 0.6, (10, 30)), np.zeros(10)
    n1 = nir.CubaLIF(tau_syn=np.full(30, 4e-3), tau_mem=rng.uniform(2e-3, 2e-2, 30),
                     r=np.full(30, 2.0), v_leak=np.zeros(30), v_threshold=np.full(30, 1.0),
                     w_in=rng.uniform(0.5, 1.5, 30))
    n2 = nir.CubaLIF(tau_syn=rng.uniform(1e-3, 1e-2, 10), tau_mem=np.full(10, 5e-3),
                     r=np.ones(10), v_leak=np.zeros(10), v_threshold=np.full(10, 0.3))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([784])),
                            "fc1": nir.Affine(weight=w1, bias=b1), "lif1": n1,
                            "fc2": nir.Affine(weight=w2, bias=b2), "lif2": n2,
                            "output": nir.Output(output_type=np.array([10]))},
                     edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
                            ("fc2", "lif2"), ("lif2", "output")], metadata={"dt": dt})
    graph = from_nir(g)
    want = nir_equations(np.repeat(x[None], T, 0), [(w1, b1, n1), (w2, b2, n2)], dt)
    mine = simulate(graph, torch.from_numpy(x), T, dtype=torch.float64)
    got = [mine.spikes[k].numpy() for k in ("lif1", "lif2")]
    assert all(w.sum() > 0 for w in want)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b), int((a != b).sum())


def test_nir_cubalif_with_a_leak_level_is_refused():
    import nir

    from snnexport.importers.nir_import import NIRImportError, from_nir

    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])),
                            "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                            "lif": nir.CubaLIF(tau_syn=np.full(2, 2e-4), tau_mem=np.full(2, 1e-3),
                                               r=np.ones(2), v_leak=np.full(2, 0.1),
                                               v_threshold=np.ones(2)),
                            "output": nir.Output(output_type=np.array([2]))},
                     edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    with pytest.raises(NIRImportError, match=r"node 'lif': a CubaLIF with v_leak or v_reset "
                                             r"other than 0 is not supported"):
        from_nir(g)


# --- fixed point (Loihi's integer CUBA), the emulator ------------------------------------------

def test_integer_current_truncates_toward_zero_and_wraps_like_lava():
    """Lava's PyLifModelBitAcc: u = wrap24(sign(p) (|p| >> 12) + a << 6), p = u (4096 - du - 1):
    values worked out by hand, the plain and the fast form alike."""
    from snnexport.quant.emulator import integer_current

    cases = [  # (i_decay, a64 per step, u per step)
        (2048, [6400, 0, 0, 0], [6400, 3200, 1600, 800]),
        (2048, [-3, 0, 0], [-3, -1, 0]),  # -1.5 -> -1 (floor would give -2)
        (1, [2 ** 23 + 1, 0], [-(2 ** 23) + 1, -(2 ** 23) + 2049]),  # wrapped, then decayed
        (4096, [5, 7, 0], [5, 7, 0]),  # du = 4095: the current of one step
    ]
    for i_decay, a, want in cases:
        a64 = torch.tensor(a, dtype=torch.int64).reshape(-1, 1, 1)
        plain, acted = integer_current(i_decay, a64)
        fast, acted_f = integer_current(i_decay, a64.to(torch.float64), fast=True)
        assert plain.reshape(-1).tolist() == want, (i_decay, a)
        assert fast.reshape(-1).tolist() == want
        assert torch.equal(acted, acted_f) and int(acted.sum()) == (i_decay == 1)


@pytest.fixture(scope="module")
def cuba_fixed(mnist):
    from snnexport.backends import fixed_point
    from snnexport.data import load_dataset

    calib = load_dataset("mnist5k").x_train[:200]
    out = {}
    for key, make, frm in (("snntorch", zero_reset_synaptic_net, from_snntorch),
                           ("norse", norse_default_net, from_norse)):
        loaded = frm(make(), (1, 28, 28), T)
        folded = fold(loaded.graph)
        out[key] = (loaded, folded, fixed_point(folded, calib)[0])
    return out


@pytest.mark.parametrize("key", ["snntorch", "norse"])
def test_fixed_point_keeps_the_current(cuba_fixed, mnist, key):
    """Every current-based layer becomes a FixedLayer with i_decay = round(4096 (1 -
    current_decay)); the fast emulator equals the plain one bit for bit (stats included), and
    its spikes stay within 1 % of the float IR's per layer on 200 digits."""
    from test_integer_kernels import both

    x = mnist[0]
    _, folded, net = cuba_fixed[key]
    for layer in net.layers:
        node = folded.nodes[layer.name]
        want = np.rint(4096 * (1 - np.broadcast_to(node.current_decay, node.shape)))
        assert np.array_equal(layer.i_decay, want.astype(np.int64)), layer.name
    fast, stats = both(net, x)
    assert sum(stats.u_wrapped.values()) == 0 and sum(stats.v_clipped.values()) == 0
    ref = simulate(folded, x, dtype=torch.float64)
    for name, s in ref.spikes.items():
        assert s.sum() > 0
        assert float((fast.spikes[name] != s).double().mean()) < 0.01, name


def trained_synaptic():
    from data.make_digits_synaptic import build

    from snnexport.check import from_snntorch

    net = build()
    state = torch.load(Path(__file__).parent / "data" / "digits_synaptic.pt")
    net.load_state_dict(state, strict=False)
    return from_snntorch(net.eval(), (1, 8, 8), 8)


def test_trained_synaptic_net_in_fixed_point_within_1pp_of_float():
    """A trained snnTorch Synaptic net (tests/data/make_digits_synaptic.py) on the 450 digits
    test images: the fixed-point emulator's accuracy within 1 percentage point of the float
    model's (snnTorch's own forward), with calibration on training images."""
    report = check(trained_synaptic(), target="fixed", data="digits", samples=450)
    acc = report.to_dict()["accuracy"]
    acc_ref, acc_fixed = acc["reference"], acc["target"]
    assert acc_ref > 0.9, report.text()
    assert acc_fixed >= acc_ref - 0.01, report.text()


@pytest.mark.parametrize("key", ["snntorch", "norse"])
def test_integer_onnx_equals_the_emulator_on_cuba(cuba_fixed, mnist, key):
    """The integer ONNX model keeps the current as the emulator does: every spike and every
    integer membrane equal, 100 digits."""
    x, y = mnist
    loaded, _, _ = cuba_fixed[key]
    report = check(loaded, target="onnx-fixed", inputs=(x, y), samples=100)
    assert report.exact, report.text()
    assert all(layer.spikes_reference > 0 for layer in report.layers)


def test_wrapped_and_clipped_currents_agree_in_emulator_and_integer_onnx(cuba_fixed, mnist):
    """A current that never decays (i_decay 1) behind full-scale weights: it wraps at 24 bits
    and the membrane clips; the plain and fast emulators and the integer ONNX model agree on
    every spike and membrane, and say where it happened."""
    import copy

    from snnexport.exporters.onnx_fixed import ONNXFixedTarget
    from snnexport.quant.emulator import EmulatorStats, emulate

    net = copy.deepcopy(cuba_fixed["norse"][2])
    layer = net.layers[1]
    layer.i_decay = np.ones_like(layer.i_decay)
    layer.weight = np.full_like(layer.weight, 254)
    x = mnist[0][:40]
    fast_stats, plain_stats = EmulatorStats(), EmulatorStats()
    fast = emulate(net, x, fast_stats)
    plain = emulate(net, x, plain_stats, reference=True)
    onnx_run = ONNXFixedTarget(net)(x)
    assert fast_stats.u_wrapped[layer.name] > 0 and fast_stats.v_clipped[layer.name] > 0
    assert fast_stats.u_wrapped == plain_stats.u_wrapped
    assert fast_stats.v_clipped == plain_stats.v_clipped
    for other in (plain, onnx_run):
        for k in fast.spikes:
            assert torch.equal(fast.spikes[k], other.spikes[k]), k
            assert torch.equal(fast.membrane[k], other.membrane[k]), k


def test_energy_counts_a_current_based_neuron_while_its_current_lasts():
    """One input event at step 0 into a current that halves each step: J is nonzero at all
    T steps (0.5^t of it), so every update of that neuron is active; without a current only
    the first is."""
    from snnexport.energy.counts import count_operations
    from snnexport.ir.graph import Graph

    def graph(current_decay):
        return Graph.chain([
            ("input", ir.Input((2,))), ("fc", ir.Dense(np.array([[1.0, 0.0], [0.0, 0.0]]))),
            ("n", ir.Neuron((2,), np.asarray(0.9), threshold=100.0,
                            current_decay=current_decay)),
            ("readout", ir.Readout(2, "rate"))], {"time_steps": 5, "folded": True})

    x = torch.zeros(1, 5, 2)
    x[0, 0, 0] = 1.0  # frames [N, T, 2]: one event, neuron 0, step 0
    cuba = {r.name: r for r in count_operations(graph(0.5), x)}["n"]
    plain = {r.name: r for r in count_operations(graph(None), x)}["n"]
    assert (cuba.updates, cuba.active_updates) == (10.0, 5.0)
    assert (plain.updates, plain.active_updates) == (10.0, 1.0)


# --- Lava (the real simulator, Python 3.10 environment) ----------------------------------------

def lava_synaptic_net():
    """A Synaptic net Lava's LIF takes exactly: the hop synapse without a bias (a bias is part
    of the decaying current, which Lava's LIF cannot take: it adds its bias to v); the host
    layer's bias is fine (its current is computed on the host)."""
    torch.manual_seed(2)
    lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 40), snn.Synaptic(alpha=0.6, beta=0.85, **lif),
                        nn.Linear(40, 10, bias=False),
                        snn.Synaptic(alpha=torch.rand(10), beta=0.7, **lif))
    return seeded(net, gain=(3.0, 3.0))


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed", "netx"])
def test_lava_runs_the_current(target):
    """lava-float: every spike equal to snnTorch's forward (float64); lava-fixed (Lava's
    fixed_pt LIF with du = i_decay - 1) and netx (lava-dl's Network from the written file,
    iDecay = i_decay): every spike equal to the emulator, 12 digits."""
    report = check(from_snntorch(lava_synaptic_net(), (1, 8, 8), 8), target=target,
                   data="digits", samples=12, reference_dtype=torch.float64)
    assert report.samples == 12
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()


def test_lava_refuses_a_current_based_layer_with_a_bias():
    from snnexport.hw.cores import HardwareLoweringError
    from snnexport.lava.lowering import lower

    graph = fold(trained_synaptic().graph)  # its second Linear has a bias
    with pytest.raises(HardwareLoweringError, match=r"^layer '4': a current-based layer whose "
                                                    r"synapse has a bias is not lowered to Lava"):
        lower(graph)


def test_snntorch_imports_our_nir_cubalif(tmp_path):
    """snnexport's NIR CubaLIF read by snnTorch's import_from_nir (Synaptic, zero reset at
    once, dt 1e-4), run one sample at a time as its importer needs: the spikes of our
    reference, 200 digits."""
    import nir
    from snntorch.import_nir import import_from_nir

    from snnexport.exporters.nir_export import write_nir
    from snnexport.parity import ParityReport, compare
    from snnexport.sim.reference import SimResult

    x, y = mnist_200()
    loaded = from_snntorch(zero_reset_synaptic_net(), (1, 28, 28), T)
    path = write_nir(fold(loaded.graph, fold_gain=False), tmp_path / "s.nir")
    assert [type(n).__name__ for n in nir.read(path).nodes.values()].count("CubaLIF") == 2
    theirs = import_from_nir(nir.read(path))
    rec: dict[str, list] = {"1": [], "4": []}
    for key in rec:
        getattr(theirs, key).register_forward_hook(
            lambda _m, _i, out, key=key: rec[key].append(out.detach().reshape(-1)))
    with torch.no_grad():
        for b in range(len(y)):
            snn.utils.reset(theirs)
            for _ in range(T):
                theirs(x[b:b + 1], None)
    spikes = {k: torch.stack(v).reshape(len(y), T, -1).transpose(0, 1) for k, v in rec.items()}
    mine = simulate(fold(loaded.graph), x, T, record_membrane=True)
    mine.spikes = {k: v.flatten(2) for k, v in mine.spikes.items()}
    mine.membrane = {k: v.flatten(2) for k, v in mine.membrane.items()}
    out = spikes["4"]
    report = ParityReport("snnTorch import_from_nir")
    compare(report, mine, SimResult(out, out.mean(0), spikes), y,
            {k: loaded.graph.nodes[k].threshold for k in rec}, 1e-5)
    assert all(layer.spikes_reference > 0 for layer in report.layers)
    assert report.unexplained == 0, report.text()


def mnist_200():
    from snnexport.data import load_dataset

    ds = load_dataset("mnist5k")
    return ds.x_test[:SAMPLES], ds.y_test[:SAMPLES]


def test_inspect_states_the_current():
    """alpha 0.5: the current keeps half of itself per step, tau_syn = 1 / (1 - 0.5) = 2."""
    from snnexport.inspect_ir import describe

    text = describe(trained_synaptic().graph)
    assert text.count("current tau_syn 2,") == 2, text
    assert "current" not in describe(import_snntorch(nn.Sequential(
        nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True)), (4,), T))
