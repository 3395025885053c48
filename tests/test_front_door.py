"""Model files through the command line, told apart by content: a NIR file written by snnTorch's
own exporter (which does not say T) runs with --time-steps; a NIR file with a misleading name
is still read as NIR; a netx file is read as netx; and the package's Python API is reachable
from its top level."""

import json
import shutil
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import snnexport
from snnexport.cli import main
from snnexport.data import load_dataset

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
T = 5


def snntorch_nir(path: Path) -> Path:
    """A small snnTorch net exported by snnTorch itself (full-shape beta/threshold, as its
    exporter needs), weights scaled so both layers spike on MNIST-5k digits."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    shape1, shape2 = (6, 14, 14), (10,)
    lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, stride=2, padding=1),
        snn.Leaky(beta=torch.full(shape1, 0.8), threshold=torch.full(shape1, 1.0), **lif),
        torch.nn.Flatten(), torch.nn.Linear(6 * 14 * 14, 10),
        snn.Leaky(beta=torch.full(shape2, 0.6), threshold=torch.full(shape2, 0.5), **lif))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[3].weight.mul_(4)
    x = load_dataset("mnist5k").x_test[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nir.write(path, export_to_nir(net, x, ignore_dims=[0]))
    return path


def test_a_foreign_nir_file_needs_and_takes_time_steps(tmp_path, capsys):
    path = snntorch_nir(tmp_path / "snntorch.nir")
    # snnTorch's NIR does not say T: one line saying what to give
    assert main(["check", str(path), "--data", "mnist5k", "--samples", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--time-steps T" in err and "\n" not in err, err
    # with T: the NIR graph against its own float64 simulation, every layer compared
    out = tmp_path / "r.json"
    code = main(["check", str(path), "--data", "mnist5k", "--samples", "20",
                 "--time-steps", str(T), "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["samples"] == 20 and report["time_steps"] == T
    assert report["exact"] and [la["name"] for la in report["layers"]] == ["1", "4"]
    assert all(la["spikes_reference"] > 0 for la in report["layers"])
    # and it exports to ONNX from the command line
    assert main(["export", str(path), "--time-steps", str(T), "--to", "onnx",
                 "-o", str(tmp_path / "m.onnx")]) == 0


def test_files_are_told_apart_by_content_not_name(tmp_path, capsys):
    nir_file = tmp_path / "model.pt"  # a NIR file with a checkpoint's name
    assert main(["export", str(MODELS / "digits_plif_layer.pt"), "--to", "nir",
                 "-o", str(tmp_path / "m.nir")]) == 0
    shutil.copy(tmp_path / "m.nir", nir_file)
    capsys.readouterr()
    assert main(["inspect", str(nir_file)]) == 0
    assert "layers.sn1" in capsys.readouterr().out
    # a netx file (HDF5 with netx's 'layer' group) is read as netx, not misread as NIR: a
    # broken one is refused naming its layer
    import h5py

    netx = tmp_path / "lava.net"
    with h5py.File(netx, "w") as f:
        f.create_group("layer").create_group("0")["type"] = np.bytes_("dense")
    assert main(["inspect", str(netx)]) == 2
    err = capsys.readouterr().err
    assert "layer/0: dense block without 'weight'" in err and err.count("\n") == 1, err
    bad = tmp_path / "nonsense.pt"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    assert main(["inspect", str(bad)]) == 2
    assert "not a readable HDF5 file" in capsys.readouterr().err


def test_the_python_api_is_at_the_top_level(tmp_path):
    model = snnexport.load(MODELS / "digits_plif_layer.pt")
    folded = snnexport.fold(model)
    assert folded.metadata["folded"]
    written = snnexport.export(model, "onnx", tmp_path / "m.onnx")
    assert written.path == tmp_path / "m.onnx" and written.path.stat().st_size > 0
    fixed = snnexport.export(model, "onnx-fixed", tmp_path / "m.fixed.onnx", calib_samples=50)
    assert fixed.calibrated_on == "50 samples of the digits training split"
    assert [r["layer"] for r in fixed.fixed.report][:1] == ["layers.sn1"]
    ds = load_dataset("digits")
    report = snnexport.verify(model, "reference", inputs=(ds.x_test[:30].numpy(),
                                                          ds.y_test[:30].numpy()), samples=30)
    assert report.samples == 30 and report.exact
    energy = snnexport.estimate_energy(model, "loihi2", samples=10,
                                       inputs=(ds.x_test[:10].numpy(), ds.y_test[:10]))
    assert energy.total > 0
    same = snnexport.estimate_energy(MODELS / "digits_plif_layer.pt", "loihi2", samples=10,
                                     data="digits")
    assert same.total == energy.total  # the same 10 test images, given two ways
    assert {"load", "fold", "export", "verify", "estimate_energy", "deploy_to",
            "from_spikingjelly", "from_snntorch", "from_norse"} <= set(snnexport.__all__)


@pytest.mark.parametrize("readout", ["rate", "last", "membrane"])
def test_a_spikingjelly_classifier_without_voting_checks_exact_on_onnx(readout):
    from spikingjelly.activation_based import layer, neuron, surrogate

    torch.manual_seed(0)
    plif = dict(init_tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)
    net = torch.nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
        neuron.ParametricLIFNode(**plif), layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(8 * 14 * 14, 10, bias=False),
        neuron.ParametricLIFNode(**plif)).eval()
    with torch.no_grad():
        net[5].weight.mul_(8)
    model = snnexport.load(net, input_shape=(1, 28, 28), time_steps=4, readout=readout)
    ds = load_dataset("mnist5k")
    x, y = ds.x_test[:100], ds.y_test[:100]
    report = snnexport.verify(model, "onnx", inputs=(x, y), samples=100)
    assert report.exact and report.unexplained == 0, report.text()
    assert all(layer.spikes_reference > 0 for layer in report.layers)
    # the scores are the readout's: the same accuracy as the framework's own forward pass
    assert report.correct_target == report.correct_reference


def test_a_nir_input_with_a_batch_dimension_gets_the_hint(tmp_path):
    from snnexport.check import load_model
    from snnexport.exporters.nir_export import to_nir
    from snnexport.importers.nir_import import NIRImportError, from_nir
    from snnexport.passes.fold import fold

    graph = to_nir(fold(load_model(MODELS / "digits_plif_layer.pt").graph, fold_gain=False))
    key = next(k for k, n in graph.nodes.items() if isinstance(n, nir.Input))
    graph.nodes[key] = nir.Input(input_type={"input": np.array([1, 1, 8, 8])})
    with pytest.raises(NIRImportError, match=r"leading batch dimension of 1 .*ignore_dims"):
        from_nir(graph, where="b.nir")


def test_equal_spikes_with_different_predictions_are_not_called_exact():
    from snnexport.parity import ParityReport

    report = ParityReport(target="t", samples=3, time_steps=2, agree=2)
    assert not report.exact
    assert report.text().splitlines()[-1] == (
        "  every spike of every layer is equal, but 1 prediction(s) differ: the target's "
        "readout is not the reference's; not exact")
