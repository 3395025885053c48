"""A user's data function that fails is one line naming it (issue 25): it raises, calls
sys.exit(0), returns a dict without y, ragged lists, a meta tensor, or never returns (stopped
after SNNEXPORT_DATA_TIMEOUT seconds). Labels outside the model's classes and NaN inputs
given from Python are refused, not scored."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import snnexport
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.errors import UsageError

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
MODEL = MODELS / "digits_plif_layer.pt"  # 10 classes, 1x8x8 inputs

FUNCTIONS = """
import sys, time
import numpy as np
import torch

def raises():
    raise KeyError("no such column")

def exits():
    sys.exit(0)

def no_y():
    return {"x": np.zeros((4, 1, 8, 8), np.float32)}

def ragged():
    return [[0.0, 1.0], [2.0]], [0, 1]

def meta():
    return torch.zeros(4, 1, 8, 8, device="meta"), torch.zeros(4, dtype=torch.int64)

def forever():
    while True:
        time.sleep(0.01)

def class_57():
    return np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 57, 2])

def half_label():
    return np.zeros((4, 1, 8, 8), np.float32), np.array([0, 1, 0.5, 2])
"""


@pytest.fixture
def userdata(tmp_path, monkeypatch):
    (tmp_path / "userdata_t25.py").write_text(FUNCTIONS)
    monkeypatch.chdir(tmp_path)
    yield
    sys.modules.pop("userdata_t25", None)


def _one_line(capsys, code):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("fn, says", [
    ("raises", "raised KeyError"), ("exits", "sys.exit(0)"), ("no_y", "no y"),
    ("ragged", "not an array of numbers"), ("meta", "not an array of numbers"),
    ("class_57", "57"), ("half_label", "integer class labels")])
def test_a_failing_data_function_is_one_line_naming_it(userdata, capsys, fn, says):
    code = main(["check", str(MODEL), "--data", f"userdata_t25:{fn}", "--samples", "4"])
    line = _one_line(capsys, code)
    assert f"userdata_t25:{fn}" in line and says in line


def test_a_data_function_that_never_returns_is_stopped(userdata, capsys, monkeypatch):
    import time

    monkeypatch.setenv("SNNEXPORT_DATA_TIMEOUT", "1")
    start = time.monotonic()
    code = main(["check", str(MODEL), "--data", "userdata_t25:forever", "--samples", "4"])
    line = _one_line(capsys, code)
    assert time.monotonic() - start < 30
    assert "did not return within 1 s" in line and "SNNEXPORT_DATA_TIMEOUT" in line


@pytest.mark.parametrize("bad", [57, np.iinfo(np.int64).max, 10, -1])
def test_labels_outside_the_models_classes_are_refused(bad):
    ds = load_dataset("digits")
    x, y = ds.x_test[:4], ds.y_test[:4].clone()
    y[2] = bad
    with pytest.raises(UsageError, match=f"{bad}") as info:
        snnexport.verify(MODEL, inputs=(x, y))
    assert "class" in str(info.value) and "\n" not in str(info.value)


def test_fractional_labels_from_python_are_refused():
    ds = load_dataset("digits")
    y = ds.y_test[:4].to(torch.float32)
    y[1] = 0.5
    with pytest.raises(UsageError, match="integer class labels"):
        snnexport.verify(MODEL, inputs=(ds.x_test[:4], y))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_inputs_from_python_are_refused(value):
    ds = load_dataset("digits")
    x = ds.x_test[:4].clone()
    x[1, 0, 3, 3] = value
    for call in (lambda: snnexport.verify(MODEL, inputs=(x, ds.y_test[:4])),
                 lambda: snnexport.estimate_energy(MODEL, "loihi2", inputs=(x, ds.y_test[:4]))):
        with pytest.raises(UsageError, match="NaN or Inf"):
            call()


def test_labels_of_another_length_are_refused():
    ds = load_dataset("digits")
    with pytest.raises(UsageError, match=r"\[4\]"):
        snnexport.verify(MODEL, inputs=(ds.x_test[:4], ds.y_test[:5]))


def test_a_failing_model_factory_is_one_line_naming_it(userdata, capsys):
    code = main(["check", "--model", "userdata_t25:raises", "--input-shape", "1,8,8",
                 "--time-steps", "4"])
    line = _one_line(capsys, code)
    assert "userdata_t25:raises" in line and "model factory raised KeyError" in line
