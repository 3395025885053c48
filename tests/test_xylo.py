"""The Xylo targets: snnexport's Xylo emulator against SynSense's xylosim (the C++ simulator of
the core, run without hardware or samna) bit for bit, the plain emulator against the fast one,
the bundled Xylo model's accuracy float vs Xylo, and the models Xylo cannot take.

xylosim is the independent reference: its XyloLayer / XyloIAFNeuron are SynSense's code, built
from its sdist; the emulators are snnexport's transcription of the rule. Every record is
compared, every step: spike counts, v and i_syn of every hidden and output neuron."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from snnexport import backends
from snnexport.backends.xylo.emulator import as_counts, at_bounds, run_plain, run_raw
from snnexport.backends.xylo.net import V_MAX, V_MIN, XyloLayer, XyloNet
from snnexport.backends.xylo.quantise import decay_cost
from snnexport.backends.xylo.xylosim_run import XylosimNet
from snnexport.check import check, load_source
from snnexport.data import load_dataset

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "xylo" / "digits_rows_xylo.pt"
BIT_EXACT_SAMPLES = 250


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The emulator's tensors are small (a batch x a few hundred neurons): one thread each,
    not two fighting on a shared machine's cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bundled():
    """The bundled Xylo model, lowered once, quantised for Xylo Audio 3 on the first 200
    training samples (what check calibrates on)."""
    loaded = load_source(str(MODEL))
    lowered = backends.Lowered(loaded.graph)
    ds = load_dataset("digits-rows")
    net, _ = lowered.fixed(ds.x_train[:200], None, backends.get("xylo-audio3").chain)
    return loaded, lowered, ds, net


def _random_net(rng, n_in=16, nh=40, no=8, recurrent=True) -> XyloNet:
    def w(*shape):  # int8, half the synapses absent
        return rng.integers(-128, 128, shape) * (rng.random(shape) < 0.5)

    return XyloNet(w(n_in, nh), w(nh, nh) if recurrent else np.zeros((nh, nh), np.int64),
                   w(nh, no), *(int(s) for s in rng.integers(0, 8, 3)),
                   rng.integers(0, 16, nh), rng.integers(1, 16, nh), rng.integers(1, 3000, nh),
                   rng.integers(-2000, 2000, nh), rng.integers(0, 16, no),
                   rng.integers(1, 16, no), rng.integers(1, 3000, no),
                   rng.integers(-2000, 2000, no)).validate()


def test_emulator_equals_xylosim_bit_for_bit_on_the_bundled_model(bundled):
    _, _, ds, net = bundled
    x = as_counts(net, ds.x_test[:BIT_EXACT_SAMPLES].transpose(0, 1))
    ours, theirs = run_raw(net, x), XylosimNet(net).run(x)
    diff = ours.differences(theirs)
    values = sum(getattr(ours, k).numel() for k in ours.FIELDS)
    print(f"\nxylosim vs snnexport's Xylo emulator, {BIT_EXACT_SAMPLES} digits-rows test "
          f"samples x {x.shape[0]} steps: {values:,} values (spikes, v, i_syn of "
          f"{net.n_hidden} hidden + {net.n_out} output neurons), differing: {diff}")
    assert diff == dict.fromkeys(ours.FIELDS, 0)
    assert int(ours.spikes.sum()) > 0 and int(ours.spikes_out.sum()) > 0  # not a silent net
    assert int(ours.spikes.max()) > 1  # hidden neurons fire several spikes in a step


def test_plain_emulator_equals_the_fast_one_on_the_bundled_model(bundled):
    _, _, ds, net = bundled
    x = as_counts(net, ds.x_test[:3].transpose(0, 1))
    assert run_plain(net, x).differences(run_raw(net, x)) == dict.fromkeys(
        ("spikes", "v", "i_syn", "spikes_out", "v_out", "i_syn_out"), 0)


@pytest.mark.parametrize("recurrent", [True, False], ids=["recurrent", "feed-forward"])
def test_random_nets_bit_for_bit_with_saturation(recurrent):
    """Random int8 nets with every shift, decay and threshold range, driven hard enough that
    the 16-bit state saturates (and v reaches -2^15 at dash_mem 0, where the C++'s int16 leak
    wraps): emulator == plain == xylosim."""
    rng = np.random.default_rng(1 if recurrent else 2)
    saturated = 0
    for _ in range(5):
        net = _random_net(rng, nh=24, recurrent=recurrent)
        x = rng.integers(0, 18, (12, 3, 16)) * (rng.random((12, 3, 16)) < 0.3)
        fast = run_raw(net, torch.as_tensor(x))
        assert fast.differences(XylosimNet(net).run(x)) == dict.fromkeys(fast.FIELDS, 0)
        assert fast.differences(run_plain(net, x)) == dict.fromkeys(fast.FIELDS, 0)
        saturated += int(((fast.v == V_MIN) | (fast.v == V_MAX)).sum()
                         + ((fast.i_syn == V_MIN) | (fast.i_syn == V_MAX)).sum())
    assert saturated > 0  # the saturating paths ran


def test_check_against_xylosim_is_exact_and_reports_the_quantisation(bundled):
    loaded, lowered, _, _ = bundled
    report = check(loaded, "xylo-audio3", "digits-rows", samples=200, lowered=lowered)
    assert report.exact and report.unexplained == 0 and report.samples == 200
    rows = {r["layer"]: r for r in report.quantisation}
    assert list(rows) == ["layers.sn_fc1", "layers.sn_fc2", "layers.sn_out"]
    assert [r["matrix"] for r in rows.values()] == ["input", "recurrent", "output"]
    assert all("decay moved at most" in r["text"] for r in rows.values())
    # the preset trains the neuron Xylo runs (current decay 1/2, tau a power of two): the
    # current is the model's, at dash_syn 1, and no decay moves
    assert all(r["dash_syn"] == [1] and r["synapse"] == "the model's current, as dash_syn"
               and r["decay_max_change"] == 0 for r in rows.values())
    assert "xylo layers.sn_fc1" in report.text()


def test_float_vs_xylo_accuracy_is_stated(bundled):
    """The float model in snnexport's simulator scores what training measured in torch (an
    independent run); the decays alone and the whole quantisation cost what README says."""
    loaded, lowered, ds, net = bundled
    acc = decay_cost(lowered.folded, net, ds.x_test, ds.y_test)
    print(f"\ndigits-rows test split ({acc['samples']}): float {100 * acc['float']:.2f} %, "
          f"float with Xylo's decays {100 * acc['float_xylo_decays']:.2f} %, Xylo "
          f"(emulator = xylosim) {100 * acc['xylo']:.2f} %")
    assert acc["float"] == pytest.approx(loaded.meta["test_accuracy"], abs=1e-9)
    readme = (ROOT / "examples" / "models" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "digits_rows_xylo.pt" in line)
    for key in ("float", "float_xylo_decays", "xylo"):
        assert f"{100 * acc[key]:.2f} %" in row, key
    assert acc["xylo"] > 0.5  # far above chance (10 %), below the float model: stated


def test_models_xylo_cannot_take_are_refused_in_one_line(bundled, tmp_path):
    from snnexport.backends.base import TargetRefusal
    from snnexport.importers.plifnet import import_plifnet
    from snnexport.models import build_network
    from snnexport.passes.fold import fold

    loaded, lowered, ds, _ = bundled
    calib = ds.x_train[:20]
    with pytest.raises(TargetRefusal, match=r"outputs: needs 10, the chip holds 8"):
        backends.get("xylo-audio2").chain.lower(lowered.folded, calib, None)
    wide = build_network(dict(in_channels=1, input_size=8, n_down=0, fc_hidden=[32],
                              population=1, time_steps=8, v_reset=None))
    with pytest.raises(TargetRefusal, match=r"inputs: needs 64, the chip holds 16"):
        backends.get("xylo-imu").chain.lower(fold(import_plifnet(wide)), calib, None)
    conv = ROOT / "examples" / "models" / "digits_plif_layer.pt"
    out = subprocess.run([sys.executable, "-m", "snnexport.cli", "check", str(conv),
                          "--target", "xylo-imu", "--samples", "20"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and re.match(
        r"xylo-imu cannot take this model: layers.conv1 is a Conv2d; .*\(xylo-imu\)$", lines[0])


def test_the_exported_net_file_runs_as_the_net(bundled, tmp_path):
    """export's artifact read back (what deploy checks) is the same net: every array, and the
    same spikes in xylosim as the emulator's."""
    from snnexport.backends.xylo.emulator import emulate
    from snnexport.backends.xylo.net import load_xylo, save_xylo

    _, _, ds, net = bundled
    back = load_xylo(save_xylo(net, tmp_path / "net.npz"))
    for k in ("w_in", "w_rec", "w_out", "dash_mem", "dash_syn", "threshold", "bias",
              "dash_mem_out", "dash_syn_out", "threshold_out", "bias_out"):
        assert np.array_equal(getattr(back, k), getattr(net, k)), k
    assert (back.shift_in, back.shift_rec, back.shift_out) == (
        net.shift_in, net.shift_rec, net.shift_out)
    xb = ds.x_test[:20].transpose(0, 1)
    ran = backends.get("xylo-imu").run_file(tmp_path / "net.npz", None, torch.int64, None)(xb)
    ref = emulate(net, xb)
    assert all(torch.equal(ran.spikes[k], ref.spikes[k]) for k in ref.spikes)
    with pytest.raises(ValueError, match="not a Xylo net file"):
        load_xylo(ROOT / "examples" / "models" / "xylo" / "digits_rows_xylo.pt")


