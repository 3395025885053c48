"""The one front door: every kind of model source becomes a LoadedModel here, and check,
export, energy, fit, deploy, inspect and the Python API all enter through `load_source`.

Sources, told apart by what they are (a file by its content, never by its name):
  * a LoadedModel: as it is;
  * a torch module: snnexport's PLIFNet, or a SpikingJelly / snnTorch / Norse network (found
    by where its modules come from; `input_shape` and `time_steps` needed), its `weights`
    (a state_dict file) loaded into it first;
  * `pkg.mod:fn`: a function the user names that builds the network, with its `weights`;
  * a file: an snnexport checkpoint, an IR file (.snnir), a NIR file, or a kind a layer above
    registers (FILE_KINDS: lava-dl's netx, read into the fixed-point net by quant.netx_import).
Each framework's module is imported by its importer (the graph) and keeps its own forward as
the reference (what every target is compared with).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UsageError
from ..ir.graph import Graph
from ..ir.io import MAGIC, load_ir
from ..models import load_checkpoint
from ..models.network import PLIFNet
from .plifnet import import_plifnet, run_torch_reference


@dataclass(frozen=True)
class FileKind:
    """A kind of model file a layer above this one reads (register_file_kind): `detect(head,
    path)` on the file's first 16 bytes, `read(path)` -> LoadedModel."""

    name: str
    detect: Callable
    read: Callable


FILE_KINDS: list[FileKind] = []


def register_file_kind(kind: FileKind) -> None:
    """Adds (or replaces, by name) a file kind load_model tries before its own."""
    FILE_KINDS[:] = [k for k in FILE_KINDS if k.name != kind.name] + [kind]


@dataclass
class LoadedModel:
    path: Path | str
    graph: Graph  # as imported (source-level) or as read from an IR file
    torch_model: PLIFNet | None = None
    meta: dict | None = None
    # runs the original model: (x, dtype) -> SimResult with spikes and H per neuron layer;
    # None for an IR file, whose own float64 simulation is then the reference
    reference: Callable | None = None
    # what it was loaded from, in words ("an snnexport checkpoint", "a SpikingJelly module")
    kind: str = ""
    files: tuple = ()  # the files it was read from (never written over; hashed by deploy)
    digest: str | None = None  # sha256 of what it is (file bytes, or spec + weights / tensors)
    # a model that is a fixed-point net as it stands (a netx file: quant.netx_import), with no
    # graph (`graph` None) and no float model behind it: checked, counted and deployed on the
    # fixed-point targets only (need_graph refuses the rest in one line)
    fixed: Any = None

    def need_graph(self, what: str) -> Graph:
        """The graph, or (a model that is a fixed-point net) UsageError in one line saying
        why `what` cannot take it."""
        if self.graph is None:
            raise UsageError(f"{self.path}: {self.kind or 'this model'} runs as it is: a "
                             "fixed-point net with no float model behind it, so it is not "
                             f"{what}; snnexport inspect, check --target fixed | netx | "
                             "onnx-fixed | lava-fixed, energy, fit and deploy take it")
        return self.graph

    def __post_init__(self):
        if self.reference is None and self.torch_model is not None:
            model = self.torch_model
            self.reference = lambda x, dtype: run_torch_reference(model, x, dtype)

    def sha256(self) -> str:
        """The model's identity for deploy's manifest: its file's bytes, the factory and its
        weights file, or a module's tensors."""
        if self.digest is None:
            h = hashlib.sha256()
            for f in self.files:
                h.update(Path(f).read_bytes())
            self.digest = h.hexdigest()
        return self.digest


def from_spikingjelly(model, input_shape, time_steps: int, readout: str | None = None,
                      name: str = "<spikingjelly model>") -> LoadedModel:
    from .spikingjelly import import_spikingjelly, run_spikingjelly_reference

    graph = import_spikingjelly(model, input_shape, time_steps, readout)
    return LoadedModel(name, graph, reference=lambda x, dtype: run_spikingjelly_reference(
        model, graph, x, dtype), kind="a SpikingJelly module", digest=_tensors_sha256(model))


def from_snntorch(net, input_shape, time_steps: int, readout: str | None = None,
                  name: str = "<snntorch model>") -> LoadedModel:
    """An nn.Sequential of torch layers and snntorch.Leaky(init_hidden=True); its reference is
    snnTorch's own forward, one call per step (snnexport.importers.snntorch)."""
    from .snntorch import import_snntorch, run_snntorch_reference

    graph = import_snntorch(net, input_shape, time_steps, readout or "rate")
    return LoadedModel(name, graph, reference=lambda x, dtype: run_snntorch_reference(
        net, graph, x, dtype), kind="an snnTorch module", digest=_tensors_sha256(net))


