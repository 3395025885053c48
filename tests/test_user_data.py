"""A user's own data through the front door: `--data FILE.npz` (static inputs, frame sequences,
event recordings) and `--data module:function`, and the one-line errors for data that cannot
be used. The expected results come from the built-in data set the files are made of: the same
inputs must give the same spikes, whichever way they come in."""

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from snnexport.check import check, load_model
from snnexport.cli import main
from snnexport.data import events_to_frames, load_dataset
from snnexport.errors import UsageError

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
MODEL = MODELS / "digits_plif_layer.pt"
N = 60


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _report(tmp_path, name, *args):
    out = tmp_path / f"{name}.json"
    code = main(["check", str(MODEL), "--samples", str(N), "--json", str(out), *args])
    return code, json.loads(out.read_text())


def test_an_npz_of_the_built_in_inputs_checks_the_same(tmp_path, digits):
    f = tmp_path / "mine.npz"
    np.savez(f, x=digits.x_test[:N].numpy(), y=digits.y_test[:N].numpy(),
             x_train=digits.x_train[:200].numpy(), y_train=digits.y_train[:200].numpy())
    code_b, builtin = _report(tmp_path, "builtin", "--data", "digits")
    code_u, mine = _report(tmp_path, "mine", "--data", str(f))
    assert code_b == code_u == 0
    for key in ("samples", "accuracy", "layers"):
        assert mine[key] == builtin[key], key
    # the fixed-point target calibrates on x_train: the same 200 images, the same net
    fixed_b = check(load_model(MODEL), "fixed", "digits", samples=N)
    fixed_u = check(load_model(MODEL), "fixed", str(f), samples=N)
    assert fixed_u.quantisation == fixed_b.quantisation
    assert fixed_u.to_dict()["layers"] == fixed_b.to_dict()["layers"]


def test_frames_repeating_a_static_image_give_its_spikes(tmp_path, digits):
    t = load_model(MODEL).graph.metadata["time_steps"]
    x = digits.x_test[:N]
    frames = x.unsqueeze(1).expand(N, t, *x.shape[1:])  # direct encoding, written out
    f = tmp_path / "frames.npz"
    np.savez(f, x=frames.numpy(), y=digits.y_test[:N].numpy())
    assert load_dataset(str(f)).x_test.shape == (N, t, 1, 8, 8)
    static = check(load_model(MODEL), data="digits", samples=N)
    framed = check(load_model(MODEL), data=str(f), samples=N)
    assert framed.to_dict()["layers"] == static.to_dict()["layers"]
    assert framed.correct_target == static.correct_target


def test_event_recordings_become_frames_by_equal_event_count(tmp_path):
    dtype = [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1"), ("sample", "<i4")]
    rng = np.random.default_rng(0)
    recs = []
    for s, n in ((0, 10), (1, 7)):
        ev = np.zeros(n, dtype)
        ev["x"], ev["y"] = rng.integers(0, 4, n), rng.integers(0, 3, n)
        ev["p"], ev["t"], ev["sample"] = rng.integers(0, 2, n), np.arange(n) * 5, s
        recs.append(ev)
    events = np.concatenate(recs)[::-1].copy()  # out of time order: sorted per recording
    f = tmp_path / "events.npz"
    np.savez(f, events=events, sensor_size=np.array([4, 3, 2]), y=np.array([3, 1]))
    ds = load_dataset(str(f), time_steps=3)
    assert ds.x_test.shape == (2, 3, 2, 3, 4)
    # eq. S1 by hand for recording 1 (7 events, T = 3): slices [0, 2), [2, 4), [4, 7)
    ev = recs[1]
    want = np.zeros((3, 2, 3, 4))
    for j, (lo, hi) in enumerate(((0, 2), (2, 4), (4, 7))):
        for e in ev[lo:hi]:
            want[j, e["p"], e["y"], e["x"]] += 1
    assert np.array_equal(ds.x_test[1].numpy(), want)
    assert np.array_equal(ds.x_test[0].numpy(), events_to_frames(recs[0], (4, 3, 2), 3))
    assert ds.x_test.sum().item() == 17 and ds.y_test.tolist() == [3, 1]
    with pytest.raises(UsageError, match="give the model's time steps"):
        load_dataset(str(f))


def test_a_data_function_gives_inputs_from_code(tmp_path, monkeypatch, digits):
    (tmp_path / "mydata.py").write_text(
        "from snnexport.data import load_dataset\n"
        "def test_set():\n"
        "    d = load_dataset('digits')\n"
        f"    return d.x_test[:{N}], d.y_test[:{N}].numpy()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code_b, builtin = _report(tmp_path, "builtin", "--data", "digits")
    code_f, mine = _report(tmp_path, "fn", "--data", "mydata:test_set")
    assert code_f == code_b == 0 and mine["layers"] == builtin["layers"]


class Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/snnexport-pwned"),))


BAD = {
    "no labels": (lambda f: np.savez(f, x=np.zeros((3, 1, 8, 8))), "no array y"),
    "labels of another length": (lambda f: np.savez(f, x=np.zeros((3, 1, 8, 8)),
                                                    y=np.zeros(2, int)),
                                 r"y must be \[N\] = \[3\] labels"),
    "NaN inputs": (lambda f: np.savez(f, x=np.full((3, 1, 8, 8), np.nan), y=np.zeros(3, int)),
                   "x holds NaN or Inf"),
    "fractional labels": (lambda f: np.savez(f, x=np.zeros((3, 1, 8, 8)), y=np.full(3, 0.5)),
                          "integer class labels"),
    "a pickle inside": (lambda f: np.savez(f, x=np.array([Evil()], dtype=object),
                                           y=np.zeros(1, int)), "not a readable .npz"),
    "not an npz": (lambda f: f.write_bytes(pickle.dumps(1)), "not a readable .npz"),
    "another input shape": (lambda f: np.savez(f, x=np.zeros((3, 1, 28, 28)),
                                               y=np.zeros(3, int)),
                            "samples of 1x28x28.*takes inputs of 1x8x8"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_unusable_data_is_one_line_and_exit_2(case, tmp_path, capsys):
    make, message = BAD[case]
    f = tmp_path / "bad.npz"
    make(f)
    before = f.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert main(["check", str(MODEL), "--data", str(f), "--samples", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert re.search(message, err), err
    assert f.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == listing
    assert not Path("/tmp/snnexport-pwned").exists()


def test_data_given_as_torch_and_numpy_in_python(digits):
    loaded = load_model(MODEL)
    x, y = digits.x_test[:N], digits.y_test[:N]
    a = check(loaded, inputs=(x, y), samples=N)
    b = check(loaded, inputs=(x.numpy(), y.numpy()), samples=N)
    assert a.to_dict()["layers"] == b.to_dict()["layers"]
