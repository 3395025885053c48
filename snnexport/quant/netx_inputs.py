"""The inputs of a net read from a lava-dl netx file as lava-dl users give them, validated and
turned into snnexport's [T, N, C, H, W] integers; and real images encoded as such inputs.

`--data FILE.npz` (read with allow_pickle=False), in the layout netx uses (W x H x C, the
file's shape reversed; a flat input is [n]):
  x     [N, T, *WHC] integers: the Input block's a_in per step (spikes or graded event frames);
        for a file without an Input block, 0/1 spikes into the first synapse (net.inp)
  bias  instead of x: the Input block's bias mantissa (13 bit), [N, T, *WHC], or [N, *WHC]
        with `time_steps` (one value per sample, held for every step)
  y     optional [N] class labels (accuracy is given only with them)
  s:<g>, u:<g>, v:<g>  optional outputs recorded elsewhere (lava-dl's stored ground truth):
        [N, T_r, *WHC] spikes, current, voltage after the reset of layer group g
        (`layer/<g>`) covering the steps from `t0:<g>` (default 0), compared value for value
        with the emulator by `snnexport check`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .fixed import FixedNet


@dataclass
class NetxInputs:
    """x [T, N, *input] (C x H x W) int64, the mode ('a_in', 'spikes' or 'bias'), labels [N]
    or None, and where they came from."""

    x: torch.Tensor
    input_bias: bool
    y: torch.Tensor | None
    source: str
    # outputs recorded elsewhere (Intel's ground truth): {(layer name, 's' | 'u' | 'v'):
    # (first step, int64 [T_r, N, n] C-major)}, from keys s:<g> / u:<g> / v:<g> [N, T_r,
    # *WHC] and t0:<g> of layer group g (layer/<g>)
    recorded: dict = field(default_factory=dict)


def _whc_to_chw(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """[..., *WHC] -> [..., *CHW] (a flat shape stays)."""
    lead = a.ndim - len(shape)
    axes = list(range(lead)) + [lead + i for i in reversed(range(len(shape)))]
    return np.ascontiguousarray(a.transpose(axes))


def read_inputs(net: FixedNet, path, samples: int | None = None) -> NetxInputs:
    """The inputs of FILE.npz (module docstring), validated: integers, finite, in range, of the
    input's netx shape; refused in one line naming the file, the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such data file (give --data FILE.npz with x [N, T, W, H, "
                         "C] or bias)")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        raise UsageError(f"{path}: not a readable .npz file ({type(e).__name__})") from None
    return inputs_of(net, data, str(path), samples)


def inputs_of(net: FixedNet, data: dict, path: str, samples: int | None = None) -> NetxInputs:
    """The checks of `read_inputs` on arrays {x or bias, y, time_steps} from `path`."""
    whc = tuple(reversed(net.input_shape))  # netx's W x H x C
    if ("x" in data) == ("bias" in data):
        raise UsageError(f"{path}: give exactly one of x (a_in / spikes, [N, T, "
                         f"{', '.join(map(str, whc))}]) or bias")
    key = "x" if "x" in data else "bias"
    a = data[key]
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{path}: {key} must be numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise UsageError(f"{path}: {key} holds NaN or Inf values")
    if a.dtype.kind == "f" and not np.array_equal(a, np.round(a)):
        raise UsageError(f"{path}: {key} must be integers (Lava takes integer a_in, spikes and "
                         "bias mantissas)")
    if key == "bias" and a.ndim == len(whc) + 1:
        if "time_steps" not in data:
            raise UsageError(f"{path}: a static bias [N, {', '.join(map(str, whc))}] needs "
                             "time_steps (how many steps each sample runs)")
        raw = np.asarray(data["time_steps"])
        t = raw.reshape(-1)[0] if raw.size == 1 and raw.dtype.kind in "iuf" else None
        if t is None or not np.isfinite(t) or t != np.round(t) or not 1 <= t <= MAX_STEPS \
                or a.nbytes * float(t) > _memory() // 2:
            raise UsageError(f"{path}: time_steps {raw.tolist()!r} must be one whole number "
                             f"from 1 to {MAX_STEPS:,} whose repeated bias fits in memory")
        a = np.repeat(a[:, None], int(t), axis=1)
    if a.ndim != len(whc) + 2 or tuple(a.shape[2:]) != whc or a.shape[0] == 0 \
            or a.shape[1] == 0:
        raise UsageError(f"{path}: {key} must be [N, T, {', '.join(map(str, whc))}] (netx's "
                         f"W x H x C layout of {net.netx_file}'s input), got {list(a.shape)}")
    if key == "bias" and not net.has_input_neuron:
        raise UsageError(f"{path}: {net.netx_file} has no Input block to take a bias; give spikes "
                         "as x")
    if samples is not None and samples < 1:
        raise UsageError(f"--samples {samples}: give a whole number >= 1")
    n = len(a) if samples is None else min(samples, len(a))  # at most what the file holds
    a = a[:n]
    y = None
    if "y" in data:
        y = np.asarray(data["y"])
        if y.ndim != 1 or len(y) < n or y.dtype.kind not in "biu":
            raise UsageError(f"{path}: y must be [N] integer labels for the {len(a)} samples")
        y = torch.from_numpy(y[:n].astype(np.int64))
    x = torch.from_numpy(_whc_to_chw(a.astype(np.int64), whc)).transpose(0, 1).contiguous()
    try:
        check_input(net, x, key == "bias")
    except UsageError as e:
        raise UsageError(f"{path}: {key}: {str(e).split(': ', 1)[-1]}") from None
    recorded = _recorded(net, data, path, n, x.shape[0])
    return NetxInputs(x, key == "bias", y, path, recorded)


