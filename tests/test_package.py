"""snnexport as an installed package, not a checkout: the wheel built from this repository,
installed into a fresh venv in a temporary folder, runs inspect, export, check and energy on a
bundled model file, from a working directory outside the checkout.

The fresh venv gets the wheel alone (--no-deps); its dependencies (torch, onnx, ...) are
reached through a .pth line naming this checkout's .venv site-packages, whose own .pth files
(the editable install of the checkout) are *not* processed that way, so `import snnexport` can
only find the installed wheel, which the test asserts.
"""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "examples" / "models" / "digits_plif_layer.pt"


def run(cmd, cwd, **kw):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_wheel_runs_every_command_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", wheels, REPO], cwd=tmp_path)
    (wheel,) = wheels.glob("snnexport-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # the energy profiles and chip descriptions (top-level targets/) travel as package data
    assert {"snnexport/targets/loihi2.toml", "snnexport/targets/cmos45.toml",
            "snnexport/targets/chips/loihi2.toml", "snnexport/targets/chips/xylo-imu.toml"} <= \
        set(names)
    assert not any(n.startswith(("tests/", "examples/")) for n in names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel],
        cwd=tmp_path)
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=tmp_path).strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(MODEL, work / "m.pt")
    where = run([py, "-c", "import snnexport; print(snnexport.__file__)"], cwd=work)
    assert where.startswith(str(venv)), where  # the installed wheel, not the checkout
    exe = venv / "bin" / "snnexport"
    assert "tau" in run([exe, "inspect", "m.pt"], cwd=work)
    run([exe, "export", "m.pt", "--to", "onnx", "-o", "m.onnx"], cwd=work)
    assert (work / "m.onnx").stat().st_size > 0
    out = run([exe, "check", "m.pt", "--samples", "20"], cwd=work)
    assert "20 samples" in out and "exact: every spike of every layer is equal" in out, out
    out = run([exe, "energy", "m.pt", "--profile", "loihi2", "--samples", "10"], cwd=work)
    assert "total" in out and "theoretical E_MAC*MACs + E_AC*SOPs" in out, out
    out = run([exe, "fit", "m.pt", "--chip", "loihi2"], cwd=work)
    assert "verdict: fits (an estimate)" in out, out
