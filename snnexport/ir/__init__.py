"""The hardware IR: nodes (nodes.py), the graph (graph.py), the .snnir file format (io.py)."""

from .graph import Graph
from .io import IRFileError, load_ir, save_ir
from .nodes import IRError

__all__ = ["Graph", "IRError", "IRFileError", "load_ir", "save_ir"]
