"""The fixed-point IR and its emulator, in the core: Lava's integer rules on hand-worked numbers,
quantised accuracy of the bundled digits models, saturation reports, decay grouping, files and
errors. (Bit-exactness against Lava itself is in test_lava.py.)"""

import json

import numpy as np
import pytest
import torch
from test_fold import random_net

from snnexport.backends import fixed_point
from snnexport.check import LoadedModel, check, load_model
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.exporters.netx_export import NetxExportError, write_netx
from snnexport.importers.plifnet import import_plifnet
from snnexport.passes.fold import fold
from snnexport.passes.group_decays import group_decays
from snnexport.quant import EmulatorStats, QuantError, emulate, load_fixed, quantize, save_fixed
from snnexport.quant.emulator import neuron_loop
from snnexport.quant.fixed import FixedLayer
from snnexport.sim.reference import simulate

MODELS = "examples/models"


def one_neuron(dv, vth, v0, spiking=True):
    return FixedLayer("n", "dense", (1,), np.zeros((1, 1), np.int64), np.array([dv]), vth,
                      np.array([v0]), 1.0, spiking)


def test_lava_integer_rules_on_hand_worked_numbers():
    # decay truncates toward zero: -1001 * 2048 / 4096 = -500.5 -> -500 (floor would give -501)
    h, s = neuron_loop(one_neuron(2048, 100, -1001), torch.zeros(1, 1, 1, dtype=torch.int64),
                       torch.zeros((), dtype=torch.int64))
    assert int(h[0, 0, 0]) == -500 and not s.any()
    # strict '>': v == vth << 6 does not fire, one more does; the spike resets to 0
    u = torch.tensor([[[640]], [[641]], [[0]]], dtype=torch.int64)
    h, s = neuron_loop(one_neuron(4095, 10, 0), u, torch.zeros((), dtype=torch.int64))
    assert h.flatten().tolist() == [640, 641, 0] and s.flatten().tolist() == [False, True, False]
    # the membrane saturates at 2^23 - 1 (and is counted)
    stats = EmulatorStats()
    h, _ = neuron_loop(one_neuron(0, 131071, 8_000_000), torch.full((1, 1, 1), 500_000),
                       torch.zeros((), dtype=torch.int64), stats)
    assert int(h[0, 0, 0]) == 2 ** 23 - 1 and stats.v_clipped["n"] == 1


def test_current_wraps_in_24_bits_like_lava():
    # a synaptic sum of 2^17 + 1: u = (2^17 + 1) << 6 = 2^23 + 64 > 2^23 wraps to -2^23 + 64
    layer = FixedLayer("n", "dense", (1,), np.array([[2 ** 17 + 1]]), np.array([4095]), 131071,
                       np.array([0]), 1.0)
    host = FixedLayer("h", "host", (1,), np.zeros((1, 1)), np.array([4095]), 0, np.array([0]),
                      64.0, host_kind="dense", bias=np.array([1.0]))
    from snnexport.quant.fixed import FixedNet

    net = FixedNet([host, layer], (1,), 1, "membrane", 1)
    stats = EmulatorStats()
    res = emulate(net, torch.zeros(1, 1), stats, ir_units=False)
    assert int(res.membrane["n"][0, 0, 0]) == -2 ** 23 + 64
    assert stats.u_wrapped["n"] == 1


@pytest.mark.parametrize("model", ["digits_plif_layer", "digits_plif_neuron",
                                   "digits_plif_imp_lts"])
def test_quantised_accuracy_on_the_digits_test_set(model):
    loaded = load_model(f"{MODELS}/{model}.pt")
    ds = load_dataset("digits")
    folded = fold(loaded.graph)
    net, _ = fixed_point(folded, ds.x_train[:200])
    stats = EmulatorStats()
    fixed = emulate(net, ds.x_test, stats)
    acc_fixed = float((fixed.scores.argmax(1) == ds.y_test).double().mean())
    acc_float = float((simulate(folded, ds.x_test).scores.argmax(1) == ds.y_test).double()
                      .mean())
    # the bar: no more than 0.5 percentage points lost on the 450 test images
    assert acc_fixed >= acc_float - 0.005, (acc_fixed, acc_float)
    assert sum(stats.v_clipped.values()) == 0 and sum(stats.u_wrapped.values()) == 0
    assert all(row["weight_bits"] == 8 for row in net.report if row["kind"] != "host")


@pytest.mark.parametrize("model", ["digits_plif_layer", "digits_plif_neuron",
                                   "digits_plif_imp_lts"])
def test_integer_onnx_equals_the_emulator_bit_for_bit(model):
    """The fixed-point ONNX artifact in onnxruntime (a third implementation of Lava's integer
    rules) against the emulator: every spike and every integer membrane, 450 test images."""
    report = check(load_model(f"{MODELS}/{model}.pt"), "onnx-fixed", samples=450)
    assert report.exact, report.text()
    assert all(layer.spikes_reference > 0 for layer in report.layers)


def test_integer_onnx_artifact_file(tmp_path):
    out = tmp_path / "m.fixed.onnx"
    assert main(["export", f"{MODELS}/digits_plif_imp_lts.pt", "--to", "onnx-fixed", "-o",
                 str(out)]) == 0
    import onnx

    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    # convs as im2col (Gather) + MatMulInteger, OR-pools as MaxPool (test_integer_kernels.py)
    assert {"Gather", "MatMulInteger", "MaxPool"} <= ops and "Conv" not in ops and "Scan" not in ops


