"""The bundled SEW-ResNet (examples/models/mnist5k_sew.pt, `snnexport train --preset
mnist5k-sew`) on the MNIST-5k test split, on every target that can take it: reference, NIR and
ONNX exact against the torch model on 200 images, integer ONNX bit-exact with the emulator, the
fixed point within 0.5 pp of the float model on the whole test split, NeuroBench's counts."""

from pathlib import Path

import pytest
import torch

from snnexport.backends import Lowered
from snnexport.check import check, load_model
from snnexport.data import load_dataset
from snnexport.energy import count_operations
from snnexport.evaluate import evaluate
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "mnist5k_sew.pt"
DS = load_dataset("mnist5k")


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def lowered(loaded):
    return Lowered(loaded.graph)


def test_it_is_a_sew_resnet_with_imp_and_lts_trained_to_97_percent(loaded):
    model, meta = loaded.torch_model, loaded.meta
    cfg = model.cfg
    assert (cfg.arch, cfg.connect, cfg.imp, cfg.readout) == ("sew", "ADD", True, "lts")
    merges = [n for n, x in loaded.graph.nodes.items() if isinstance(x, ir.Merge)]
    assert merges == ["blocks.0.connect", "blocks.1.connect"]
    assert float(model.stem.sn.v_init.detach().abs().sum()) > 0  # IMP was learned
    result = evaluate(model, DS.x_test, DS.y_test)
    assert result.accuracy == pytest.approx(meta["test_accuracy"], abs=1e-9)
    assert result.accuracy >= 0.97
    assert MODEL.stat().st_size < 5_000_000


@pytest.mark.parametrize("target", ["reference", "nir", "onnx"])
def test_float_targets_are_exact_on_200_test_images(loaded, lowered, target):
    rep = check(loaded, target, samples=200, lowered=lowered)
    # the trained float32 model against float64 / float32 runs: a value within float rounding
    # of the threshold may go either way (a counted threshold tie, docs/semantics.md §5);
    # nothing else may differ
    assert rep.samples == 200 and rep.unexplained == 0, rep.text()
    ties = sum(layer.ties for layer in rep.layers)
    assert all(layer.mismatches == layer.ties + layer.downstream for layer in rep.layers)
    assert ties <= 2, rep.text()
    assert not rep.silent_layers
    assert rep.agree >= 199


def test_integer_onnx_is_bit_exact_with_the_emulator(loaded, lowered):
    rep = check(loaded, "onnx-fixed", samples=200, lowered=lowered)
    assert rep.samples == 200 and rep.exact, rep.text()


def test_the_report_names_the_layers_fed_graded_values(loaded, lowered):
    rep = check(loaded, "onnx", samples=20, lowered=lowered)
    rows = {row["layer"]: row for row in rep.binary}
    # after an ADD merge the next synapses take 0 / 1 / 2: not spikes, and the text says so
    for layer in ("blocks.1.conv1", "blocks.1.down_conv"):
        assert rows[layer]["input"] == "graded" and rows[layer]["max_input"] == 2, rows[layer]
        assert f"graded input {layer}: values 0..2" in rep.text()
    for layer in ("blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv2"):
        assert rows[layer]["input"] == "binary" and rows[layer]["inputs_binary"], rows[layer]


def test_fixed_point_is_within_half_a_point_of_the_float_model(loaded, lowered):
    n = len(DS.y_test)
    rep = check(loaded, "fixed", samples=n, lowered=lowered)
    float_correct = evaluate(loaded.torch_model, DS.x_test, DS.y_test).correct
    assert rep.samples == n == 1000
    # 0.5 pp of 1000 images: at most 5 more or fewer correct (counted in whole images)
    assert abs(rep.correct_target - float_correct) <= 5, rep.text()


def test_counts_equal_neurobench_synaptic_operations(loaded):
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    x = DS.x_test[:40]
    model = TorchModel(loaded.torch_model)
    model.register_hooks()
    with torch.no_grad():
        preds = model(x)
    nb = SynapticOperations()(model, preds, (x, None))
    model.cleanup_hooks()
    ours = count_operations(fold(loaded.graph), x)
    n = len(x)
    assert round(sum(c.macs for c in ours) * n) == round(nb["Effective_MACs"] * n)
    assert round(sum(c.sops for c in ours) * n) == round(nb["Effective_ACs"] * n)
    assert round(sum(c.dense for c in ours) * n) == round(nb["Dense"] * n)
    assert sum(c.sops for c in ours) > 0 and sum(c.macs for c in ours) > 0
