"""The Python API, importable from the package top level (`import snnexport`):

    model = snnexport.load("net.pt")                      # checkpoint, .snnir or NIR file
    model = snnexport.load(sj_net, input_shape=(1, 28, 28), time_steps=8)   # a module
    model = snnexport.load("mypkg.nets:build", weights="net.pth", input_shape=(2, 128, 128),
                           time_steps=16)                 # code that builds it + its weights
    graph = snnexport.fold(model)                         # the hardware-native IR
    snnexport.export(model, "onnx", "net.onnx")           # any registered target's artifact
    report = snnexport.verify(model, "fixed", data="digits")        # parity, per layer
    report = snnexport.verify(model, inputs=(x, labels))  # on your own inputs
    energy = snnexport.estimate_energy(model, "loihi2", inputs=(x, labels))
    summary = snnexport.deploy_to("net.pt", "out/", data="my_data.npz")
    report = snnexport.fit(model, "loihi2", decays=4)      # cores, chips, the first limit

(`verify`, `estimate_energy`, `deploy_to` rather than check / energy / deploy: those names are
the package's modules, snnexport.check and so on.)

Shapes: inputs are samples first, `x` [N, *input] (static, repeated over the T steps) or
[N, T, *input] (frame sequences), numpy or torch; labels [N]. Inside, spike trains and
simulator outputs are time first, [T, N, ...]. Data given by name: digits, mnist5k, a
FILE.npz or module:function (snnexport.data.user).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .backends import Lowered
from .backends import get as get_backend
from .check import CALIB_SAMPLES, LoadedModel, load_source
from .check import check as check_model
from .data import load_dataset
from .data.user import data_for, given_inputs
from .deploy import deploy
from .energy import energy_of
from .errors import UsageError
from .files import check_output
from .ir.graph import Graph
from .sim.limits import first

__all__ = ["Exported", "deploy_to", "estimate_energy", "export", "fit", "fold", "load",
           "verify"]

PATH = (str, os.PathLike)
SOURCE = "a model file's path, a torch module, 'pkg.mod:function' or a loaded model"


def _arg(call: str, name: str, value, types: tuple, takes: str, none: bool = False):
    """The API's one check of an argument's type: a UsageError naming the call, the argument,
    the type given and what it takes (the command line's argparse does this for the CLI)."""
    if value is None and none:
        return value
    if isinstance(value, bool) and bool not in types or not isinstance(value, types) or (
            isinstance(value, str) and not value.strip()):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise UsageError(f"{call}: {name} = {shown} ({type(value).__name__}): give {takes}")
    return value


def _source(call: str, source) -> None:
    _arg(call, "model", source, (*PATH, torch.nn.Module, LoadedModel), SOURCE)


def _files_of(source) -> dict:
    """The input files a source names (refused as an output)."""
    files = list(source.files) if isinstance(source, LoadedModel) else \
        [source] if isinstance(source, PATH) else []
    return {f"input {'model' if i == 0 else i}": f for i, f in enumerate(files)}


def load(source, input_shape=None, time_steps: int | None = None,
         readout: str | None = None, weights=None) -> LoadedModel:
    """A model file (path: snnexport checkpoint, .snnir or NIR, told apart by content), a
    SpikingJelly, snnTorch or Norse module, or "pkg.mod:fn", a function building one (for the
    last two `input_shape` per sample, e.g. (1, 28, 28), and `time_steps` are needed; its
    reference is the framework's own forward pass). `weights`: a state_dict file (read with
    torch.load(weights_only=True)) loaded into the module, every key and shape matching."""
    _source("load", source)
    _arg("load", "weights", weights, PATH, "a state_dict file's path", none=True)
    _arg("load", "time_steps", time_steps, (int,), "a whole number >= 1", none=True)
    if time_steps is not None and time_steps < 1:
        raise UsageError(f"load: time_steps = {time_steps}: give a whole number >= 1")
    if readout is not None and readout not in ("rate", "last", "membrane"):
        raise UsageError(f"load: readout = {readout!r}: give 'rate', 'last' or 'membrane'")
    if input_shape is not None:
        _arg("load", "input_shape", input_shape, (tuple, list, torch.Size),
             "one sample's shape, e.g. (1, 28, 28)")
        if not input_shape or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                      for v in input_shape):
            raise UsageError(f"load: input_shape = {tuple(input_shape)!r}: give one sample's "
                             "shape as whole numbers >= 1, e.g. (1, 28, 28)")
    return load_source(source, weights, input_shape, time_steps, readout)


