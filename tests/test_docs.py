"""The documentation site (mkdocs.yml, docs/): built in strict mode, as `make docs` builds it
but with every warning an error, so a broken link, a page left out of the navigation or a
docstring the API page cannot render fails here; and the command-line reference, generated at
build time from snnexport.cli.build_parser(), documents every option of every command."""

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from snnexport.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's end-of-life notice
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                           str(config), "-d", str(site)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    proc = build(ROOT / "mkdocs.yml", site)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    return site


def text_of(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text()))


def test_every_page_in_docs_is_built(site):
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix("")
                   for p in (ROOT / "docs").rglob("*.md"))
    for p in pages:
        out = site / (p.parent if p.name == "index" else p) / "index.html"
        assert out.is_file(), f"docs/{p}.md was not built to {out}"


def test_cli_reference_documents_every_option(site):
    """Every command of build_parser() has its section and every one of its option strings
    (and positional argument) appears in that section of the built page."""
    page = (site / "cli" / "index.html").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    starts = {name: page.find(f'id="snnexport-{name}"') for name in sub.choices}
    missing = [name for name, i in starts.items() if i < 0]
    assert not missing, f"commands without a section in the CLI reference: {missing}"
    order = sorted(starts.values()) + [len(page)]
    checked = 0
    for name, sp in sub.choices.items():
        begin = starts[name]
        section = html.unescape(page[begin:order[order.index(begin) + 1]])
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):  # -h, --help: said once on the page
                continue
            for option in action.option_strings or [action.dest]:
                assert f"<code>{option}</code>" in section, \
                    f"snnexport {name}: {option} is not in the CLI reference"
                checked += 1
    assert checked > 50  # 9 commands and their options (98 today), not a vacuous loop


def test_cli_reference_shows_help_and_choices(site):
    """The tables carry the parser's own words: a help text, the choices of --target."""
    from snnexport import backends

    text = text_of(site / "cli" / "index.html")
    assert "cut the samples into N shards, one Ray task each" in text
    for target in backends.available():
        assert target in text


def test_api_page_is_rendered_from_the_docstrings(site):
    text = text_of(site / "api" / "index.html")
    for fn in ("load", "fold", "export", "verify", "estimate_energy", "deploy_to"):
        assert f"snnexport.api.{fn}" in text or f"{fn}(" in text, fn
    # a sentence of api.verify's docstring, so the page is the code's own text
    assert "Parity of" in text and "against the model" in text


def test_energy_page_lists_every_profile_with_its_sources(site):
    from snnexport.energy.estimate import available_profiles

    text = text_of(site / "energy" / "index.html")
    for name in available_profiles():
        assert name in text
    assert "Davies et al." in text  # a source cited by the Loihi 1 profile


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The strict build is what catches a broken link: a copy of the site with one added
    page linking to a page that does not exist must fail, naming it."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    config = (ROOT / "mkdocs.yml").read_text()
    (tmp_path / "mkdocs.yml").write_text(config.replace(
        "  - Home: index.md\n", "  - Home: index.md\n  - Broken: broken.md\n"))
    (tmp_path / "docs" / "broken.md").write_text("# Broken\n\nSee [the page](no-such-page.md).\n")
    proc = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stdout + proc.stderr
