"""A user's own data: an `.npz` file or a Python function, turned into the same ImageDataset the
built-in sets are, with nothing changed in the values (no scaling, no standardisation: the
model sees exactly what the user gives).

`.npz` (read with allow_pickle=False: a data file cannot run code)
  x        [N, C, H, W] or [N, F]   static inputs, repeated over the T steps (direct encoding)
           [N, T, C, H, W] / [N, T, F] frame sequences, one frame per step
  y        [N] integer class labels
  x_train, y_train (optional)       inputs to calibrate fixed-point scales on; without them the
                                    calibration uses `x` itself (said in `describe()`)
  or, instead of x: event recordings as tonic keeps them (a structured array with fields
  x, y, p and t), all samples in one array `events` with an integer field `sample` (which
  recording each event belongs to) and `sensor_size` = (width, height, polarities); turned
  into T frames per sample by equal event count (Fang et al. 2021 eq. S1, data.events).

`module:function`
  the function is imported and called with no arguments; it returns (x, y), or
  (x_train, y_train, x, y), or a dict with those keys; numpy arrays or torch tensors.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .events import events_to_frames
from .static import ImageDataset


def _tensor(value, what: str, source: str) -> torch.Tensor:
    a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{source}: {what} must be numbers, got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a))


def _inputs(value, what: str, source: str) -> torch.Tensor:
    x = _tensor(value, what, source).to(torch.float32)
    if x.dim() < 2 or x.shape[0] == 0:
        raise UsageError(f"{source}: {what} must be [N, ...] with N > 0, got shape "
                         f"{list(x.shape)}")
    if not torch.isfinite(x).all():
        raise UsageError(f"{source}: {what} holds NaN or Inf values")
    return x


def _labels(value, n: int, what: str, source: str) -> torch.Tensor:
    y = _tensor(value, what, source)
    if y.dim() != 1 or len(y) != n:
        raise UsageError(f"{source}: {what} must be [N] = [{n}] labels, got shape "
                         f"{list(y.shape)}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise UsageError(f"{source}: {what} must be integer class labels")
    y = y.to(torch.int64)
    if len(y) and int(y.min()) < 0:
        raise UsageError(f"{source}: {what} holds a negative class label ({int(y.min())})")
    return y


def _event_frames(arrays: dict, source: str, time_steps: int | None) -> torch.Tensor:
    events, size = arrays["events"], arrays.get("sensor_size")
    names = events.dtype.names or ()
    if "sample" not in names or size is None:
        raise UsageError(f"{source}: events need an integer field 'sample' (which recording) "
                         "and an array sensor_size = (width, height, polarities)")
    if not time_steps:
        raise UsageError(f"{source}: event recordings are cut into T frames: give the model's "
                         "time steps (--time-steps)")
    size = tuple(int(s) for s in np.asarray(size).ravel())
    if len(size) != 3 or min(size) <= 0:
        raise UsageError(f"{source}: sensor_size must be (width, height, polarities), got "
                         f"{size}")
    for f, bound in (("x", size[0]), ("y", size[1]), ("p", size[2])):
        v = events[f]
        if len(v) and (v.min() < 0 or v.max() >= bound):
            raise UsageError(f"{source}: event field {f} outside [0, {bound}) of sensor_size")
    samples = np.unique(events["sample"])
    frames = []
    for s in samples:  # np.unique sorts: sample k is the k-th smallest index
        ev = events[events["sample"] == s]
        if "t" in names:
            ev = ev[np.argsort(ev["t"], kind="stable")]
        frames.append(events_to_frames(ev, size, int(time_steps)))
    return torch.from_numpy(np.stack(frames).astype(np.float32))  # [N, T, P, H, W]


def _from_npz(path: Path, time_steps: int | None) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:  # numpy's header parser raises many types on bad bytes
        raise UsageError(f"{path}: not a readable .npz data file ({type(exc).__name__}: "
                         f"{str(exc)[:200]})") from None
    if "events" in arrays and "x" not in arrays:
        arrays["x"] = _event_frames(arrays, str(path), time_steps)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise UsageError(f"{path}: no array {' or '.join(missing)}; an .npz data file holds x "
                         f"[N, ...] and y [N] (has: {', '.join(sorted(arrays)) or 'nothing'})")
    return arrays


def import_function(spec: str, what: str):
    """The callable `module:function` names (`pkg.mod:fn`), imported from the installed
    packages or, failing that, from the current folder (as `python -m` would find it: the
    `snnexport` command does not put the current folder on sys.path). `what` names it in the
    one-line error."""
    import os
    import sys

    module, _, name = spec.partition(":")
    if not module or not name:
        raise UsageError(f"{spec}: give the {what} as module:function (e.g. mypkg.nets:build)")
    try:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            here = os.getcwd()
            if exc.name != module.split(".")[0] or here in sys.path:
                raise
            sys.path.insert(0, here)
            try:
                mod = importlib.import_module(module)
            finally:
                sys.path.remove(here)
        fn = getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{spec}: cannot import the {what} ({exc}); give module:function of "
                         "an installed module or one in the current folder") from None
    if not callable(fn):
        raise UsageError(f"{spec}: {name} is a {type(fn).__name__}, not a function; give the "
                         f"{what} as module:function")
    return fn


def _from_function(spec: str) -> dict:
    out = import_function(spec, "data function")()
    if isinstance(out, dict):
        return out
    if isinstance(out, tuple) and len(out) == 2:
        return {"x": out[0], "y": out[1]}
    if isinstance(out, tuple) and len(out) == 4:
        return dict(zip(("x_train", "y_train", "x", "y"), out, strict=True))
    raise UsageError(f"{spec}: the data function must return (x, y), (x_train, y_train, x, y) "
                     f"or a dict of them, got {type(out).__name__}")


def load_user_data(spec: str, time_steps: int | None = None) -> ImageDataset:
    """`spec` is a path to an .npz file or `module:function` (module docstring). The test split
    is `x`, `y`; the training split (calibration) `x_train`, `y_train`, else `x`, `y` again."""
    path = Path(spec)
    if path.suffix == ".npz" or path.is_file():
        if not path.is_file():
            raise UsageError(f"{spec}: no such data file")
        arrays, source = _from_npz(path, time_steps), str(path)
    elif ":" in spec:
        arrays, source = _from_function(spec), spec
    else:
        raise UsageError(f"unknown data {spec!r}: give --data digits, mnist5k, a FILE.npz "
                         "or module:function")
    x = _inputs(arrays["x"], "x", source)
    y = _labels(arrays["y"], len(x), "y", source)
    given_train = "x_train" in arrays
    x_tr = _inputs(arrays["x_train"], "x_train", source) if given_train else x
    if given_train and "y_train" not in arrays:
        raise UsageError(f"{source}: x_train without y_train")
    y_tr = _labels(arrays["y_train"], len(x_tr), "y_train", source) if given_train else y
    if x_tr.shape[1:] != x.shape[1:]:
        raise UsageError(f"{source}: x_train {list(x_tr.shape[1:])} and x "
                         f"{list(x.shape[1:])} differ in shape per sample")
    return ImageDataset(source, x_tr, y_tr, x, y, None, None,
                        preprocessing="as given" + ("" if given_train else
                                                    "; no x_train: calibration uses x"))
