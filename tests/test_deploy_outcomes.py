"""A network given as code and weights (`--model pkg.mod:function --weights FILE`) through
check and deploy; what deploy says of each target: a real failure (a plug-in target whose
runner crashes) is "failed" and the other targets' results and the report are still written; a
target that cannot take the model (netx and a SEW residual net from SpikingJelly) is "cannot
take this model", not a failure; and data that do not match the model are said to be so."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from test_residual import Net, SEWBlock, build

import snnexport
from snnexport import backends
from snnexport.backends import Backend
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.deploy import summarise

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
T = 4  # test_residual's time steps
SAMPLES = 40


def residual_net():
    """The factory `--model test_deploy_outcomes:residual_net` names: test_residual's SEW ADD
    net, untrained (its weights come from --weights)."""
    net = Net(SEWBlock(4, "ADD"))
    functional.set_step_mode(net, "m")
    return net


def _crashing(inp, dtype, stats):
    def run(xb):
        raise RuntimeError("the chip's driver crashed")
    return run


def _rows(html: str, table: str) -> list[str]:
    body = html.split(f"<table id='{table}'>", 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body)[1:]  # without the header


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """The residual net deployed from the command line as code + weights to reference, onnx,
    netx and a plug-in target that crashes."""
    d = tmp_path_factory.mktemp("outcomes")
    torch.save(build("sew_add").state_dict(), d / "sew.pth")
    backends.register(Backend("broken", "a plug-in whose runner crashes", _crashing))
    try:
        code = main(["deploy", "--model", f"{__name__}:residual_net", "--weights",
                     str(d / "sew.pth"), "--input-shape", "1,28,28", "--time-steps", str(T),
                     "--data", "mnist5k", "--targets", "reference,onnx,netx,broken",
                     "--samples", str(SAMPLES), "--lava-samples", "2", "--no-progress",
                     "-o", str(d / "out")])
    finally:
        backends.unregister("broken")
    return d / "out", code


def test_a_failing_target_is_failed_and_the_others_are_still_written(deployed):
    out, code = deployed
    for name in ("check_reference.json", "check_onnx.json", "check_netx.json",
                 "check_broken.json", "model.onnx", "summary.json", "report.html"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["target"]: r for r in summary["rows"]}
    assert rows["broken"]["error"] == "RuntimeError: the chip's driver crashed"
    for t in ("reference", "onnx"):  # SpikingJelly's own forward pass is the reference
        assert rows[t]["exact"] and rows[t]["samples"] == SAMPLES, rows[t]
        assert not rows[t]["silent_layers"] and not rows[t]["too_few_samples"]
    assert summary["trusted"] is False and code == 1  # a real failure fails the deployment
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == f"{__name__}:residual_net with {out.parent / 'sew.pth'}"
    html = (out / "report.html").read_text()
    summary_rows = _rows(html, "summary")
    assert len(summary_rows) == 4
    broken = next(r for r in summary_rows if r.startswith("<td class='l'>broken</td>"))
    assert "failed: RuntimeError: the chip&#x27;s driver crashed" in broken
    reference = next(r for r in summary_rows if r.startswith("<td class='l'>reference</td>"))
    assert f"exact</span> on {SAMPLES} samples" in reference
    assert f"<td>{SAMPLES}</td>" in reference  # samples seen
    # spikes per layer under the user's module paths, one row per spiking layer
    paths = [n for n, m in residual_net().named_modules()
             if isinstance(m, neuron.ParametricLIFNode)]
    assert paths == ["stem.2", "block.sn1", "block.sn2", "sn"]
    spikes = _rows(html, "spikes")
    assert [re.search(r"<code>(.*?)</code>", r).group(1) for r in spikes] == paths
    assert "SpikingJelly module&#x27;s own forward pass" in html


def test_netx_cannot_take_a_residual_net_and_that_is_no_failure(deployed):
    out, _ = deployed
    summary = json.loads((out / "summary.json").read_text())
    netx = next(r for r in summary["rows"] if r["target"] == "netx")
    assert "'block.add'" in netx["refused"] and "residual merge" in netx["refused"]
    assert "error" not in netx and summary["refused"] == ["netx"]
    check = json.loads((out / "check_netx.json").read_text())
    assert check["refusal"] in ("HardwareLoweringError", "QuantError")
    # the same checks without the crashing target: trusted, netx's refusal notwithstanding
    checks = {t: json.loads((out / f"check_{t}.json").read_text())
              for t in ("reference", "onnx", "netx")}
    assert summarise(["reference", "onnx", "netx"], checks, out)["trusted"] is True
    row = next(r for r in _rows((out / "report.html").read_text(), "summary")
               if r.startswith("<td class='l'>netx</td>"))
    assert "cannot take this model: node &#x27;block.add&#x27;" in row and "failed" not in row


def test_code_and_weights_check_like_the_module_itself(tmp_path, capsys, monkeypatch):
    """`check --model` on the factory and its weights gives the report the Python API gives
    for the same module; a weights file of another network is one line naming the key."""
    net = build("sew_add")
    torch.save(net.state_dict(), tmp_path / "sew.pth")
    out = tmp_path / "r.json"
    common = ["--input-shape", "1,28,28", "--time-steps", str(T), "--data", "mnist5k",
              "--samples", "30"]
    assert main(["check", "--model", f"{__name__}:residual_net", "--weights",
                 str(tmp_path / "sew.pth"), *common, "--json", str(out)]) == 0
    ds = load_dataset("mnist5k")
    api = snnexport.verify(snnexport.load(net, input_shape=(1, 28, 28), time_steps=T),
                           inputs=(ds.x_test, ds.y_test), samples=30).to_dict()
    got = json.loads(out.read_text())
    assert got["layers"] == api["layers"] and got["accuracy"] == api["accuracy"]
    # the same through snnexport.load("pkg.mod:fn", weights=...)
    again = snnexport.load(f"{__name__}:residual_net", weights=tmp_path / "sew.pth",
                           input_shape=(1, 28, 28), time_steps=T)
    assert again.sha256() == snnexport.load(f"{__name__}:residual_net",
                                            weights=tmp_path / "sew.pth",
                                            input_shape=(1, 28, 28), time_steps=T).sha256()
    # a module and its weights file: the weights loaded into it, the same report
    fresh = snnexport.load(residual_net(), weights=tmp_path / "sew.pth",
                           input_shape=(1, 28, 28), time_steps=T)
    assert snnexport.verify(fresh, inputs=(ds.x_test, ds.y_test),
                            samples=30).to_dict()["layers"] == api["layers"]
    capsys.readouterr()
    # an snnexport checkpoint is not a weights file: it is a MODEL of its own
    assert main(["check", "--model", f"{__name__}:residual_net", "--weights",
                 str(MODELS / "digits_plif_layer.pt"), *common]) == 2
    assert "an snnexport checkpoint, which holds its architecture: give it as MODEL alone" \
        in capsys.readouterr().err
    state = net.state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "fc.weight"},
                    "no weights for 'fc.weight' of the network"),
        "unexpected": ({**state, "head.weight": torch.zeros(1)},
                       "holds 'head.weight', which the network"),
        "shape": ({**state, "fc.weight": torch.zeros(3, 3)},
                  "'fc.weight' is [3, 3] in the file but [20, 196] in the network"),
        "dataparallel": ({f"module.{k}": v for k, v in state.items()},
                         "saved from a DataParallel wrapper; save net.module.state_dict()"),
    }
    for name, (bad, message) in cases.items():
        torch.save(bad, tmp_path / f"{name}.pth")
        assert main(["check", "--model", f"{__name__}:residual_net", "--weights",
                     str(tmp_path / f"{name}.pth"), *common]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / name}.pth: ") and err.count("\n") == 1
        assert message in err, err
    # code needs its input shape; a model is given once
    assert main(["check", "--model", f"{__name__}:residual_net", "--time-steps", "4"]) == 2
    assert "--input-shape C,H,W" in capsys.readouterr().err
    assert main(["check", str(MODELS / "digits_plif_layer.pt"), "--model",
                 f"{__name__}:residual_net"]) == 2
    assert "give the model once" in capsys.readouterr().err


def test_data_that_do_not_match_the_model_are_said_to(tmp_path, capsys):
    """The bundled digits model recorded 99.11 % (446 of 450 test images); the same images
    without the standardisation it was trained with (pixel/16, as a user might give them)
    score far below: a warning, and exit status 1 only when --expect-accuracy is not met."""
    model = MODELS / "digits_plif_layer.pt"
    ds = load_dataset("digits")
    raw = tmp_path / "raw.npz"
    np.savez(raw, x=(ds.x_test * ds.std + ds.mean).numpy(), y=ds.y_test.numpy())
    out = tmp_path / "r.json"
    assert main(["check", str(model), "--samples", "450", "--json", str(out)]) == 0
    assert "warning" not in capsys.readouterr().out  # its own data: 446 / 450 as recorded
    assert json.loads(out.read_text())["accuracy"]["reference"] == 446 / 450
    assert main(["check", str(model), "--data", str(raw), "--samples", "450", "--json",
                 str(out)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    got = json.loads(out.read_text())
    acc = got["accuracy"]["reference"]
    assert got["data_mismatch"]["far_below_recorded"] and acc < 0.9911 - 0.10
    assert last.startswith("warning: the data do not match the model: the reference scores "
                           f"{100 * acc:.2f} % on 450 samples of the {raw} test split")
    assert "below the 99.11 % recorded in" in last
    # the user's own expectation, not met: exit 1; met on the right data: 0
    assert main(["check", str(model), "--data", str(raw), "--samples", "450",
                 "--expect-accuracy", "90"]) == 1
    assert "below the 90.00 % expected (--expect-accuracy)" in capsys.readouterr().out
    assert main(["check", str(model), "--samples", "450", "--expect-accuracy", "90"]) == 0


def test_an_ir_file_is_said_to_be_the_reference_and_few_samples_are_not_trusted(deployed,
                                                                                  tmp_path):
    """The folded IR the deploy wrote, deployed itself on 5 samples: the report says the
    reference is only that file's simulation, and exact on 5 samples is too few to trust."""
    out, _ = deployed
    summary = snnexport.deploy_to(str(out / "model.snnir"), str(tmp_path / "ir"),
                                  data="mnist5k", targets="reference", samples=5,
                                  progress=False)
    (row,) = summary["rows"]
    assert row["exact"] and row["samples"] == 5 and row["too_few_samples"]
    assert summary["trusted"] and summary["too_few_samples"] == ["reference"]
    html = (tmp_path / "ir" / "report.html").read_text()
    assert "the float64 simulation of that IR file, not a trained model" in html
    assert "exact on 5 samples &mdash; too few to trust" in _rows(html, "summary")[0]
    assert "exact, but reference on fewer than 20 samples: too few to trust" in html


