"""Options, metadata fields and files bounded and typed where they are read (issue 25): each
case once, with what the user now sees (one line, exit status 2 from the CLI, a
SnnexportError from Python), instead of a silently accepted nonsense value or a traceback."""

import copy
import json
import os
import struct
import time
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

import snnexport
from snnexport.cli import main
from snnexport.energy.estimate import TARGETS_DIR, ProfileError, load_profile
from snnexport.errors import SnnexportError
from snnexport.ir import nodes as ir
from snnexport.ir import save_ir
from snnexport.ir.graph import Graph
from snnexport.ir.io import MAGIC, from_bytes, to_bytes
from snnexport.models.neurons import LIF

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
MODEL = MODELS / "digits_plif_layer.pt"


def _cli_one_line(capsys, argv, *words):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for w in words:
        assert w in err[0], (w, err[0])
    return err[0]


def _refused(call, *words):
    with pytest.raises(SnnexportError) as info:
        call()
    assert "\n" not in str(info.value)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("dt", ["0", "-1", "nan", "inf", "-inf"])
def test_nir_export_dt_must_be_finite_and_positive(tmp_path, capsys, dt):
    out = tmp_path / "m.nir"
    _cli_one_line(capsys, ["export", MODEL, "--to", "nir", "-o", out, f"--dt={dt}"], "--dt",
                  "finite number > 0")
    assert not out.exists()
    _refused(lambda: snnexport.export(MODEL, "nir", out, dt=float(dt)), "--dt")


# --- NIR metadata -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nir_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("nir") / "m.nir"
    snnexport.export(MODEL, "nir", path)
    return path


@pytest.mark.parametrize("key, value", [
    ("dt", 0.0), ("dt", float("nan")), ("dt", -1e-4), ("dt", np.array([1e-4, 2e-4])),
    ("dt", "abc"), ("snnexport.time_steps", "abc"), ("snnexport.time_steps", float("nan")),
    ("snnexport.time_steps", np.array([8, 9])), ("snnexport.time_steps", 2.5)])
def test_nir_metadata_of_the_wrong_type_or_range(nir_file, tmp_path, key, value):
    g = nir.read(nir_file)
    g.metadata = {**(g.metadata or {}), key: value}
    bad = tmp_path / "bad.nir"
    nir.write(bad, g)
    _refused(lambda: snnexport.load(bad), f"metadata {key}", "number > 0")


