"""`snnexport deploy`: every step for real (Lava included, on a narrow trained-format model and
few samples), resume, the linter, and the report rendered by headless Chromium."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from test_fold import random_net

from snnexport.backends import available
from snnexport.cli import main
from snnexport.deploy import DeployError, code_fingerprint, deploy
from snnexport.importers.plifnet import import_plifnet
from snnexport.lint import lint
from snnexport.models import save_checkpoint
from snnexport.passes.fold import fold

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A narrow IMP + LTS net (4 channels) saved as a checkpoint, deployed to every target."""
    d = tmp_path_factory.mktemp("deploy")
    net = random_net(channels=4, imp=True, readout="lts")
    save_checkpoint(net, d / "net.pt", meta={"data": "digits"})
    out = d / "out"
    # a relative -o, as `make demo` gives it: every runner (Lava's in its own folder) must
    # find the artifacts deploy wrote
    here = os.getcwd()
    os.chdir(d)
    try:
        code = main(["deploy", str(d / "net.pt"), "--targets", "all", "-o", "out",
                     "--samples", "60", "--lava-samples", "2", "--no-progress"])
    finally:
        os.chdir(here)
    return d, out, code


def test_deploy_writes_every_artifact_and_a_trusted_summary(deployed):
    _, out, code = deployed
    for name in ["model.snnir", "model.nir", "model.onnx", "model.net", "model.fixed.npz",
                 "model.fixed.onnx",
                 "lint.json", "summary.json", "report.html", "energy_loihi2.png"]:
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["target"]: r for r in summary["rows"]}
    assert set(rows) == {"reference", "nir", "onnx", "fixed", "onnx-fixed", "lava-float",
                         "lava-fixed", "netx", "xylo-audio2", "xylo-audio3", "xylo-imu"}
    # a conv net is no Xylo net: each chip's row says so, and that is no failure
    for t in ("xylo-audio2", "xylo-audio3", "xylo-imu"):
        assert "is a Conv2d" in rows[t]["refused"] and t in rows[t]["refused"], rows[t]
    assert summary["refused"] == ["xylo-audio2", "xylo-audio3", "xylo-imu"]
    for t in ("reference", "onnx", "onnx-fixed", "lava-float", "lava-fixed", "netx"):
        assert rows[t]["exact"] and rows[t]["mismatches"] == 0, rows[t]
    # NIR consumers lose the IMP: snnexport's own NIR import keeps it (metadata), so exact
    assert rows["nir"]["exact"]
    assert rows["fixed"]["mismatch_cause"] == "quantisation"
    assert summary["trusted"] and code == 0
    findings = json.loads((out / "lint.json").read_text())
    assert {f["rule"] for f in findings} >= {"imp-on-nir", "readout-on-nir"}


def test_deploy_resumes_without_redoing_finished_targets(deployed):
    d, out, _ = deployed
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("check_*.json")}
    (out / "check_onnx.json").unlink()
    deploy(str(d / "net.pt"), str(out), samples=60, lava_samples=2, progress=False)
    again = {p.name: p.stat().st_mtime_ns for p in out.glob("check_*.json")}
    assert again["check_onnx.json"] != kept["check_onnx.json"]  # redone
    for name, mtime in kept.items():
        if name != "check_onnx.json":
            assert again[name] == mtime, name  # finished targets untouched
    with pytest.raises(DeployError, match=r"differs in \['samples'\]"):
        deploy(str(d / "net.pt"), str(out), samples=61, lava_samples=2, progress=False)
    # results of older snnexport code are not reused: the manifest holds a code fingerprint
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["code"] == code_fingerprint()
    (out / "manifest.json").write_text(json.dumps({**manifest, "code": "older"}))
    with pytest.raises(DeployError, match=r"differs in \['code'\]"):
        deploy(str(d / "net.pt"), str(out), samples=60, lava_samples=2, progress=False)


def test_report_renders_in_headless_chromium(deployed, tmp_path):
    _, out, _ = deployed
    assert CHROMIUM, "chromium is missing: `make test` installs Debian's chromium"
    report = (out / "report.html").resolve()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table id=\"summary\">" in dom or "<table id='summary'>" in dom
    summary_html = dom.split("summary", 1)[1].split("</table>", 1)[0]
    # header + one row per registered target (8 Loihi / generic + 3 Xylo; refusals included)
    assert summary_html.count("<tr>") == 1 + len(available()) == 1 + 11
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1600",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50  # not blank
    # the report is self-contained: no address outside the file itself
    assert "http://" not in report.read_text() and "https://" not in report.read_text()


def test_linter_names_the_layer_and_the_fix():
    soft = lint(fold(import_plifnet(random_net(channels=4, v_reset=None))))
    errors = [f for f in soft if f.severity == "error"]
    assert errors and errors[0].rule == "soft-reset" and errors[0].layer == "layers.sn1"
    assert "hard reset" in errors[0].fix
    per_neuron = fold(import_plifnet(random_net(channels=4, tau_per="neuron", tau_std=0.3)))
    rules = [f for f in lint(per_neuron, max_decays=16) if f.rule == "per-neuron-tau"]
    assert [f.layer for f in rules] == ["layers.sn1", "layers.sn2", "layers.sn_out"]
    assert "--decays K" in rules[0].fix
    assert not [f for f in lint(per_neuron, decays_grouped=4) if f.rule == "per-neuron-tau"]
    assert lint(fold(import_plifnet(random_net(channels=4)))) == []
