"""What a run is given, checked before it starts: counts, input shapes and memory.

Every refusal is a UsageError, one line naming the option or the data and the fix:

  * `count`: a number of samples / calibration samples / decay values / Lava samples must be a
    whole number >= 1 (0 samples compare nothing, and Python's x[:-5] would silently take all
    but five);
  * `first`: the first n samples of a data set or of given inputs; asking for more than it
    holds is refused (snnexport never silently checks fewer samples than asked for);
  * `fit_input`: inputs whose per-sample shape is neither the model's input shape nor a frame
    sequence of it are refused before anything runs, naming both shapes;
  * `run_bytes` / `ensure_fits`: the memory one batch of a run takes, estimated from the
    graph's layer sizes, T and the batch, refused up front when it exceeds the machine's
    memory (SC_PHYS_PAGES x SC_PAGE_SIZE; a cgroup limit, if lower, wins). The machine's
    memory, not what happens to be free at this moment: a run that fits must not be refused
    because other programs hold memory just then (the estimate is an upper bound already).

The estimate (`run_bytes`) counts, per time step and sample, every node's output once, and per
neuron layer four more arrays of its size: the spikes and H the run keeps, and the per-step
lists next to their stacked copy while a layer's loop ends. It is an upper bound of the memory
the simulator's recorded values take (measured peaks of the bundled models' runs are below it),
not of Python's and torch's fixed overhead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..ir import nodes as ir
from ..ir.graph import Graph


def count(option: str, value, at_least: int = 1) -> int:
    """`value` as an int >= at_least, else UsageError naming `option` (e.g. '--samples')."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{option} {value!r}: a whole number >= {at_least} is needed")
    if value < at_least:
        why = (" (a check on no samples proves nothing)"
               if option in ("--samples", "--lava-samples") else "")
        raise UsageError(f"{option} {value}: must be >= {at_least}{why}; give {option} "
                         f"{at_least} or more")
    return int(value)


def first(x, n, option: str, what: str):
    """The first n samples of x (a tensor or array, samples first); n must be >= 1 and at most
    len(x): asking for more than `what` holds is refused, not silently cut."""
    n = count(option, n)
    if n > len(x):
        raise UsageError(f"{option} {n}: {what} holds only {len(x)} samples; give {option} "
                         f"{len(x)} or fewer")
    return x[:n]


def _fmt(shape) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


def input_shape(graph: Graph) -> tuple[int, ...]:
    return tuple(int(s) for s in graph.nodes[graph.input_name()].shape)


def fit_input(graph: Graph, x, source: str, what: str, fix: str = "") -> None:
    """UsageError unless x is [N, *input] (static) or [N, T, *input] (frame sequences)."""
    want = input_shape(graph)
    got = tuple(int(s) for s in x.shape)
    if got[1:] == want or got[2:] == want:
        return
    fix = fix or "give data of that shape (--data)"
    raise UsageError(f"{source}: {what} is {list(got)} (samples of {_fmt(got[1:])}) but the "
                     f"model takes inputs of {_fmt(want)} (or frame sequences T x "
                     f"{_fmt(want)}); {fix}")


def time_steps_of(graph: Graph, x=None) -> int:
    """T of a run: the frame count of frame sequences [N, T, *input], else the graph's."""
    if x is not None and tuple(x.shape[2:]) == input_shape(graph):
        return int(x.shape[1])
    t = graph.metadata.get("time_steps")
    if not t:
        raise UsageError("static input needs time_steps (graph metadata)")
    return int(t)


def run_bytes(graph: Graph, batch: int, time_steps: int, itemsize: int = 8) -> int:
    """Bytes one run of `batch` samples over `time_steps` steps keeps in memory (module
    docstring): T x batch x itemsize x (sum of every node's output size + 4 x the neurons)."""
    shapes = graph.shapes()
    values = sum(math.prod(s) for s in shapes.values())
    neurons = sum(math.prod(shapes[n]) for n, node in graph.nodes.items()
                  if isinstance(node, ir.NeuronLayer))
    return int(time_steps) * int(batch) * int(itemsize) * (values + 4 * neurons)


def available_memory() -> int:
    """Bytes of memory this process may use at most (see the module docstring)."""
    avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:  # a container's own limit (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            avail = min(avail, int(limit))
    except OSError:
        pass
    return avail


def ensure_fits(needed: int, what: str, fix: str, available: int | None = None) -> int:
    """`needed` bytes if they fit in the memory available, else UsageError saying how much the
    run would take against how much there is, and `fix`."""
    avail = available_memory() if available is None else available
    if needed > avail:
        raise UsageError(f"{what} would need about {needed:,} bytes ({needed / 2 ** 30:.1f} "
                         f"GiB) of memory; this machine has {avail:,} bytes "
                         f"({avail / 2 ** 30:.1f} GiB): refused before running; {fix}")
    return needed