# --- .snnir fields -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def folded_header():
    data = to_bytes(snnexport.fold(MODEL))
    (n,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    return json.loads(data[start:start + n]), data[start + n:]


def _ir_file(header, body) -> bytes:
    from snnexport.ir.io import _digest, _dump

    h = {k: v for k, v in header.items() if k != "sha256"}
    h["sha256"] = _digest(h, body)  # a file whose checksum is right: the fields are judged
    head = _dump(h)
    return MAGIC + struct.pack("<Q", len(head)) + head + body


def _set(typ, field, value):
    def edit(h):
        next(e for e in h["nodes"] if e["type"] == typ)["fields"][field] = value
    return edit


@pytest.mark.parametrize("edit, says", [
    (_set("Neuron", "decay", float("nan")), "decay is nan"),
    (_set("Neuron", "gain", -2.0), "gain -2 must be > 0"),
    (_set("Readout", "mode", "max"), "mode 'max' is not one of"),
    (lambda h: h["metadata"].__setitem__("readout", "max"), "metadata readout 'max'"),
    (_set("Readout", "population", 0), "population 0 must be >= 1"),
    (_set("Conv2d", "stride", [0, 0]), "stride (0, 0) must be >= 1"),
    (_set("SpikePool", "stride", [0, 1]), "stride (0, 1) must be >= 1"),
    (_set("SpikePool", "kernel", [0, 2]), "kernel (0, 2) must be >= 1"),
    (lambda h: h.__setitem__("metadata", [1, 2]), "metadata is a list"),
    (lambda h: h["metadata"].__setitem__("time_steps", "abc"), "time_steps 'abc'")])
def test_snnir_fields_out_of_range_are_one_line(folded_header, tmp_path, edit, says):
    header, body = copy.deepcopy(folded_header[0]), folded_header[1]
    edit(header)
    path = tmp_path / "bad.snnir"
    path.write_bytes(_ir_file(header, body))
    _refused(lambda: snnexport.load(path), str(path), says)


def test_snnir_json_nested_ten_thousand_deep_is_one_line():
    nest = "[" * 10_000 + "]" * 10_000
    head = ('{"format":"snnexport-ir","version":2,"metadata":' + nest +
            ',"edges":[],"nodes":[]}').encode()
    _refused(lambda: from_bytes(MAGIC + struct.pack("<Q", len(head)) + head, "deep.snnir"),
             "deep.snnir", "nested too deep")


def test_a_ten_thousand_node_chain_loads_without_recursion(tmp_path):
    named = [("input", ir.Input((4,)))] + [(f"f{i}", ir.Flatten()) for i in range(10_000)] \
        + [("ro", ir.Readout(1, "rate"))]
    path = tmp_path / "chain.snnir"
    save_ir(Graph.chain(named, {"time_steps": 2}), path)
    start = time.monotonic()
    g = snnexport.load(path).graph
    assert len(g.nodes) == 10_002 and g.order()[-1] == "ro"
    assert time.monotonic() - start < 60  # one pass over the edges (was quadratic: ~50 s)


def test_a_huge_sparse_file_with_the_ir_magic_is_not_read(tmp_path):
    path = tmp_path / "huge.snnir"
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.truncate(memory // 2 + 4096)  # sparse: no disk space, no memory
    _refused(lambda: snnexport.load(path), str(path), "more than half")


# --- command-line counts and options ----------------------------------------------------

@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_train_needs_at_least_one_epoch(tmp_path, capsys, epochs):
    out = tmp_path / "t.pt"
    _cli_one_line(capsys, ["train", "--preset", "digits-plif-layer", "-o", out, "--epochs", epochs],
                  "--epochs", "untrained")
    assert not out.exists()


def test_time_steps_override_runs_the_checkpoint_with_that_many_steps(tmp_path, capsys):
    """--time-steps 1 on a T=8 checkpoint: the model and every target run 1 step (an
    IndexError before: the reference ran 8)."""
    out = tmp_path / "c.json"
    assert main(["check", str(MODEL), "--time-steps", "1", "--samples", "20",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["time_steps"] == 1 and report["exact"]


# --- energy profiles ----------------------------------------------------------------------

def _first_value(text: str, value: str) -> str:
    at = text.index("\nvalue = ") + len("\nvalue = ")
    return text[:at] + value + text[text.index("\n", at):]


@pytest.mark.parametrize("edit, says", [
    (lambda t: _first_value(t, "nan"), "must be a finite number"),
    (lambda t: _first_value(t, "-23.6"), "must be a finite number"),
    (lambda t: _first_value(t, "inf"), "must be a finite number"),
    (lambda t: _first_value(t, '"cheap"'), "must be a finite number"),
    (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("name")),
     "no name")])
def test_an_energy_profile_with_nonsense_energies_is_refused(tmp_path, edit, says):
    bad = tmp_path / "bad.toml"
    bad.write_text(edit((TARGETS_DIR / "loihi2.toml").read_text()))
    with pytest.raises(ProfileError) as info:
        load_profile(bad)
    assert str(bad) in str(info.value) and says in str(info.value)
    _refused(lambda: snnexport.estimate_energy(MODEL, str(bad), samples=5), str(bad))


# --- smaller items ------------------------------------------------------------------------

def test_tau_one_is_accepted_as_the_docs_say():
    """tau >= 1 (README, validator): tau = 1 is the memoryless neuron, k = 1."""
    assert float(LIF(tau=1.0).k()) == 1.0
    with pytest.raises(SnnexportError, match=">= 1"):
        LIF(tau=0.5)


def test_a_bad_checkpoint_is_named_by_its_file_not_plifnet(tmp_path, capsys):
    payload = torch.load(MODEL, map_location="cpu", weights_only=True)
    payload["config"]["v_threshold"] = -1.0  # below the reset level: the validator refuses it
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    line = _cli_one_line(capsys, ["check", bad, "--samples", "5"], str(bad), "threshold")
    assert "PLIFNet" not in line


# --- netx inputs and files ----------------------------------------------------------------

NETX = Path(__file__).resolve().parent / "data" / "netx"


@pytest.mark.parametrize("steps", [np.array(float("nan")), np.array(1e12), np.array([]),
                                   np.array([3, 4]), np.array(0), np.array(2.5)])
def test_a_netx_bias_with_nonsense_time_steps_is_one_line(tmp_path, capsys, steps):
    bad = tmp_path / "bias.npz"
    np.savez(bad, bias=np.full((2, 64), 300, np.int64), time_steps=steps)
    _cli_one_line(capsys, ["check", NETX / "dense_cuba.net", "--target", "fixed", "--data", bad],
                  str(bad), "time_steps")


def test_a_netx_neuron_with_threshold_zero_is_refused(tmp_path):
    import h5py

    bad = tmp_path / "vth0.net"
    bad.write_bytes((NETX / "dense_cuba.net").read_bytes())
    with h5py.File(bad, "r+") as f:
        names = []
        f.visit(lambda n: names.append(n) if n.endswith("vThMant") else None)
        assert names, "the test net has a vThMant"
        data = f[names[0]]
        data[...] = np.zeros(data.shape, data.dtype)
    _refused(lambda: snnexport.load(bad), "vThMant = 0", "outside 1..")


def test_an_event_file_with_a_huge_sensor_is_one_line(tmp_path):
    """sensor_size 10^6 x 10^6: the frames would take terabytes; refused before any is made."""
    dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("p", "<i8"), ("t", "<i8"),
                      ("sample", "<i8")])
    events = np.array([(5, 7, 1, 0, 0), (9, 2, 0, 1, 0)], dtype=dtype)
    f = tmp_path / "events.npz"
    np.savez(f, events=events, sensor_size=np.array([10 ** 6, 10 ** 6, 2]), y=np.array([3]))
    from snnexport.data import load_dataset

    _refused(lambda: load_dataset(str(f), 8), str(f), "sensor_size", "memory")
