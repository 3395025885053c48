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
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .events import events_to_frames
from .static import ImageDataset


def data_for(given, loaded, option: str = "--data") -> str | None:
    """The data a command runs on: `given` (the user's --data or Python argument: a built-in
    set, FILE.npz or module:function), else the data the model file records, which may name
    only a built-in set (DATASETS): a file never makes snnexport read another file or import
    and call code (a downloaded checkpoint naming `evilmod:run`). None when neither says.
    `loaded`: a LoadedModel, or a checkpoint's meta dict (with its "path" added)."""
    from .static import DATASETS

    if given is not None:
        if not isinstance(given, str | Path) or not str(given).strip():
            raise UsageError(f"{option} {given!r}: give {', '.join(DATASETS)}, a FILE.npz or "
                             "module:function")
        return str(given)
    if isinstance(loaded, dict):
        recorded, source = loaded.get("data"), str(loaded.get("path", "the checkpoint"))
    else:
        recorded = (loaded.meta or {}).get("data") or (
            None if loaded.graph is None else loaded.graph.metadata.get("data"))
        source = str(loaded.path)
    if recorded is None:
        return None
    if isinstance(recorded, str) and recorded in DATASETS:
        return recorded
    shown = repr(recorded) if len(repr(recorded)) <= 80 else repr(recorded)[:77] + "..."
    raise UsageError(f"{source} names its data as {shown}; a model file may name only a "
                     f"built-in data set ({', '.join(DATASETS)}), never a file or code to run: "
                     f"give the data yourself ({option} ...), only if you trust it")


def _tensor(value, what: str, source: str) -> torch.Tensor:
    """`value` as a CPU tensor of numbers; a torch tensor is not copied (an expanded view stays
    a view: frames given as x.expand(...) take no memory)."""
    if isinstance(value, torch.Tensor):
        if value.is_meta:
            raise UsageError(f"{source}: {what} is not an array of numbers (a meta tensor holds "
                             "no values)")
        if value.dtype.is_complex or value.dtype not in (
                torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise UsageError(f"{source}: {what} must be numbers, got dtype {value.dtype}")
        return value.detach().cpu()
    try:
        a = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:  # ragged lists
        raise UsageError(f"{source}: {what} is not an array of numbers ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]})") from None
    if a.dtype.kind not in "biuf":
        raise UsageError(f"{source}: {what} must be numbers, got dtype {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a))


def _distinct(x: torch.Tensor) -> torch.Tensor:
    """x without its repeated (stride 0) dimensions: the same values, none copied."""
    for d in range(x.dim()):
        if x.stride(d) == 0 and x.shape[d] > 1:
            x = x.narrow(d, 0, 1)
    return x


def _inputs(value, what: str, source: str, dtype=torch.float32) -> torch.Tensor:
    x = _tensor(value, what, source)
    if dtype is not None:
        x = x.to(dtype)
    if x.dim() < 2 or x.shape[0] == 0:
        raise UsageError(f"{source}: {what} must be [N, ...] with N > 0, got shape "
                         f"{list(x.shape)}")
    if x.is_floating_point() and not torch.isfinite(_distinct(x)).all():
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


def given_inputs(inputs, source: str, classes: int | None = None):
    """(x, y) as a check runs them: `inputs` = (x [N, ...], labels [N]) from a Python call or
    a data set, numpy or torch; one UsageError naming what is wrong (not a pair, not numbers,
    NaN / Inf, labels of another length, not whole, negative or not below `classes`, the
    number of the model's classes)."""
    if not isinstance(inputs, tuple | list) or len(inputs) != 2:
        raise UsageError(f"inputs: give (x, labels), x [N, ...] and labels [N] (numpy or "
                         f"torch), got {type(inputs).__name__}")
    x = _inputs(inputs[0], "x", source, dtype=None)  # as given: float64 runs in float64
    y = _labels(inputs[1], len(x), "labels", source)
    if classes is not None and len(y) and int(y.max()) >= classes:
        raise UsageError(f"{source}: labels hold class {int(y.max())}, but the model scores "
                         f"{classes} classes (0 to {classes - 1}); give the labels of its "
                         "classes")
    return x, y


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
    need = len(samples) * int(time_steps) * int(np.prod(size, dtype=np.float64)) * 12
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > memory // 2:  # int64 frames per sample, then float32 for all: 12 bytes a cell
        raise UsageError(f"{source}: {len(samples)} recordings of T={time_steps} frames of "
                         f"sensor_size {size} would need about {need / 2 ** 30:,.0f} GiB, more "
                         f"than half this machine's memory ({memory / 2 ** 30:.0f} GiB); give "
                         "the sensor's real size")
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


# a data function that has not returned after this many seconds is stopped (SIGALRM, the main
# thread of a POSIX process only): SNNEXPORT_DATA_TIMEOUT sets it, 0 turns the limit off
DATA_TIMEOUT = 600.0


def _timeout() -> float:
    text = os.environ.get("SNNEXPORT_DATA_TIMEOUT", "")
    try:
        value = float(text) if text.strip() else DATA_TIMEOUT
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"SNNEXPORT_DATA_TIMEOUT={text!r}: give seconds >= 0 (0: no limit)")
    return value


def call_user_function(fn, spec: str, what: str):
    """fn() (a user's data function or model factory), its failure one line naming it: an
    exception, a sys.exit() inside it, or no return within SNNEXPORT_DATA_TIMEOUT seconds
    (default DATA_TIMEOUT). Ctrl-C still stops the command."""
    import signal
    import threading

    class Expired(BaseException):  # raised by SIGALRM inside fn: not an Exception, so fn's
        pass                        # own `except Exception` does not swallow it

    limit = _timeout()
    alarm = (limit > 0 and hasattr(signal, "SIGALRM")
             and threading.current_thread() is threading.main_thread()
             and signal.getitimer(signal.ITIMER_REAL)[0] == 0)

    def expire(_signum, _frame):
        raise Expired

    previous = signal.signal(signal.SIGALRM, expire) if alarm else None
    if alarm:
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        return fn()
    except Expired:
        raise UsageError(f"{spec}: the {what} did not return within {limit:g} s; make it "
                         "faster or set SNNEXPORT_DATA_TIMEOUT (seconds, 0: no limit)") from None
    except UsageError:
        raise
    except SystemExit as exc:
        raise UsageError(f"{spec}: the {what} called sys.exit({exc.code!r}) instead of "
                         "returning; make it return its result") from None
    except Exception as exc:
        raise UsageError(f"{spec}: the {what} raised {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}") from exc
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _from_function(spec: str) -> dict:
    out = call_user_function(import_function(spec, "data function"), spec, "data function")
    if isinstance(out, dict):
        missing = [k for k in ("x", "y") if k not in out]
        if missing:
            raise UsageError(f"{spec}: the data function's dict has no {' or '.join(missing)} "
                             f"(has: {', '.join(map(str, out)) or 'nothing'}); return x and y")
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
