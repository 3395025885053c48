"""The examples in examples/ (one per kind of user: SpikingJelly, snnTorch, Norse, a NIR file
from another framework, own data in .npz) run as a user runs them, on the real packages, from
a folder outside the checkout, and end in an exact check (their exit status says so)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WRITES = {"spikingjelly_net.py": ["sj.nir", "sj.onnx"], "snntorch_net.py": ["snntorch.nir"],
          "norse_net.py": ["norse.onnx"], "nir_file.py": ["snntorch.nir", "from_nir.onnx"],
          "own_data.py": ["my_digits.npz"]}


def test_every_example_is_run_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(WRITES)


@pytest.mark.parametrize("name", sorted(WRITES))
def test_example_runs_and_checks_exact(name, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exact: every spike of every layer is equal" in proc.stdout, proc.stdout[-3000:]
    for f in WRITES[name]:
        assert (tmp_path / "out" / f).stat().st_size > 0, f
