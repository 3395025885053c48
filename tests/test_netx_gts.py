"""Intel's ground truth stored in the lava-dl 0.6 wheel (tests/lava/lib/dl/netx/gts: tinynet,
pilotnet_lif, ntidigits) reproduced bit for bit from the command line:

    snnexport check NET.net --target fixed --data GT.npz [--netx reset_interval=16]

GT.npz holds the stored input (x or bias) and the stored outputs as `s:<g>` / `u:<g>` [N, T_r,
*WHC] from step `t0:<g>` of layer group g (netx_check.py); the check compares every one of them
with the emulator (and the fast emulator with the plain one). The alignments below are the ones
lava-dl's own tests use (test_hdf5.py, test_hdf5_nx.py), written out here from the stored files
alone."""

from pathlib import Path

import numpy as np

from snnexport.cli import main

ROOT = Path(__file__).resolve().parents[1]
GTS = ROOT / ".venv-lava/lib/python3.10/site-packages/tests/lava/lib/dl/netx"



def _whc_t(a: np.ndarray) -> np.ndarray:
    """lava-dl's stored [W, H, C, T] (Lava's layout, time last) as [1, T, W, H, C]."""
    return np.moveaxis(a, -1, 0)[None]


def _check(net, npz, *extra):
    return main(["check", str(net), "--target", "fixed", "--data", str(npz), *extra])


def test_tinynet_output_spikes(tmp_path, capsys):
    """tiny.net on its stored input bias with netx's reset every 16 steps: its output spikes
    (gts/tinynet/output.npy, [1, C, H, W, T]) are the last layer's at steps 2..16 for stored
    steps 1..15, as lava-dl's test_tinynet compares them (output[..., 2:17] vs gt[..., 1:])."""
    gt = np.load(GTS / "gts/tinynet/output.npy")[0].transpose([2, 1, 0, 3])  # W, H, C, T
    assert gt.shape == (1, 1, 36, 16) and gt[..., 1:].sum() == 92
    bias = np.load(GTS / "gts/tinynet/input_bias.npy").astype(np.int64)  # W, H, C
    f = tmp_path / "tinynet.npz"
    np.savez(f, bias=bias[None], time_steps=np.array(20), **{"s:2": _whc_t(gt[..., 1:]),
                                                            "t0:2": np.array(2)})
    assert _check(GTS / "tiny.net", f, "--netx", "reset_interval=16") == 0
    out = capsys.readouterr().out
    assert "recorded layer/2 s steps 2..16" in out and "540 values, all equal" in out
    assert "accuracy not computed" in out and "accuracy reference" not in out
    # one stored spike moved away: the check fails (exit 1) and names where
    moved = gt[..., 1:].copy()
    w, h, c, t = np.argwhere(moved > 0)[0]
    moved[w, h, c, t] = 0
    np.savez(f, bias=bias[None], time_steps=np.array(20), **{"s:2": _whc_t(moved),
                                                            "t0:2": np.array(2)})
    assert _check(GTS / "tiny.net", f, "--netx", "reset_interval=16") == 1
    out = capsys.readouterr().out
    assert f"1 differ (first at step {2 + t}, sample 0, neuron {c}: recorded 0, emulator 1)" \
        in out


PILOT = ["input"] + [f"conv-{i}" for i in range(5)] + [f"fc-{i}" for i in range(3)]
PILOT_GROUPS = [0, 1, 2, 3, 4, 5, 7, 8, 9]  # layer/6 is the flatten block


def _pilotnet_gt(tmp_path, steps=16):
    image = np.load(GTS / "gts/pilotnet_lif/image.npy").astype(np.int64)  # W, H, C bias
    arrays = {"bias": image[None], "time_steps": np.array(steps)}
    for name, g in zip(PILOT, PILOT_GROUPS, strict=True):
        s = np.load(GTS / f"gts/pilotnet_lif/{name if name != 'input' else 'input'}.npy")
        arrays[f"s:{g}"] = _whc_t(s[..., :steps]).astype(np.int64)
        if name != "input":
            arrays[f"u:{g}"] = _whc_t(np.load(GTS / f"gts/pilotnet_lif/{name}-u.npy")[
                ..., :steps]).astype(np.int64)
    f = tmp_path / "pilotnet.npz"
    np.savez(f, **arrays)
    return f


