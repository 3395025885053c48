"""The inspect / fold / check commands, and parity of every bundled model on 200 samples."""

import json
from pathlib import Path

import pytest
import torch

from snnexport.check import check, load_model
from snnexport.cli import main
from snnexport.ir import load_ir

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
BUNDLED = sorted(p.name for p in MODELS.glob("*.pt"))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_folds_exactly_on_200_samples(name):
    loaded = load_model(MODELS / name)
    report = check(loaded, samples=200, reference_dtype=torch.float64)
    assert report.samples == 200 and report.exact, report.text()
    # the model as trained (float32): nothing but counted threshold ties may differ,
    # whether the folded IR runs in float64 or in float32
    assert check(loaded, samples=200).unexplained == 0
    report32 = check(loaded, samples=200, target_dtype=torch.float32)
    assert report32.unexplained == 0 and "float32" in report32.target, report32.text()


def test_inspect_fold_check_commands(tmp_path, capsys):
    model = MODELS / "digits_plif_neuron.pt"
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert "layers.sn1" in out and "tau min" in out and "(2048 values)" in out
    ir_file = tmp_path / "m.snnir"
    assert main(["fold", str(model), "-o", str(ir_file)]) == 0
    folded = load_ir(ir_file)
    assert folded.metadata["folded"] and folded.metadata["data"] == "digits"
    assert "BatchNorm" not in capsys.readouterr().out
    report = tmp_path / "r.json"
    assert main(["check", str(model), "--target", "reference", "--data", "digits",
                 "--samples", "40", "--json", str(report)]) == 0
    d = json.loads(report.read_text())
    for key in ("target", "samples", "time_steps", "accuracy", "agreement", "exact", "layers",
                "first_divergence"):
        assert key in d
    assert d["samples"] == 40 and d["time_steps"] == 8 and d["exact"] is True
    assert d["first_divergence"] is None and set(d["accuracy"]) == {"reference", "target"}
    assert [layer["name"] for layer in d["layers"]] == [
        "layers.sn1", "layers.sn2", "layers.sn_fc1", "layers.sn_out"]
    assert all(set(layer) >= {"name", "spikes_reference", "spikes_target", "mismatches", "ties"}
               for layer in d["layers"])
    # an IR file is a MODEL too
    assert main(["check", str(ir_file), "--samples", "20"]) == 0


def test_cli_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["inspect", str(bad)]) == 2
    assert "bad.pt: not a readable torch checkpoint" in capsys.readouterr().err
