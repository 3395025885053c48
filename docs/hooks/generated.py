"""MkDocs hook: the pages' parts that are generated at every build from the code, so that
they cannot drift from it.

  <!-- cli-reference -->    the command-line reference, from the parser the `snnexport`
                           command itself uses (snnexport.cli.build_parser()): one section per
                           command, its usage line and a table of every argument (option
                           strings, value, default, help). tests/test_docs.py checks that
                           every option of the parser is in the built page.
  <!-- energy-profiles --> every energy profile (targets/*.toml, the files `snnexport energy
                           --profile` reads): its accounting and each constant with its value,
                           source and grade.
"""

from __future__ import annotations

import argparse
import html

CLI_MARKER = "<!-- cli-reference -->"
ENERGY_MARKER = "<!-- energy-profiles -->"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped, pipes and newlines made harmless."""
    return html.escape(" ".join(str(text).split())).replace("|", "&#124;")


def _value(action: argparse.Action) -> str:
    if action.nargs == 0:  # a flag (store_true, store_const, help)
        return ""
    if action.choices is not None:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    return f"`{_cell(metavar)}`"


def _default(action: argparse.Action) -> str:
    if action.required or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
        return "required" if action.required and action.option_strings else ""
    return f"`{_cell(action.default)}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return _cell(parser._get_formatter()._expand_help(action))


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference in Markdown: one section per command of `parser` (build_parser())."""
    if parser is None:
        from snnexport.cli import build_parser

        parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summary = {c.dest: c.help for c in sub._choices_actions}
    out = ["```text", parser.format_usage().strip(), "```", "",
           "| command | what it does |", "|---|---|"]
    out += [f"| [`{name}`](#snnexport-{name}) | {_cell(summary.get(name, ''))} |"
            for name in sub.choices]
    for name, sp in sub.choices.items():
        out += ["", f"## snnexport {name}", "", _cell(summary.get(name, "")), "",
                "```text", sp.format_usage().replace("usage: ", "").strip(), "```", ""]
        rows = [a for a in sp._actions if not isinstance(a, argparse._HelpAction)]
        if not rows:
            continue
        out += ["| argument | value | default | what it does |", "|---|---|---|---|"]
        for a in rows:
            names = ", ".join(f"`{o}`" for o in a.option_strings) or f"`{a.dest}` (positional)"
            out.append(f"| {names} | {_value(a)} | {_default(a)} | {_help(sp, a)} |")
    return "\n".join(out) + "\n"


def render_profiles() -> str:
    """Every energy profile in the target folder (snnexport.energy.estimate.targets_dir())."""
    import tomllib

    from snnexport.energy.estimate import targets_dir

    out = []
    for path in sorted(targets_dir().glob("*.toml")):
        d = tomllib.loads(path.read_text())
        out += [f"### {_cell(d.get('name', path.stem))}", "",
                f"{_cell(d.get('title', ''))}. Accounting: **{_cell(d.get('accounting', '?'))}**"
                f" (`targets/{path.name}`).", "",
                "| constant | value | grade | source |", "|---|---|---|---|"]
        for key, c in d.get("energy", {}).items():
            out.append(f"| `{key}` | {_cell(c.get('value'))} {_cell(c.get('unit', ''))} | "
                       f"{_cell(c.get('grade', ''))} | {_cell(c.get('source', ''))} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):  # MkDocs hook event
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, render())
    if ENERGY_MARKER in markdown:
        markdown = markdown.replace(ENERGY_MARKER, render_profiles())
    return markdown