def inputs_for(net: FixedNet, model: str, data, inputs, samples: int | None,
               verb: str = "checked") -> NetxInputs:
    """The inputs a command (check, energy, deploy) runs a netx file's net on: `inputs`
    already read (NetxInputs) or given as (x [N, T, *WHC], labels or None), else --data
    FILE.npz (read_inputs); UsageError in one line for anything else."""
    if isinstance(inputs, NetxInputs):
        return inputs
    if net.input_drive == "host":  # snnexport's own netx file: the data its model took
        return _host_inputs(net, model, data, inputs, samples)
    if inputs is not None:
        x, y = inputs
        arrays = {"x": np.asarray(x)} if y is None else {"x": np.asarray(x),
                                                         "y": np.asarray(y)}
        return inputs_of(net, arrays, "the given inputs", samples)
    if data is None or not str(data).endswith(".npz"):
        raise UsageError(f"{model}: a netx file is {verb} on its own inputs: --data FILE.npz "
                         f"with x [N, T, {', '.join(map(str, reversed(net.input_shape)))}] "
                         "(netx's W x H x C) or bias")
    return read_inputs(net, data, samples)


def _host_inputs(net: FixedNet, model: str, data, inputs, samples: int | None) -> NetxInputs:
    """A net read back from snnexport's own netx file (its host layer takes the model's float
    inputs): a built-in data set's test split (or a FILE.npz / module:function as `check`
    reads data), or `inputs` (x, y); the images repeated over the net's time steps as
    frames, [T, N, *input]."""
    from ..data import load_dataset

    if inputs is not None:
        x, y = (torch.as_tensor(a) for a in inputs)
        source = "the given inputs"
    elif data is None:
        raise UsageError(f"{model}: say which data to run it on with --data")
    else:
        ds = load_dataset(str(data), net.time_steps)
        x, y, source = ds.x_test, ds.y_test, f"the {data} test split"
    n = len(x) if samples is None else min(samples, len(x))
    x = x[:n].to(torch.float64)
    if x.dim() == len(net.input_shape) + 1:  # static images: the same frame every step
        x = x.unsqueeze(0).expand(net.time_steps, *x.shape).contiguous()
    else:
        x = x.transpose(0, 1).contiguous()
    return NetxInputs(x, False, None if y is None else torch.as_tensor(y)[:n].to(torch.int64),
                      source)


def check_input(net: FixedNet, x: torch.Tensor, input_bias: bool) -> None:
    """x [T, B, *input] as netx takes it: integers; 13-bit bias mantissas; 0/1 spikes into a
    first synapse; a_in within 16 bits. UsageError in one line."""
    shape = tuple(net.input_shape)
    where = net.netx_file
    if x.dim() != len(shape) + 2 or tuple(x.shape[2:]) != shape:
        raise UsageError(f"{where}: the input must be [T, B, {', '.join(map(str, shape))}] "
                         f"(C x H x W inside snnexport), got {list(x.shape)}")
    if x.is_floating_point() and not torch.equal(x, x.round()):
        raise UsageError(f"{where}: the input must be integers (a_in / bias mantissas or "
                         "0/1 spikes)")
    if input_bias and (x.max() > 4095 or x.min() < -4096):
        raise UsageError(f"{where}: input bias mantissas must be in -4096..4095 (13 bits)")
    if not net.has_input_neuron and not input_bias and ((x != 0) & (x != 1)).any():
        raise UsageError(f"{where}: the first block is a synapse: its input must be 0/1 "
                         "spikes (Lava's Dense / Conv read any nonzero value as a spike)")
    if x.abs().max() > (1 << 15) - 1:
        raise UsageError(f"{where}: a_in values must fit 16 bits (|x| < 32768)")


