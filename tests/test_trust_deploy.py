"""Deploy checks what it ships and resume trusts only what it verified (issue 25).

Every check runs the artifact file written to OUTDIR, read back from disk; the manifest records
each finished step's files with their SHA-256; a resumed deploy redoes every step whose files
are missing, changed or unreadable (a forged or truncated check file, a truncated artifact, an
energy file without its rows) and refuses in one line a damaged manifest or a lock path that
is no file. Targets are checked before the folder is made."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import snnexport
from snnexport.check import check, load_model
from snnexport.cli import main
from snnexport.deploy import code_fingerprint, deploy
from snnexport.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
MODEL = MODELS / "digits_plif_layer.pt"
TARGETS = "reference,nir,onnx,fixed,onnx-fixed"  # every artifact a fast target runs
FAST = ["--samples", "20", "--calib-samples", "20", "--no-progress"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _deploy_cli(out: Path, targets: str = TARGETS) -> int:
    return main(["deploy", str(MODEL), "--targets", targets, "-o", str(out), *FAST])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("trust") / "out"
    assert _deploy_cli(out) == 0
    return out


def _restamp(out: Path) -> None:
    mpath = out / "manifest.json"
    mpath.write_text(json.dumps({**json.loads(mpath.read_text()), "code": code_fingerprint()}))


@pytest.fixture
def copy(base, tmp_path):
    """A copy of the deployment, its manifest's code fingerprint renewed (in a shared working
    tree someone may edit the package between the first deploy and a resume)."""
    out = tmp_path / "out"
    shutil.copytree(base, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "code": code_fingerprint()}))
    return out


def _one_line(capsys, code, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def test_each_check_ran_the_artifact_file_and_the_manifest_holds_its_hash(base):
    done = json.loads((base / "manifest.json").read_text())["done"]
    for target, artifact in (("onnx", "model.onnx"), ("onnx-fixed", "model.fixed.onnx"),
                             ("nir", "model.nir"), ("fixed", "model.fixed.npz"),
                             ("reference", "model.snnir")):
        report = json.loads((base / f"check_{target}.json").read_text())
        assert report["artifact"] == {"file": artifact, "sha256": sha256(base / artifact)}
        assert done[f"check_{target}.json"]["inputs"] == {artifact: sha256(base / artifact)}
        assert report["unexplained"] == 0, target  # fixed: quantisation, explained
    for name, rec in done.items():
        assert rec["sha256"] == sha256(base / name), name


def test_the_onnx_check_runs_the_file_it_is_given(base, tmp_path):
    """The same check on another model's ONNX file (the same layers, per-neuron tau) is not
    exact; on a truncated one it is refused: what runs is the file, not a model in memory."""
    loaded = load_model(MODEL)
    other = tmp_path / "other.onnx"
    snnexport.export(MODELS / "digits_plif_neuron.pt", "onnx", other)
    honest = check(loaded, "onnx", "digits", 20, artifact=base / "model.onnx")
    assert honest.exact
    wrong = check(loaded, "onnx", "digits", 20, artifact=other)
    assert not wrong.exact and wrong.unexplained > 0
    cut = tmp_path / "cut.onnx"
    cut.write_bytes((base / "model.onnx").read_bytes()[:5000])
    with pytest.raises(UsageError, match="not a readable ONNX file"):
        check(loaded, "onnx", "digits", 20, artifact=cut)


@pytest.mark.parametrize("damage", ["forged", "truncated", "removed"])
def test_a_damaged_check_file_is_redone(base, copy, damage):
    path = copy / "check_onnx.json"
    honest = json.loads(path.read_text())
    kept = (copy / "check_reference.json").stat().st_mtime_ns
    if damage == "forged":
        path.write_text(json.dumps({**honest, "samples": 999, "exact": True, "layers": []}))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    else:
        path.unlink()
    summary = deploy(str(MODEL), str(copy), targets=TARGETS, samples=20, calib_samples=20,
                     progress=False)
    again = json.loads(path.read_text())
    assert again["samples"] == 20 and again["layers"] == honest["layers"]
    assert summary["trusted"]
    assert (copy / "check_reference.json").stat().st_mtime_ns == kept  # intact: not redone


def test_a_truncated_artifact_is_exported_again_and_checked_again(base, copy):
    art = copy / "model.onnx"
    good = sha256(art)
    art.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    summary = deploy(str(MODEL), str(copy), targets=TARGETS, samples=20, calib_samples=20,
                     progress=False)
    assert sha256(art) == good  # the same model, written again whole (deterministic bytes)
    # the check ran the file with exactly these bytes: kept (a check of other bytes is redone)
    assert json.loads((copy / "check_onnx.json").read_text())["artifact"]["sha256"] == good
    assert summary["trusted"]


def test_a_check_of_other_artifact_bytes_is_redone(base, copy):
    """The manifest says the check ran an artifact of other bytes than the file there now (as
    when an export is redone and writes something else): the check runs again."""
    mpath = copy / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["done"]["check_onnx.json"]["inputs"]["model.onnx"] = "0" * 64
    mpath.write_text(json.dumps(manifest))
    before = (copy / "check_onnx.json").stat().st_mtime_ns
    deploy(str(MODEL), str(copy), targets=TARGETS, samples=20, calib_samples=20,
           progress=False)
    assert (copy / "check_onnx.json").stat().st_mtime_ns != before
    done = json.loads(mpath.read_text())["done"]
    assert done["check_onnx.json"]["inputs"] == {"model.onnx": sha256(copy / "model.onnx")}


def test_an_energy_file_without_its_rows_is_redone(base, copy):
    path = copy / "energy_cmos45.json"
    honest = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in honest.items() if k != "total"}))
    summary = deploy(str(MODEL), str(copy), targets=TARGETS, samples=20, calib_samples=20,
                     progress=False)
    assert json.loads(path.read_text())["total"] == honest["total"]
    assert {r["energy_pj"] for r in summary["rows"] if r["profile"] == "cmos45"} == {
        honest["total"]}


@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b"\xff\xfe\x00", "folder"])
def test_a_damaged_manifest_is_one_line(base, copy, capsys, damage):
    mpath = copy / "manifest.json"
    mpath.unlink()
    if damage == "folder":
        mpath.mkdir()
    else:
        mpath.write_bytes(damage)
    _one_line(capsys, _deploy_cli(copy), "manifest", "cannot be read", "new one")


@pytest.mark.parametrize("kind", ["folder", "dangling link"])
def test_a_lock_path_that_is_no_file_is_one_line(tmp_path, capsys, kind):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".snnexport.lock"
    if kind == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(tmp_path / "nowhere")
    _one_line(capsys, _deploy_cli(out), "lock", "cannot be opened")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("targets, says", [(",", "names no target"), (" , ,", "names no target"),
                                           ("onnx,quantum", "quantum")])
def test_bad_targets_are_refused_before_the_folder_is_made(tmp_path, capsys, targets, says):
    out = tmp_path / "new" / "out"
    _one_line(capsys, _deploy_cli(out, targets), says)
    assert not (tmp_path / "new").exists()


def test_a_killed_deploys_temporary_files_are_removed(base, copy):
    stale = [copy / ".check_onnx.json.a1b2c3d4.tmp", copy / f".model.onnx.{'x' * 8}.tmp"]
    for p in stale:
        p.write_text("half")
    deploy(str(MODEL), str(copy), targets=TARGETS, samples=20, calib_samples=20,
           progress=False)
    assert not any(p.exists() for p in stale)
    assert not [p for p in os.listdir(copy) if p.endswith(".tmp")]


def test_check_on_too_few_samples_says_so(capsys, tmp_path):
    out = tmp_path / "c.json"
    assert main(["check", str(MODEL), "--samples", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "exact on 1 samples: too few to trust" in text
    assert json.loads(out.read_text())["too_few_samples"] is True
    assert main(["check", str(MODEL), "--samples", "20"]) == 0
    assert "too few" not in capsys.readouterr().out


def test_ctrl_c_during_a_deploy_is_one_line_and_the_folder_resumes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "snnexport.cli", "deploy", str(MODEL),
                             "--targets", TARGETS, "-o", str(out), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 300
    while not (out / "model.snnir").exists():  # well inside the run
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and len(lines) == 1, err
    assert "interrupted" in lines[0] and "resume" in lines[0]
    summary = deploy(str(MODEL), str(out), targets=TARGETS, samples=20, calib_samples=20,
                     progress=False)
    assert summary["trusted"]


def test_the_lava_targets_run_the_files_written(tmp_path):
    """netx runs OUTDIR/model.net, lava-fixed OUTDIR/model.fixed.npz (the 'fixed' export) and
    lava-float OUTDIR/model.snnir (the folded IR), each read back from disk by the Lava
    runner."""
    out = tmp_path / "out"
    summary = deploy(str(MODEL), str(out), targets="lava-float,lava-fixed,netx", samples=20,
                     lava_samples=2, calib_samples=20, progress=False)
    for target, artifact in (("lava-fixed", "model.fixed.npz"), ("netx", "model.net"),
                             ("lava-float", "model.snnir")):
        report = json.loads((out / f"check_{target}.json").read_text())
        assert report["artifact"] == {"file": artifact, "sha256": sha256(out / artifact)}
        assert report["exact"] and report["samples"] == 2, target
    assert summary["trusted"]
    assert summary["too_few_samples"] == ["lava-float", "lava-fixed", "netx"]


def test_every_file_of_a_deployment_damaged_in_turn_resumes_or_refuses(base, copy, capsys):
    """Each file deploy wrote, in turn: cut to half, replaced by junk, removed, or a folder
    put in its place; each resume ends in the honest summary (every target as before) or, for
    a folder in a file's place, one line naming it."""
    honest = json.loads((base / "summary.json").read_text())
    names = sorted(p.name for p in base.iterdir() if p.is_file() and p.name not in
                   (".snnexport.lock", "manifest.json"))
    assert {"model.onnx", "check_onnx.json", "energy_loihi2.json", "lint.json",
            "summary.json", "model.snnir"} <= set(names)
    cases = [(name, ("half", "junk", "removed", "folder")[i % 4])
             for i, name in enumerate(names)]
    cases += [("summary.json", "folder"), ("report.html", "folder"), ("model.nir", "folder")]
    for name, how in cases:
        path = copy / name
        if how == "half":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif how == "junk":
            path.write_bytes(b"\x00junk{")
        else:
            path.unlink()
            if how == "folder":
                path.mkdir()
        _restamp(copy)  # a shared working tree: the package may change during the loop
        code = _deploy_cli(copy)
        out = capsys.readouterr()
        if how == "folder":
            assert code == 2, (name, out.err)
            lines = out.err.strip().splitlines()
            assert len(lines) == 1 and name in lines[0] and "is a folder" in lines[0], lines
            path.rmdir()
            _restamp(copy)
            code = _deploy_cli(copy)
            out = capsys.readouterr()
        assert code == 0, (name, how, out.err)
        summary = json.loads((copy / "summary.json").read_text())
        assert summary["rows"] == honest["rows"], (name, how)
