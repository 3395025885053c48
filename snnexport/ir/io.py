"""The IR file format (.snnir), versioned and byte-for-byte deterministic.

    b"SNNEXPORT-IR\\n"                    magic
    u64 little-endian                    length of the JSON header
    JSON header (sorted keys, compact)   {"format", "version", "metadata", "edges", "nodes":
                                          [{"name", "type", "fields", "arrays"}], "sha256"}
    array bytes                          each array C-ordered little-endian, at the offset the
                                         header gives, padded to 8 bytes

Version 2 (this one) holds graphs: nodes in topological order, `edges` [src, dst] in each
node's argument order (merge nodes take two), and `sha256`, the hex digest of the header
written without that key followed by the array bytes, so a changed byte anywhere is caught.
Version 1 files (chains, no checksum) are still read. A field added since (Neuron.reset_by,
the soft reset's amount) is written only when set: a file without it reads as unset, a graph
that does not use it is written byte for byte as before, and a file that has it is checked
against the node's schema like every other field.
Version 3 adds the current-based neuron (Neuron.current_decay, LIFNeuron.k_syn); it is written
only by a graph that has one, so any other graph's file stays version 2 byte for byte, and a
reader of version 2 refuses a current-based file rather than drop its current.

Our own format because the IR holds what NIR cannot (IMP, OR-pooling, readout modes, the
source-level nodes before folding); NIR export is a separate backend. Writing goes to a
temporary file that is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from ..errors import SnnexportError
from ..files import atomic_write
from . import nodes as ir
from .graph import Graph
from .neurons import keeps_current
from .validate import check_fields, validate

MAGIC = b"SNNEXPORT-IR\n"
FORMAT = "snnexport-ir"
VERSION = 3  # 3: current-based neurons (Neuron.current_decay, LIFNeuron.k_syn)
READABLE = (1, 2, 3)


class IRFileError(SnnexportError, ValueError):
    """An IR file that cannot be read; the message names the file."""


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def to_bytes(g: Graph) -> bytes:
    blobs: list[bytes] = []
    offset = 0
    nodes = []
    for name, node in g.ordered():
        fields, arrays = {}, {}
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if v is None and f.metadata.get("omit_if_none"):
                continue  # a field added later (Neuron.reset_by): unset, the file is as before
            if isinstance(v, np.ndarray):
                a = np.ascontiguousarray(v)
                a = a.astype(a.dtype.newbyteorder("<"), copy=False)
                raw = a.tobytes()
                arrays[f.name] = {"dtype": a.dtype.str, "shape": list(a.shape),
                                  "offset": offset, "nbytes": len(raw)}
                raw += b"\0" * (-len(raw) % 8)
                blobs.append(raw)
                offset += len(raw)
            else:
                fields[f.name] = _jsonable(v)
        nodes.append({"name": name, "type": type(node).__name__, "fields": fields,
                      "arrays": arrays})
    order = {n: i for i, n in enumerate(g.order())}
    edges = sorted(g.edges, key=lambda e: order[e[1]])  # stable: argument order kept
    # a graph without a current (ir/neurons.py keeps_current) is written as version 2
    cuba = any(keeps_current(node) for _, node in g.ordered())
    header = {"format": FORMAT, "version": VERSION if cuba else 2, "metadata": g.metadata,
              "edges": [list(e) for e in edges], "nodes": nodes}
    body = b"".join(blobs)
    header["sha256"] = _digest(header, body)
    head = _dump(header)
    return MAGIC + struct.pack("<Q", len(head)) + head + body


def _dump(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _digest(header: dict, body) -> str:
    h = hashlib.sha256(_dump({k: v for k, v in header.items() if k != "sha256"}))
    h.update(body)
    return h.hexdigest()


def save_ir(g: Graph, path) -> Path:
    data = to_bytes(g)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float))


def _fits(annotation: str, v) -> bool:
    """Does the JSON value v fit the node field's annotation (a string: the node module uses
    `from __future__ import annotations`)? An array field may hold a plain number (a numpy
    scalar is written as one)."""
    options = [t.strip() for t in annotation.split("|")]
    if v is None:
        return "None" in options
    for t in options:
        if t in ("float", "np.ndarray") and _is_number(v) or t == "int" and _is_int(v) or \
                t == "bool" and isinstance(v, bool) or t == "str" and isinstance(v, str):
            return True
        if t in ("Shape", "tuple[int, ...]") and isinstance(v, list) and all(
                _is_int(x) and x >= 0 for x in v):
            return True
        if t == "tuple[int, int]" and isinstance(v, list) and len(v) == 2 and all(
                _is_int(x) for x in v):
            return True
    return False


ARRAY_KINDS = "biuf"  # bool, signed / unsigned int, float: what IR arrays hold


def _array(spec, body: memoryview, where: str, k: str) -> np.ndarray:
    if not isinstance(spec, dict) or not all(_is_int(spec.get(x)) for x in ("offset", "nbytes")) \
            or not isinstance(spec.get("shape"), list) or not all(
                _is_int(x) and x >= 0 for x in spec["shape"]) or not isinstance(
                spec.get("dtype"), str):
        raise IRFileError(f"{where}: array {k!r}: malformed spec {spec!r}")
    lo, n = spec["offset"], spec["nbytes"]
    if lo < 0 or n < 0 or lo + n > len(body):
        raise IRFileError(f"{where}: array {k!r} lies outside the file (truncated?)")
    try:
        dtype = np.dtype(spec["dtype"])
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in ARRAY_KINDS or dtype.hasobject:
        raise IRFileError(f"{where}: array {k!r}: dtype {spec['dtype']!r} is not a number type")
    if n != int(np.prod(spec["shape"], dtype=np.int64)) * dtype.itemsize:
        raise IRFileError(f"{where}: array {k!r}: {n} bytes do not hold shape {spec['shape']} of "
                          f"{dtype}")
    return np.frombuffer(body[lo:lo + n], dtype=dtype).reshape(spec["shape"]).copy()


def _node(entry: dict, body: memoryview, where: str) -> ir.Node:
    """One node from its header entry; every field and array is checked against the node's
    dataclass (the schema) before the node is built."""
    if not isinstance(entry, dict):
        raise IRFileError(f"{where}: malformed node entry")
    cls = ir.NODE_TYPES.get(entry.get("type")) if isinstance(entry.get("type"), str) else None
    if cls is None:
        raise IRFileError(f"{where}: unknown node type {entry.get('type')!r} "
                          f"(known: {sorted(ir.NODE_TYPES)})")
    fields, arrays = entry.get("fields", {}), entry.get("arrays", {})
    if not isinstance(fields, dict) or not isinstance(arrays, dict):
        raise IRFileError(f"{where}: malformed fields / arrays")
    kw = {}
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for k, v in fields.items():
        if k not in types:
            raise IRFileError(f"{where}: {cls.__name__} has no field {k!r}")
        if not _fits(types[k], v):
            raise IRFileError(f"{where}: field {k!r} = {v!r} is not a {types[k]}")
        kw[k] = tuple(v) if isinstance(v, list) else v
    for k, spec in arrays.items():
        if k not in types or "np.ndarray" not in types[k]:
            raise IRFileError(f"{where}: {cls.__name__} has no array field {k!r}")
        kw[k] = _array(spec, body, where, k)
    try:
        return cls(**kw)
    except TypeError as e:
        raise IRFileError(f"{where}: bad fields for {cls.__name__}: {e}") from None


def from_bytes(data: bytes, name: str = "<bytes>") -> Graph:
    if not data.startswith(MAGIC):
        raise IRFileError(f"{name}: not an snnexport IR file (no {MAGIC!r} header); "
                          f"make one with `snnexport fold MODEL -o OUT.snnir`")
    try:
        (n,) = struct.unpack_from("<Q", data, len(MAGIC))
        start = len(MAGIC) + 8
        header = json.loads(data[start:start + n])
    except (struct.error, ValueError) as e:
        raise IRFileError(f"{name}: corrupt IR header ({e})") from None
    except RecursionError:  # JSON nested thousands deep: no header snnexport writes
        raise IRFileError(f"{name}: corrupt IR header (nested too deep)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or \
            header.get("version") not in READABLE:
        got = header if not isinstance(header, dict) else (header.get("format"),
                                                           header.get("version"))
        raise IRFileError(f"{name}: {got!r} is not {FORMAT!r} version "
                          f"{' or '.join(map(str, READABLE))}")
    body = memoryview(data)[start + n:]
    try:
        named = [(e["name"], _node(e, body, f"{name}: node {e.get('name')!r}"))
                 for e in header["nodes"]]
        if not isinstance(header["metadata"], dict):
            raise IRFileError(f"{name}: metadata is a {type(header['metadata']).__name__}, "
                              "not a JSON object")
        for node_name, node in named:  # what the shapes divide by, before the graph is built
            try:
                check_fields(name, node_name, node)
            except ir.IRError as e:
                raise IRFileError(str(e)) from None
        if header["version"] >= 2 and header.get("sha256") != _digest(header, body):
            raise IRFileError(f"{name}: checksum mismatch: the file was changed or damaged "
                              "after it was written; fold the model again (snnexport fold "
                              "MODEL -o OUT.snnir)")
        g = Graph(dict(named), [tuple(e) for e in header["edges"]], header["metadata"])
    except IRFileError:
        raise
    except ir.IRError as e:
        raise IRFileError(f"{name}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
        raise IRFileError(f"{name}: malformed IR header ({type(e).__name__}: {e})") from None
    try:
        return validate(g, name)
    except ir.IRError as e:
        raise IRFileError(str(e)) from None


def load_ir(path) -> Graph:
    """An IR file; one larger than half the machine's memory is refused before it is read
    (a sparse file that only starts like one would otherwise end in a MemoryError)."""
    import os

    path = Path(path)
    if not path.is_file():
        raise IRFileError(f"{path}: no such file")
    size = path.stat().st_size
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if size > memory // 2:
        raise IRFileError(f"{path}: {size:,} bytes, more than half this machine's memory "
                          f"({memory:,} bytes): not an IR file snnexport wrote for it")
    return from_bytes(path.read_bytes(), str(path))