def test_the_int16_leak_wraps_at_the_bottom_of_the_range():
    """xylosim keeps the leak -d(v, dash_mem) in an int16: at v = -2^15 with dash_mem 0 it is
    -(-2^15) = 2^15, stored as -2^15. One hidden neuron driven to -2^15 (15 spikes of weight
    -128 << 7, bias -20000) then stays there every step, though with the leak taken as +2^15
    its v would be i + bias, rising to -20000 as i decays: xylosim and both emulators agree on
    the wrap."""
    def one(*v):
        return np.array(v, np.int64)

    net = XyloNet(one([-128]), one([0]).reshape(1, 1), one([0]).reshape(1, 1), 7, 0, 0,
                  one(0), one(1), one(100), one(-20000), one(1), one(1), one(100),
                  one(0)).validate()
    x = np.zeros((8, 1, 1), np.int64)
    x[0] = 15
    for rec in (XylosimNet(net).run(x), run_raw(net, torch.as_tensor(x)), run_plain(net, x)):
        assert rec.v[:, 0, 0].tolist() == [V_MIN] * 8
        assert rec.i_syn[:, 0, 0].tolist() == [-16384, -8192, -4096, -2048, -1024, -512,
                                               -256, -128]
    # what the shift search counts as saturated: v at -2^15 every step; i_syn only in step 0,
    # where it hit -2^15 before halving (-16384 = -2^15 - (-2^15 >> 1) is the bound decayed)
    at_v, at_i = at_bounds(rec, net, XyloLayer("h", 0, 1, False, 0, 1.0))
    assert at_v[:, 0, 0].tolist() == [True] * 8
    assert at_i[:, 0, 0].tolist() == [True] + [False] * 7


