"""'nir': the NIR file read back (export, write, read, import: what a NIR consumer gets), run in
the reference simulator."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from .base import Backend, Export, register


def write(folded, path, dt: float | None = None):
    from ..exporters.nir_export import DEFAULT_DT, write_nir

    return write_nir(folded, path, dt=DEFAULT_DT if dt is None else dt)


def make_runner(folded, dtype, stats):
    from ..importers.nir_import import read_nir
    from ..sim.reference import simulate

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metadata that only snnexport reads: expected here
        back = read_nir(write(folded, Path(d) / "model.nir"))

    def run(xb):
        return simulate(back, xb, dtype=dtype, record_membrane=True)
    return run


register(Backend("nir", "NIR file read back", make_runner,
                 exports=Export(".nir", write, options=("dt",)),
                 fold_gain=False))  # NIR's LIF states the input gain as r: keep it there
