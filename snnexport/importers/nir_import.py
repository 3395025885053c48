"""NIR graph / file -> IR (hardware-native nodes).

Discretisation at the graph's dt (metadata 'dt', else the `dt` argument, default 1e-4 s):
  euler (default, what snnTorch and SpikingJelly simulate):  k = dt / tau
  exact (option, zero-order hold):                           k = 1 - exp(-dt / tau)
then   LIF  v += k (v_leak - v + r I)  ->  Neuron(decay 1 - k, gain k r)
       LI   the same, non-spiking;  IF  v += dt r I -> Neuron(decay 1, gain dt r);
       I    (integrator) non-spiking IF;  Threshold alone -> memoryless Neuron(decay 0)
A constant drive (k v_leak, and -k v_reset after the reset level is shifted to 0) becomes a
bias of the synapse in front, divided by the gain; NIR's strict v > v_threshold becomes
H >= nextafter(v_threshold, +inf). SumPool2d followed by Threshold(0 < theta <= 1) on spikes is
the OR-pool; a final Linear written by snnexport as a voting layer becomes the Readout again,
with the metadata snnexport wrote (IMP, soft reset, readout mode) restored.

Not representable (clear error naming the node): CubaLIF / CubaLI (a synaptic-current state),
Delay (other than 0), Conv1d, branching graphs.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from ..errors import SnnexportError, UsageError
from ..exporters.nir_export import DEFAULT_DT, voting_matrix
from ..ir import nodes as ir
from ..ir.graph import Graph


class NIRImportError(SnnexportError, ValueError):
    """A NIR file or node snnexport cannot read; names the file / node."""


def _a(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _scalar_meta(v):
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a


def _chain(g: nir.NIRGraph, where: str) -> list[str]:
    inputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRImportError(f"{where}: needs exactly one Input node, found {inputs}")
    nxt: dict[str, str] = {}
    for a, b in g.edges:
        if a in nxt:
            raise NIRImportError(f"{where}: node {a!r} feeds two nodes; only chains are "
                                 "supported")
        nxt[a] = b
    order, cur = [inputs[0]], inputs[0]
    while cur in nxt:
        cur = nxt[cur]
        if cur in order:
            raise NIRImportError(f"{where}: cycle through node {cur!r} (recurrence is not "
                                 "supported)")
        order.append(cur)
    missing = set(g.nodes) - set(order)
    if missing:
        raise NIRImportError(f"{where}: nodes not on the input's chain: {sorted(missing)}")
    return order


def _shape(type_dict) -> tuple[int, ...]:
    v = next(iter(type_dict.values())) if isinstance(type_dict, dict) else type_dict
    return tuple(int(s) for s in np.asarray(v).ravel())


class _Builder:
    def __init__(self, where: str, dt: float, discretisation: str):
        self.where, self.dt, self.mode = where, dt, discretisation
        self.named: list[tuple[str, ir.Node]] = []

    def k_of(self, tau):
        tau = _a(tau)
        return self.dt / tau if self.mode == "euler" else 1.0 - np.exp(-self.dt / tau)

    def add_drive(self, key: str, drive: np.ndarray, gain: np.ndarray):
        """Fold a constant per-step drive into the bias of the synapse in front."""
        if not np.any(drive):
            return
        name, syn = self.named[-1] if self.named else (None, None)
        if not isinstance(syn, (ir.Dense, ir.Conv2d)):
            raise NIRImportError(f"{self.where}: node {key!r}: a leak or reset level other than "
                                 "0 needs a Conv2d/Affine in front to carry it as a bias")
        per_out = drive / gain
        c = syn.weight.shape[0]
        flat = per_out.reshape(c, -1)
        if not np.all(flat == flat[:, :1]):
            raise NIRImportError(f"{self.where}: node {key!r}: v_leak / v_reset vary within a "
                                 "channel; not representable as a bias")
        bias = (_a(syn.bias) if syn.bias is not None else np.zeros(c)) + flat[:, 0]
        self.named[-1] = (name, ir.Dense(syn.weight, bias) if isinstance(syn, ir.Dense)
                          else ir.Conv2d(syn.weight, bias, syn.stride, syn.padding, syn.groups))

    def neuron(self, key, node, shape, spiking=True) -> ir.Neuron:
        meta = node.metadata or {}
        r = np.broadcast_to(_a(node.r), shape)
        if isinstance(node, (nir.IF, nir.I)):
            decay, gain, leak_drive = np.ones(shape), self.dt * r, np.zeros(shape)
        else:
            k = np.broadcast_to(self.k_of(node.tau), shape)
            decay, gain = 1.0 - k, k * r
            leak_drive = k * np.broadcast_to(_a(node.v_leak), shape)
        # snnexport writes the exact IR decay and gain too: dt / (dt / x) is not always x in
        # floating point. Use them when they agree with tau and r (nobody edited those).
        if "snnexport.decay" in meta and self.mode == "euler":
            exact_d = np.broadcast_to(_a(meta["snnexport.decay"]), shape)
            exact_g = np.broadcast_to(_a(meta["snnexport.gain"]), shape)
            if np.allclose(exact_d, decay, rtol=1e-9, atol=1e-12) and np.allclose(
                    exact_g, gain, rtol=1e-9, atol=1e-12):
                decay, gain = exact_d, exact_g
        v_reset = np.zeros(shape)
        if spiking and getattr(node, "v_reset", None) is not None:
            v_reset = np.broadcast_to(_a(node.v_reset), shape)
        # shift the reset level to 0: v' = v - v_reset; the leak term then adds -(1-decay) v_r
        self.add_drive(key, leak_drive - (1.0 - decay) * v_reset, gain)
        threshold = 0.0
        if spiking:
            thr = np.unique(_a(node.v_threshold) - v_reset)
            if thr.size != 1:
                raise NIRImportError(f"{self.where}: node {key!r}: one threshold per layer is "
                                     "supported")
            threshold = float(np.nextafter(thr[0], np.inf))  # NIR's v > v_th as H >= thr
        v_init = _a(meta.get("snnexport.v_init", 0.0)) - v_reset
        reset = "soft" if meta.get("snnexport.reset") == "soft" else "hard"
        return ir.Neuron(tuple(shape), _simplest(decay), None if np.all(gain == 1) else
                         _simplest(gain), threshold, reset, _simplest(v_init), spiking)


def _simplest(a: np.ndarray) -> np.ndarray:
    a = _a(a)
    return np.array(a.flat[0]) if a.size and np.all(a == a.flat[0]) else a


def from_nir(g: nir.NIRGraph, dt: float | None = None, discretisation: str = "euler",
             where: str = "<NIR graph>") -> Graph:
    if discretisation not in ("euler", "exact"):
        raise UsageError("discretisation must be 'euler' or 'exact'")
    meta = g.metadata or {}
    dt = float(meta.get("dt", dt if dt is not None else DEFAULT_DT)) if dt is None else dt
    b = _Builder(where, dt, discretisation)
    order = _chain(g, where)
    shape: tuple[int, ...] | None = None
    readout = None
    i = 0
    while i < len(order):
        key = order[i]
        node = g.nodes[key]
        name = str((node.metadata or {}).get("snnexport.name", key))
        nxt = g.nodes[order[i + 1]] if i + 1 < len(order) else None
        count = len(b.named)
        try:
            if isinstance(node, nir.Input):
                shape = _shape(node.input_type)
                b.named.append(("input", ir.Input(shape)))
                count += 1  # the input's shape is already set
            elif isinstance(node, nir.Output):
                pass
            elif isinstance(node, (nir.Affine, nir.Linear)):
                w = _a(node.weight)
                m = node.metadata or {}
                if "snnexport.readout" in m:
                    pop = int(_scalar_meta(m["snnexport.population"]))
                    if not np.array_equal(w, voting_matrix(w.shape[0], pop)):
                        raise NIRImportError("weights are not the voting matrix its metadata "
                                             "claims")
                    readout = ir.Readout(pop, str(_scalar_meta(m["snnexport.readout"])))
                    b.named.append((name, readout))
                else:
                    bias = _a(node.bias) if isinstance(node, nir.Affine) else None
                    b.named.append((name, ir.Dense(w, bias)))
            elif isinstance(node, nir.Scale):
                prev_name, syn = b.named[-1]
                if not isinstance(syn, (ir.Dense, ir.Conv2d)):
                    raise NIRImportError("Scale is supported only right after Conv2d/Affine")
                s = _a(node.scale).reshape(-1)
                view = (-1,) + (1,) * (syn.weight.ndim - 1)
                w = _a(syn.weight) * s.reshape(view)
                bias = None if syn.bias is None else _a(syn.bias) * s
                b.named[-1] = (prev_name, ir.Dense(w, bias) if isinstance(syn, ir.Dense) else
                               ir.Conv2d(w, bias, syn.stride, syn.padding, syn.groups))
            elif isinstance(node, nir.Conv2d):
                if tuple(np.atleast_1d(node.dilation).tolist()) not in ((1,), (1, 1)):
                    raise NIRImportError("dilation other than 1 is not supported")
                pad = node.padding
                if isinstance(pad, str):
                    raise NIRImportError(f"string padding {pad!r} is not supported")
                pair = nir_pair
                b.named.append((name, ir.Conv2d(_a(node.weight), _a(node.bias), pair(node.stride),
                                                pair(pad), int(node.groups))))
            elif isinstance(node, nir.Flatten):
                start, end = int(np.asarray(node.start_dim).item()), int(
                    np.asarray(node.end_dim).item())
                if start not in (0, -len(shape)) or end != -1:
                    raise NIRImportError(f"Flatten start_dim={node.start_dim}, end_dim="
                                         f"{node.end_dim}: only per-sample full flattening")
                b.named.append((name, ir.Flatten()))
            elif isinstance(node, nir.SumPool2d):
                pool = (nir_pair(node.kernel_size), nir_pair(node.stride),
                        nir_pair(node.padding))
                if isinstance(nxt, nir.Threshold) and np.all((_a(nxt.threshold) > 0) &
                                                             (_a(nxt.threshold) <= 1)):
                    b.named.append((name, ir.SpikePool(*pool, mode="or")))
                    i += 1  # the Threshold is part of the OR
                else:
                    b.named.append((name, ir.SpikePool(*pool, mode="sum")))
            elif isinstance(node, nir.AvgPool2d):
                b.named.append((name, ir.AvgPool2d(nir_pair(node.kernel_size),
                                                   nir_pair(node.stride),
                                                   nir_pair(node.padding))))
            elif isinstance(node, nir.Threshold):
                thr = np.unique(_a(node.threshold))
                if thr.size != 1:
                    raise NIRImportError("one threshold per layer is supported")
                b.named.append((name, ir.Neuron(shape, np.zeros(()), None,
                                                float(np.nextafter(thr[0], np.inf)))))
            elif isinstance(node, (nir.LIF, nir.IF)):
                b.named.append((name, b.neuron(key, node, shape)))
            elif isinstance(node, (nir.LI, nir.I)):
                b.named.append((name, b.neuron(key, node, shape, spiking=False)))
            elif isinstance(node, nir.Delay) and np.all(_a(node.delay) == 0):
                pass
            else:
                raise NIRImportError(f"{type(node).__name__} has no snnexport IR form "
                                     "(supported: Affine, Linear, Scale, Conv2d, Flatten, "
                                     "SumPool2d, AvgPool2d, Threshold, LIF, IF, LI, I, "
                                     "Delay of 0)")
            if len(b.named) > count:
                shape = b.named[-1][1].out_shape(shape)
        except (NIRImportError, ir.IRError) as e:
            msg = str(e)
            if msg.startswith(where):
                raise
            raise NIRImportError(f"{where}: node {key!r} ({type(node).__name__}): {msg}") from None
        i += 1
    if readout is None:  # a foreign graph: score by the spike count of its last layer
        b.named.append(("readout", ir.Readout(1, "rate")))
    time_steps = int(_scalar_meta(meta.get("snnexport.time_steps", 0))) or None
    md = {"source": "nir", "dt": dt, "discretisation": discretisation, "folded": True,
          "readout": (readout.mode if readout else "rate")}
    if time_steps:
        md["time_steps"] = time_steps
    try:
        return Graph.chain(b.named, md)
    except ir.IRError as e:
        raise NIRImportError(f"{where}: {e}") from None


def nir_pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


def read_nir(path, dt: float | None = None, discretisation: str = "euler") -> Graph:
    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such file")
    try:
        g = nir.read(path)
    except Exception as e:
        raise NIRImportError(f"{path}: not a readable NIR file ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
    return from_nir(g, dt, discretisation, where=str(path))
