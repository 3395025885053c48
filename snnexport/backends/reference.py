"""'reference': the folded IR in snnexport's reference simulator (float64 unless asked)."""

from __future__ import annotations

from .base import Backend, register


def make_runner(folded, dtype, stats):
    from ..sim.reference import simulate

    def run(xb):
        return simulate(folded, xb, dtype=dtype, record_membrane=True)
    return run


register(Backend("reference", "folded IR", make_runner))