def test_every_command_taking_a_model_takes_code_and_weights(tmp_path, capsys):
    torch.save(build("sew_add").state_dict(), tmp_path / "sew.pth")
    given = ["--model", f"{__name__}:residual_net", "--weights", str(tmp_path / "sew.pth"),
             "--input-shape", "1,28,28", "--time-steps", str(T)]
    assert main(["inspect", *given]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{__name__}:residual_net with {tmp_path / 'sew.pth'}:")
    assert "block.add" in out and "block.sn2" in out
    assert main(["fold", *given, "-o", str(tmp_path / "m.snnir")]) == 0
    assert main(["export", *given, "--to", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    assert main(["energy", *given, "--profile", "loihi2", "--data", "mnist5k", "--samples",
                 "5", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["total"] > 0
    # the weights file is an input: never written over
    assert main(["export", *given, "--to", "onnx", "-o", str(tmp_path / "sew.pth")]) == 2
    assert "is the input weights" in capsys.readouterr().err


def test_the_help_lists_every_command_with_one_line():
    from snnexport.cli import build_parser

    parser = build_parser()
    text = parser.format_help()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) == {"train", "evaluate", "inspect", "fold", "export", "check",
                                "deploy", "energy", "fit", "demo"}
    for action in sub._choices_actions:
        assert action.help and f"    {action.dest}" in text, action.dest
