"""Scheduled writes into a Lava process's Var from inside the Lava runtime (Lava environment only).

The runners set each sample's host bias and every layer's v_init at the steps `Schedule`
names. Through the runtime (`Var.set` between run calls) Lava 0.10 sends an array one element
per message (PyLoihiProcessModel._set_var): about 0.45 s per set of a 25,088-neuron layer, 2 s
per MNIST-5k sample. A VarWriter holds every value it will write from the start (its own Vars,
given at build time) and writes the whole array through a RefPort, one message, in the
post-management phase of the step before the one that must see it: as Lava's own
`lava.proc.io.reset.Reset` does with one scalar, here with a value per write.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class VarWriter(AbstractProcess):
    """Writes values[i] into `var` so that 0-based Lava step steps[i] (>= 1) sees it."""

    def __init__(self, var, steps, values) -> None:
        values = np.asarray(values, np.float64).reshape(len(steps), *var.shape)
        super().__init__()
        # Lava counts time_step from 1: the post-management of time_step g runs after
        # 0-based step g - 1, before step g
        self.steps = Var((len(steps),), init=np.asarray(steps, np.int64))
        self.values = Var(values.shape, init=values)
        self.state = RefPort(var.shape)
        self.state.connect_var(var)


class _PyVarWriter(PyLoihiProcessModel):
    steps: np.ndarray = LavaPyType(np.ndarray, np.int64)
    values: np.ndarray = LavaPyType(np.ndarray, np.float64)

    def post_guard(self) -> bool:
        return bool((self.steps == self.time_step).any())

    def run_post_mgmt(self) -> None:
        i = int(np.flatnonzero(self.steps == self.time_step)[0])
        self.state.write(self.values[i].astype(self.state._d_type))
        self.state.wait()  # the write done before the step that must see it


@implements(proc=VarWriter, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyVarWriterFixed(_PyVarWriter):
    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, int)


@implements(proc=VarWriter, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyVarWriterFloat(_PyVarWriter):
    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, float)


MODELS = {"fixed_pt": PyVarWriterFixed, "floating_pt": PyVarWriterFloat}


def writers(writes: dict, procs: dict) -> list[VarWriter]:
    """One VarWriter per (process key, Var name) of `writes` ({(key, var name): [(step,
    value), ...]}), on procs[key]'s Var."""
    out = []
    for (key, var), items in writes.items():
        if items:
            steps, values = zip(*items, strict=True)
            out.append(VarWriter(getattr(procs[key], var), list(steps), np.stack(values)))
    return out
