"""The Python API is as careful as the command line (issue 25): an argument of the wrong type
(None, an int, bytes, a list, a str or object array as inputs) is one UsageError naming the
call, the argument and what it takes, never a traceback from deep inside."""

from pathlib import Path

import numpy as np
import pytest
import torch

import snnexport
from snnexport.errors import SnnexportError, UsageError

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "digits_plif_layer.pt"


def _one_line(call, *words):
    with pytest.raises(SnnexportError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and isinstance(info.value, UsageError), text
    for w in words:
        assert w in text, (w, text)
    return text


@pytest.mark.parametrize("bad", [None, 3, b"net.pt", ["net.pt"], 2.5, ""])
@pytest.mark.parametrize("fn", ["load", "verify", "estimate_energy", "export", "deploy_to"])
def test_a_model_of_the_wrong_type(fn, bad, tmp_path):
    args = {"load": (), "verify": (), "estimate_energy": ("loihi2",),
            "export": ("onnx", tmp_path / "o.onnx"), "deploy_to": (tmp_path / "out",)}[fn]
    _one_line(lambda: getattr(snnexport, fn)(bad, *args), f"{fn}: model", type(bad).__name__)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("call, words", [
    (lambda t: snnexport.export(MODEL, None, t / "o.onnx"), ("export: target", "NoneType")),
    (lambda t: snnexport.export(MODEL, "onnx", None), ("export: path",)),
    (lambda t: snnexport.export(MODEL, "onnx", 7), ("export: path", "int")),
    (lambda t: snnexport.verify(MODEL, ["fixed"]), ("verify: target", "list")),
    (lambda t: snnexport.verify(MODEL, data=5), ("verify: data", "int")),
    (lambda t: snnexport.estimate_energy(MODEL, None), ("estimate_energy: profile",)),
    (lambda t: snnexport.load(MODEL, time_steps="8"), ("load: time_steps", "str")),
    (lambda t: snnexport.load(MODEL, time_steps=0), ("time_steps = 0",)),
    (lambda t: snnexport.load(MODEL, readout="max"), ("readout",)),
    (lambda t: snnexport.load("pkg.mod:fn", input_shape=(1, -8, 8)), ("input_shape",)),
    (lambda t: snnexport.load("pkg.mod:fn", input_shape="1,8,8"), ("input_shape", "str")),
    (lambda t: snnexport.deploy_to(MODEL, t / "out", targets=[3]), ("a target", "int")),
    (lambda t: snnexport.deploy_to(MODEL, t / "out", targets=None), ("targets",)),
])
def test_an_option_of_the_wrong_type(tmp_path, call, words):
    _one_line(lambda: call(tmp_path), *words)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("inputs, says", [
    (None, None), (5, "give (x, labels)"), ([1, 2, 3], "give (x, labels)"),
    ((np.array([["a", "b"]]), np.array([0])), "must be numbers"),
    ((np.array([[object()]], dtype=object), np.array([0])), "must be numbers"),
    ((torch.zeros(2, 1, 8, 8, device="meta"), torch.zeros(2, dtype=torch.int64)),
     "not an array of numbers"),
    ((np.zeros((2, 1, 8, 8)), np.array([0, 1, 2])), "labels must be [N] = [2]"),
    ((np.zeros((2, 1, 8, 8)), [[0], [1]]), "labels must be [N] = [2]"),
    ((b"\x00" * 128, np.array([0])), "must be numbers")])
def test_inputs_of_the_wrong_kind(inputs, says):
    if inputs is None:  # no inputs and no data: the model's own data set is used
        assert snnexport.verify(MODEL, samples=4, inputs=None).samples == 4
        return
    for call in (lambda: snnexport.verify(MODEL, inputs=inputs),
                 lambda: snnexport.estimate_energy(MODEL, "loihi2", inputs=inputs)):
        _one_line(call, says)


def test_targets_as_a_list_deploys(tmp_path):
    summary = snnexport.deploy_to(MODEL, tmp_path / "out", targets=["reference"], samples=20,
                                  lava_samples=20, calib_samples=20, progress=False)
    assert [r["target"] for r in summary["rows"]] == ["reference"]
