"""The chip descriptions and energy profiles live in the repository's top-level targets/; the
wheel carries them as package data under snnexport/targets/ (snnexport.hw.fit
.targets_dir finds either). Everything else is configured in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TARGETS = Path(__file__).resolve().parent / "targets"


class BuildWithTargets(build_py):
    """build_py, then targets/ (*.toml, README.md, chips/*.toml) into the built package."""

    def run(self):
        super().run()
        dest = Path(self.build_lib) / "snnexport" / "targets"
        for src in [*TARGETS.rglob("*.toml"), *TARGETS.rglob("README.md")]:
            out = dest / src.relative_to(TARGETS)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)


setup(cmdclass={"build_py": BuildWithTargets})
