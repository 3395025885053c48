"""Import of netx files written by lava-dl itself (slayer blocks' export_hdf5, run in the Lava
environment by tests/data/make_netx_nets.py, and the files lava-dl ships with its tests),
emulated by snnexport and compared with Lava (netx.hdf5.Network, fixed_pt) in every layer:
spikes, u and v at every step, on real digits images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from snnexport.check import check
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.quant.emulator import emulate
from snnexport.quant.netx_import import NetxImportError, netx_loaded, read_netx
from snnexport.quant.netx_inputs import driven, encode_images, inputs_of

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / ".venv-lava/lib/python3.10/site-packages/tests/lava/lib/dl/netx"
DATA = ROOT / "tests/data/netx"


@pytest.fixture(scope="module")
def nets():
    """Written by lava-dl 0.6 itself (slayer blocks' export_hdf5) in the Lava environment:
    `.venv-lava/bin/python tests/data/make_netx_nets.py tests/data/netx` rewrites them byte
    for byte (seeded)."""
    return DATA


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 8).x_test.numpy()


def _inputs(net, images, t_steps, n):
    return inputs_of(net, {"x": encode_images(net, images[:n], t_steps)}, "digits")


def check_netx(net, target, inputs):
    """snnexport check of the net read from a netx file, on inputs already read."""
    return check(netx_loaded(net), target, inputs=inputs)


def _one(a) -> int:
    """A per-neuron parameter that is one value for the whole layer (as the file holds it)."""
    a = np.asarray(a)
    assert (a == a.flat[0]).all()
    return int(a.flat[0])


def test_lava_dl_files_bit_exact_in_lava(nets, digits):
    """The three lava-dl-written nets and lava-dl's own mnist.net (its last layer has no
    neuron: netx's default integrator), one Lava process for all."""
    nets_ = [read_netx(nets / f"{name}.net") for name in ("dense_cuba", "conv", "delay")]
    nets_.append(read_netx(SHIPPED / "mnist.net"))
    assert not nets_[-1].layers[-1].spiking and _one(nets_[-1].layers[-1].i_decay) == 0
    ins = [_inputs(net, digits, 8, 1) for net in nets_]
    # lava-dl's NTIDIGITS net (axonal delays up to 62) on its own recorded input spikes; its
    # last block ('average') netx cannot build: the first 5 groups, as lava-dl's test runs it
    nets_.append(read_netx(SHIPPED / "gts/ntidigits/ntidigits.net", num_layers=5))
    spikes = np.load(SHIPPED / "gts/ntidigits/input.npy")[:, :40].T  # [T, 64]
    ins.append(inputs_of(nets_[-1], {"x": spikes.reshape(1, 40, 64, 1, 1).astype(np.int64)},
                         "ntidigits input.npy"))
    assert int(nets_[-1].layers[0].delay.max()) > 30
    # the Input block driven through its bias mantissa, a new one every step
    nets_.append(nets_[0])
    bias = np.stack([(np.arange(64) * 7) % 200 + 100 * t for t in range(6)])[None]
    ins.append(inputs_of(nets_[0], {"bias": bias}, "bias"))
    for net, i in zip(nets_, ins, strict=True):
        report = check_netx(net, "netx", i)
        assert report.exact, report.text()
        assert report.state_mismatches == 0 and report.first_state_divergence is None
        assert [r["layer"] for r in report.state] == [lay.name for lay in net.layers]
        # every spiking layer spiked: the equality says something
        assert not report.silent_layers, (net.netx_file, report.silent_layers)
        assert report.state[0]["values"] > 0


def test_what_the_nets_hold(nets):
    """The file's numbers as netx reads them (independent of the emulator)."""
    dense = read_netx(nets / "dense_cuba.net")
    assert [lay.kind for lay in dense.layers] == ["input", "dense", "dense"]
    assert [_one(lay.i_decay) for lay in dense.layers] == [819, 1229, 614]  # 4096 x decay
    assert dense.layers[1].bias_mant.tolist() == (np.arange(24) % 5 - 2).tolist()
    delay = read_netx(nets / "delay.net")
    assert not delay.has_input_neuron
    # netx repeats a layer's delay vector along the rows (one per output neuron)
    assert (delay.layers[0].delay == (np.arange(20) % 4)[:, None]).all()
    assert (delay.layers[1].delay == (np.arange(10) % 3 + 1)[:, None]).all()
    conv = read_netx(nets / "conv.net")
    # the dense block takes the conv's 4x4x4 map flattened (netx's 'flatten' block)
    assert conv.layers[1].shape == (4, 4, 4) and conv.layers[2].kind == "dense" and \
        conv.layers[2].weight.shape[1] == 64


def test_current_recurrence_by_hand(nets):
    """A constant a_in c into the input block: u_t = trunc(u_{t-1} (4096 - iDecay) / 4096)
    + 64 c, v_t = trunc(v_{t-1} (4096 - vDecay) / 4096) + u_t, reset to 0 above vth << 6 —
    Lava's formulas, computed here with Python integers."""
    net = read_netx(nets / "dense_cuba.net")
    lay = net.layers[0]
    c, t_steps = 37, 12
    x = torch.full((t_steps, 1, 64), c, dtype=torch.int64)
    res = emulate(net, x)
    u = v = 0
    us, vs, ss = [], [], []

    def trunc(a, keep):
        p = a * keep
        return (abs(p) >> 12) * (1 if p >= 0 else -1)

    for _ in range(t_steps):
        u = trunc(u, 4096 - _one(lay.i_decay)) + 64 * c
        v = trunc(v, 4096 - _one(lay.dv)) + u
        s = v > lay.vth_mant << 6
        v = 0 if s else v
        us.append(u)
        vs.append(v)
        ss.append(s)
    assert res.state[lay.name][0][:, 0, 0].tolist() == us
    assert res.state[lay.name][1][:, 0, 0].tolist() == vs
    assert res.spikes[lay.name][:, 0, 0].bool().tolist() == ss
    assert any(ss) and not all(ss)


@pytest.mark.parametrize("name", ["dense_cuba", "conv", "delay"])
def test_fast_emulator_equals_plain(nets, digits, name):
    net = read_netx(nets / f"{name}.net")
    ins = _inputs(net, digits, 16, 60)
    report = check_netx(net, "fixed", ins)
    assert report.exact and report.state_mismatches == 0, report.text()


def test_shipped_files_fast_equals_plain(digits):
    for f in ("mnist.net", "tiny.net"):
        net = read_netx(SHIPPED / f)
        report = check_netx(net, "fixed", _inputs(net, digits, 6, 4))
        assert report.exact and report.state_mismatches == 0, report.text()


def test_unsupported_blocks_refused_in_one_line(capsys):
    with pytest.raises(NetxImportError, match=r"layer/5: block type 'average' is not "
                                              r"supported"):
        read_netx(SHIPPED / "gts/ntidigits/ntidigits.net")
    with pytest.raises(NetxImportError, match=r"layer/0: a sigma-delta \(SDNN\) neuron"):
        read_netx(SHIPPED / "gts/pilotnet_sdnn/network.net")
    assert main(["inspect", str(SHIPPED / "gts/ntidigits/ntidigits.net")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'average'" in err[0] and "ntidigits.net" in err[0]


def test_cli_inspect_check_and_bad_inputs(nets, digits, tmp_path, capsys):
    net_file = nets / "conv.net"
    net = read_netx(net_file)
    x = encode_images(net, digits[:30], 8)
    good = tmp_path / "in.npz"
    np.savez(good, x=x, y=np.arange(30) % 10)
    assert main(["inspect", str(net_file)]) == 0
    assert "conv   4x4x4" in capsys.readouterr().out
    assert main(["check", str(net_file), "--target", "fixed", "--data", str(good)]) == 0
    out = capsys.readouterr().out
    assert "30 samples, T=8" in out and "exact" in out
    before = good.read_bytes()
    for bad, why in ((dict(x=x[:, :, :7]), "must be [N, T, 8, 8, 1]"),
                     (dict(x=np.where(x > 0, np.nan, 0.0)), "NaN"),
                     (dict(x=x + 0.5), "integers"),
                     (dict(x=x * 100), "16 bits"),
                     (dict(bias=x[:, 0]), "time_steps")):
        f = tmp_path / "bad.npz"
        np.savez(f, **bad)
        assert main(["check", str(net_file), "--target", "fixed", "--data", str(f)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "bad.npz" in err[0], err
    assert main(["check", str(net_file), "--target", "onnx", "--data", str(good)]) == 2
    assert "--target netx" in capsys.readouterr().err
    assert main(["fold", str(net_file), "-o", str(tmp_path / "x.snnir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs as it is" in err[0]
    assert good.read_bytes() == before  # inputs never overwritten


def test_bias_input_and_corrupt_file(nets, tmp_path, capsys):
    net = read_netx(nets / "dense_cuba.net")
    bias = np.full((2, 64), 300, np.int64)
    ins = inputs_of(net, {"bias": bias, "time_steps": np.array(6)}, "bias")
    res = emulate(driven(net, ins), ins.x)
    # v_t = trunc(v_{t-1} (4096 - vDecay) / 4096) + 300 << 6: fires once it passes 64 << 6
    assert res.spikes["layer/0"].sum() > 0
    broken = tmp_path / "broken.net"
    broken.write_bytes((nets / "dense_cuba.net").read_bytes()[:3000])
    assert main(["inspect", str(broken)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_energy_from_real_counts(nets, digits, tmp_path, capsys):
    """Counts from the emulator's run, each checked another way: SOPs of a dense layer are
    its input spikes times their nonzero fan-out; `dense` every weight every step."""
    from snnexport.energy.counts import count_fixed_totals, per_inference

    net = read_netx(nets / "conv.net")
    ins = _inputs(net, digits, 8, 20)
    rows = {r.name: r for r in per_inference(count_fixed_totals(net, ins.x), 20)}
    res = emulate(net, ins.x)
    dense = net.layers[2]
    per_input = res.spikes[net.layers[1].name].reshape(8, 20, -1).sum((0, 1)).numpy()
    fan_out = (np.asarray(dense.weight) != 0).sum(0)
    assert rows[f"{dense.name}:synapse"].sops == pytest.approx(float(per_input @ fan_out) / 20)
    assert rows[f"{dense.name}:synapse"].dense == dense.weight.size * 8
    assert rows[net.layers[0].name].updates == 64 * 8
    assert rows[net.layers[1].name].spikes == float(res.spikes[net.layers[1].name].sum()) / 20
    np.savez(tmp_path / "in.npz", x=encode_images(net, digits[:20], 8))
    assert main(["energy", str(nets / "conv.net"), "--profile", "loihi2", "--data",
                 str(tmp_path / "in.npz")]) == 0
    assert "layer/3:synapse" in capsys.readouterr().out


def test_deploy_of_a_lava_dl_file_writes_the_report(nets, digits, tmp_path):
    """deploy of the lava-dl-written conv net (tests/data/make_netx_nets.py) on its own inputs:
    the fixed-point targets checked against the emulator, the float ones refused (no float
    model behind a netx file), fit and energy from its blocks, the HTML report written."""
    import json

    from snnexport.deploy import deploy

    net = read_netx(nets / "conv.net")
    data = tmp_path / "in.npz"
    np.savez(data, x=encode_images(net, digits[:20], 8), y=np.arange(20) % 10)
    summary = deploy(str(nets / "conv.net"), str(tmp_path / "out"), data=str(data),
                     targets="reference,fixed,onnx-fixed,netx", samples=20, lava_samples=2,
                     progress=False)
    rows = {r["target"]: r for r in summary["rows"]}
    assert rows["fixed"]["exact"] and rows["fixed"]["samples"] == 20
    assert rows["netx"]["exact"] and rows["netx"]["samples"] == 2
    assert "no float model" in rows["reference"]["refused"]
    assert "netx's own timing" in rows["onnx-fixed"]["refused"]
    assert summary["fit"]["loihi2"]["fits"] and summary["fit"]["loihi2"]["cores_used"] == 3
    html = (tmp_path / "out/report.html").read_text()
    assert "conv.net" in html and "emulator" in html
    fixed = json.loads((tmp_path / "out/check_fixed.json").read_text())
    assert fixed["labelled"] and [r["layer"] for r in fixed["state"]] == [
        "layer/0", "layer/1", "layer/3"]


def test_what_a_netx_file_is_compared_with_and_what_it_refuses(nets, digits, tmp_path, capsys):
    net_file = str(nets / "conv.net")
    net = read_netx(net_file)
    data = tmp_path / "in.npz"
    np.savez(data, x=encode_images(net, digits[:10], 8))
    assert main(["inspect", net_file]) == 0
    out = capsys.readouterr().out
    assert "compared with: no float model" in out and "netx's own timing" in out
    for args, why in ((["--target", "reference"], "no float model"),
                      (["--target", "lava-float"], "no float model"),
                      (["--target", "fixed", "--decays", "2"], "already fixed point"),
                      (["--target", "fixed", "--decays", "1,2"], "already fixed point"),
                      (["--target", "fixed", "--calib-samples", "10"],
                       "fixed point already: drop --calib-samples")):
        assert main(["check", net_file, "--data", str(data), *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "conv.net" in err[0], err
    # fit: three blocks of at most 64 neurons, one neurocore each
    assert main(["fit", net_file, "--chip", "loihi2"]) == 0
    assert "cores 3 " in capsys.readouterr().out
    # --workers: the same report as one process (Ray shards merged)
    one = check(netx_loaded(net), "fixed", data=str(data))
    two = check(netx_loaded(net), "fixed", data=str(data), workers=2)
    assert two.exact and one.to_dict()["layers"] == two.to_dict()["layers"]
    assert one.to_dict()["state"] == two.to_dict()["state"]
