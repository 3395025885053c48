"""'nir': the NIR file read back (export, write, read, import: what a NIR consumer gets), run in
the reference simulator."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from .base import Backend, Export, register


def write(folded, path, dt: float | None = None):
    import math

    from ..errors import UsageError
    from ..exporters.nir_export import DEFAULT_DT, write_nir

    dt = DEFAULT_DT if dt is None else dt
    if isinstance(dt, bool) or not isinstance(dt, int | float) or not math.isfinite(dt) or \
            dt <= 0:
        raise UsageError(f"export --to nir: --dt {dt!r}: give the time step in seconds, a "
                         "finite number > 0 (default 1e-4)")
    return write_nir(folded, path, dt=float(dt))


def make_runner(folded, dtype, stats):
    with tempfile.TemporaryDirectory() as d:
        return run_file(write(folded, Path(d) / "model.nir"), folded, dtype, stats)


def run_file(path, folded, dtype, stats):
    """The NIR file at `path` read back and run in the reference simulator."""
    from ..importers.nir_import import read_nir
    from ..sim.reference import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metadata that only snnexport reads: expected here
        back = read_nir(path)

    def run(xb):
        return simulate(back, xb, dtype=dtype, record_membrane=True)
    return run


register(Backend("nir", "NIR file read back", make_runner,
                 exports=Export(".nir", write, options=("dt",)),
                 run_file=run_file,
                 fold_gain=False))  # NIR's LIF states the input gain as r: keep it there
