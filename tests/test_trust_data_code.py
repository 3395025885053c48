"""A model file never runs code (issue 25): a checkpoint's or .snnir file's recorded data may
name only a built-in data set; `module:function` or a FILE.npz recorded in a file is refused
in one line, and the module is never imported (a real module in the current folder that
writes a marker file when imported or called). The same spec given by the user (--data, a
Python argument) still runs: it is the user's choice."""

import os
from pathlib import Path

import pytest
import torch

import snnexport
from snnexport.cli import main
from snnexport.errors import UsageError
from snnexport.ir import load_ir, save_ir
from snnexport.models.checkpoint import FORMAT, VERSION

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
MODEL = MODELS / "digits_plif_layer.pt"

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("imported")

def run():
    Path({marker!r}).write_text("called")
    raise SystemExit(0)
"""


@pytest.fixture
def evil_cwd(tmp_path, monkeypatch):
    """A downloaded model's folder: evilmod.py next to the models, the user cd'd into it."""
    marker = tmp_path / "MARKER"
    (tmp_path / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    yield tmp_path, marker
    import sys

    sys.modules.pop("evilmod", None)


def _checkpoint_naming(path: Path, data) -> Path:
    payload = torch.load(MODEL, map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT and payload["version"] == VERSION
    payload["meta"]["data"] = data
    torch.save(payload, path)
    return path


def _ir_naming(path: Path, data) -> Path:
    g = snnexport.load(MODEL).graph
    g.metadata["data"] = data
    save_ir(g, path)
    assert load_ir(path).metadata["data"] == data  # the file really records it
    return path


def _one_line_refusal(capsys, code, spec):
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and spec in lines[0]
    assert "built-in data set" in lines[0] and "--data" in lines[0]


@pytest.mark.parametrize("command", [
    ["evaluate"], ["check", "--samples", "20"], ["energy", "--profile", "loihi2"],
    ["export", "--to", "onnx-fixed", "-o", "out.onnx"]])
@pytest.mark.parametrize("make", [_checkpoint_naming, _ir_naming])
def test_a_file_naming_code_as_its_data_runs_nothing(evil_cwd, capsys, command, make):
    folder, marker = evil_cwd
    if make is _ir_naming and command[0] == "evaluate":
        pytest.skip("evaluate takes checkpoints only")
    model = make(folder / ("m.pt" if make is _checkpoint_naming else "m.snnir"), "evilmod:run")
    code = main([command[0], str(model), *command[1:]])
    _one_line_refusal(capsys, code, "evilmod:run")
    assert not marker.exists()
    assert not (folder / "out.onnx").exists()


def test_deploy_of_a_file_naming_code_runs_nothing_and_writes_nothing(evil_cwd, capsys):
    folder, marker = evil_cwd
    model = _checkpoint_naming(folder / "m.pt", "evilmod:run")
    code = main(["deploy", str(model), "--targets", "reference", "-o", str(folder / "out"),
                 "--no-progress"])
    _one_line_refusal(capsys, code, "evilmod:run")
    assert not marker.exists()
    assert not (folder / "out" / "manifest.json").exists()


@pytest.mark.parametrize("spec", ["tempfile:mkdtemp", "os:getcwd", "mine.npz", ["digits"], 3])
def test_no_other_recorded_data_is_resolved(tmp_path, spec):
    """tempfile:mkdtemp would make a folder in the temp dir; a recorded file path would be
    read: both refused from the Python API too, before any call."""
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    model = _checkpoint_naming(tmp_path / "m.pt", spec)
    for call in (lambda: snnexport.verify(model, samples=20),
                 lambda: snnexport.estimate_energy(model, "loihi2", samples=20),
                 lambda: snnexport.export(model, "onnx-fixed", tmp_path / "o.onnx")):
        with pytest.raises(UsageError, match="built-in data set"):
            call()
    made = {n for n in set(os.listdir(tempfile.gettempdir())) - before if n.startswith("tmp")}
    assert not made  # mkdtemp's folders are named tmpXXXXXXXX
    assert not (tmp_path / "o.onnx").exists()


def test_the_same_spec_given_by_the_user_runs(evil_cwd, capsys):
    """--data module:function is the user's own choice: it is imported and called (here it
    exits, which is one line too, naming the function)."""
    folder, marker = evil_cwd
    code = main(["check", str(MODEL), "--data", "evilmod:run", "--samples", "20"])
    assert marker.read_text() == "called"
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "evilmod:run" in err[0]


def test_a_built_in_name_recorded_in_a_file_is_used(tmp_path):
    model = _ir_naming(tmp_path / "m.snnir", "digits")
    assert snnexport.verify(model, samples=20).samples == 20


@pytest.mark.parametrize("given", ["", "   "])
def test_empty_data_is_refused_not_replaced_by_the_recorded(given, capsys):
    code = main(["check", str(MODEL), "--data", given, "--samples", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--data" in err[0]
    with pytest.raises(UsageError, match=r"verify: data = '\s*' \(str\)"):
        snnexport.verify(MODEL, data=given, samples=20)