def test_saturation_is_reported_when_calibration_was_too_gentle():
    model = random_net(channels=4)
    g = fold(import_plifnet(model))
    x = load_dataset("digits").x_test[:20]
    net = quantize(g, x * 0.05)  # calibrated on faint images: the host scale is too large
    stats = EmulatorStats()
    tgt = emulate(net, x, stats)
    assert stats.bias_clipped["layers.sn1"] > 0
    assert int(stats.saturated["layers.sn1"].sum()) == stats.bias_clipped["layers.sn1"]
    # a divergence at a neuron whose state saturated is called an overflow, not rounding
    from snnexport.check import thresholds_of
    from snnexport.parity import ParityReport, compare

    ref = simulate(g, x.double(), record_membrane=True)
    y = torch.zeros(20, dtype=torch.long)
    for saturated, cause in ((stats.saturated, "overflow"), (None, "quantisation")):
        report = ParityReport("fixed", mismatch_cause="quantisation")
        compare(report, ref, tgt, y, thresholds_of(g), 1e-12, saturated=saturated)
        fd = report.first_divergence
        assert fd["layer"] == "layers.sn1" and fd["cause"].startswith(cause), fd
    t, s, j = fd["time_step"], fd["sample"], fd["neuron"]
    assert stats.saturated["layers.sn1"][:t + 1, s, j].any()
    # check() carries the counts into the parity report (here calibrated on the inputs: none)
    report = check(LoadedModel("<t>", import_plifnet(model), model), "fixed",
                   inputs=(x, torch.zeros(20, dtype=torch.long)), samples=20)
    assert [row["bias_clipped"] for row in report.quantisation] == [0, 0, 0, 0]


def test_fixed_ir_file_round_trip_and_bad_files(tmp_path):
    g = fold(import_plifnet(random_net(channels=4, tau_per="neuron", imp=True)))
    x = load_dataset("digits").x_test[:30]
    net = quantize(g, x)
    back = load_fixed(save_fixed(net, tmp_path / "m.fixed.npz"))
    a, b = emulate(net, x), emulate(back, x)
    assert all(torch.equal(a.spikes[k], b.spikes[k]) for k in a.spikes)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(QuantError, match="bad.npz: not a snnexport fixed-point IR"):
        load_fixed(tmp_path / "bad.npz")


def test_what_the_fixed_point_path_cannot_take_is_named():
    g = fold(import_plifnet(random_net(channels=4, v_reset=None)))
    with pytest.raises(QuantError, match="soft reset is not supported"):
        quantize(g, load_dataset("digits").x_test[:10])


def test_netx_refuses_a_dense_layer_it_would_shift(tmp_path):
    g = fold(import_plifnet(random_net(channels=4)))
    net = quantize(g, load_dataset("digits").x_test[:10])
    dense = [lay for lay in net.layers if lay.kind == "dense" and not lay.pool][0]
    dense.weight = dense.weight // 4  # max |w| < 128: netx would pick exponent -1 or less
    with pytest.raises(NetxExportError, match=dense.name):
        write_netx(net, tmp_path / "m.net")
    assert not (tmp_path / "m.net").exists()  # nothing half-written


def test_decay_grouping_bounds_the_decay_values_and_reports_the_cost():
    loaded = load_model(f"{MODELS}/digits_plif_neuron.pt")
    folded = fold(loaded.graph)
    grouped, rows = group_decays(folded, 4)
    for row in rows:
        assert row["after"] <= 4 and row["before"] > 4
    ds = load_dataset("digits")
    net, _ = fixed_point(folded, ds.x_train[:200], decays=4)
    assert all(row["decays"] <= 4 for row in net.report)
    report = check(loaded, "fixed", samples=450, decays=4)
    # the cost is reported, not hidden: the JSON states the accuracy of both and, per layer,
    # how many decays were grouped into how few
    d = report.to_dict()
    assert d["accuracy"]["target"] > 0.9
    assert [(q["layer"], q["decays_before_grouping"], q["decays"]) for q in d["quantisation"]] \
        == [(r["layer"], r["before"], r["after"]) for r in rows]
    assert f"grouped from {rows[0]['before']}" in report.text()


def test_cli_export_netx_and_check_fixed(tmp_path, capsys):
    out = tmp_path / "m.net"
    assert main(["export", f"{MODELS}/digits_plif_layer.pt", "--to", "netx", "-o",
                 str(out)]) == 0
    import h5py

    with h5py.File(out) as f:
        types = [f["layer"][k]["type"][()].decode() for k in sorted(f["layer"], key=int)]
    assert types == ["input", "conv", "conv", "conv", "flatten", "dense", "dense"]
    js = tmp_path / "p.json"
    assert main(["check", f"{MODELS}/digits_plif_layer.pt", "--target", "fixed", "--samples",
                 "100", "--json", str(js)]) == 0
    d = json.loads(js.read_text())
    assert d["mismatch_cause"] == "quantisation" and len(d["quantisation"]) == 4
    assert "fixed point layers.sn2" in capsys.readouterr().out
