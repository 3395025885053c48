"""Outputs never overwrite an input and are checked before any work (issue 12): every command
that writes, run through the real CLI on a bundled model, refuses an output that is the input
(same path, hard link, symbolic link, or for deploy a folder holding it), an output that is a
folder, and a path it cannot write, with one `error:` line and exit status 2, leaving the input
and the folder as they were. deploy holds a real lock on its folder: a second deploy into it is
refused at once, whether the lock is held by this process or by a deploy racing in another."""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snnexport.cli import main

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "models" / "digits_plif_layer.pt"
FAST = ["--samples", "5"]
DEPLOY = ["--targets", "reference", *FAST, "--calib-samples", "20", "--no-progress"]

# every command that writes: argv for (model, output); train reads no model
WRITERS = {
    "fold": lambda m, o: ["fold", m, "-o", o],
    "export-nir": lambda m, o: ["export", m, "--to", "nir", "-o", o],
    "export-netx": lambda m, o: ["export", m, "--to", "netx", "--calib-samples", "20", "-o", o],
    "check-json": lambda m, o: ["check", m, *FAST, "--json", o],
    "energy-json": lambda m, o: ["energy", m, "--profile", "loihi2", *FAST, "--json", o],
    "energy-csv": lambda m, o: ["energy", m, "--profile", "loihi2", *FAST, "--csv", o],
    "energy-plot": lambda m, o: ["energy", m, "--profile", "loihi2", *FAST, "--plot", o],
    "evaluate-json": lambda m, o: ["evaluate", m, *FAST, "--json", o],
    "deploy": lambda m, o: ["deploy", m, *DEPLOY, "-o", o],
    "train": lambda m, o: ["train", "--preset", "digits-plif-layer", "--epochs", "1", "-o", o],
}
READERS = [w for w in WRITERS if w != "train"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> dict:
    """Every file and folder under `folder` (links not followed) with its content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "link" if p.is_symlink() else "dir" if p.is_dir() else sha256(p)
    return out


def refused(argv, capsys, *names) -> str:
    """Run the real CLI; it must exit 2 with one `error:` line naming every one of `names`."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.fixture
def work(tmp_path):
    """A folder holding a copy of the bundled model (m.pt)."""
    shutil.copy(MODEL, tmp_path / "m.pt")
    return tmp_path


@pytest.mark.parametrize("link", ["same path", "hard link", "symbolic link", "relative"])
@pytest.mark.parametrize("writer", READERS)
def test_output_that_is_the_input_is_refused(work, capsys, writer, link):
    model = work / "m.pt"
    output = {"same path": model, "hard link": work / "h.pt", "symbolic link": work / "s.pt",
              "relative": Path(os.path.relpath(model))}[link]
    if link == "hard link":
        os.link(model, output)
    elif link == "symbolic link":
        output.symlink_to(model)
    before, digest = listing(work), sha256(model)
    line = refused(WRITERS[writer](model, output), capsys, output, "input model")
    assert line.startswith(f"error: {writer.split('-')[0]}: ")
    if output != model:
        assert str(model) in line  # both paths named
    assert sha256(model) == digest and listing(work) == before


@pytest.mark.parametrize("link", ["model's folder", "folder with a hard link"])
def test_deploy_into_a_folder_holding_the_input_is_refused(work, capsys, link):
    model, folder = work / "m.pt", work
    if link == "folder with a hard link":
        folder = work / "out"
        folder.mkdir()
        os.link(model, folder / "model.snnir")
    before, digest = listing(work), sha256(model)
    line = refused(WRITERS["deploy"](model, folder), capsys, folder, model, "holds")
    assert "NEW_FOLDER" in line
    assert sha256(model) == digest and listing(work) == before


@pytest.mark.parametrize("writer", ["check-json", "evaluate-json", "energy-json"])
def test_output_that_is_the_data_file_is_refused(work, capsys, writer):
    """--data FILE is an input too (refused before it is read: any bytes will do)."""
    data = work / "d.npz"
    data.write_bytes(b"user data")
    before = listing(work)
    refused([*WRITERS[writer](work / "m.pt", data), "--data", data], capsys, data, "input data")
    assert listing(work) == before


def test_one_output_twice_is_refused(work, capsys):
    before = listing(work)
    out = work / "e.txt"
    refused(["energy", work / "m.pt", "--profile", "loihi2", *FAST, "--json", out, "--csv", out],
            capsys, out, "--json output", "--csv")
    assert listing(work) == before


@pytest.mark.parametrize("writer", WRITERS)
def test_a_folder_given_for_a_file_is_refused(work, capsys, writer):
    """A folder where a file is expected; for deploy, a file where its folder is expected."""
    target = work / "target"
    if writer == "deploy":
        target.write_text("not a folder\n")
    else:
        target.mkdir()
    before, digest = listing(work), sha256(work / "m.pt")
    line = refused(WRITERS[writer](work / "m.pt", target), capsys, target)
    assert "not a folder" in line if writer == "deploy" else "is a folder" in line
    assert sha256(work / "m.pt") == digest and listing(work) == before


def unwritable(work: Path, kind: str) -> Path:
    """A folder that cannot be written into, made (or found) for this test."""
    if kind == "under a file":
        (work / "afile").write_text("a file\n")
        return work / "afile" / "sub"
    if kind == "read-only folder":
        folder = work / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            (folder / "probe").touch()
        except OSError:
            return folder / "sub"
        pytest.skip("this user writes into a read-only folder anyway (root); see procfs")
    if not Path("/proc/self").is_dir():
        pytest.skip("no procfs here")
    return Path("/proc/self")  # refuses new files, even to root


@pytest.mark.parametrize("kind", ["under a file", "read-only folder", "procfs"])
@pytest.mark.parametrize("writer", WRITERS)
def test_an_unwritable_output_path_is_refused(work, capsys, writer, kind):
    parent = unwritable(work, kind)
    output = parent / "out.file"
    before, digest = listing(work), sha256(work / "m.pt")
    try:
        line = refused(WRITERS[writer](work / "m.pt", output), capsys, output)
    finally:
        if kind == "read-only folder":
            (work / "ro").chmod(0o755)
    assert "not a folder" in line or "not writable" in line, line
    assert sha256(work / "m.pt") == digest and listing(work) == before


def test_a_writable_path_is_still_written(work, capsys):
    """The guard refuses no more than it should: missing parents are made, a file that is no
    input is replaced."""
    out = work / "new" / "deeper" / "m.snnir"
    assert main(["fold", str(work / "m.pt"), "-o", str(out)]) == 0 and out.stat().st_size > 0
    old = work / "old.json"
    old.write_text("{}\n")
    assert main(["evaluate", str(work / "m.pt"), *FAST, "--json", str(old)]) == 0
    assert json.loads(old.read_text()) != {}


def test_deploy_refuses_a_folder_that_is_no_deployment(work, capsys):
    folder = work / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8 not much of a cat")
    before = listing(work)
    line = refused(WRITERS["deploy"](work / "m.pt", folder), capsys, folder, "cat.jpg",
                   "not a deployment folder")
    assert "empty or new folder" in line
    assert listing(work) == before  # no lock file left either


# A worker process: imports everything, then for each round waits for its start file and runs
# `python -m snnexport.cli deploy ...` (runpy, as -m does), recording exit status, stderr and
# the time span of the run, so that two workers start each deploy within milliseconds.
WORKER = r"""
import contextlib, io, json, os, runpy, sys, time
from pathlib import Path
import snnexport.backends, snnexport.deploy, snnexport.energy  # the imports, before the start
name, base, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
for i in range(1000):
    while not (base / f"go{i}").exists():
        if (base / "stop").exists():
            sys.exit(0)
        time.sleep(0.0005)
    err = io.StringIO()
    start = time.monotonic()
    sys.argv = ["snnexport", *argv]
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module("snnexport.cli", run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
    end = time.monotonic()
    (base / f".{name}{i}").write_text(json.dumps(
        {"code": code, "stderr": err.getvalue(), "span": [start, end]}))
    os.replace(base / f".{name}{i}", base / f"{name}{i}.json")
"""


def assert_lock_refusal(line: str, folder: Path) -> None:
    assert line.startswith("error: ") and str(folder) in line, line
    assert "another snnexport deploy" in line and ".snnexport.lock" in line, line


def resumed(result: dict, i: int) -> bool:
    """The deploy of round i ran: exit 0 (the reference target is exact: trusted). Only in a
    shared working tree: a resume refused because the package's code changed between rounds
    (someone edited it) also got past the lock."""
    if result["code"] == 0:
        return True
    return i > 0 and result["code"] == 2 and "differs in ['code']" in result["stderr"]


def test_deploy_locks_its_folder_twenty_tries(work, capsys):
    """Two real deploy processes started together into one folder: one runs, the other is
    refused with the lock error (4 races: a new folder, then resumes of it, each resume with
    two steps to redo; a round where one process started only after the other ended is no race
    and not counted); then 16 deploys against the lock held by this process (an empty folder,
    and the finished deployment)."""
    out = work / "out"
    argv = ["deploy", str(work / "m.pt"), *DEPLOY, "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, name, str(work), *argv],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True) for name in "ab"]
    races = rounds = 0
    try:
        while races < 4:
            assert rounds < 10, f"only {races} of {rounds} rounds were races"
            i, rounds = rounds, rounds + 1
            for step in ("check_reference.json", "energy_loihi2.json"):  # work to redo
                (out / step).unlink(missing_ok=True)
            (work / f"go{i}").touch()
            results = [work / f"{name}{i}.json" for name in "ab"]
            deadline = time.monotonic() + 120
            while not all(r.exists() for r in results):
                alive = [w.poll() is None or r.exists()
                         for w, r in zip(workers, results, strict=True)]
                assert all(alive), [w.stderr.read() for w in workers if w.poll() is not None]
                assert time.monotonic() < deadline, f"round {i}: no result in 120 s"
                time.sleep(0.01)
            a, b = (json.loads(r.read_text()) for r in results)
            first, second = sorted((a, b), key=lambda r: r["span"][0])
            if second["span"][0] >= first["span"][1]:  # not a race: one ran after the other
                assert resumed(a, i) and resumed(b, i), (a, b)
                continue
            races += 1
            ran, lost = sorted((a, b), key=lambda r: "another snnexport deploy" in r["stderr"])
            assert resumed(ran, i), (a, b)
            assert lost["code"] == 2, (a, b)
            # refused before any work: its stderr (where the progress bar and every warning
            # would go) is the one lock line; no time bound (a process's first checkpoint load
            # imports torch._dynamo for the meta device: 1.7 s on a loaded machine)
            assert len(lost["stderr"].splitlines()) == 1, lost["stderr"]
            assert_lock_refusal(lost["stderr"].strip(), out)
    finally:
        (work / "stop").touch()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0]
    assert json.loads((out / "summary.json").read_text())["trusted"]
    fd = os.open(out / ".snnexport.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by both processes
    finally:
        os.close(fd)

    # the lock held here (flock is per open file: this process's own deploys are refused too)
    fresh = work / "fresh"
    fresh.mkdir()
    for folder in [fresh] * 8 + [out] * 8:
        fd = os.open(folder / ".snnexport.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            before = listing(folder)
            line = refused(["deploy", work / "m.pt", *DEPLOY, "-o", folder], capsys, folder)
            assert_lock_refusal(line, folder)
            assert listing(folder) == before  # nothing written: no work done
        finally:
            os.close(fd)
