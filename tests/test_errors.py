"""One error family: the real CLI turns every error the toolkit raises on purpose into one line
(`error: ...`, naming the file) and exit status 2, and every exception class snnexport defines
derives from SnnexportError."""

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import snnexport
from snnexport.errors import SnnexportError, UsageError

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "digits_plif_layer.pt"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "snnexport.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_missing_model_file(tmp_path):
    line = assert_one_error_line(run_cli("inspect", "nope.pt", cwd=tmp_path), "nope.pt")
    assert "no such file" in line


def test_random_bytes_named_pt(tmp_path):
    (tmp_path / "x.pt").write_bytes(os.urandom(4096))
    for command in (["inspect", "x.pt"], ["export", "x.pt", "--to", "nir", "-o", "x.nir"]):
        line = assert_one_error_line(run_cli(*command, cwd=tmp_path), "x.pt")
        assert "checkpoint" in line
    assert not (tmp_path / "x.nir").exists()


def test_truncated_ir_file(tmp_path):
    from snnexport.check import load_model
    from snnexport.ir import save_ir

    whole = tmp_path / "whole.snnir"
    save_ir(load_model(MODEL).graph, whole)
    data = whole.read_bytes()
    (tmp_path / "cut.snnir").write_bytes(data[:len(data) // 2])
    assert_one_error_line(run_cli("inspect", "cut.snnir", cwd=tmp_path), "cut.snnir")


def test_unknown_data_name(tmp_path):
    proc = run_cli("check", str(MODEL), "--data", "nosuchdata", cwd=tmp_path)
    line = assert_one_error_line(proc, "nosuchdata", "--data")
    assert "digits" in line  # what would work


def test_usage_error_keeps_its_builtin_base():
    from snnexport.data import load_dataset
    from snnexport.models import CheckpointError, load_checkpoint

    with pytest.raises(UsageError, match="'nosuchdata'"):
        load_dataset("nosuchdata")
    with pytest.raises(ValueError):  # code that caught the builtin keeps working
        load_dataset("nosuchdata")
    assert issubclass(CheckpointError, SnnexportError) and issubclass(CheckpointError, ValueError)
    with pytest.raises(SnnexportError, match="nope.pt: no such file"):
        load_checkpoint("nope.pt")


def _modules():
    """Every module of the package; one that needs Lava (the runner, run in its own Python 3.10
    environment) is skipped when Lava is not installed here."""
    out, skipped = [], []
    for info in pkgutil.walk_packages(snnexport.__path__, prefix="snnexport."):
        try:
            out.append(importlib.import_module(info.name))
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "lava":
                raise
            skipped.append(info.name)
    return out, skipped


def test_every_exception_class_derives_from_snnexport_error():
    modules, skipped = _modules()
    assert set(skipped) <= {"snnexport.lava.runner", "snnexport.lava.var_writer"}, skipped
    assert len(modules) > 20
    seen, outside = [], []
    for module in modules:
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__ or not issubclass(obj, BaseException):
                continue
            seen.append(f"{obj.__module__}.{obj.__qualname__}")
            if not issubclass(obj, SnnexportError):
                outside.append(f"{obj.__module__}.{obj.__qualname__}")
    assert "snnexport.models.checkpoint.CheckpointError" in seen
    assert not outside, f"not derived from SnnexportError: {sorted(outside)}"