def test_pilotnet_lif_with_its_reset_interval(tmp_path, capsys):
    """PilotNet LIF on its stored image (the input bias) with netx's reset_interval 16, as
    lava-dl's test_pilotnet_lif builds it: the spikes of all nine spiking layers and the
    current u of the eight after the input, at each of the first 16 steps, equal the stored
    ones; the regression readout (vThMant 2^17 - 1) never spikes by design and is reported as
    the readout, not as a silent layer (exit 0)."""
    f = _pilotnet_gt(tmp_path)
    net = GTS / "gts/pilotnet_lif/network.net"
    assert _check(net, f, "--netx", "reset_interval=16") == 0
    out = capsys.readouterr().out
    assert out.count(", all equal") == 17 and " differ" not in out
    assert "readout layer/10" in out and "never spiked" not in out
    assert "accuracy not computed" in out
    # without the reset the bias each layer integrates before its input arrives is kept:
    # the stored currents are not reproduced (conv-4's from step 5 on)
    assert _check(net, f) == 1
    out = capsys.readouterr().out
    assert "recorded layer/5 u steps 0..15" in out
    row = next(line for line in out.splitlines() if "recorded layer/5 u" in line)
    assert "all equal" not in row and "first at step 5" in row


def test_ntidigits_first_five_layers_3000_steps(tmp_path, capsys):
    """NTIDIGITS (axonal delays up to 62): its first five layer groups (netx cannot build the
    last, 'average'), on the stored input spikes, 3,000 steps: the output spikes stored for
    steps 1..2999 are the emulator's at steps 0..2998 (stored step 0 holds none)."""
    x = np.load(GTS / "gts/ntidigits/input.npy")  # [64, 3000]
    gt = np.load(GTS / "gts/ntidigits/output.npy")  # [242, 3000]
    assert gt[:, 0].sum() == 0 and gt.sum() == 22572
    f = tmp_path / "ntidigits.npz"
    np.savez(f, x=x.T.reshape(1, 3000, 64, 1, 1).astype(np.int64),
             **{"s:4": gt[:, 1:].T.reshape(1, 2999, 242).astype(np.int64)})
    net = GTS / "gts/ntidigits/ntidigits.net"
    assert _check(net, f) == 2  # the 'average' block: one line naming it
    assert "'average'" in capsys.readouterr().err
    assert _check(net, f, "--netx", "num_layers=5") == 0
    out = capsys.readouterr().out
    assert f"recorded layer/4 s steps 0..2998 ({f}): {2999 * 242} values, all equal" in out


def test_netx_option_and_recorded_refusals(tmp_path, capsys):
    x = np.load(GTS / "gts/ntidigits/input.npy")[:, :20]
    net = GTS / "gts/ntidigits/ntidigits.net"
    good = {"x": x.T.reshape(1, 20, 64, 1, 1).astype(np.int64)}
    f = tmp_path / "in.npz"
    np.savez(f, **good)
    for opt, why in (("num_layers=0", ">= 1"), ("layers=5", "KEY=N"),
                     ("reset_offset=2", "goes with a reset_interval")):
        assert _check(net, f, "--netx", opt) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0], err
    for bad, why in (({"s:9": np.zeros((1, 20, 242))}, "no layer/9"),
                     ({"s:4": np.zeros((1, 21, 242))}, "must be integers [N, T_r, 242]"),
                     ({"s:4": np.zeros((1, 10, 242)), "t0:4": np.array(11)}, "t0:4 (11)")):
        np.savez(f, **good, **bad)
        assert _check(net, f, "--netx", "num_layers=5") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "in.npz" in err[0], err


