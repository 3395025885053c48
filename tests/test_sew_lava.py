"""The bundled SEW-ResNet (examples/models/mnist5k_sew.pt) in the real Lava simulator (the
Python 3.10 environment): lava-float against the float64 IR reference and lava-fixed against
the bit-accurate emulator, every spike of every layer and the readout, on 4 MNIST-5k test
digits. Its downsample block reads the stem's pooled spikes 2 steps late through a 3 x 3 and
a 1 x 1 strided conv: Lava takes them through a relay (lowering.lower_residual: Timing), not
as a 6272 x 3136 delayed matrix. The two runs take about a minute each on the CPU.
"""

from pathlib import Path

import pytest
import torch

from snnexport.backends import Lowered
from snnexport.check import check, load_model
from snnexport.data import load_dataset
from snnexport.lava.lowering import lower as lava_lower
from snnexport.lava.runner import fixed_residual_stages

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "mnist5k_sew.pt"
SAMPLES = 4
LAYERS = {"stem.sn", "blocks.0.sn1", "blocks.0.sn2", "blocks.1.sn1", "blocks.1.sn2",
          "blocks.1.down_sn"}


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def lowered(loaded):
    return Lowered(loaded.graph)


def test_the_delayed_convs_read_one_shared_relay(lowered):
    """Float and fixed alike: the downsample block's conv1 and 1 x 1 shortcut both wait 2
    steps on the stem's pool; one relay (2 steps) serves both, the convs themselves are not
    delayed; the FC's shortcut summand waits 1 step on a dense matrix (DelayDense)."""
    _, _, stages, _ = lava_lower(lowered.folded)
    net, _ = lowered.fixed(load_dataset("mnist5k").x_train[:200])  # check()'s calibration
    for timed in (stages, fixed_residual_stages(net)):
        by_key = {st.key: st for st in timed}
        relays = [st for st in timed if "@+" in st.key]
        assert [(st.key, st.name, st.depth) for st in relays] == [("stem.pool@+2", "", 3)]
        (relay_in,) = relays[0].links
        assert (relay_in.source, relay_in.delay, relay_in.unit is not None) == ("stem.pool", 1,
                                                                                 True)
        for key in ("blocks.1.sn1", "blocks.1.down_sn"):
            assert sorted((lk.source, lk.delay) for lk in by_key[key].links) == [
                ("blocks.0.sn2", 0), ("stem.pool@+2", 0)]
        assert all(lk.conv is None for st in timed for lk in st.links if lk.delay)
        assert sorted((lk.source, lk.delay, lk.weights is not None)
                      for lk in by_key["head.sn"].links) == [
            ("blocks.1.down_sn", 1, True), ("blocks.1.sn2", 0, True)]


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed"])
def test_lava_runs_the_bundled_sew_resnet_spike_for_spike(loaded, lowered, target):
    report = check(loaded, target, data="mnist5k", samples=SAMPLES, lowered=lowered,
                   reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert {lay.name for lay in report.layers} == LAYERS
    assert not report.silent_layers, report.text()
    assert report.exact, report.text()
    if target == "lava-fixed":  # nothing saturated: the integers are the whole story
        assert all(row["v_clipped"] == row["u_wrapped"] == row["bias_clipped"] == 0
                   for row in report.quantisation), report.text()