def fold(model) -> Graph:
    """The folded, hardware-native IR of a model (LoadedModel, file or graph)."""
    from .passes.fold import fold as fold_graph

    return fold_graph(model if isinstance(model, Graph) else load(model).need_graph("folded"))


@dataclass
class Exported:
    path: Path
    target: str
    fixed: object | None = None  # the fixed-point net, for the fixed-point targets
    grouping: list | None = None  # the decay grouping per layer (decays=K)
    calibrated_on: str | None = None  # what the scales were calibrated on


def export(model, target: str, path, data: str | None = None, calib_samples: int | None = None,
           decays: int | None = None, **options) -> Exported:
    """Writes `target`'s artifact (e.g. 'nir', 'onnx', 'onnx-fixed', 'netx') of the model to
    `path`. Fixed-point targets calibrate on the first `calib_samples` of `data`'s training
    split (default: the data the model was trained on) and group per-neuron decays into
    `decays` values per layer if asked. `options`: the target's own (onnx: step=True for the
    one-step streaming artifact; onnx, onnx-fixed: lean=True for the deployment graph, outputs
    only; nir: dt)."""
    _source("export", model)
    _arg("export", "target", target, (str,), f"one of {', '.join(_exporting())}")
    _arg("export", "path", path, PATH, "the artifact's file path")
    _arg("export", "data", data, PATH, "digits, mnist5k, a FILE.npz or 'module:function'",
         none=True)
    backend = get_backend(target)
    if backend.exports is not None:  # an input (its own model file included) is never written
        check_output(path, _files_of(model), command="export", suffix=backend.exports.suffix)
    loaded = load(model)
    if backend.exports is None:
        raise UsageError(f"target {target!r} writes no artifact; these do: "
                         f"{', '.join(b for b in _exporting())}")
    unknown = set(options) - set(backend.exports.options)
    if unknown:
        raise UsageError(f"export --to {target}: unknown option(s) {sorted(unknown)}; it takes "
                         f"{list(backend.exports.options) or 'none'}")
    lowered = Lowered(loaded.need_graph("exported (it is a netx file already)"))
    calib, what = None, None
    if backend.fixed_point:
        data = data_for(data, loaded)  # a file names only a built-in set: never code
        if data is None:
            raise UsageError(f"{loaded.path}: say which data to calibrate on with --data")
        ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
        what = f"the {data} training split"
        calib = first(ds.x_train, CALIB_SAMPLES if calib_samples is None else calib_samples,
                      "--calib-samples", what)
    written = backend.exports.write(lowered.input_for(backend, calib, decays), path, **options)
    out = Exported(Path(written or path), target)
    if backend.fixed_point:
        out.fixed, out.grouping = lowered.fixed(calib, decays, backend.chain)
        out.calibrated_on = f"{len(calib)} samples of {what}"
    return out


