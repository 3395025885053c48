"""Property-based fuzzing of the readers (hypothesis): each generated file is read the way the
CLI reads it (`check.load_model` for .pt / .snnir / .nir, then folded; `data.load_dataset` for
a user's .npz data); the only allowed outcomes are a result or one of the toolkit's own errors
(SnnexportError).

Files are made from real ones (a bundled checkpoint, its .snnir, its NIR file) by
  * raw mutations: flipped bytes, truncation, inserted junk, random bytes;
  * structured mutations that pass the container's own checks, so the schema and the
    validation behind them are reached: a re-signed .snnir header with a field, array spec,
    edge or node type changed; a checkpoint with a state tensor or config entry changed; a
    NIR file with a node parameter replaced (NaN, Inf, negative, another shape); an .npz data
    file with an array replaced (another shape, dtype, NaN) or dropped.
Used by tests/test_fuzz.py (a few hundred cases) and bench/fuzz_readers.py (>= 10,000).
"""

from __future__ import annotations

import copy
import json
import struct
import tempfile
import warnings
from pathlib import Path

import nir
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnexport.check import load_model
from snnexport.data import load_dataset
from snnexport.errors import SnnexportError
from snnexport.exporters.nir_export import write_nir
from snnexport.importers.nir_import import read_nir
from snnexport.ir import save_ir
from snnexport.ir.io import MAGIC, _digest, _dump
from snnexport.passes.fold import fold
from snnexport.quant.netx_import import read_netx

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "digits_plif_imp_lts.pt"
NETX_SEED = Path(__file__).resolve().parent.parent / (
    ".venv-lava/lib/python3.10/site-packages/tests/lava/lib/dl/netx/tiny.net")

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.lists(st.integers(-3, 10 ** 6), max_size=4),
                 st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30, -1e30, 1e-30, 2.0, 0.5])


