"""Import of a netx HDF5 file (lava-dl's network exchange format, written by slayer's
`export_hdf5`, by snnexport's own netx export or by any other producer) as the fixed-point net
(quant/fixed.py `FixedNet`) that snnexport's own models lower to: the network lava-dl's
`netx.hdf5.Network` builds from it in Lava `fixed_pt`, which the emulator (quant/emulator.py)
runs bit for bit. There is no float model behind it: `FixedNet.netx_file` says so.

What netx (lava-dl 0.6, lava/lib/dl/netx/hdf5.py and blocks/process.py) builds, and so what is
read here, layer by layer (`layer/0`, `layer/1`, ...):
  * 'input' with a `neuron`: an Input block, a LIF whose port netx leaves unwired (lava-dl
    #298): it is driven through its `a_in` (integer activations, spikes or graded event
    frames) or its bias mantissa, both set from outside. Its 'weight' / 'bias' scalars are
    only stored by netx (`transform`), never applied: read and reported, not used.
    'input' without a neuron only gives the input shape.
  * 'dense': Lava `Dense` (or `DelayDense` with 'delay') + LIF. The weights are read as netx
    reads them (`astype(int)`: truncation toward zero), re-scaled by netx's
    `optimize_weight_bits` (shifted left to fill 8 bits, weight_exp = -shift), then clipped
    and truncated by Lava's Dense (`clip_weights`, `truncate_weights` with the sign mode of
    the shifted weights); the synaptic sum is shifted by weight_exp (a right shift floors).
    'delay': one per output neuron (netx repeats it along each row; a vector as long as the
    input is one per input; a matrix is per synapse), truncated to int, clipped to 0..62;
    with delays the shift acts on each delay's sum separately (DelayDense).
  * 'conv': Lava `Conv` + LIF; the weights as integers in the file's torch layout
    [C_out, C_in / groups, kh, kw] (netx flips and transposes them to Lava's true convolution
    on W x H x C: the same cross-correlation on C x H x W); no weight exponent (Lava's fixed
    Conv has none); the sum wrapped to 24 bits. Stride, padding, dilation in (H, W) order.
    A 'delay' on a conv is not read by netx (it builds no delay for convs): reported, ignored.
  * 'flatten': the map feeds the next dense layer C-major (netx: transpose to C x H x W,
    flatten).
  * neuron 'CUBA' or 'LOIHI' (the same LIF): du = iDecay - 1 (Lava adds 1 back: the current
    keeps (4096 - iDecay) / 4096 of itself), dv = vDecay, vth = vThMant, bias mantissa the
    layer's 'bias' (integers; per channel on a conv) with exponent 6. A dense layer without a
    neuron gets netx's default: iDecay 0, vDecay 4096, vThMant 2^17 (a non-leaky current
    integrator, never spikes). 'refDelay' and 'gradedSpike' are not read by netx (its LIF has
    no refractory period and sends binary spikes): reported, emulated as netx runs them.
Refused, one line naming the file, the layer and the block type: 'pool', 'convT', 'unpool',
'average', 'concat' (netx raises NotImplementedError on them), 'dense_rec', 'dense_comp', RF
and sigma-delta (SDNN) neurons (not emulated: their graded messages and state exponents are
not modelled here), and anything netx does not know.

  * 'vDecay' / 'iDecay' one value or one per neuron (netx's W x H x C, flat on a dense block:
    what snnexport's netx export writes for per-neuron time constants); 'vInit' (snnexport's
    initial membrane, per neuron) is read where given (netx itself does not read it).
A file snnexport wrote (its 'snnexport' metadata and 'host' group: the first synapse, a float
layer run on the host) reads back into the fixed-point net it was written from: the host
layer, the layer names, scales and time steps from the metadata, every integer from the netx
blocks, snnexport's aligned timing (FixedNet.lava_timing False). Any other file keeps netx's
own timing (lava_timing: every layer from step 0, one step late per hop).

All per-neuron arrays are kept in C x H x W (C-major) order, as the rest of snnexport keeps
them; netx's W x H x C is the file's shape reversed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SnnexportError
from ..importers.source import HDF5_MAGIC, FileKind, register_file_kind
from .fixed import VTH_MANT_MAX, FixedLayer, FixedNet

MAX_DELAY = 62  # netx clips delays to 0..62 (DelayDense max_delay)
DEFAULT_NEURON = {"type": "CUBA", "iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17}
REFUSED_BLOCKS = ("pool", "convT", "unpool", "average", "concat", "dense_rec", "dense_comp")
READ_TIMEOUT = 60.0
NETX_FORMAT = "snnexport-netx"  # the 'snnexport' metadata of a file snnexport's export wrote


class NetxImportError(SnnexportError, ValueError):
    """A netx file snnexport cannot read or emulate; names the file, the layer and the fix."""


# --- reading the file ---------------------------------------------------------------------------

def _to_py(obj):
    """An h5py group as nested dicts of numpy values (read in the child process)."""
    import h5py

    out = {}
    for key in obj:
        item = obj[key]
        out[key] = _to_py(item) if isinstance(item, h5py.Group) else item[()]
    return out


def _read_in_child(path: Path, conn) -> None:
    from ..importers.nir_import import NIRImportError, _walk_hdf5

    try:
        try:
            _walk_hdf5(path)
        except NIRImportError as e:
            conn.send(("own", str(e)))
            return
        import h5py

        with h5py.File(path, "r") as f:
            if "layer" not in f:
                conn.send(("own", f"{path}: no 'layer' group: not a netx file"))
                return
            extra = {key: _to_py(f[key]) for key in ("host",) if key in f}
            if "snnexport" in f:
                extra["snnexport"] = f["snnexport"][()]
            conn.send(("ok", (_to_py(f["layer"]), extra)))
    except Exception as e:  # noqa: BLE001 - any failure of a foreign file is reported
        conn.send(("error", f"{type(e).__name__}: {str(e)[:200]}"))
    finally:
        conn.close()


def _read_bounded(path: Path) -> dict:
    """The file's 'layer' group as dicts, read in a forked child with a time limit (libhdf5
    can hang on a corrupt file; see importers/nir_import.py)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_read_in_child, args=(path, send), daemon=True)
    child.start()
    send.close()
    try:
        if not recv.poll(READ_TIMEOUT):
            raise NetxImportError(f"{path}: reading it did not finish within "
                                  f"{READ_TIMEOUT:g} s; a corrupt HDF5 file?")
        kind, value = recv.recv()
    except EOFError:
        raise NetxImportError(f"{path}: the HDF5 reader died on it; a corrupt file?") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        recv.close()
    if kind == "ok":
        return value
    if kind == "own":
        raise NetxImportError(value)
    raise NetxImportError(f"{path}: not a readable netx file ({value})")


