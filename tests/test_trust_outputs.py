"""Outputs replace only regular files (issue 25): `-o` onto a character device, `--json` onto
a FIFO or a symbolic link to /dev/stdout or /dev/null are refused in one line and the node is
left as it was; the Python API refuses to write its own input model; `--json -` writes to
standard output; a legal 251-character output name is written (the temporary file's name stays
within NAME_MAX)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import snnexport
from snnexport.cli import main
from snnexport.errors import UsageError
from snnexport.files import atomic_write

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "digits_plif_layer.pt"
CHECK = ["check", str(MODEL), "--samples", "20"]


def _refused(capsys, code, *names):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "replaces only regular files" in err[0]
    for name in names:
        assert name in err[0], (name, err[0])
    return err[0]


def _char_device(tmp_path) -> Path:
    """A character device node like /dev/null (1, 3), made here (root only)."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here (not root)")
    return node


@pytest.mark.parametrize("argv", [
    lambda out: ["export", str(MODEL), "--to", "onnx", "-o", str(out)],
    lambda out: ["fold", str(MODEL), "-o", str(out)],
    lambda out: [*CHECK, "--json", str(out)]])
def test_a_character_device_is_not_replaced(tmp_path, capsys, argv):
    node = _char_device(tmp_path)
    _refused(capsys, main(argv(node)), str(node), "character device")
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert os.listdir(tmp_path) == ["null"]  # no temp file left either


def test_a_fifo_is_not_replaced(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    _refused(capsys, main([*CHECK, "--json", str(fifo)]), str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_to_dev_null_is_not_replaced(tmp_path, capsys):
    link = tmp_path / "out.onnx"
    link.symlink_to("/dev/null")
    _refused(capsys, main(["export", str(MODEL), "--to", "onnx", "-o", str(link)]), str(link),
             "through a symbolic link")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_link_to_dev_stdout_on_a_pipe_is_not_replaced(tmp_path):
    """--json LINK -> /dev/stdout, the process's stdout a pipe: refused, the link kept."""
    link = tmp_path / "report.json"
    link.symlink_to("/dev/stdout")
    run = subprocess.run([sys.executable, "-m", "snnexport.cli", *CHECK, "--json", str(link)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(err) == 1, run.stderr
    assert "FIFO" in err[0] and "replaces only regular files" in err[0]
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert run.stdout == ""  # refused before any work: no report printed


def test_json_dash_writes_to_standard_output(capsys):
    assert main([*CHECK, "--json", "-"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("\n{") + 1:])  # the text report, then the JSON
    assert report["samples"] == 20
    assert not Path("-").exists()


def test_the_python_api_does_not_overwrite_its_input(tmp_path):
    model = tmp_path / "m.pt"
    model.write_bytes(MODEL.read_bytes())
    before = model.read_bytes()
    for out in (model, str(model)):
        with pytest.raises(UsageError, match="is the input model"):
            snnexport.export(model, "onnx", out)
    link = tmp_path / "link.pt"
    os.link(model, link)
    with pytest.raises(UsageError, match="input model"):
        snnexport.export(str(model), "onnx", link)
    assert model.read_bytes() == before


def test_the_python_api_does_not_replace_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="FIFO"):
        snnexport.export(MODEL, "onnx", fifo)
    with pytest.raises(UsageError, match="FIFO"):  # the one writer refuses it at write time
        atomic_write(fifo, lambda tmp: Path(tmp).write_text("x"))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe.onnx"]


def test_a_251_character_output_name_is_written(tmp_path):
    name = "a" * 246 + ".onnx"
    assert len(name) == 251
    out = snnexport.export(MODEL, "onnx", tmp_path / name)
    assert out.path.name == name and (tmp_path / name).stat().st_size > 0
    assert os.listdir(tmp_path) == [name]


def test_a_link_to_a_redirected_stdout_is_not_replaced(tmp_path):
    """--json LINK -> /proc/self/fd/1 with stdout redirected to a regular file (what
    /dev/stdout is): refused; without the rule the rename would replace the link (as root,
    given /dev/stdout itself, the system's link)."""
    link = tmp_path / "report.json"
    link.symlink_to("/proc/self/fd/1")
    sink = tmp_path / "stdout.txt"
    with open(sink, "w") as out:
        run = subprocess.run([sys.executable, "-m", "snnexport.cli", *CHECK, "--json",
                              str(link)], stdout=out, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, timeout=600,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(err) == 1, run.stderr
    assert "in /proc" in err[0] and "give -" in err[0]
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert sink.read_text() == ""
