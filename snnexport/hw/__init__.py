"""The hardware view of a folded IR, shared by every hardware consumer (fixed point, Lava,
netx, integer ONNX): cores (a neuron population with the synapses feeding it) and the
per-neuron layouts targets use. Numpy only: the Lava runner's Python 3.10 imports it."""

from .cores import (
    Core,
    CoreGraph,
    HardwareLoweringError,
    PoolCore,
    Synapse,
    conv_matrix,
    lower,
    pool_matrix,
)
from .layout import to_chw, whc

__all__ = ["Core", "CoreGraph", "HardwareLoweringError", "PoolCore", "Synapse", "to_chw",
           "conv_matrix", "lower", "pool_matrix", "whc"]