def _text(v) -> str:
    """netx's string keys: bytes, or a 1-element array of bytes."""
    a = np.asarray(v)
    if a.shape:
        a = a.reshape(-1)[0] if a.size else np.bytes_(b"")
    v = a.item() if hasattr(a, "item") else a
    return v.decode("ascii", "replace") if isinstance(v, bytes) else str(v)


def _int_array(v, where: str, what: str) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "biuf":
        raise NetxImportError(f"{where}: {what} must be numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise NetxImportError(f"{where}: {what} holds NaN or Inf")
    if np.abs(a.astype(np.float64)).max(initial=0) >= 2 ** 31:
        raise NetxImportError(f"{where}: {what} out of the 32-bit range")
    return a.astype(np.int64)  # netx: astype(int), truncation toward zero


def _pair(v, where: str, what: str) -> tuple[int, int]:
    a = _int_array(v, where, what).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or (a < 0).any():
        raise NetxImportError(f"{where}: {what} must be one or two integers >= 0, got "
                              f"{a.tolist()}")
    return int(a[0]), int(a[1])


def _per_neuron(cfg: dict, key: str, where: str, lo: int, hi: int, shape: tuple[int, ...],
                dense: bool) -> np.ndarray:
    """A neuron parameter as netx's LIF takes it: one value (a 0-d array), or one per neuron
    in netx's W x H x C (flat on a dense block), returned C x H x W."""
    if key not in cfg:
        raise NetxImportError(f"{where}: the neuron has no {key!r}; netx needs it")
    a = _int_array(cfg[key], where, f"neuron {key}")
    n = int(np.prod(shape))
    if a.size == 1:
        a = a.reshape(())
    elif tuple(a.shape) == tuple(reversed(shape)) and not dense:
        a = np.ascontiguousarray(a.transpose(tuple(reversed(range(a.ndim)))))
    elif a.ndim == 1 and a.size == n and (dense or len(shape) == 1):
        a = a.reshape(shape)
    else:
        raise NetxImportError(f"{where}: neuron {key} of shape {list(a.shape)}: give one value "
                              f"or one per neuron ({'x'.join(map(str, reversed(shape)))}, "
                              "netx's W x H x C)")
    if a.min() < lo or a.max() > hi:
        bad = int(a.min()) if a.min() < lo else int(a.max())
        raise NetxImportError(f"{where}: neuron {key} = {bad} is outside {lo}..{hi}")
    return a


def _opt_int(cfg: dict, key: str, where: str, default: int) -> int:
    """An optional scalar integer entry (refDelay, gradedSpike, messageBits, groups)."""
    if key not in cfg:
        return default
    a = _int_array(cfg[key], where, key).reshape(-1)
    if a.size != 1:
        raise NetxImportError(f"{where}: {key} must be one value, got {a.size}")
    return int(a[0])


def _neuron(cfg: dict | None, where: str, notes: list[str], shape: tuple[int, ...],
            dense: bool = False, vth_min: int = 1):
    """(iDecay, vDecay, vThMant, vInit) of a CUBA / LOIHI neuron as netx reads them (iDecay
    and vDecay one value or per neuron, C x H x W; vInit per neuron, zeros if absent)."""
    if cfg is None:
        cfg = DEFAULT_NEURON
        notes.append(f"{where}: no neuron; netx's default (iDecay 0, vDecay 4096, vThMant "
                     "2^17: a non-spiking current integrator)")
    kind = _text(cfg.get("type", b""))
    if kind == "SDNN":
        raise NetxImportError(f"{where}: a sigma-delta (SDNN) neuron; snnexport emulates "
                              "CUBA / LOIHI (LIF) neurons only; run SDNN networks in Lava "
                              "directly")
    if kind not in ("CUBA", "LOIHI"):
        raise NetxImportError(f"{where}: neuron type {kind!r} is not emulated (CUBA / LOIHI "
                              "LIF neurons are); run it in Lava directly")
    bits = _opt_int(cfg, "messageBits", where, 0)
    if bits != 0:
        raise NetxImportError(f"{where}: a CUBA neuron with messageBits {bits}; netx gives it "
                              "to a LIF that sends binary spikes; remove messageBits")
    i_decay = _per_neuron(cfg, "iDecay", where, 0, 4096, shape, dense)
    dv = _per_neuron(cfg, "vDecay", where, 0, 4096, shape, dense)
    if "vThMant" not in cfg:
        raise NetxImportError(f"{where}: the neuron has no 'vThMant'; netx needs it")
    vth = _int_array(cfg["vThMant"], where, "neuron vThMant")
    if vth.size != 1:
        raise NetxImportError(f"{where}: neuron vThMant must be one value (netx's LIF takes a "
                              f"scalar here), got shape {list(vth.shape)}")
    vth = int(vth.reshape(-1)[0])
    if not vth_min <= vth <= (1 << 17):  # 0 (fires at v > 0): snnexport's OR-pools only
        raise NetxImportError(f"{where}: neuron vThMant = {vth} is outside {vth_min}.."
                              f"{1 << 17}")
    ref = _opt_int(cfg, "refDelay", where, 1)
    if ref > 1:
        notes.append(f"{where}: refDelay {ref} is not run by netx (its LIF has no refractory "
                     "period); emulated as netx runs it")
    if _opt_int(cfg, "gradedSpike", where, 0):
        notes.append(f"{where}: gradedSpike is set but netx's LIF sends binary spikes; "
                     "emulated as netx runs it")
    v_init = np.zeros(shape, np.int64)
    if "vInit" in cfg:
        v_init = np.broadcast_to(_per_neuron(cfg, "vInit", where, -(1 << 23) + 1,
                                             (1 << 23) - 1, shape, dense), shape).copy()
    return i_decay, dv, vth, v_init


def optimize_weight_bits(weight: np.ndarray):
    """lava-dl 0.6 netx/utils.py `optimize_weight_bits`, as written (clip of weights beyond
    8 bits included): (weights shifted, num_weight_bits, weight_exponent)."""
    max_weight, min_weight = np.max(weight), np.min(weight)
    if max_weight > 254 and min_weight < 0:
        weight = np.clip(weight, -256, 254)
        max_weight = np.max(weight)
    if min_weight < -256 and max_weight > 0:
        weight = np.clip(weight, -256, 254)
        min_weight = np.min(weight)
    if max_weight < 0:
        is_signed, scale = 0, -256 / min_weight
    elif min_weight >= 0:
        is_signed, scale = 0, 255 / max_weight
    else:
        is_signed = 1
        scale = np.min([127 / max_weight, -128 / min_weight])
    scale_bits = np.floor(np.log2(scale)) + is_signed
    n = 8
    while n > 0:
        if np.sum(np.abs(weight / (2 ** n) - np.round(weight / (2 ** n)))) == 0:
            break
        n -= 1
    n -= is_signed
    num_weight_bits = 8 - scale_bits - n
    weight = np.left_shift(weight.astype(np.int32), int(scale_bits))
    return weight.astype(np.int64), int(num_weight_bits), int(-scale_bits)


def lava_dense_weights(weight: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """What Lava 0.10's fixed-point Dense / DelayDense make of them before the first step:
    `clip_weights(w, sign_mode, 8)` then `truncate_weights(w, sign_mode, num_weight_bits)`,
    the sign mode determined from the weights (lava/utils/weightutils.py)."""
    w = weight.astype(np.int64)
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed, inh = int(mode == "mixed"), mode == "inh"
    if inh:
        w = -w
    w = np.clip(w, -(2 ** 8) * mixed, 2 ** 8 - 1)
    drop = 8 - num_weight_bits + mixed
    w = (w >> drop) << drop
    return -w if inh else w


def _dense_weights(raw, where: str, n_out: int) -> tuple[np.ndarray, int]:
    w = _int_array(raw, where, "weight")
    if w.ndim == 1:
        if w.size % n_out:
            raise NetxImportError(f"{where}: {w.size} weights do not fill {n_out} rows")
        w = w.reshape(n_out, -1)
    if w.ndim != 2 or w.shape[0] != n_out or w.shape[1] == 0:
        raise NetxImportError(f"{where}: dense weight of shape {list(w.shape)} for {n_out} "
                              "neurons")
    if not w.any():
        raise NetxImportError(f"{where}: all weights are 0 (netx cannot scale them: "
                              "log2 of an infinite scale); drop the layer or fix its weights")
    big = max(int(w.max()), 0), min(int(w.min()), 0)
    if big[0] > 255 or big[1] < -256:
        raise NetxImportError(f"{where}: weights in {big[1]}..{big[0]} exceed the 8-bit "
                              "synapse (-256..255); netx would shift them by a negative "
                              "amount; quantise the layer to 8 bits before export")
    shifted, bits, exp = optimize_weight_bits(w)
    return lava_dense_weights(shifted, bits), exp


def _delays(raw, where: str, shape: tuple[int, int], notes: list[str]) -> np.ndarray:
    d = np.asarray(raw)
    if d.dtype.kind not in "biuf" or (d.dtype.kind == "f" and not np.isfinite(d).all()):
        raise NetxImportError(f"{where}: delay must be finite numbers")
    if d.size and d.max() > MAX_DELAY:
        notes.append(f"{where}: delays up to {d.max():g} clipped to {MAX_DELAY} (as netx does)")
        d = np.clip(d, 0, MAX_DELAY)
    if d.ndim == 0:
        d = np.full(shape, d)
    elif d.ndim == 1:
        if d.size == shape[0]:  # one per output neuron (netx tests this first)
            d = np.repeat(d.reshape(-1, 1), shape[1], axis=1)
        elif d.size == shape[1]:
            d = np.repeat(d.reshape(1, -1), shape[0], axis=0)
        else:
            raise NetxImportError(f"{where}: {d.size} delays fit neither the {shape[0]} "
                                  f"outputs nor the {shape[1]} inputs")
    elif tuple(d.shape) != shape:
        raise NetxImportError(f"{where}: delay of shape {list(d.shape)} for weights "
                              f"{list(shape)}")
    d = d.astype(np.int64)  # netx: delay.astype(int)
    if d.min() < 0:
        raise NetxImportError(f"{where}: negative delay {int(d.min())}")
    return d


def _shape(cfg: dict, where: str) -> tuple[int, ...]:
    if "shape" not in cfg:
        raise NetxImportError(f"{where}: no 'shape'")
    s = _int_array(cfg["shape"], where, "shape").reshape(-1)
    if s.size == 0 or s.size > 3 or (s < 1).any() or np.prod(s) > (1 << 26):
        raise NetxImportError(f"{where}: shape {s.tolist()} is not a layer shape")
    return tuple(int(v) for v in s)


def _squeeze_map(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A file shape (C, H, W) / (C, H) / (n,) as snnexport's C x H x W or (n,)."""
    if len(shape) == 1:
        return shape
    if len(shape) == 2:
        return (shape[0], shape[1], 1)
    return shape


def read_netx(path, num_layers: int | None = None) -> FixedNet:
    """The netx file at `path` as the fixed-point net netx builds (module docstring);
    NetxImportError on anything else. `num_layers`: only the first layer groups, as
    `netx.hdf5.Network(..., num_layers=N)` builds them (e.g. a file whose last block netx
    cannot build)."""
    path = Path(path)
    if not path.is_file():
        raise NetxImportError(f"{path}: no such file")
    layers_cfg, extra = _read_bounded(path)
    try:
        return _build(path, layers_cfg, num_layers, extra)
    except NetxImportError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
            ZeroDivisionError) as e:  # a malformed foreign file: one line, never a traceback
        raise NetxImportError(f"{path}: not a netx file snnexport can read ("
                              f"{type(e).__name__}: {str(e)[:160]})") from None


def _layer(name, kind, shape, neuron, weight=None, **kw) -> FixedLayer:
    """A netx block as a FixedLayer: integers as netx runs them, scale 1 (no float model)."""
    i_decay, dv, vth, v_init = (np.broadcast_to(a, shape).copy() if isinstance(a, np.ndarray)
                                else a for a in neuron)  # per neuron, as FixedLayer keeps them
    i_decay = None if (i_decay == 4096).all() else i_decay  # du 4095: no current kept
    return FixedLayer(name, kind, tuple(shape), np.zeros(0, np.int64) if weight is None else
                      weight, dv, vth, v_init, 1.0, spiking=vth < VTH_MANT_MAX,
                      i_decay=i_decay, **kw)


def _build(path: Path, layers_cfg, num_layers: int | None, extra: dict) -> FixedNet:
    if not isinstance(layers_cfg, dict):
        raise NetxImportError(f"{path}: 'layer' must be a group")
    keys = [k for k in layers_cfg if str(k).isdigit()]
    if not keys or len(keys) != len(layers_cfg):
        raise NetxImportError(f"{path}: 'layer' must hold groups 0, 1, 2, ... (netx's layout)")
    keys = sorted(keys, key=int)
    if [int(k) for k in keys] != list(range(len(keys))):
        raise NetxImportError(f"{path}: layer groups {keys} are not numbered 0..{len(keys) - 1}")
    if num_layers is not None:
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise NetxImportError(f"{path}: num_layers {num_layers!r}: give a whole number >= 1")
        keys = keys[:num_layers]
    notes: list[str] = []
    vth_min = 0 if "snnexport" in extra else 1  # snnexport's OR-pool: fires at any input
    layers: list[FixedLayer] = []
    input_shape: tuple[int, ...] | None = None
    flatten_next = False
    for k in keys:
        cfg = layers_cfg[k]
        where = f"{path}: layer/{k}"
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise NetxImportError(f"{where}: no block 'type'")
        kind = _text(cfg["type"])
        if kind in REFUSED_BLOCKS:
            raise NetxImportError(f"{where}: block type {kind!r} is not supported (netx builds "
                                  "input, dense, conv and flatten blocks); cut the network "
                                  "before it (--netx num_layers=N)")
        neuron = cfg.get("neuron")
        if neuron is not None and not isinstance(neuron, dict):
            raise NetxImportError(f"{where}: 'neuron' must be a group")
        current = layers[-1].shape if layers else input_shape
        if kind == "input":
            if layers or input_shape is not None:
                raise NetxImportError(f"{where}: an input block after the first layer")
            shape = _squeeze_map(_shape(cfg, where))
            for key in ("weight", "bias"):
                if key in cfg:
                    notes.append(f"{where}: input {key} {np.asarray(cfg[key]).reshape(-1)[:1]} "
                                 "is stored by netx (transform) but not applied")
            input_shape = shape
            if neuron is None:
                continue
            layers.append(_layer(f"layer/{k}", "input", shape, _neuron(neuron, where, notes,
                                                                         shape, False, vth_min)))
        elif kind == "flatten":
            if current is None:
                raise NetxImportError(f"{where}: flatten before any layer with a shape")
            flatten_next = True
        elif kind == "dense":
            if "weight" not in cfg:
                raise NetxImportError(f"{where}: dense block without 'weight'")
            n_out = int(np.prod(_shape(cfg, where)))
            w, exp = _dense_weights(cfg["weight"], where, n_out)
            n_in = w.shape[1]
            if current is None:  # the first block: the input feeds its synapse (net.inp)
                input_shape = current = (n_in,)
            if len(current) > 1 and not flatten_next:
                raise NetxImportError(f"{where}: a dense block after a map without a "
                                      "'flatten' block (netx would fail to connect them)")
            if int(np.prod(current)) != n_in:
                raise NetxImportError(f"{where}: dense weights take {n_in} inputs, the layer "
                                      f"before gives {int(np.prod(current))}")
            lay = _layer(f"layer/{k}", "dense", (n_out,),
                         _neuron(neuron, where, notes, (n_out,), True, vth_min), w,
                         weight_exp=exp)
            if "delay" in cfg:
                lay.delay = _delays(cfg["delay"], where, w.shape, notes)
            if "bias" in cfg:
                b = _int_array(cfg["bias"], where, "bias").reshape(-1)
                if b.size == 1:
                    b = np.repeat(b, n_out)
                if b.size != n_out:
                    raise NetxImportError(f"{where}: {b.size} biases for {n_out} neurons")
                lay.bias_mant = b
            flatten_next = False
            layers.append(lay)
        elif kind == "conv":
            if current is None:
                raise NetxImportError(f"{where}: a conv block needs the input shape (an "
                                      "'input' block with 'shape' before it)")
            if len(current) != 3:
                raise NetxImportError(f"{where}: a conv block after a flat layer")
            shape = _squeeze_map(_shape(cfg, where))
            if "weight" not in cfg:
                raise NetxImportError(f"{where}: conv block without 'weight'")
            w = _int_array(cfg["weight"], where, "weight")
            if w.ndim == 5 and w.shape[4] == 1:
                w = w[..., 0]
            groups = _opt_int(cfg, "groups", where, 1)
            if w.ndim != 4 or len(shape) != 3 or w.shape[0] != shape[0] or groups < 1 \
                    or current[0] != w.shape[1] * groups:
                raise NetxImportError(f"{where}: conv weight {list(w.shape)} (groups {groups}) "
                                      f"does not map {list(current)} to {list(shape)}")
            stride = _pair(cfg.get("stride", 1), where, "stride")
            padding = _pair(cfg.get("padding", 0), where, "padding")
            dilation = _pair(cfg.get("dilation", 1), where, "dilation")
            if min(stride) < 1 or min(dilation) < 1:
                raise NetxImportError(f"{where}: stride and dilation must be >= 1")
            out_hw = [(current[1 + i] + 2 * padding[i] - dilation[i] * (w.shape[2 + i] - 1)
                       - 1) // stride[i] + 1 for i in range(2)]
            if tuple(out_hw) != shape[1:]:
                raise NetxImportError(f"{where}: conv of {list(current)} gives "
                                      f"{[shape[0], *out_hw]}, the block says {list(shape)}")
            if np.abs(w).max(initial=0) > 256:
                raise NetxImportError(f"{where}: conv weights beyond 8 bits "
                                      f"({int(np.abs(w).max())})")
            lay = _layer(f"layer/{k}", "conv", shape,
                         _neuron(neuron, where, notes, shape, False, vth_min), w,
                         stride=stride, padding=padding, dilation=dilation, groups=groups)
            if "delay" in cfg:
                notes.append(f"{where}: a conv 'delay' is not read by netx; ignored")
            if "bias" in cfg:
                b = _int_array(cfg["bias"], where, "bias").reshape(-1)
                if b.size != shape[0]:  # netx takes one per channel (broadcast over W x H)
                    raise NetxImportError(f"{where}: {b.size} biases for {shape[0]} channels "
                                          "(netx takes one per channel)")
                lay.bias_mant = np.ascontiguousarray(np.broadcast_to(b[:, None, None], shape))
            layers.append(lay)
        else:
            raise NetxImportError(f"{where}: block type {kind!r} is not supported (netx "
                                  "builds input, dense, conv and flatten blocks)")
    if not layers:
        raise NetxImportError(f"{path}: no layer with neurons")
    if layers[-1].kind == "input" and len(layers) == 1:
        notes.append(f"{path}: only an input block")
    for lay in layers:
        if lay.bias_mant is not None and (lay.bias_mant.max() > 4095 or
                                          lay.bias_mant.min() < -4096):
            raise NetxImportError(f"{path}: {lay.name}: bias mantissas in "
                                  f"{int(lay.bias_mant.min())}..{int(lay.bias_mant.max())} "
                                  "exceed Loihi's 13 bits (-4096..4095); rescale the layer")
    own = _snnexport_net(path, layers, extra, num_layers)
    if own is not None:
        return own
    return FixedNet(layers, tuple(input_shape), 0, "rate", 1, netx_file=str(path),
                    lava_timing=True, input_drive="a_in" if layers[0].kind == "input" else
                    "spikes", num_layers=num_layers, notes=notes)


def _snnexport_net(path: Path, layers: list[FixedLayer], extra: dict,
                   num_layers: int | None) -> FixedNet | None:
    """A file snnexport's netx export wrote (its 'snnexport' metadata, format NETX_FORMAT, and
    its 'host' group), as the fixed-point net it was written from: the Input block is the
    host layer again (its float synapse from 'host', its scale from the metadata), the names,
    scales, pools and time steps from the metadata, every integer from the netx blocks.
    None for any other file (or a cut one: num_layers)."""
    import json

    raw, host = extra.get("snnexport"), extra.get("host")
    if raw is None or host is None or num_layers is not None:
        return None
    try:
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return None
    if not isinstance(meta, dict) or meta.get("format") != NETX_FORMAT:
        return None
    info = meta.get("layers", [])
    if len(info) != len(layers) or layers[0].kind != "input" or \
            any(np.prod(i["shape"]) != lay.n for i, lay in zip(info, layers, strict=False)):
        raise NetxImportError(f"{path}: its snnexport metadata names {len(info)} layers, the "
                              f"netx blocks hold {len(layers)} of other shapes; a file edited "
                              "after snnexport wrote it?")
    h = meta["host"]
    first = layers[0]
    layers[0] = FixedLayer(
        first.name, "host", first.shape, np.asarray(host["weight"], np.float64), first.dv,
        first.vth_mant, first.v_init, float(h["scale"]),
        bias=np.asarray(host["bias"], np.float64) if "bias" in host else None,
        gain=np.asarray(host["gain"], np.float64) if "gain" in host else None,
        host_kind=h["kind"], stride=tuple(h["stride"]), padding=tuple(h["padding"]),
        groups=int(h["groups"]),
        i_decay=np.asarray(host["i_decay"], np.int64) if "i_decay" in host else None)
    for lay, i in zip(layers, info, strict=True):
        lay.name, lay.pool, lay.spiking, lay.scale = i["name"], bool(i["pool"]), \
            bool(i["spiking"]), float(i["scale"])
        shape = tuple(i["shape"])  # a dense layer on a map keeps the map's shape (C-major)
        if shape != lay.shape:
            lay.shape = shape
            for key in ("dv", "v_init", "bias_mant", "i_decay"):
                if getattr(lay, key) is not None:
                    setattr(lay, key, getattr(lay, key).reshape(shape))
    return FixedNet(layers, tuple(meta["input_shape"]), int(meta["time_steps"]),
                    meta["readout"], int(meta["population"]), netx_file=str(path))


NETX_OPTIONS = ("num_layers", "reset_interval", "reset_offset")


def read_netx_with(path, options: str) -> FixedNet:
    """`read_netx` with netx.hdf5.Network's own arguments given as on the command line
    (`--netx num_layers=5,reset_interval=16,reset_offset=0`); UsageError in one line on
    anything else."""
    from ..errors import UsageError

    values: dict[str, int] = {}
    for item in str(options).split(","):
        key, eq, text = item.strip().partition("=")
        if key not in NETX_OPTIONS or not eq or not text.strip().lstrip("-").isdigit():
            raise UsageError(f"--netx {options}: give KEY=N[,KEY=N] with KEY one of "
                             f"{', '.join(NETX_OPTIONS)} (netx.hdf5.Network's arguments)")
        values[key] = int(text)
    if values.get("num_layers", 1) < 1 or values.get("reset_interval", 1) < 1:
        raise UsageError(f"--netx {options}: num_layers and reset_interval must be >= 1")
    if "reset_offset" in values and "reset_interval" not in values:
        raise UsageError(f"--netx {options}: reset_offset goes with a reset_interval")
    if not Path(path).is_file() or not is_netx_file(path):
        raise UsageError(f"{path}: --netx goes with a netx file (lava-dl's HDF5 with a "
                         "'layer' group)")
    net = read_netx(path, values.get("num_layers"))
    if not net.lava_timing and set(values) - {"num_layers"}:
        raise UsageError(f"{path}: snnexport wrote this file with its own aligned timing; "
                         "netx's reset_interval does not apply to it")
    net.reset_interval = values.get("reset_interval")
    net.reset_offset = values.get("reset_offset", 0)
    return net


def netx_model(path, options: str | None = None):
    """lava-dl's netx file as a model source (the front door's FILE_KINDS), read with the
    command line's `--netx` options where given (read_netx_with): a fixed-point net with no
    graph and no float model behind it (LoadedModel.fixed)."""
    from ..importers.source import LoadedModel

    net = read_netx(path) if options is None else read_netx_with(path, options)
    return LoadedModel(path, None, kind="a netx file", files=(path,), fixed=net)


def netx_loaded(net: FixedNet):
    """A net already read from a netx file as the model `check`, `energy` and `deploy` take."""
    from ..importers.source import LoadedModel

    return LoadedModel(net.netx_file, None, kind="a netx file", files=(net.netx_file,), fixed=net)


def is_netx_file(path) -> bool:
    """An HDF5 file with a 'layer' group and no 'node' group (NIR's)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except Exception:  # noqa: BLE001 - not an HDF5 file snnexport can tell apart
        return False
    return "layer" in keys and "node" not in keys


__all__ = ["NETX_OPTIONS", "NetxImportError", "is_netx_file", "lava_dense_weights",
           "netx_loaded", "netx_model", "optimize_weight_bits", "read_netx", "read_netx_with"]


register_file_kind(FileKind(
    "netx", lambda head, path: head[:8] == HDF5_MAGIC and is_netx_file(path), netx_model))