def verify(model, target: str = "reference", data: str | None = None, samples: int = 200,
           inputs=None, workers: int = 1, ray_address: str | None = None, **options):
    """Parity of `target` against the model (snnexport.check.check for every option): on
    `data`'s test split or `inputs` = (x, labels); returns a ParityReport (.exact, .text(),
    .to_dict(): accuracy, per-layer spike counts, first divergence). `workers` N > 1: the
    samples in N shards on Ray (a local Ray, or the cluster at `ray_address`), the same
    report."""
    _source("verify", model)
    _arg("verify", "target", target, (str,), "a target's name, e.g. 'fixed'")
    _arg("verify", "data", data, PATH, "digits, mnist5k, a FILE.npz or 'module:function'",
         none=True)
    return check_model(load(model), target, data, samples, inputs=inputs, workers=workers,
                       ray_address=ray_address, **options)


def _exporting() -> list[str]:
    from .backends import backends

    return [b.name for b in backends() if b.exports is not None]


def estimate_energy(model, profile: str, data: str | None = None, samples: int = 200,
                    inputs=None, workers: int = 1, ray_address: str | None = None):
    """Energy per inference on `profile` (e.g. 'loihi2', 'cmos45', or a TOML path) from the
    operation counts of the folded model on real inputs: `data`'s test split, or
    `inputs` = (x, labels). `workers` N > 1: counted in N shards on Ray, the same counts."""
    _source("estimate_energy", model)
    _arg("estimate_energy", "profile", profile, PATH, "a profile's name (e.g. 'loihi2') or a "
         "TOML file's path")
    _arg("estimate_energy", "data", data, PATH, "digits, mnist5k, a FILE.npz or "
         "'module:function'", none=True)
    if inputs is not None:
        inputs = given_inputs(inputs, "estimate_energy(inputs=)")
    return energy_of(load(model), profile, data, samples, inputs, workers, ray_address)


def deploy_to(model, outdir, data=None, targets="all", *args, **options) -> dict:
    """snnexport.deploy.deploy (every option of it): fold, quantise, export every target's
    artifact into `outdir`, check each artifact file, energy and the HTML report; resumable.
    `targets`: 'all', a comma list or a list of names."""
    _source("deploy_to", model)
    _arg("deploy_to", "outdir", outdir, PATH, "the output folder's path")
    _arg("deploy_to", "data", data, PATH, "digits, mnist5k, a FILE.npz or 'module:function'",
         none=True)
    if isinstance(targets, list | tuple):
        for t in targets:
            _arg("deploy_to", "a target", t, (str,), "a target's name")
        targets = ",".join(targets)
    _arg("deploy_to", "targets", targets, (str,), "'all', a comma list or a list of names")
    return deploy(model, outdir, data, targets, *args, **options)


def fit(model, chip: str, decays: int | str | None = None, chips: int = 1):
    """Will the model fit `chip` ('loihi2', 'xylo-audio2', 'xylo-audio3', 'xylo-imu', 'speck',
    or a chip description's TOML path; targets/chips/): a FitReport (snnexport.hw.fit) with
    every layer's placement on cores, memory per core, the chips needed (of `chips` there are),
    the binding limit, and for a network that does not fit the first limit it breaks (.fits,
    .verdict, .violation, .text(), .to_dict()). `decays` K groups each layer's per-neuron
    decays into at most K values first ('all' or None: as trained)."""
    from .hw.fit import fit_graph
    from .passes.fold import fold as fold_graph

    if decays == "all":
        decays = None
    if decays is not None and (isinstance(decays, bool) or not isinstance(decays, int)
                               or decays < 1):
        raise UsageError(f"fit: decays = {decays!r}: give a whole number >= 1 or 'all'")
    if not isinstance(model, Graph):
        loaded = load(model)
        if loaded.fixed is not None:  # a netx file: its blocks placed as they are
            from .hw.fit import fit_fixed

            if decays is not None:
                raise UsageError(f"{loaded.path}: --decays regroups a float model's decays; "
                                 f"{loaded.kind} is already fixed point: fit it as it is")
            return fit_fixed(loaded.fixed, chip, chips)
    graph = model if isinstance(model, Graph) else loaded.graph
    folded = graph if graph.metadata.get("folded") else fold_graph(graph)
    return fit_graph(folded, chip, decays, chips)
