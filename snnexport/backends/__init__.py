"""Targets as plug-in backends: one module per target, each registering itself (base.py says
what a backend is). The import order below is the order `available()` lists them in."""

from .base import (
    FOLDED,
    Backend,
    Chain,
    Export,
    Lowered,
    TargetRefusal,
    UnknownTarget,
    available,
    backends,
    fixed_point,
    get,
    register,
    unregister,
)

# isort: off
from . import reference, nir, onnx, fixed, onnx_fixed  # noqa: F401, E401  (each registers itself)
from . import lava_float, lava_fixed, netx  # noqa: F401
from . import xylo  # noqa: F401  (a chip family: one package, its own chain)
# isort: on

__all__ = ["FOLDED", "Backend", "Chain", "Export", "Lowered", "TargetRefusal", "UnknownTarget",
           "available", "backends", "fixed_point", "get", "register", "unregister"]
