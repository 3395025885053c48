"""Every command and Python snippet in README.md runs, as a user runs it: each section's code
blocks in order (a later block may use the files an earlier one wrote), in a fresh folder
outside the checkout where `examples/` and `tests/data/` are at hand; every `snnexport`
command must exit 0 and every Python block must end without an error. The only other commands
the README may show are the two `make` ones, which `make test` is itself."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
MAKE = {"make demo", "make test"}


def sections() -> dict[str, list[tuple[str, str]]]:
    """{heading: [(language, code), ...]} for every heading whose text holds a code block."""
    out, heading, at = {}, "top", 0
    for m in re.finditer(r"^#{2,3} (.+)$", README, re.M):
        blocks = FENCE.findall(README, at, m.start())
        if blocks:
            out[heading] = blocks
        heading, at = m.group(1), m.end()
    blocks = FENCE.findall(README, at)
    if blocks:
        out[heading] = blocks
    return out


SECTIONS = sections()


def commands(code: str) -> list[list[str]]:
    """The shell lines of a block as argument lists, comments dropped."""
    return [shlex.split(line, comments=True) for line in code.splitlines()
            if shlex.split(line, comments=True)]


def test_readme_is_short_and_shows_only_runnable_code():
    assert len(README.splitlines()) <= 200
    langs = {lang for blocks in SECTIONS.values() for lang, _ in blocks}
    assert langs <= {"sh", "python"}, langs
    for blocks in SECTIONS.values():
        for lang, code in blocks:
            if lang == "sh":
                for argv in commands(code):
                    assert argv[0] == "snnexport" or " ".join(argv) in MAKE, argv


def test_readme_has_a_quick_start_per_kind_of_user():
    for kind in ("SpikingJelly", "snnTorch", "Norse", "NIR file", "netx file", "own data"):
        assert any(kind in heading for heading in SECTIONS), kind


@pytest.mark.parametrize("heading", [h for h, blocks in SECTIONS.items()
                                     if any(lang == "python" or any(
                                         a[0] == "snnexport" for a in commands(code))
                                         for lang, code in blocks)])
def test_readme_section_runs(heading, tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = 0
    for lang, code in SECTIONS[heading]:
        runs = [[sys.executable, "-c", code]] if lang == "python" else [
            [sys.executable, "-m", "snnexport.cli", *argv[1:]] for argv in commands(code)
            if argv[0] == "snnexport"]
        for argv in runs:
            proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=900, env=env)
            shown = code if lang == "python" else shlex.join(["snnexport", *argv[3:]])
            assert proc.returncode == 0, (f"README, {heading}: {shown}\nexit "
                                          f"{proc.returncode}\n{proc.stdout[-2000:]}"
                                          f"{proc.stderr[-3000:]}")
            ran += 1
    assert ran
