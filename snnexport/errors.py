"""The one error family: every error snnexport raises on purpose derives from SnnexportError.

The CLI turns any of them into one line (what, where: the file and the layer's module path,
and the fix) and exit status 2; anything else is a bug and keeps its traceback. The classes
also derive from the builtin they used to be (ValueError, TypeError, RuntimeError), so code
that catches those keeps working. Plain Python, no torch or numpy: the Lava runner (its own
Python 3.10 environment) imports it too.
"""

from __future__ import annotations


class SnnexportError(Exception):
    """Base of every error the toolkit raises on purpose; the message is the one line a user
    sees: what is wrong, where (file, layer), and the fix."""


class UsageError(SnnexportError, ValueError):
    """A bad argument, option or input: an unknown data set or loss, a shape or size that does
    not fit, a command line argparse rejects. The message names the value and what would work."""