def test_the_bundled_models_current_and_power_of_two_tau_run_as_the_ir(bundled):
    """The training neuron with a current (Norse's order) and tau held at powers of two, in
    torch, against the imported IR in snnexport's float64 simulator: every hidden and output
    spike of 100 test samples equal (float32 vs float64: ties aside, which these inputs, whole
    counts times float32 weights, do not meet), every k a power of two, the current 1/2."""
    from snnexport.importers.plifnet import run_torch_reference
    from snnexport.sim.reference import simulate

    loaded, lowered, ds, _ = bundled
    model = loaded.torch_model
    xb = ds.x_test[:100].transpose(0, 1)
    ours = run_torch_reference(model, xb, torch.float64)
    ir = simulate(loaded.graph, xb, dtype=torch.float64)
    for name in ("layers.sn_fc1", "layers.sn_fc2", "layers.sn_out"):
        assert torch.equal(ours.spikes[name], ir.spikes[name]), name
        node = loaded.graph.nodes[name]
        k = np.asarray(node.k, np.float64)
        assert np.array_equal(k, 2.0 ** np.rint(np.log2(k))) and k.max() <= 1, name
        assert float(node.k_syn) == 0.5 and node.decay_input is False, name
    assert int(ours.spikes["layers.sn_fc1"].sum()) > 0
