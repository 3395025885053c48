"""The import layering of pyproject.toml's [tool.importlinter] (imports only go downward; the
hardware lowering imports no torch): kept by the tree, and broken, naming the import, by a copy
of the package with one bad import injected."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root` with the config there (cwd and PYTHONPATH, so
    a copy shadows the installed package)."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_its_layers():
    res = lint_imports(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and "0 broken" in res.stdout


@pytest.mark.parametrize(("module", "anchor", "line", "expected"), [
    # the IR importing the command line: upward across every layer
    ("ir/graph.py", "from .nodes import", "from ..cli import main  # noqa: F401",
     "snnexport.ir.graph -> snnexport.cli"),
    # a lower hardware-consumer layer importing a higher one (quant -> lava)
    ("quant/fixed.py", "from ..files import", "from ..lava import target  # noqa: F401",
     "snnexport.quant.fixed -> snnexport.lava.target"),
    # torch in the hardware lowering (the Lava runner's environment must not need it)
    ("hw/cores.py", "import numpy as np", "import torch  # noqa: F401",
     "snnexport.hw.cores -> torch"),
])
def test_an_injected_bad_import_breaks_the_contract_and_is_named(tmp_path, module, anchor,
                                                                  line, expected):
    shutil.copytree(REPO / "snnexport", tmp_path / "snnexport",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "snnexport" / module
    lines = path.read_text().splitlines()
    at = next(i for i, text in enumerate(lines) if text.startswith(anchor))
    lines.insert(at, line)
    path.write_text("\n".join(lines) + "\n")
    res = lint_imports(tmp_path)
    assert res.returncode != 0, res.stdout
    assert "BROKEN" in res.stdout
    assert f"{expected} (l.{at + 1})" in res.stdout, res.stdout
