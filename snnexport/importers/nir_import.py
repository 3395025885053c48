"""NIR graph / file -> IR (hardware-native nodes).

Discretisation at the graph's dt (metadata 'dt', else the `dt` argument, default 1e-4 s):
  euler (default, what snnTorch and SpikingJelly simulate):  k = dt / tau
  exact (option, zero-order hold):                           k = 1 - exp(-dt / tau)
then   LIF  v += k (v_leak - v + r I)  ->  Neuron(decay 1 - k, gain k r)
       CubaLIF / CubaLI  I += k_s (w_in S - I), then v += k (v_leak - v + r I) with the new I
            -> Neuron(current_decay 1 - k_s, decay 1 - k, gain k r k_s w_in) (k_s = dt / tau_syn
            or 1 - exp(-dt / tau_syn); the current first, as snnTorch's Synaptic, Norse's
            LIFCell and Lava's LIF order it; v_leak = v_reset = 0 only: a constant drive
            would pass through the current's filter)
       LI   the same, non-spiking;  IF  v += dt r I -> Neuron(decay 1, gain dt r);
       I    (integrator) non-spiking IF;  Threshold alone -> memoryless Neuron(decay 0)
A constant drive (k v_leak, and -k v_reset after the reset level is shifted to 0) becomes a
bias of the synapse in front, divided by the gain; NIR's strict v > v_threshold becomes
H >= nextafter(v_threshold, +inf). SumPool2d followed by Threshold(0 < theta <= 1) on spikes is
the OR-pool; a final Linear written by snnexport as a voting layer becomes the Readout again,
with the metadata snnexport wrote (IMP, soft reset, readout mode) restored.

Graphs: a node with several incoming edges sums them (NIR's rule), which becomes an explicit Add;
the merges snnexport writes (see exporters/nir_export.py) come back as Add / SEWAnd / SEWIAnd.
Not representable (clear error naming the node): Delay (other than 0), Conv1d, recurrence (cycles).
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from ..errors import SnnexportError, UsageError
from ..ir import nodes as ir
from ..ir.graph import Graph
from ..ir.neurons import KINDS, NirRole, nir_kinds
from ..ir.validate import validate
from ..nir_conventions import DEFAULT_DT, voting_matrix


class NIRImportError(SnnexportError, ValueError):
    """A NIR file or node snnexport cannot read; names the file / node."""


def _a(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _scalar_meta(v):
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a


def _positive_meta(meta: dict, key: str, default, where: str, integer: bool = False):
    """Graph metadata `key` as a finite number > 0 (a whole one if `integer`), else one
    NIRImportError naming it."""
    v = meta.get(key, default)
    if v is None:
        return None
    x = _scalar_meta(v)
    ok = isinstance(x, int | float) and not isinstance(x, bool) and np.isfinite(x) and x > 0 \
        and (not integer or float(x).is_integer())
    if not ok:
        raise NIRImportError(f"{where}: metadata {key} = {str(v)[:40]!r} must be a finite "
                             f"{'whole ' if integer else ''}number > 0")
    return int(x) if integer else float(x)


def _order(g: nir.NIRGraph, where: str) -> list[str]:
    """The NIR nodes in topological order from the one Input (a cycle is recurrence: refused)."""
    inputs = [k for k, n in g.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRImportError(f"{where}: needs exactly one Input node, found {inputs}")
    for a, b in g.edges:
        for k in (a, b):
            if k not in g.nodes:
                raise NIRImportError(f"{where}: edge ({a} -> {b}) names unknown node {k!r}")
    left = {k: 0 for k in g.nodes}
    for _, b in g.edges:
        left[b] += 1
    order, ready = [], [inputs[0]]
    while ready:
        cur = ready.pop(0)
        order.append(cur)
        for a, b in g.edges:
            if a == cur:
                left[b] -= 1
                if left[b] == 0:
                    ready.append(b)
    if len(order) != len(g.nodes):
        stuck = sorted(set(g.nodes) - set(order))
        raise NIRImportError(f"{where}: nodes {stuck} are not reached from the input or lie on "
                             "a cycle (recurrence is not supported)")
    return order


def _shape(type_dict) -> tuple[int, ...]:
    v = next(iter(type_dict.values())) if isinstance(type_dict, dict) else type_dict
    return tuple(int(s) for s in np.asarray(v).ravel())


class _Builder:
    """Builds the IR graph; `prev` is the IR node feeding the NIR node being read."""

    def __init__(self, where: str, dt: float, discretisation: str):
        self.where, self.dt, self.mode = where, dt, discretisation
        self.nodes: dict[str, ir.Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.fixed: set[str] = set()  # synapses another node reads too: not to be rewritten

    def add(self, name: str, node: ir.Node, inputs: list[str]) -> str:
        base, i = name, 1
        while name in self.nodes:
            i += 1
            name = f"{base}_{i}"
        self.nodes[name] = node
        self.edges += [(p, name) for p in inputs]
        return name

    def synapse_in_front(self, prev: str | None):
        syn = self.nodes.get(prev)
        if isinstance(syn, (ir.Dense, ir.Conv2d)) and prev not in self.fixed:
            return syn
        return None

    def k_of(self, tau):
        tau = _a(tau)
        return self.dt / tau if self.mode == "euler" else 1.0 - np.exp(-self.dt / tau)

    def add_drive(self, key: str, prev: str | None, drive: np.ndarray, gain: np.ndarray):
        """Fold a constant per-step drive into the bias of the synapse in front."""
        if not np.any(drive):
            return
        syn = self.synapse_in_front(prev)
        if syn is None:
            raise NIRImportError(f"{self.where}: node {key!r}: a leak or reset level other than "
                                 "0 needs a Conv2d/Affine in front (feeding only it) to carry "
                                 "it as a bias")
        per_out = drive / gain
        c = syn.weight.shape[0]
        flat = per_out.reshape(c, -1)
        if not np.all(flat == flat[:, :1]):
            raise NIRImportError(f"{self.where}: node {key!r}: v_leak / v_reset vary within a "
                                 "channel; not representable as a bias")
        bias = (_a(syn.bias) if syn.bias is not None else np.zeros(c)) + flat[:, 0]
        self.nodes[prev] = (ir.Dense(syn.weight, bias) if isinstance(syn, ir.Dense)
                            else ir.Conv2d(syn.weight, bias, syn.stride, syn.padding,
                                           syn.groups))

    def current(self, key, node, shape, kind) -> tuple[np.ndarray, np.ndarray]:
        """(current_decay, input scale) of a CubaLIF / CubaLI (`kind`.current_from_nir):
        I += k_s (w_in S - I) is J_t = (1 - k_s) J_{t-1} + S_t, I_t = k_s w_in J_t."""
        tau_s = np.broadcast_to(_a(node.tau_syn), shape)
        k_s = np.broadcast_to(self.k_of(node.tau_syn), shape)
        if not (np.all(np.isfinite(tau_s)) and np.all(tau_s > 0) and np.all(k_s <= 1)):
            raise NIRImportError(
                f"{self.where}: node {key!r}: tau_syn {float(np.min(tau_s)):g} with dt "
                f"{self.dt:g} gives a current decay 1 - dt/tau_syn outside [0, 1); tau_syn "
                "must be finite and >= dt (seconds); fix tau_syn or give the file's dt")
        decay, scale = kind.current_from_nir(k_s, np.broadcast_to(_a(node.w_in), shape))
        meta, field = node.metadata or {}, f"snnexport.{kind.current_param}"
        if field in meta and self.mode == "euler":
            exact = np.broadcast_to(_a(meta[field]), shape)
            if np.allclose(exact, decay, rtol=1e-9, atol=1e-12):
                decay = exact
        return decay, scale

    def neuron(self, key, prev, node, shape, role: NirRole) -> ir.Neuron:
        """The IR Neuron of a NIR neuron node, read as `role` says (ir/neurons.py nir_kinds:
        its kind, spiking or not, with a leak or not)."""
        spiking = role.spiking
        kind = KINDS[role.kind]
        meta = node.metadata or {}
        r = np.broadcast_to(_a(node.r), shape)
        cuba = kind.has_current
        current_decay, in_scale = self.current(key, node, shape, kind) if cuba else (None, 1.0)
        if not role.leaky:
            decay, gain, leak_drive = np.ones(shape), self.dt * r, np.zeros(shape)
        else:
            tau = node.tau_mem if cuba else node.tau
            k = np.broadcast_to(self.k_of(tau), shape)
            tau = np.broadcast_to(_a(tau), shape)
            if not (np.all(np.isfinite(tau)) and np.all(tau > 0) and np.all(k <= 1)):
                # an Euler step dt/tau above 1 gives a negative decay (the membrane flips sign
                # every step): tau in the wrong unit, e.g. Norse 1.1's to_nir (norse #411)
                bad = float(np.min(tau)) if np.all(np.isfinite(tau)) else float("nan")
                raise NIRImportError(
                    f"{self.where}: node {key!r}: tau {bad:g} with dt {self.dt:g} gives a "
                    f"decay 1 - dt/tau outside [0, 1); tau must be finite and >= dt (seconds, "
                    f"as NIR states it; Norse 1.1's to_nir writes it wrongly, norse #411); "
                    f"fix tau or give the file's dt")
            decay, gain = 1.0 - k, k * r * in_scale
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
        drive = leak_drive - (1.0 - decay) * v_reset
        if cuba and np.any(drive):  # a synapse bias would pass through the current's filter
            raise NIRImportError(f"{self.where}: node {key!r}: a {type(node).__name__} with "
                                 "v_leak or v_reset other than 0 is not supported (its constant "
                                 "drive acts on the membrane, not on the current); use v_leak "
                                 "= v_reset = 0")
        self.add_drive(key, prev, drive, gain)
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
                         _simplest(gain), threshold, reset, _simplest(v_init), spiking,
                         current_decay=None if current_decay is None else
                         _simplest(current_decay))


def _simplest(a: np.ndarray) -> np.ndarray:
    a = _a(a)
    return np.array(a.flat[0]) if a.size and np.all(a == a.flat[0]) else a


MERGE_KINDS = {"add": ir.Add, "and": ir.SEWAnd, "iand": ir.SEWIAnd}


def from_nir(g: nir.NIRGraph, dt: float | None = None, discretisation: str = "euler",
             where: str = "<NIR graph>") -> Graph:
    """NIR graph -> IR graph. A NIR node with several incoming edges sums them (NIR's rule): the
    sum becomes an explicit Add in front of it, unless the node is one snnexport wrote for a
    merge (metadata 'snnexport.merge': a Scale of ones = add; a Threshold 1.5 = SEW AND; a
    Threshold 0.5 fed once through a Scale of -1 = SEW IAND)."""
    if discretisation not in ("euler", "exact"):
        raise UsageError("discretisation must be 'euler' or 'exact'")
    meta = g.metadata or {}
    dt = _positive_meta(meta, "dt", DEFAULT_DT, where) if dt is None else dt
    b = _Builder(where, dt, discretisation)
    roles = nir_kinds()  # NIR neuron type -> its kind (ir/neurons.py)
    order = _order(g, where)
    ins = {k: [a for a, c in g.edges if c == k] for k in g.nodes}
    outs = {k: [c for a, c in g.edges if a == k] for k in g.nodes}
    ir_of: dict[str, str] = {}  # NIR key -> the IR node that carries its output
    shape_of: dict[str, tuple[int, ...]] = {}
    skip: set[str] = set()  # NIR nodes already read as part of another (OR-pool, IAND's -1)
    readout = None
    output = None
    for key in order:
        if key in skip:
            continue
        node = g.nodes[key]
        m = node.metadata or {}
        name = str(m.get("snnexport.name", key))
        try:
            sources = [ir_of[p] for p in ins[key]]
            merge = m.get("snnexport.merge")
            if merge is not None:
                kind = MERGE_KINDS.get(str(_scalar_meta(merge)))
                if kind is None or len(sources) != 2:
                    raise NIRImportError(f"merge {merge!r} with {len(sources)} inputs")
                if kind is ir.SEWIAnd:  # the negated input arrives through a Scale of -1
                    neg = [i for i, p in enumerate(ins[key]) if (
                        g.nodes[p].metadata or {}).get("snnexport.negated") is not None]
                    if len(neg) != 1:
                        raise NIRImportError("IAND needs exactly one input through its Scale "
                                             "of -1")
                    sources = [ir_of[ins[ins[key][neg[0]]][0]], sources[1 - neg[0]]]
                ir_of[key] = b.add(name, kind(), sources)
                shape_of[key] = shape_of[ins[key][0]]
                continue
            if len(sources) > 1:  # NIR sums what comes in: make the sum explicit
                total = sources[0]
                for i, src in enumerate(sources[1:]):
                    total = b.add(f"{name}.sum" + (f"{i + 1}" if i else ""), ir.Add(),
                                  [total, src])
                sources = [total]
            prev = sources[0] if sources else None
            shape = shape_of[ins[key][0]] if ins[key] else None
            if prev is not None and len(outs[ins[key][0]]) > 1:
                b.fixed.add(prev)  # another node reads it too: never rewrite it for this one
            new = None  # (name, IR node) this NIR node becomes, or None (passes through)
            if isinstance(node, nir.Input):
                shape = _shape(node.input_type)
                first = [g.nodes[c] for c in outs[key]]
                if len(shape) == 4 and shape[0] == 1 and any(
                        isinstance(c, nir.Conv2d) for c in first):
                    raise NIRImportError(
                        f"input shape {list(shape)} has a leading batch dimension of 1 in "
                        "front of a Conv2d; NIR shapes are per sample (C, H, W): export "
                        "without it (snnTorch: export_to_nir(..., ignore_dims=[0]))")
                ir_of[key], shape_of[key] = b.add("input", ir.Input(shape), []), shape
                continue
            elif isinstance(node, nir.Output):
                output = prev
            elif isinstance(node, (nir.Affine, nir.Linear)):
                w = _a(node.weight)
                if "snnexport.readout" in m:
                    pop = int(_scalar_meta(m["snnexport.population"]))
                    if not np.array_equal(w, voting_matrix(w.shape[0], pop)):
                        raise NIRImportError("weights are not the voting matrix its metadata "
                                             "claims")
                    readout = ir.Readout(pop, str(_scalar_meta(m["snnexport.readout"])))
                    new = readout
                else:
                    new = ir.Dense(w, _a(node.bias) if isinstance(node, nir.Affine) else None)
            elif isinstance(node, nir.Scale) and "snnexport.negated" in m:
                if len(outs[key]) != 1 or (g.nodes[outs[key][0]].metadata or {}).get(
                        "snnexport.merge") != "iand":
                    raise NIRImportError("a Scale of -1 marked as IAND's negation must feed "
                                         "the IAND")
                ir_of[key], shape_of[key] = prev, shape  # read by the IAND it feeds
                continue
            elif isinstance(node, nir.Scale):
                syn = b.synapse_in_front(prev)
                if syn is None:
                    raise NIRImportError("Scale is supported only right after Conv2d/Affine")
                s = _a(node.scale).reshape(-1)
                view = (-1,) + (1,) * (syn.weight.ndim - 1)
                w = _a(syn.weight) * s.reshape(view)
                bias = None if syn.bias is None else _a(syn.bias) * s
                b.nodes[prev] = (ir.Dense(w, bias) if isinstance(syn, ir.Dense) else
                                 ir.Conv2d(w, bias, syn.stride, syn.padding, syn.groups))
            elif isinstance(node, nir.Conv2d):
                if tuple(np.atleast_1d(node.dilation).tolist()) not in ((1,), (1, 1)):
                    raise NIRImportError("dilation other than 1 is not supported")
                pad = node.padding
                if isinstance(pad, str):
                    raise NIRImportError(f"string padding {pad!r} is not supported")
                new = ir.Conv2d(_a(node.weight), _a(node.bias), nir_pair(node.stride),
                                nir_pair(pad), int(node.groups))
            elif isinstance(node, nir.Flatten):
                start, end = int(np.asarray(node.start_dim).item()), int(
                    np.asarray(node.end_dim).item())
                if start not in (0, -len(shape)) or end != -1:
                    raise NIRImportError(f"Flatten start_dim={node.start_dim}, end_dim="
                                         f"{node.end_dim}: only per-sample full flattening")
                new = ir.Flatten()
            elif isinstance(node, nir.SumPool2d):
                pool = (nir_pair(node.kernel_size), nir_pair(node.stride),
                        nir_pair(node.padding))
                nxt = g.nodes[outs[key][0]] if len(outs[key]) == 1 else None
                if isinstance(nxt, nir.Threshold) and len(ins[outs[key][0]]) == 1 and np.all(
                        (_a(nxt.threshold) > 0) & (_a(nxt.threshold) <= 1)):
                    new = ir.SpikePool(*pool, mode="or")
                    skip.add(outs[key][0])  # the Threshold is part of the OR
                else:
                    new = ir.SpikePool(*pool, mode="sum")
            elif isinstance(node, nir.AvgPool2d):
                new = ir.AvgPool2d(nir_pair(node.kernel_size), nir_pair(node.stride),
                                   nir_pair(node.padding))
            elif isinstance(node, nir.Threshold):
                thr = np.unique(_a(node.threshold))
                if thr.size != 1:
                    raise NIRImportError("one threshold per layer is supported")
                new = ir.Neuron(shape, np.zeros(()), None, float(np.nextafter(thr[0], np.inf)))
            elif type(node).__name__ in roles:  # a neuron of a registered kind (by NIR type)
                new = b.neuron(key, prev, node, shape, roles[type(node).__name__])
            elif isinstance(node, nir.Delay) and np.all(_a(node.delay) == 0):
                pass
            else:
                raise NIRImportError(f"{type(node).__name__} has no snnexport IR form "
                                     "(supported: Affine, Linear, Scale, Conv2d, Flatten, "
                                     "SumPool2d, AvgPool2d, Threshold, LIF, IF, LI, I, "
                                     "CubaLIF, CubaLI, Delay of 0)")
            if new is None:
                ir_of[key], shape_of[key] = prev, shape
            else:
                ir_of[key] = b.add(name, new, [prev])
                shape_of[key] = tuple(new.out_shape(shape))
            for k in skip & set(outs[key]):
                ir_of[k], shape_of[k] = ir_of[key], shape_of[key]
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            # a foreign file's parameters may be of any shape or type: whatever numpy says
            # about them becomes this node's error (NIRImportError / IRError included)
            msg = str(e) if isinstance(e, SnnexportError) else \
                f"malformed parameters ({type(e).__name__}: {str(e)[:160]})"
            if msg.startswith(where):
                raise
            raise NIRImportError(f"{where}: node {key!r} ({type(node).__name__}): {msg}") from None
    if readout is None:  # a foreign graph: score by the spike count of its last layer
        last = output if output is not None else ir_of[order[-1]]
        b.add("readout", ir.Readout(1, "rate"), [last])
    time_steps = _positive_meta(meta, "snnexport.time_steps", None, where, integer=True)
    md = {"source": "nir", "dt": dt, "discretisation": discretisation, "folded": True,
          "readout": (readout.mode if readout else "rate")}
    if time_steps:
        md["time_steps"] = time_steps
    try:
        return validate(Graph(b.nodes, b.edges, md), where)
    except ir.IRError as e:
        raise NIRImportError(f"{where}: {e}") from None


def nir_pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])


HDF5_MAX_DEPTH, HDF5_MAX_OBJECTS = 16, 100_000


def _walk_hdf5(path: Path) -> None:
    """nir.read walks the HDF5 file recursively and reads every dataset whole: a corrupt file
    can make it loop (a group holding itself, a broken link table) or read far more than the
    file holds. Walk it first, bounded: depth, number of objects, no group seen twice, and the
    datasets' total size at most 64 x the file's (NIR's writer does not compress)."""
    import h5py

    budget = 64 * path.stat().st_size + (1 << 20)
    seen, count, total = set(), 0, 0

    def walk(group, depth: int) -> None:
        nonlocal count, total
        if depth > HDF5_MAX_DEPTH:
            raise NIRImportError(f"{path}: groups nested deeper than {HDF5_MAX_DEPTH}")
        for key in group:
            count += 1
            if count > HDF5_MAX_OBJECTS:
                raise NIRImportError(f"{path}: more than {HDF5_MAX_OBJECTS} objects")
            obj = group[key]
            if isinstance(obj, h5py.Group):
                addr = h5py.h5o.get_info(obj.id).addr
                if addr in seen:
                    raise NIRImportError(f"{path}: group {obj.name} is reached twice (a cycle)")
                seen.add(addr)
                walk(obj, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                total += int(obj.size or 0) * obj.dtype.itemsize
                if total > budget:
                    raise NIRImportError(f"{path}: datasets claim more than {budget:,} bytes "
                                         "for a file of its size")

    with h5py.File(path, "r") as f:
        walk(f, 0)


READ_TIMEOUT = 60.0  # seconds


def _read_in_child(path: Path, conn) -> None:
    try:
        _walk_hdf5(path)
        conn.send(("ok", nir.read(path)))
    except NIRImportError as e:
        conn.send(("own", str(e)))
    except Exception as e:  # noqa: BLE001 - any failure of a foreign file is reported
        conn.send(("error", f"{type(e).__name__}: {str(e)[:200]}"))
    finally:
        conn.close()


def _read_bounded(path: Path) -> nir.NIRGraph:
    """nir.read in a forked child with a time limit: libhdf5 can spin or hang inside one call
    on a corrupt file (seen in fuzzing), which no check in this process could interrupt."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_in_child, args=(path, send), daemon=True)
    child.start()
    send.close()
    try:
        if not recv.poll(READ_TIMEOUT):
            raise NIRImportError(f"{path}: reading it did not finish within {READ_TIMEOUT:g} s; "
                                 "a corrupt HDF5 file?")
        kind, value = recv.recv()
    except EOFError:
        raise NIRImportError(f"{path}: the HDF5 reader died on it; a corrupt file?") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        recv.close()
    if kind == "ok":
        return value
    if kind == "own":
        raise NIRImportError(value)
    raise NIRImportError(f"{path}: not a readable NIR file ({value})")


def read_nir(path, dt: float | None = None, discretisation: str = "euler") -> Graph:
    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path}: no such file")
    try:
        g = _read_bounded(path)
    except NIRImportError:
        raise
    except Exception as e:
        raise NIRImportError(f"{path}: not a readable NIR file ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
    return from_nir(g, dt, discretisation, where=str(path))