def test_reset_interval_bit_exact_in_lava():
    """netx's periodic reset run by Lava itself (netx.hdf5.Network(reset_interval=5,
    reset_offset=2): LIFReset) equals the emulator's in every layer's spikes, u and v at
    every step, on tiny.net's stored input bias over 14 steps (two resets of every layer)."""
    from snnexport.check import check
    from snnexport.quant.emulator import emulate
    from snnexport.quant.netx_import import netx_loaded, read_netx_with
    from snnexport.quant.netx_inputs import driven, inputs_of

    net = read_netx_with(GTS / "tiny.net", "reset_interval=5,reset_offset=2")
    assert [net.reset_steps(k, 14) for k in range(3)] == [[2, 7, 12], [3, 8, 13], [4, 9]]
    bias = np.load(GTS / "gts/tinynet/input_bias.npy").astype(np.int64)
    ins = inputs_of(net, {"bias": bias[None], "time_steps": np.array(14)}, "input_bias.npy")
    report = check(netx_loaded(net), "netx", inputs=ins)
    assert report.exact and report.state_mismatches == 0, report.text()
    assert not report.silent_layers
    # the reset acted: layer/1's current equals the run without a reset up to its first
    # reset (step 3), not after
    plain = read_netx_with(GTS / "tiny.net", "num_layers=3")
    a = emulate(driven(net, ins), ins.x).state["layer/1"][0]
    b = emulate(driven(plain, ins), ins.x).state["layer/1"][0]
    assert bool((a[:3] == b[:3]).all()) and not bool((a == b).all())


def test_pilotnet_lif_stored_voltage():
    """The stored v of pilotnet_lif's layers equals the emulator's wherever the neuron did not
    spike; where it spiked it holds 128 (2 << 6), where Lava's LIF sets 0: why the CLI test
    compares spikes and u, not v."""
    from snnexport.quant.emulator import emulate
    from snnexport.quant.netx_import import read_netx_with
    from snnexport.quant.netx_inputs import driven, inputs_of

    net = read_netx_with(GTS / "gts/pilotnet_lif/network.net", "reset_interval=16")
    image = np.load(GTS / "gts/pilotnet_lif/image.npy").astype(np.int64)
    ins = inputs_of(net, {"bias": image[None], "time_steps": np.array(16)}, "image.npy")
    res = emulate(driven(net, ins), ins.x)
    for name, g in (("conv-0", 1), ("conv-4", 5), ("fc-2", 9)):
        stored = np.moveaxis(np.load(GTS / f"gts/pilotnet_lif/{name}-v.npy")[..., :16], -1, 0)
        stored = stored.transpose([0, *range(stored.ndim - 1, 0, -1)]).reshape(16, -1)
        v = res.state[f"layer/{g}"][1].reshape(16, -1).numpy()
        fired = res.spikes[f"layer/{g}"].reshape(16, -1).numpy() > 0
        assert fired.any() and (stored[~fired] == v[~fired]).all(), name
        assert (stored[fired] == 128).all() and (v[fired] == 0).all(), name


def test_accuracy_only_with_labels(tmp_path, capsys):
    """The same inputs with and without y: the accuracy line only with labels; the JSON says
    whether labels were given."""
    import json

    from snnexport.data import load_dataset
    from snnexport.quant.netx_import import read_netx
    from snnexport.quant.netx_inputs import encode_images

    net_file = ROOT / "tests/data/netx/conv.net"
    x = encode_images(read_netx(net_file), load_dataset("digits", 8).x_test.numpy()[:6], 8)
    for labels in (True, False):
        f = tmp_path / "in.npz"
        np.savez(f, x=x, **({"y": np.arange(6) % 10} if labels else {}))
        js = tmp_path / "r.json"
        assert _check(net_file, f, "--json", str(js)) == 0
        out = capsys.readouterr().out
        assert ("accuracy reference" in out) == labels
        assert ("accuracy not computed" in out) == (not labels)
        assert json.loads(js.read_text())["labelled"] == labels