class Seeds:
    """The real files the mutations start from (made once, in a temporary folder)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="snnexport-fuzz-"))
        self.pt = MODEL.read_bytes()
        graph = load_model(MODEL).graph
        self.snnir = save_ir(fold(graph), self.dir / "seed.snnir").read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nir_path = write_nir(fold(graph, fold_gain=False), self.dir / "seed.nir")
            self.nir_graph = nir.read(nir_path)
        self.nir = (self.dir / "seed.nir").read_bytes()
        self.payload = torch.load(MODEL, weights_only=True)
        ds = load_dataset("digits")
        self.arrays = {"x": ds.x_test[:20].numpy(), "y": ds.y_test[:20].numpy(),
                       "x_train": ds.x_train[:20].numpy(), "y_train": ds.y_train[:20].numpy()}
        np.savez(self.dir / "seed.npz", **self.arrays)
        self.npz = (self.dir / "seed.npz").read_bytes()
        self.net = NETX_SEED.read_bytes()  # a netx file lava-dl ships (read by read_netx)


def raw_mutation(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "random", "head"]))
    if kind == "random":
        return draw(st.binary(max_size=256))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]  # always shorter
    at = draw(st.integers(0, len(data) - 1))
    if kind == "head":  # the header is where the structure lives: hit it more often
        at = draw(st.integers(0, min(len(data) - 1, 600)))
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]


def snnir_mutation(data: bytes, draw) -> bytes:
    (n,) = struct.unpack_from("<Q", data, len(MAGIC))
    start = len(MAGIC) + 8
    header = json.loads(data[start:start + n])
    body = data[start + n:]
    where = draw(st.sampled_from(["field", "array", "edge", "type", "metadata", "drop"]))
    node = draw(st.sampled_from(header["nodes"]))
    if where == "field" and node["fields"]:
        node["fields"][draw(st.sampled_from(sorted(node["fields"])))] = draw(JUNK)
    elif where == "array" and node["arrays"]:
        spec = node["arrays"][draw(st.sampled_from(sorted(node["arrays"])))]
        key = draw(st.sampled_from(["dtype", "shape", "offset", "nbytes"]))
        spec[key] = draw(st.one_of(JUNK, st.sampled_from(["<f4", "<i8", "|b1", "<c16", "O"])))
    elif where == "edge" and header["edges"]:
        i = draw(st.integers(0, len(header["edges"]) - 1))
        header["edges"][i][draw(st.integers(0, 1))] = draw(
            st.one_of(st.sampled_from([x["name"] for x in header["nodes"]]), JUNK))
    elif where == "type":
        node["type"] = draw(st.one_of(st.sampled_from(["Add", "SEWAnd", "Readout", "Input",
                                                       "Neuron", "Dense", "Node"]), JUNK))
    elif where == "metadata":
        header["metadata"][draw(st.sampled_from(["time_steps", "readout", "folded"]))] = \
            draw(JUNK)
    else:
        header["nodes"].remove(node)
    header["sha256"] = _digest(header, body)  # re-signed: the schema must catch it
    head = _dump(header)
    return MAGIC + struct.pack("<Q", len(head)) + head + body


def pt_mutation(seeds: Seeds, draw, path: Path) -> None:
    payload = copy.deepcopy(seeds.payload)
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(payload["state_dict"])))
        t = payload["state_dict"][key]
        if draw(st.booleans()) and t.numel():
            value = float(draw(VALUES)) if t.is_floating_point() else draw(
                st.integers(-2**63, 2**63 - 1))
            t.view(-1)[draw(st.integers(0, t.numel() - 1))] = value
        else:
            payload["state_dict"][key] = torch.zeros(draw(st.lists(st.integers(0, 5),
                                                                   max_size=3)))
    else:
        key = draw(st.sampled_from(sorted(payload["config"])))
        payload["config"][key] = draw(st.one_of(JUNK, st.integers(-3, 40)))
    torch.save(payload, path)


META_VALUES = st.one_of(VALUES, st.text(max_size=4), st.integers(-3, 10 ** 13),
                       st.lists(st.sampled_from([1e-4, 0.0, 8.0, np.nan]), min_size=0,
                                max_size=3).map(np.array))


def nir_mutation(seeds: Seeds, draw, path: Path) -> None:
    g = copy.deepcopy(seeds.nir_graph)
    if draw(st.integers(0, 3)) == 0:  # the graph's metadata: dt, T (issue 25)
        key = draw(st.sampled_from(["dt", "snnexport.time_steps"]))
        g.metadata = {**(g.metadata or {}), key: draw(META_VALUES)}
        nir.write(path, g)
        return
    key = draw(st.sampled_from(sorted(g.nodes)))
    node = g.nodes[key]
    fields = sorted(k for k, v in vars(node).items() if isinstance(v, np.ndarray))
    if fields:
        f = draw(st.sampled_from(fields))
        a = np.array(getattr(node, f), dtype=np.float64)
        if draw(st.booleans()) and a.size:
            a.flat[draw(st.integers(0, a.size - 1))] = draw(VALUES)
        else:
            a = np.full(draw(st.lists(st.integers(0, 4), min_size=1, max_size=3)), draw(VALUES))
        setattr(node, f, a)
    else:
        g.edges.append((key, draw(st.sampled_from(sorted(g.nodes)))))
    nir.write(path, g)


def npz_mutation(seeds: Seeds, draw, path: Path) -> None:
    arrays = dict(seeds.arrays)
    key = draw(st.sampled_from(sorted(arrays)))
    if draw(st.integers(0, 4)) == 0:
        del arrays[key]
    else:
        shape = draw(st.lists(st.integers(0, 5), max_size=5))
        dtype = draw(st.sampled_from(["<f4", "<f8", "<i8", "|u1", "|b1", "<c8", "<U3"]))
        a = np.zeros(shape, dtype=dtype)
        if a.size and a.dtype.kind == "f":
            a.flat[draw(st.integers(0, a.size - 1))] = draw(VALUES)
        arrays[key] = a
    np.savez(path, **arrays)


def net_mutation(seeds: Seeds, draw, path: Path) -> None:
    """The seed netx file with one dataset of one layer replaced (junk, a bad value, another
    shape, a block type netx lacks) or deleted."""
    import h5py

    path.write_bytes(seeds.net)
    with h5py.File(path, "a") as f:
        names = []
        f["layer"].visit(lambda n: names.append(n) if isinstance(f["layer"][n], h5py.Dataset)
                         else None)
        name = draw(st.sampled_from(sorted(names)))
        old = f["layer"][name][()]
        del f["layer"][name]
        how = draw(st.sampled_from(["delete", "value", "shape", "type", "junk"]))
        if how == "value" and np.asarray(old).dtype.kind in "biuf":
            a = np.array(old, dtype=np.float64)
            a.flat[draw(st.integers(0, max(0, a.size - 1)))] = draw(VALUES)
            f["layer"][name] = a
        elif how in ("shape", "value"):
            f["layer"][name] = np.zeros(draw(st.integers(0, 5)))
        elif how == "type":
            f["layer"][name] = np.bytes_(draw(st.sampled_from(
                ["pool", "average", "dense_rec", "SDNN", "conv", "dense", "input", "x"])))
        elif how == "junk":
            f["layer"][name] = np.bytes_(draw(st.text(max_size=6)).encode("utf-8", "replace"))


def read_one(path: Path, kind: str):
    """Read like the CLI (models also folded); returns the result or the toolkit's error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "npz":
                return load_dataset(str(path))
            if kind == "net":
                return read_netx(path)
            graph = read_nir(path) if kind == "nir" else load_model(path).graph
            return fold(graph)
    except SnnexportError as e:
        return e


def fuzz(max_examples: int, seed: int = 0, progress=None, read_timeout: float = 10.0) -> dict:
    """Runs the property; returns counts of outcomes per reader. Any other exception fails.
    progress(n, counts), if given, is called after every case."""
    from snnexport.importers import nir_import
    from snnexport.quant import netx_import

    nir_import.READ_TIMEOUT = read_timeout  # a hanging corrupt file costs this much, not 60 s
    netx_import.READ_TIMEOUT = read_timeout
    seeds = Seeds()
    counts: dict[str, int] = {}

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def prop(data):
        draw = data.draw
        kind = draw(st.sampled_from(["pt", "snnir", "nir", "npz", "net"]))
        structured = draw(st.booleans())
        path = seeds.dir / f"case.{kind}"
        if kind == "pt" and structured:
            pt_mutation(seeds, draw, path)
        elif kind == "nir" and structured:
            nir_mutation(seeds, draw, path)
        elif kind == "npz" and structured:
            npz_mutation(seeds, draw, path)
        elif kind == "net" and structured:
            net_mutation(seeds, draw, path)
        else:
            src = {"pt": seeds.pt, "snnir": seeds.snnir, "nir": seeds.nir, "npz": seeds.npz,
                   "net": seeds.net}[kind]
            out = snnir_mutation(src, draw) if kind == "snnir" and structured else \
                raw_mutation(src, draw)
            path.write_bytes(out)
        result = read_one(path, kind)
        label = f"{kind} {'structured' if structured else 'raw'}: " + (
            "error" if isinstance(result, SnnexportError) else "read")
        counts[label] = counts.get(label, 0) + 1
        if progress is not None:
            progress(sum(counts.values()), counts)

    prop()
    return counts
