"""Targets as plug-in backends: one module per target, each registering itself (base.py says
what a backend is). The import order below is the order `available()` lists them in."""

from .base import (
    FOLDED,
    Backend,
    Export,
    Lowered,
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
# isort: on

__all__ = ["FOLDED", "Backend", "Export", "Lowered", "UnknownTarget", "available", "backends",
           "fixed_point", "get", "register", "unregister"]
