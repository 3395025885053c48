"""`snnexport deploy` on SpikingJelly's zoo SEW-ResNet18 (tests/zoo_nets.py: ADD, PLIF,
multi-step, non-identity BN) at a CIFAR-sized 3 x 32 x 32, T = 4, from the command line as a
user gives it (`--model zoo_nets:sew18 --input-shape 3,32,32 --time-steps 4 --data
zoo_nets:digits32`): every target runs or says in one line why it cannot, and one report.

20 MNIST-5k digits per target, 2 for the Lava ones (their runs take about a minute each at
this size, lava/lowering.py: a conv's form in Lava), calibrated on 50."""

import json
import os
import subprocess
import sys
from pathlib import Path

from snnexport.energy.estimate import available_profiles

TESTS = Path(__file__).parent
TARGETS = {"reference", "nir", "onnx", "fixed", "onnx-fixed", "lava-float", "lava-fixed",
           "netx", "xylo-audio2", "xylo-audio3", "xylo-imu"}


def test_deploy_a_zoo_sew_resnet18_runs_every_target_or_says_why(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "snnexport.cli", "deploy", "--model", "zoo_nets:sew18",
         "--input-shape", "3,32,32", "--time-steps", "4", "--data", "zoo_nets:digits32",
         "--targets", "all", "-o", str(out), "--samples", "20", "--lava-samples", "2",
         "--calib-samples", "50", "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path, timeout=1500,
        env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["target"]: r for r in summary["rows"]}
    assert set(rows) == TARGETS
    # the float targets against SpikingJelly's forward, the integer ONNX model and both Lava
    # runs against theirs: every spike of every layer, every layer spiking
    for t in ("reference", "nir", "onnx", "onnx-fixed", "lava-float", "lava-fixed"):
        row = rows[t]
        assert row["exact"] and row["mismatches"] == row["unexplained"] == 0, row
        assert row["spikes_reference"] > 0 and not row["silent_layers"], row
        assert row["samples"] == (2 if t.startswith("lava") else 20), row
    # the fixed-point net against the float model: what differs is quantisation
    assert rows["fixed"]["mismatch_cause"] == "quantisation" and rows["fixed"]["unexplained"] == 0
    # netx holds a chain: refused in one line naming the first merge
    assert summary["refused"] == ["netx", "xylo-audio2", "xylo-audio3", "xylo-imu"]
    assert all("is a Conv2d" in rows[t]["refused"] for t in summary["refused"][1:])
    refusal = rows["netx"]["refused"]
    assert "'layer1.0.add'" in refusal and "\n" not in refusal, refusal
    assert set(summary["too_few_samples"]) == {"lava-float", "lava-fixed"}
    for name in ("model.snnir", "model.nir", "model.onnx", "model.fixed.npz",
                 "model.fixed.onnx", "netx_error.json", "fit.json", "report.html"):
        assert (out / name).is_file(), name
    for profile in available_profiles():
        assert (out / f"energy_{profile}.json").is_file(), profile
    html = (out / "report.html").read_text()
    assert all(t in html for t in TARGETS) and "layer1.0.add" in html
