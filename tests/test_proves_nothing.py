"""Checks that cannot prove anything say so (issue 12): counts below 1 and more samples than a
split holds, data of another shape, runs larger than the memory, layers that never spiked,
quantisations out of Loihi 2's bounds. Real bundled models, real data, the real command line
(one `error:` line, exit status 2) and the Python API (UsageError / QuantError)."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from snnexport.check import check, load_model
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.errors import SnnexportError, UsageError
from snnexport.ir import nodes as ir
from snnexport.ir import save_ir
from snnexport.lint import from_reports
from snnexport.models import load_checkpoint, save_checkpoint
from snnexport.parity import ParityReport
from snnexport.passes.fold import fold
from snnexport.quant import QuantError, quantize
from snnexport.quant.fixed import VTH_MANT_MAX, VTH_MANT_MIN, W_MAX, WEIGHT_BITS_MIN
from snnexport.sim.limits import available_memory, run_bytes

MODELS = "examples/models"
DIGITS = f"{MODELS}/digits_plif_layer.pt"
MNIST = f"{MODELS}/mnist5k_plif.pt"


def one_error(capsys, argv, *names) -> str:
    """Runs the real CLI; it must end in exactly one `error:` line naming `names`, exit 2."""
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for name in names:
        assert name in err[0], (name, err[0])
    return err[0]


# --- 1. counts ----------------------------------------------------------------------------------

def test_counts_below_one_are_errors_not_empty_or_silently_shortened_runs(capsys, tmp_path):
    for argv, option in [
        (["check", DIGITS, "--samples", "0"], "--samples 0"),
        # x[:-5] would take 445 of the 450 test images without a word
        (["check", DIGITS, "--samples", "-5"], "--samples -5"),
        (["check", DIGITS, "--target", "fixed", "--calib-samples", "0"], "--calib-samples 0"),
        (["check", DIGITS, "--target", "fixed", "--calib-samples", "-3"],
         "--calib-samples -3"),
        (["check", DIGITS, "--target", "fixed", "--decays", "0"], "--decays 0"),
        (["export", DIGITS, "--to", "netx", "-o", str(tmp_path / "m.net"),
          "--calib-samples", "0"], "--calib-samples 0"),
        (["export", DIGITS, "--to", "netx", "-o", str(tmp_path / "m.net"), "--decays", "-1"],
         "--decays -1"),
        (["energy", DIGITS, "--profile", "loihi2", "--samples", "0"], "--samples 0"),
        (["evaluate", DIGITS, "--samples", "-5"], "--samples -5"),
        (["deploy", DIGITS, "-o", str(tmp_path / "d"), "--lava-samples", "0",
          "--no-progress"], "--lava-samples 0"),
        (["deploy", DIGITS, "-o", str(tmp_path / "d"), "--samples", "-1", "--no-progress"],
         "--samples -1"),
    ]:
        line = one_error(capsys, argv, option)
        assert re.search(r"give --[a-z-]+ 1 or more", line), line
    assert not (tmp_path / "m.net").exists()
    assert not (tmp_path / "d" / "manifest.json").exists()  # refused before anything ran
    loaded = load_model(DIGITS)
    for kwargs in ({"samples": 0}, {"samples": -5}, {"calib_samples": 0, "target": "fixed"},
                   {"decays": 0, "target": "fixed"}):
        with pytest.raises(UsageError):
            check(loaded, **kwargs)
    # a report of no samples is not exact (nothing was compared)
    assert not ParityReport("nothing").exact


def test_more_samples_than_the_split_holds_is_refused_naming_how_many_it_holds(capsys):
    # digits: 1,797 images, a stratified split with test_size=450 -> 1,347 training images;
    # mnist5k: 5,000 images, test_size=1,000
    ds = load_dataset("digits")
    assert (len(ds.y_test), len(ds.y_train)) == (450, 1797 - 450)
    one_error(capsys, ["check", DIGITS, "--samples", "451"],
              "--samples 451", "digits test split holds only 450", "give --samples 450")
    one_error(capsys, ["check", DIGITS, "--target", "fixed", "--calib-samples", "1348"],
              "--calib-samples 1348", "training split holds only 1347")
    one_error(capsys, ["energy", MNIST, "--profile", "cmos45", "--samples", "1001"],
              "mnist5k test split holds only 1000")
    one_error(capsys, ["evaluate", DIGITS, "--samples", "451"], "holds only 450")
    x = ds.x_test[:20]
    with pytest.raises(UsageError, match="the given inputs holds only 20 samples"):
        check(load_model(DIGITS), inputs=(x, ds.y_test[:20]), samples=21)
    # exactly what the split holds runs, and reports that many samples
    report = check(load_model(DIGITS), inputs=(x, ds.y_test[:20]), samples=20)
    assert report.samples == 20


# --- 2. shapes ----------------------------------------------------------------------------------

def test_data_of_another_shape_is_one_line_naming_both_shapes(capsys, tmp_path):
    # the MNIST model takes 1x28x28; scikit-learn's digits are 8x8 (450 test images)
    for argv in (["check", MNIST, "--data", "digits"],
                 ["check", MNIST, "--data", "digits", "--target", "fixed"],
                 ["energy", MNIST, "--profile", "loihi2", "--data", "digits"],
                 ["evaluate", MNIST, "--data", "digits"],
                 ["deploy", MNIST, "--data", "digits", "-o", str(tmp_path / "d"),
                  "--no-progress"]):
        line = one_error(capsys, argv, "mnist5k_plif.pt", "[450, 1, 8, 8]", "1x8x8", "1x28x28",
                         "--data mnist5k")
        assert "mat1 and mat2" not in line
    assert not (tmp_path / "d" / "manifest.json").exists()
    digits = load_dataset("digits")
    with pytest.raises(UsageError, match=r"\[5, 1, 8, 8\].*1x28x28"):
        check(load_model(MNIST), inputs=(digits.x_test[:5], digits.y_test[:5]), samples=5)


# --- 3. layers that never spiked ----------------------------------------------------------------

def test_a_layer_that_never_spikes_is_flagged_not_called_exact(capsys, tmp_path):
    """sn_fc1's threshold raised above what its input can ever reach: with inputs in {0, 1},
    decay <= 1, no bias and v_init 0, |H| <= T * max_i sum_j |W_ij| for every neuron, so it
    never fires; sn_out is then fed nothing but zeros (fc_out has no bias): H = 0 < threshold.
    sn1 and sn2 are untouched and keep spiking."""
    folded = fold(load_model(DIGITS).graph)
    fc1, sn = folded.nodes["layers.fc1"], folded.nodes["layers.sn_fc1"]
    assert fc1.bias is None and folded.nodes["layers.fc_out"].bias is None
    assert not np.any(np.asarray(sn.v_init))
    t = folded.metadata["time_steps"]
    reach = t * float(np.abs(np.asarray(fc1.weight)).sum(1).max())
    dead = folded.with_nodes({"layers.sn_fc1": dataclasses.replace(sn, threshold=2 * reach)})
    path = tmp_path / "dead.snnir"
    save_ir(dead, path)
    js = tmp_path / "p.json"
    # the check exits 1: a layer that never spiked proves nothing
    assert main(["check", str(path), "--data", "digits", "--samples", "60", "--json",
                 str(js)]) == 1
    out = capsys.readouterr().out
    assert ("exact, but layers layers.sn_fc1, layers.sn_out never spiked: their parity proves "
            "nothing") in out
    assert "exact: every spike" not in out
    d = json.loads(js.read_text())
    assert d["silent_layers"] == ["layers.sn_fc1", "layers.sn_out"] and d["exact"] is True
    spikes = {layer["name"]: layer["spikes_reference"] for layer in d["layers"]}
    assert spikes["layers.sn1"] > 0 and spikes["layers.sn2"] > 0
    # every score 0: the rate readout's argmax breaks the tie to class 0
    y = load_dataset("digits").y_test[:60]
    assert d["accuracy"]["reference"] == pytest.approx(float((y == 0).double().mean()))
    findings = from_reports({"reference": d})
    assert [(f.rule, f.layer) for f in findings] == [("silent-layer", "layers.sn_fc1"),
                                                    ("silent-layer", "layers.sn_out")]
    # deploy: the summary is not trusted, its table and the report say why
    out_dir = tmp_path / "deploy"
    assert main(["deploy", str(path), "--data", "digits", "--targets", "reference", "-o",
                 str(out_dir), "--samples", "40", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert re.search(r"^reference\s+yes\*", printed, re.MULTILINE), printed
    assert "* reference: layers layers.sn_fc1, layers.sn_out never spiked" in printed
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["trusted"] is False
    assert summary["rows"][0]["silent_layers"] == ["layers.sn_fc1", "layers.sn_out"]
    html = (out_dir / "report.html").read_text()
    assert "never spiked: their parity proves nothing" in html and "silent-layer" in html


# --- 4. quantisation bounds ---------------------------------------------------------------------

def _scaled(tmp_path, factor):
    g = fold(load_model(DIGITS).graph)
    for _, node in g.ordered():
        if isinstance(node, (ir.Conv2d, ir.Dense)):
            node.weight = np.asarray(node.weight) * factor
            if node.bias is not None:
                node.bias = np.asarray(node.bias) * factor
    path = tmp_path / f"x{factor:g}.snnir"
    save_ir(g, path)
    return g, path


def test_quantisation_out_of_bounds_is_refused_naming_the_layer(capsys, tmp_path):
    calib = load_dataset("digits").x_train[:200]
    # every weight x 1e6: the host current too; bundled, vth_mant is 890 for sn1, so x 1e-6
    # rounds it to 0 < 16
    g, path = _scaled(tmp_path, 1e6)
    line = one_error(capsys, ["check", str(path), "--target", "fixed", "--data", "digits"],
                     "x1e+06.snnir", "'layers.sn1'", f"threshold mantissa 0 < {VTH_MANT_MIN}",
                     "fix:")
    assert "rounded to 0" in line
    # the hop layers on their own: weights at full scale leave vth_mant = 254 theta / max|W|
    conv2 = np.abs(np.asarray(g.nodes["layers.conv2"].weight)).max()
    assert round(W_MAX * g.nodes["layers.sn2"].threshold / conv2) < VTH_MANT_MIN
    # every weight x 1e-6: the float net is dead, the fixed one would be all-zero weights
    g, path = _scaled(tmp_path, 1e-6)
    scale = 64 * VTH_MANT_MAX / g.nodes["layers.sn2"].threshold  # limited by the threshold
    w = np.abs(np.asarray(g.nodes["layers.conv2"].weight)).max()
    assert 2 * np.rint(scale * w / 128) == 0  # every weight rounds to 0: 1 bit
    one_error(capsys, ["check", str(path), "--target", "fixed", "--data", "digits"],
              "'layers.sn2'", f"weights keep 1 bit(s) < {WEIGHT_BITS_MIN}", "limited by threshold",
              "fix:")
    one_error(capsys, ["export", str(path), "--to", "netx", "-o", str(tmp_path / "m.net"),
                       "--data", "digits"], "'layers.sn2'", "1 bit(s)")
    assert not (tmp_path / "m.net").exists()
    # the float check of that dead net is not "exact" either: every layer never spiked
    assert main(["check", str(path), "--data", "digits", "--samples", "30"]) == 1
    assert "exact, but layers layers.sn1, layers.sn2, layers.sn_fc1, layers.sn_out never " \
        "spiked" in capsys.readouterr().out
    # a negative threshold (a hand-built folded graph: every file reader refuses one) would give
    # a negative scale
    good = fold(load_model(DIGITS).graph)
    sn2 = good.nodes["layers.sn2"]
    bad = good.with_nodes({"layers.sn2": dataclasses.replace(sn2, threshold=-1.0)})
    with pytest.raises(QuantError, match=r"'layers.sn2': threshold -1 must be > 0"):
        quantize(bad, calib)
    assert issubclass(QuantError, SnnexportError)


def test_the_quantisation_report_states_the_bounds(capsys):
    report = check(load_model(DIGITS), "fixed", samples=20)
    for row in report.quantisation:
        assert row["vth_mant_min"] == VTH_MANT_MIN and row["vth_mant"] >= VTH_MANT_MIN
        if row["kind"] == "host":
            assert row["weight_bits_min"] is None
        else:
            assert row["weight_bits_min"] == WEIGHT_BITS_MIN <= row["weight_bits"]
    text = report.text()
    assert f"(min {VTH_MANT_MIN})" in text and f"bit (min {WEIGHT_BITS_MIN})" in text


# --- 5. memory ----------------------------------------------------------------------------------

def _bytes_in(line: str) -> int:
    return int(re.search(r"need about ([\d,]+) bytes", line).group(1).replace(",", ""))


def test_a_run_larger_than_the_memory_is_refused_up_front(capsys, tmp_path):
    """A checkpoint whose config says T = 200,000: check / evaluate / energy refuse it before
    running, with the estimate in bytes against the memory available. The estimate is linear
    in T and the batch (every recorded value is one per step and sample): 25,000 times T = 8's."""
    model, meta = load_checkpoint(DIGITS)
    model.cfg = dataclasses.replace(model.cfg, time_steps=200_000)
    path = tmp_path / "long.pt"
    save_checkpoint(model, path, meta)
    graph = load_model(path).graph
    avail = available_memory()
    per_batch = run_bytes(graph, 100, 200_000)
    assert per_batch == 25_000 * run_bytes(graph, 100, 8)
    # at least the spikes and H every neuron layer keeps, 8 bytes each
    neurons = sum(int(np.prod(n.shape)) for n in graph.nodes.values()
                  if isinstance(n, ir.NeuronLayer))
    assert per_batch >= 2 * 200_000 * 100 * 8 * neurons
    assert per_batch > avail  # the premise: no machine here holds it
    line = one_error(capsys, ["check", str(path), "--samples", "100"], "long.pt", "T=200000",
                     "refused before running")
    assert _bytes_in(line) == 2 * per_batch  # reference and target of one batch
    line = one_error(capsys, ["evaluate", str(path)], "long.pt", "T=200000")
    assert _bytes_in(line) == run_bytes(graph, 256, 200_000, itemsize=4)
    line = one_error(capsys, ["energy", str(path), "--profile", "loihi2"], "long.pt")
    assert _bytes_in(line) == run_bytes(fold(graph), 100, 200_000)
    # frame sequences of T = 200,000 given from Python (a view: nothing is allocated)
    x = torch.zeros(1, 1, 1, 8, 8).expand(100, 200_000, 1, 8, 8)
    loaded = load_model(DIGITS)
    with pytest.raises(UsageError, match="T=200000.*refused before running"):
        check(loaded, inputs=(x, torch.zeros(100, dtype=torch.long)), samples=100)