def from_norse(net, input_shape, time_steps: int, readout: str | None = None,
               name: str = "<norse model>") -> LoadedModel:
    """A norse.torch.SequentialState of torch layers and LIFCell / LIFBoxCell / LIF; its
    reference is Norse's own forward (snnexport.importers.norse)."""
    from .norse import import_norse, run_norse_reference

    graph = import_norse(net, input_shape, time_steps, readout or "rate")
    return LoadedModel(name, graph, reference=lambda x, dtype: run_norse_reference(
        net, graph, x, dtype), kind="a Norse module", digest=_tensors_sha256(net))


def _tensors_sha256(module) -> str:
    """A module's identity: its class and every state_dict tensor's name, shape and bytes."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}{tuple(v.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


FRAMEWORKS = {"spikingjelly": from_spikingjelly, "snntorch": from_snntorch,
              "norse": from_norse}


def load_module(module, input_shape=None, time_steps: int | None = None,
                readout: str | None = None, name: str | None = None) -> LoadedModel:
    """A torch module: a SpikingJelly, snnTorch or Norse network (its reference is the
    framework's own forward pass; `input_shape` per sample and `time_steps` needed), or
    snnexport's own PLIFNet (plain torch; it knows its shape and T)."""
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"{name or 'load'}: give a model file or a torch module, got "
                         f"{type(module).__name__}")
    if isinstance(module, PLIFNet):
        module.eval()
        graph = import_plifnet(module)
        return LoadedModel(name or "<PLIFNet>", graph, module, {}, kind="a PLIFNet module",
                           digest=_tensors_sha256(module))
    kinds = {type(m).__module__.split(".")[0] for m in module.modules()}
    frameworks = kinds & set(FRAMEWORKS)
    if len(frameworks) != 1:
        raise UsageError(f"{name or 'load'}: the module's neurons must come from one of "
                         f"spikingjelly, snntorch, norse (or be snnexport's PLIFNet); found "
                         f"modules of {sorted(kinds)}")
    if input_shape is None or time_steps is None:
        raise UsageError(f"{name or 'load'}: a framework's module needs its input shape per "
                         "sample and its time steps (--input-shape C,H,W --time-steps T; "
                         "Python: input_shape=, time_steps=)")
    framework = frameworks.pop()
    return FRAMEWORKS[framework](module, tuple(input_shape), time_steps, readout,
                                 **({"name": name} if name else {}))


FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(source) -> bool:
    """`pkg.mod:fn` (a function that builds the network), not a file."""
    return (isinstance(source, str) and FACTORY.match(source) is not None
            and not Path(source).exists())


def read_state_dict(weights, where: str) -> dict:
    """A state_dict file, read with torch.load(weights_only=True) (a weights file cannot run
    code); a training script's {'state_dict': ...} is taken too."""
    path = Path(weights)
    if not path.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad bytes
        raise UsageError(f"{path}: not a state_dict torch.load(weights_only=True) can read "
                         f"({type(exc).__name__}: {str(exc)[:200]}); save the weights with "
                         "torch.save(net.state_dict(), PATH)") from None
    if isinstance(payload, dict) and payload.get("format") == "snnexport-checkpoint":
        raise UsageError(f"{path}: an snnexport checkpoint, which holds its architecture: give "
                         f"it as MODEL alone, without {where} / --weights")
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()):
        raise UsageError(f"{path}: not a state_dict (a dict of name -> tensor); save the "
                         "weights with torch.save(net.state_dict(), PATH)")
    return payload