def driven(net: FixedNet, inputs: NetxInputs) -> FixedNet:
    """The net as these inputs drive it: its Input block's bias mantissa (FixedNet
    input_drive 'bias') where they give a bias, else as read."""
    import dataclasses

    return dataclasses.replace(net, input_drive="bias") if inputs.input_bias else net


RECORDED = re.compile(r"^([suv]):(\d+)$")


def _recorded(net: FixedNet, data: dict, path: str, n: int, t_steps: int) -> dict:
    """The recorded outputs of FILE.npz (NetxInputs.recorded), validated."""
    layers = {lay.name: lay for lay in net.layers}
    out = {}
    for key, a in data.items():
        m = RECORDED.match(key)
        if m is None:
            if key.startswith("t0:") and RECORDED.match(f"s:{key[3:]}") is None:
                raise UsageError(f"{path}: {key}: t0:<g> goes with s:<g>, u:<g> or v:<g>")
            continue
        var, name = m.group(1), f"layer/{m.group(2)}"
        lay = layers.get(name)
        if lay is None:
            raise UsageError(f"{path}: {key}: {net.netx_file} has no {name} among the layers "
                             f"read ({', '.join(layers)})")
        whc = tuple(reversed(lay.shape))
        a = np.asarray(a)
        t0 = int(np.asarray(data.get(f"t0:{m.group(2)}", 0)).reshape(-1)[0])
        if a.dtype.kind not in "biuf" or a.ndim != len(whc) + 2 or tuple(a.shape[2:]) != whc \
                or len(a) < n or not 0 <= t0 <= t0 + a.shape[1] <= t_steps \
                or (a.dtype.kind == "f" and not np.array_equal(a, np.round(a))):
            raise UsageError(f"{path}: {key} must be integers [N, T_r, {', '.join(map(str, whc))}]"
                             f" (netx's W x H x C of {name}) for steps t0:{m.group(2)} "
                             f"({t0}) .. {t_steps - 1}, got {list(a.shape)}")
        chw = _whc_to_chw(a[:n].astype(np.int64), whc).reshape(n, a.shape[1], -1)
        out[(name, var)] = (t0, torch.from_numpy(chw).transpose(0, 1).contiguous())
    return out


MAX_STEPS = 1_000_000  # time steps a static bias is repeated over, at most


def _memory() -> int:
    import os

    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def encode_images(net: FixedNet, images, time_steps: int, gain: int = 1024) -> np.ndarray:
    """Real images [N, *] as lava-dl users feed them, [N, T, *WHC]: scaled to [0, 1] (min-max
    over the set) and cut or zero-padded to the input's size (C-major); into an Input block's
    a_in as the constant `gain` x intensity (rounded), else as 0/1 spikes by a deterministic
    rate code, s_t = floor((t + 1) p) - floor(t p)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    lo, hi = x.min(), x.max()
    p = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    n = int(np.prod(net.input_shape))
    q = np.zeros((len(x), n))
    q[:, :min(n, p.shape[1])] = p[:, :n]
    t = np.arange(time_steps, dtype=np.float64)[None, :, None]
    if net.has_input_neuron:
        frames = np.repeat(np.rint(q * gain)[:, None], time_steps, axis=1)
    else:
        frames = np.floor((t + 1) * q[:, None]) - np.floor(t * q[:, None])
    chw = frames.reshape(len(x), time_steps, *net.input_shape)
    lead = 2
    axes = [0, 1] + [lead + i for i in reversed(range(len(net.input_shape)))]
    return np.ascontiguousarray(chw.transpose(axes)).astype(np.int64)


__all__ = ["NetxInputs", "check_input", "driven", "encode_images", "inputs_for", "inputs_of",
           "read_inputs"]
