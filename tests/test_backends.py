"""The target registry: the eight built-in backends, and a target added as one module-like
registration shows up in `check`, `export` and `deploy` with nothing else edited."""

import json
from pathlib import Path

import pytest
import torch

from snnexport import backends
from snnexport.backends import Backend, Export, Lowered, UnknownTarget
from snnexport.check import check, load_model
from snnexport.cli import build_parser, main
from snnexport.deploy import parse_targets
from snnexport.energy import available_profiles
from snnexport.exporters.nir_export import NIRExportError, to_nir
from snnexport.exporters.onnx_export import ONNXExportError, to_onnx
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
BUILT_IN = ("reference", "nir", "onnx", "fixed", "onnx-fixed", "lava-float", "lava-fixed",
            "netx")


def test_the_built_in_targets_are_registered_with_a_known_profile():
    assert set(backends.available()) >= set(BUILT_IN)
    suffixes = [b.exports.suffix for b in backends.backends() if b.exports is not None]
    assert len(suffixes) == len(set(suffixes))  # deploy writes one model<suffix> per backend
    for b in backends.backends():
        assert b.profile in available_profiles(), b.name
    # what the issue lists as exported: NIR, ONNX, integer ONNX, netx (and the fixed-point npz)
    assert {b.name for b in backends.backends() if b.exports} >= {"nir", "onnx", "onnx-fixed",
                                                                   "netx", "fixed"}
    assert {b.name for b in backends.backends() if b.slow} == {"lava-float", "lava-fixed",
                                                               "netx"}
    with pytest.raises(UnknownTarget, match="unknown target 'loihi3'; available: reference, "):
        backends.get("loihi3")


def test_a_backend_declaration_that_cannot_work_is_refused():
    with pytest.raises(ValueError, match="the emulator reference needs fixed_point"):
        Backend("x", "x", lambda inp, dtype, stats: None, reference="emulator")


def _run_float32(folded, dtype, stats):
    def run(xb):
        return simulate(folded, xb, dtype=dtype, record_membrane=True)
    return run


def _write_order(folded, path):
    Path(path).write_text(json.dumps(folded.order()))
    return Path(path)


@pytest.fixture
def plugin():
    """A new target, registered the way a backend module registers itself."""
    b = backends.register(Backend("toy-f32", "folded IR in float32, a plug-in", _run_float32,
                                  exports=Export(".order.json", _write_order),
                                  dtype=torch.float32))
    yield b
    backends.unregister(b.name)
    assert "toy-f32" not in backends.available()


def test_a_registered_backend_is_a_target_of_check_export_and_deploy(plugin, tmp_path):
    model = MODELS / "digits_plif_layer.pt"
    loaded = load_model(model)
    args = build_parser().parse_args(["check", str(model), "--target", "toy-f32"])
    assert args.target == "toy-f32"  # the command line's choices come from the registry
    assert parse_targets("reference,toy-f32") == ["reference", "toy-f32"]
    assert parse_targets("all")[-1] == "toy-f32"
    # the check runs the plug-in: the folded IR in float32 against the model as trained
    report = check(loaded, "toy-f32", samples=100)
    assert report.samples == 100 and report.unexplained == 0, report.text()
    assert report.target.startswith("toy-f32 (folded IR in float32, a plug-in, float32)")
    out = tmp_path / "r.json"
    assert main(["check", str(model), "--target", "toy-f32", "--samples", "20",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["samples"] == 20
    # and `export --to` writes its artifact from the folded graph
    path = tmp_path / "m.order.json"
    assert main(["export", str(model), "--to", "toy-f32", "-o", str(path)]) == 0
    assert json.loads(path.read_text()) == fold(loaded.graph).order()


def test_the_model_is_folded_and_quantised_once_per_setting():
    loaded = load_model(MODELS / "digits_plif_layer.pt")
    lowered = Lowered(loaded.graph)
    assert lowered.folded is lowered.folded
    assert lowered.folded_for(fold_gain=False) is lowered.folded_for(fold_gain=False)
    calib = torch.rand(8, *loaded.graph.nodes[loaded.graph.order()[0]].shape)
    fixed = backends.get("fixed")
    net = lowered.input_for(fixed, calib)
    assert lowered.input_for(backends.get("netx"), calib.clone()) is net  # same calibration
    assert lowered.input_for(fixed, calib, decays=2) is not net  # another grouping
    with pytest.raises(ValueError, match="give the calibration inputs"):
        lowered.input_for(fixed)


def test_exporters_take_the_folded_graph_and_never_fold():
    graph = load_model(MODELS / "digits_plif_layer.pt").graph
    with pytest.raises(ONNXExportError, match="export the folded IR"):
        to_onnx(graph)
    with pytest.raises(NIRExportError, match="fold_gain=False"):
        to_nir(graph)