def load_weights(net, state: dict, weights, where: str) -> None:
    """`state` into `net`, every key and shape matching; else one line naming the first key
    that does not and the fix."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]

    def more(keys):
        return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""

    if missing and unexpected and all(k.startswith("module.") for k in unexpected):
        raise UsageError(f"{weights}: its keys start with 'module.' ({unexpected[0]!r}): "
                         "saved from a DataParallel wrapper; save net.module.state_dict()")
    if missing:
        raise UsageError(f"{weights}: no weights for {missing[0]!r}{more(missing)} of the "
                         f"network {where} builds: the file is another network's; build the "
                         "network the weights were trained with")
    if unexpected:
        raise UsageError(f"{weights}: holds {unexpected[0]!r}{more(unexpected)}, which the "
                         f"network {where} builds has no parameter for; build the network the "
                         "weights were trained with (same layers, same names)")
    for k, v in own.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise UsageError(f"{weights}: {k!r} is {list(state[k].shape)} in the file but "
                             f"{list(v.shape)} in the network {where} builds; build it with the "
                             "sizes it was trained with")
    net.load_state_dict(state)


def load_factory(spec: str, weights=None, input_shape=None, time_steps: int | None = None,
                 readout: str | None = None) -> LoadedModel:
    """`pkg.mod:fn` builds the network (called with no arguments: a SpikingJelly, snnTorch,
    Norse module or snnexport's PLIFNet); `weights` is its state_dict file. The reference is
    the framework's own forward pass of the module so built."""
    import inspect

    from ..data.user import call_user_function, import_function

    build = import_function(spec, "model factory")
    try:
        inspect.signature(build).bind()
    except TypeError:
        raise UsageError(f"{spec}: the model factory is called with no arguments; wrap it "
                         f"(def build(): return Net(...))") from None
    except ValueError:  # no signature (a builtin): call it and see
        pass
    net = call_user_function(build, spec, "model factory")  # its failure: one line
    if not isinstance(net, torch.nn.Module):
        raise UsageError(f"{spec}: returned a {type(net).__name__}, not a torch module; the "
                         "factory builds the network and returns it")
    if weights is not None:
        load_weights(net, read_state_dict(weights, spec), weights, spec)
    net.eval()
    name = f"{spec} with {weights}" if weights is not None else f"{spec} (its own weights)"
    loaded = load_module(net, input_shape, time_steps, readout, name=name)
    loaded.files = (Path(weights),) if weights is not None else ()
    h = hashlib.sha256(spec.encode() + b"\0" + (loaded.digest or "").encode())
    for f in loaded.files:
        h.update(f.read_bytes())
    loaded.digest = h.hexdigest()
    return loaded


def load_source(source, weights=None, input_shape=None, time_steps: int | None = None,
                readout: str | None = None) -> LoadedModel:
    """Any model: a LoadedModel as it is; a file (checkpoint, .snnir, NIR: by content); a
    factory `pkg.mod:fn` with its `weights`; a torch module (its `weights` loaded into it).
    The one loader the command line's check, export, energy, deploy and inspect use."""
    if isinstance(source, LoadedModel):
        return source
    if isinstance(source, torch.nn.Module):
        if weights is not None:
            load_weights(source, read_state_dict(weights, "the module"), weights, "the module")
        loaded = load_module(source, input_shape, time_steps, readout)
        if weights is not None:
            loaded.files = (Path(weights),)
        return loaded
    if is_factory(str(source)):
        return load_factory(str(source), weights, input_shape, time_steps, readout)
    if weights is not None or input_shape is not None:
        raise UsageError(f"{source}: --weights and --input-shape go with a network given as "
                         "code (--model pkg.mod:function); a model file holds its own")
    return load_model(source, time_steps)


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_model(path, time_steps: int | None = None) -> LoadedModel:
    """A model file, told apart by content (not by its name): an snnexport checkpoint (.pt),
    an IR file (.snnir) or a NIR file from any producer (HDF5 with NIR's 'node' group).
    `time_steps` sets T where the file does not say it (NIR) and overrides it elsewhere."""
    path = Path(path)
    head = b""
    if path.is_file():  # the first bytes only: a multi-GB file given by mistake is not read
        with open(path, "rb") as f:
            head = f.read(16)
    for kind in FILE_KINDS:  # kinds the layers above add (lava-dl's netx: quant.netx_import)
        if kind.detect(head, path):
            return kind.read(path)
    if head[:len(MAGIC)] == MAGIC:
        loaded = LoadedModel(path, load_ir(path), kind="an IR file", files=(path,))
    elif head[:8] == HDF5_MAGIC:
        loaded = LoadedModel(path, _read_hdf5_model(path), kind="a NIR file", files=(path,))
    else:
        model, meta = load_checkpoint(path)
        graph = import_plifnet(model, str(path))
        if "data" in meta:
            graph.metadata["data"] = meta["data"]
        loaded = LoadedModel(path, graph, model, meta, kind="an snnexport checkpoint",
                             files=(path,))
    if time_steps is not None:
        if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
            raise UsageError(f"--time-steps {time_steps!r}: give a whole number >= 1")
        loaded.graph.metadata["time_steps"] = int(time_steps)
        if loaded.torch_model is not None:  # the checkpoint's own run (the reference): same T
            import dataclasses

            loaded.torch_model.cfg = dataclasses.replace(loaded.torch_model.cfg,
                                                         time_steps=int(time_steps))
    if head[:8] == HDF5_MAGIC and not loaded.graph.metadata.get("time_steps"):
        raise UsageError(f"{path}: a NIR graph does not say how many time steps the network "
                         "runs; give them (--time-steps T)")
    return loaded


def _read_hdf5_model(path: Path) -> Graph:
    """A NIR file (netx files are told apart before: load_model's FILE_KINDS)."""
    import h5py

    from .nir_import import read_nir

    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        raise UsageError(f"{path}: not a readable HDF5 file ({exc})") from None
    return read_nir(path)
