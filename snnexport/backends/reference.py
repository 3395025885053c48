"""'reference': the folded IR in snnexport's reference simulator (float64 unless asked)."""

from __future__ import annotations

from .base import FOLDED, Backend, register


def make_runner(folded, dtype, stats):
    from ..sim.reference import simulate

    def run(xb):
        return simulate(folded, xb, dtype=dtype, record_membrane=True)
    return run


def run_file(path, folded, dtype, stats):
    """The folded IR file at `path`, read back, in the reference simulator."""
    from ..ir import load_ir

    return make_runner(load_ir(path), dtype, stats)


register(Backend("reference", "folded IR", make_runner, run_file=run_file,
                 artifact_of=FOLDED))
