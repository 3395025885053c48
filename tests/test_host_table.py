"""The integer deployment graph's host-layer lookup (exporters/onnx_fixed.py `host_table`,
issue 15): a static image drives every host neuron with the same 13-bit mantissa at each step,
so its spike train is a table row. Checked against a scalar transcription of Lava's rules
written here (not the emulator's code), and the deployment graph (static input: the table;
frames: the loop branch of the If) against the emulator on real MNIST-5k digits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from snnexport.backends import fixed_point
from snnexport.check import load_model
from snnexport.data import load_dataset
from snnexport.exporters.onnx_common import session
from snnexport.exporters.onnx_fixed import (
    TABLE_BYTES,
    host_table,
    packed_trains,
    to_onnx_fixed,
)
from snnexport.passes.fold import fold
from snnexport.quant import emulate
from snnexport.quant.emulator import host_bias_mant
from snnexport.quant.fixed import BIAS_MANT_MAX, STATE_MAX, FixedLayer, FixedNet


def lava_train(m: int, dv: int, v_init: int, bias_mant: int, vth_mant: int, t: int) -> list:
    """One CUBA neuron with du = 4096 (no current memory) and a constant bias, step by step as
    Lava's PyLifModelBitAcc writes it: v = trunc(v (4096 - dv) / 4096) + (m + bias) << 6,
    clipped to 24 bits; spike where v > vth << 6, then v = 0."""
    v, out = v_init, []
    for _ in range(t):
        p = v * (4096 - dv)
        v = (abs(p) >> 12) * (1 if p >= 0 else -1) + ((m + bias_mant) << 6)
        v = max(-STATE_MAX, min(STATE_MAX, v))
        out.append(int(v > vth_mant << 6))
        if out[-1]:
            v = 0
    return out


def _host(shape, dv, v_init, vth=300, bias_mant=None):
    c = shape[0]
    return FixedLayer("h", "host", shape, np.ones((c, 1, 3, 3)) * 0.1, np.broadcast_to(
        np.asarray(dv), shape).copy(), vth, np.broadcast_to(np.asarray(v_init), shape).copy(),
        64.0, host_kind="conv", padding=(1, 1), bias=np.zeros(c), bias_mant=bias_mant)


def test_table_rows_are_lava_spike_trains():
    """Three groups (per-channel dv, one channel with an initial potential, a bias mantissa):
    every row of the table, at mantissas across the 13-bit range, equals the scalar rule."""
    dv = np.array([0, 1000, 4095]).reshape(3, 1, 1)
    v_init = np.array([0, 0, 5000]).reshape(3, 1, 1)
    bias = np.full((3, 8, 8), 7, np.int64)
    layer = _host((3, 8, 8), dv, v_init, bias_mant=bias)
    table, offset = host_table(layer, 6)
    assert table.shape == (3 * 2 * (BIAS_MANT_MAX + 1), 6) and table.dtype == np.uint8
    for m in (-4096, -5, 0, 4, 5, 6, 40, 333, 4095):
        for c in range(3):
            row = table[offset[c, 0, 0] + m]
            assert list(row) == lava_train(m, int(dv[c, 0, 0]), int(v_init[c, 0, 0]), 7, 300,
                                           6), (m, c)
    assert table.any() and not table.all()  # mantissas below threshold and above it


@pytest.mark.parametrize("t_steps,dtype,n_words", [(6, np.uint8, 1), (8, np.uint8, 1),
                                                   (20, np.uint32, 1), (64, np.uint64, 1),
                                                   (70, np.uint64, 2)])
def test_packed_trains_hold_every_step_as_a_bit(t_steps, dtype, n_words):
    """Bit j of word w is the spike at step 64 w + j (8 or 32 steps a word where T fits)."""
    table = np.random.default_rng(t_steps).integers(0, 2, (50, t_steps)).astype(np.uint8)
    words = packed_trains(table)
    assert len(words) == n_words and all(w.dtype == dtype for w in words)
    width = np.dtype(dtype).itemsize * 8
    for t in range(t_steps):
        word = words[t // width]
        assert np.array_equal((word >> dtype(t % width)) & dtype(1), table[:, t]), t


def test_table_refused_beyond_its_size_or_per_neuron():
    """Per-channel initial potentials on 8x8 maps: a table up to TABLE_BYTES, none beyond;
    per-neuron ones (IMP: a group per neuron) keep the loop whatever the size."""
    e = 2 * (BIAS_MANT_MAX + 1)
    fits = TABLE_BYTES // (e * 8)
    for channels, expected in ((fits, True), (fits + 1, False)):
        v_init = np.arange(channels).reshape(channels, 1, 1)
        assert (host_table(_host((channels, 8, 8), 0, v_init), 8) is not None) == expected
    per_neuron = np.arange(2 * 8 * 8).reshape(2, 8, 8)
    assert host_table(_host((2, 8, 8), 0, per_neuron), 8) is None


def _deployment_equals_emulator(net, x, frames):
    """The deployment graph's outputs against the emulator's voted outputs, static and frames."""
    model = to_onnx_fixed(net, debug=False)
    sess = session(model)
    static = emulate(net, x, ir_units=False)
    mant, _ = host_bias_mant(net.layers[0], x.unsqueeze(0), net.input_shape)
    out = sess.run(None, {"bias0": mant.to(torch.int16).numpy()})[0]
    assert np.array_equal(out, static.outputs.numpy().astype(np.float32))
    moving = emulate(net, frames, ir_units=False)
    mant_f, _ = host_bias_mant(net.layers[0], frames, net.input_shape)
    out_f = sess.run(None, {"bias0": mant_f.to(torch.int16).numpy()})[0]
    assert np.array_equal(out_f, moving.outputs.numpy().astype(np.float32))
    return model, static


def test_bundled_model_deployment_graph_looks_up_its_host_spikes():
    """The bundled MNIST-5k model (per-layer tau, no IMP: one group) on 48 test digits: the
    deployment graph holds the If with the table; its outputs equal the emulator's for static
    images (the table) and for frames whose brightness changes per step (the loop branch)."""
    loaded = load_model("examples/models/mnist5k_plif.pt")
    ds = load_dataset("mnist5k")
    net, _ = fixed_point(fold(loaded.graph), ds.x_train[:200])
    x = ds.x_test[:48]
    frames = torch.stack([x * (0.4 + 0.15 * t) for t in range(net.time_steps)])
    model, static = _deployment_equals_emulator(net, x, frames)
    (switch,) = [n for n in model.graph.node if n.op_type == "If"
                 and n.output[0].startswith("host_spikes")]
    then = next(a.g for a in switch.attribute if a.name == "then_branch")
    ops = [n.op_type for n in then.node]  # row 0; the four corners' packed trains, OR-ed
    assert ops.count("Gather") == 1 and ops.count("GatherElements") == 4 and ops.count(
        "BitwiseOr") == 3
    assert static.spikes[net.layers[0].name].sum() > 0


@pytest.mark.parametrize("imp,t_steps", [(False, 5), (True, 5), (False, 40), (False, 70)])
def test_dense_host_with_and_without_table(imp, t_steps):
    """A dense host layer (no pool) into a dense readout: with one group the table is used,
    with per-neuron initial potentials (IMP) the loop; both equal the emulator, with the
    trains packed in one uint8 (T = 5), uint64 (T = 40) or two uint64 words (T = 70)."""
    rng = np.random.default_rng(0)
    n_in, n = 20, 200
    v_init = rng.integers(-2000, 2000, n) if imp else np.zeros(n, np.int64)
    host = FixedLayer("h", "host", (n,), rng.normal(0, 1, (n, n_in)), np.full(n, 1200), 40,
                      v_init, 64.0, host_kind="dense", bias=np.zeros(n))
    out = FixedLayer("o", "dense", (4,), 2 * rng.integers(-60, 60, (4, n)), np.full(4, 500),
                     30, np.zeros(4, np.int64), 1.0)
    net = FixedNet([host, out], (n_in,), t_steps, "rate", 1)
    x = torch.from_numpy(rng.normal(0, 1, (32, n_in)))
    frames = torch.from_numpy(rng.normal(0, 1, (t_steps, 32, n_in)))
    model, static = _deployment_equals_emulator(net, x, frames)
    assert any(n.output[0].startswith("host_spikes") for n in model.graph.node) == (not imp)
    assert static.spikes["h"].any() and static.spikes["o"].any()
    onnx.checker.check_model(model, full_check=True)


def test_lean_exports_are_the_deployment_graphs(tmp_path, capsys):
    """`snnexport export --lean`: the ONNX and integer ONNX files hold the deployment graphs
    (outputs only); their outputs equal the full artifacts' on 24 digits, static images fed as
    one row; --lean with --step is refused in one line."""
    from snnexport.cli import main
    from snnexport.quant import quantize

    model = "examples/models/digits_plif_layer.pt"
    x = load_dataset("digits").x_test[:24].numpy()
    for target, suffix in (("onnx", ".onnx"), ("onnx-fixed", ".fixed.onnx")):
        for lean in (False, True):
            argv = ["export", model, "--to", target, "-o", str(tmp_path / f"{lean}{suffix}")]
            assert main(argv + (["--lean"] if lean else [])) == 0
    full, lean = (onnx.load(tmp_path / f"{v}.onnx") for v in (False, True))
    assert [o.name for o in lean.graph.output] == ["scores", "outputs"]
    assert any(o.name.startswith("spikes:") for o in full.graph.output)
    a, b = (session(m).run(["scores", "outputs"], {"x": x[None]}) for m in (full, lean))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    full_i, lean_i = (onnx.load(tmp_path / f"{v}.fixed.onnx") for v in (False, True))
    assert [o.name for o in lean_i.graph.output] == ["outputs"]
    net = quantize(fold(load_model(model).graph), load_dataset("digits").x_train[:200])
    mant, _ = host_bias_mant(net.layers[0], torch.from_numpy(x)[None], net.input_shape)
    feed = {"bias0": mant.to(torch.int16).numpy()}
    assert np.array_equal(session(full_i).run(["outputs"], feed)[0],
                          session(lean_i).run(None, feed)[0])
    assert session(full_i).run(["outputs"], feed)[0].any()
    capsys.readouterr()
    assert main(["export", model, "--to", "onnx", "--step", "--lean", "-o",
                 str(tmp_path / "s.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lean" in err[0]
    # a switch the target does not take is refused, not ignored
    assert main(["export", model, "--to", "nir", "--lean", "-o", str(tmp_path / "m.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--lean applies to onnx, onnx-fixed only" in err[0]
    assert not (tmp_path / "m.nir").exists()


def test_artifact_input_is_the_host_mantissas_and_leaves_torch_threads_alone():
    """`artifact_input` (bias0 as a deployment computes it, in one torch thread): the emulator's
    host mantissas as int16, one row for static images, a row per step for frames; torch's
    thread count as it was."""
    from snnexport.exporters.onnx_fixed import artifact_input

    layer = _host((3, 8, 8), 1000, 0)
    net = FixedNet([layer], (1, 8, 8), 4, "rate", 1)
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.normal(0, 8000, (5, 1, 8, 8)))
    frames = torch.from_numpy(rng.normal(0, 8000, (4, 5, 1, 8, 8)))
    threads = torch.get_num_threads()
    for given, lead in ((x, x.unsqueeze(0)), (frames, frames)):
        got = artifact_input(net, given)
        mant, raw = host_bias_mant(layer, lead, net.input_shape)
        assert got.dtype == np.int16 and np.array_equal(got, mant.numpy())
        assert got.shape == (len(lead), 5, 3, 8, 8)
        assert (raw.abs() > BIAS_MANT_MAX).any()  # some clipped to 13 bits, as the emulator
    assert torch.get_num_threads() == threads
