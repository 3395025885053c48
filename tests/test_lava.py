"""The Lava float target, run in the real Lava simulator (Python 3.10 environment made by
`make test`), on narrow networks and real digits: Lava is slow on the CPU, so the nets are
4 channels wide and the samples few."""

import subprocess

import pytest
import torch
from test_fold import random_net

from snnexport.check import LoadedModel, check, load_model
from snnexport.data import load_dataset
from snnexport.importers.plifnet import import_plifnet
from snnexport.ir import save_ir
from snnexport.lava.lowering import LavaLoweringError, lower
from snnexport.lava.target import LavaError, LavaTimeout, run_runner
from snnexport.passes.fold import fold

SAMPLES = 12
VARIANTS = {
    "per-layer tau": {},
    "per-neuron tau": dict(tau_per="neuron", tau_std=0.3),
    "IMP + last-time-step readout": dict(imp=True, readout="lts"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lava_float_equals_the_model_after_alignment(variant):
    net = random_net(channels=4, **VARIANTS[variant])
    loaded = LoadedModel("<test>", import_plifnet(net), net)
    report = check(loaded, target="lava-float", data="digits", samples=SAMPLES,
                   reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()


FIXED_SAMPLES = 6


@pytest.mark.parametrize("target", ["lava-fixed", "netx"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lava_fixed_point_equals_the_emulator_bit_for_bit(variant, target):
    """Lava fixed_pt (processes built from the fixed-point IR, or netx from the HDF5 file) vs
    snnexport's emulator: every spike of every layer, and the readout."""
    net = random_net(channels=4, **VARIANTS[variant])
    loaded = LoadedModel("<test>", import_plifnet(net), net)
    report = check(loaded, target=target, data="digits", samples=FIXED_SAMPLES)
    assert report.samples == FIXED_SAMPLES
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()


def test_runner_crash_and_hang_become_clear_errors(tmp_path):
    bad = tmp_path / "bad.snnir"
    bad.write_bytes(b"garbage")
    with pytest.raises(LavaError, match="not an snnexport IR file"):
        run_runner(["float", str(bad), str(tmp_path / "x.npz"), str(tmp_path / "o.npz")],
                   timeout=120)
    graph = fold(import_plifnet(random_net(channels=4)))
    save_ir(graph, tmp_path / "m.snnir")
    import numpy as np

    np.savez(tmp_path / "in.npz", x=load_dataset("digits").x_test[:50].numpy(), time_steps=4,
             input_shape=np.array(graph.nodes[graph.order()[0]].shape))
    with pytest.raises(LavaTimeout, match="killed"):
        run_runner(["float", str(tmp_path / "m.snnir"), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], timeout=3)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "m.snnir")], capture_output=True)
    assert left.stdout == b"", "the killed runner left processes behind"


def test_what_lava_cannot_take_is_refused_in_the_core():
    g = fold(import_plifnet(random_net(channels=4, v_reset=None)))
    with pytest.raises(LavaLoweringError, match="soft reset is not supported"):
        lower(g)


def test_bundled_trained_model_on_netx_is_bit_exact():
    """The full-width trained digits model (32 channels), as netx builds it: 3 samples."""
    report = check(load_model("examples/models/digits_plif_layer.pt"), target="netx",
                   samples=3)
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed", "netx"])
def test_frame_sequences_drive_the_first_layer_step_by_step(target):
    """Event-style input: each sample a [T, 1, 8, 8] sequence of 0/1 frames (digits rate-coded,
    a different frame every step); the host current changes every step and is set through
    Lava's runtime before each one."""
    net = random_net(channels=4)
    digits = load_dataset("digits")
    gen = torch.Generator().manual_seed(0)
    x = digits.x_test[:4]
    frames = (torch.rand(4, 4, *x.shape[1:], generator=gen) < x.unsqueeze(1)).double()
    loaded = LoadedModel("<test>", import_plifnet(net), net)
    report = check(loaded, target=target, data="digits", inputs=(frames, digits.y_test[:4]),
                   samples=4, reference_dtype=torch.float64)
    assert all(layer.spikes_reference > 0 for layer in report.layers), report.text()
    assert report.exact, report.text()
