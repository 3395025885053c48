"""Will a network fit a chip: the hardware lowering's cores (`lower`) placed on a chip's cores
against the chip description in targets/chips/NAME.toml (every limit with its source and
grade: published, measured, estimated). Numpy only, no torch (the Lava runner imports hw; it
never imports this module: tomllib is read lazily).

Per family (the description's `family`):

  loihi   every neuron layer (a Core, an OR-pool's PoolCore, a SEW merge's relay neurons) is cut
          into neurocores greedily, neurons in C-major order grouped by configuration: a core
          takes neurons while it holds at most `neurons_per_core` of them, at most
          `neuron_configs_per_core` distinct configurations (decay and current decay, quantised
          to `decay_bits`: the profile a neuron group shares) and at most
          `synapse_bytes_per_core` of synapses (nonzero weights, `weight_bits` each). A layer
          whose synapses stay a convolution on the chip (Core.spatial) stores each output
          channel's kernel once per core holding that channel; any other synapse stores its
          rows per neuron (a conv unrolled: its in-bounds nonzero taps). The host layer's synapse
          runs on the host (its current reaches the chip as a bias): no synaptic memory.
          chips = ceil(cores / `cores`). A layer whose one neuron (or one channel's kernel)
          needs more synaptic memory than a core holds cannot be placed.
  xylo    one core: dense layers only; the first neuron layer is fed by the (<= `inputs`)
          input channels, the last is the output layer (<= `outputs`), all others hidden
          (<= `hidden_neurons` in all); the first layer's neurons are the input expansion
          neurons, the layer before the output the output expansion neurons. Neuron parameters
          are per neuron: per-neuron tau costs nothing.
  speck   one layer per core (conv + integrate-and-fire, pooling on its way out): each layer's
          kernel, neuron and bias memory (sinabs' memory_summary formulas) against each core's
          budget; layers assigned to cores by a bipartite matching (sinabs' get_valid_mapping
          does it by max flow); <= `fan_out` destination layers per layer; neurons that leak
          (decay < 1) or carry a synaptic current have no Speck form.

A network that does not fit is a result, not an error: FitReport.fits is False, `violation`
names the first limit it breaks (layer, resource, need vs limit, and what would make it fit);
one the chip cannot take at all (a conv on Xylo, a residual merge on Xylo / Speck) says
"cannot take this model: ..." (`refused`). Chip descriptions that cannot be read raise
ChipError (one line, naming the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SnnexportError, UsageError
from ..ir import nodes as ir
from .cores import Core, CoreGraph, HardwareLoweringError, PoolCore, SpikeMerge, Synapse, lower

GRADES = ("published", "measured", "estimated")


def targets_dir() -> Path:
    """The target files (energy profiles, chip descriptions in chips/): the repository's
    top-level targets/, which snnexport/targets links to in a checkout; an installed wheel
    carries them as snnexport/targets/ (package data)."""
    package = Path(__file__).resolve().parents[1]
    inside = package / "targets"
    return inside if inside.is_dir() else package.parent / "targets"


class ChipError(SnnexportError, ValueError):
    """A chip description that cannot be used; names the file."""


@dataclass
class Chip:
    """A chip description (targets/chips/NAME.toml): `limits` maps a resource to its table
    {value | unlimited | unknown, unit, source, grade}."""

    name: str
    title: str
    family: str
    estimate: bool
    kinds: list[str]
    neuron: str
    configuration: list[str]
    limits: dict
    path: Path | None = None

    def limit(self, key: str):
        """The limit's value, None when the description has none for it (unlimited, not
        published, or absent)."""
        return self.limits.get(key, {}).get("value")


def chips_available() -> list[str]:
    return sorted(p.stem for p in (targets_dir() / "chips").glob("*.toml"))


def load_chip(name_or_path) -> Chip:
    """A chip by name (targets/chips/NAME.toml) or a TOML file's path."""
    import tomllib

    path = Path(name_or_path)
    if not path.suffix:
        path = targets_dir() / "chips" / f"{name_or_path}.toml"
    if not path.is_file():
        raise UsageError(f"--chip {name_or_path}: no such chip description; give one of "
                         f"{', '.join(chips_available())} or a TOML file")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ChipError(f"{path}: not valid TOML ({e})") from None
    if d.get("family") not in ("loihi", "xylo", "speck"):
        raise ChipError(f"{path}: family must be 'loihi', 'xylo' or 'speck'")
    for key, lim in d.get("limits", {}).items():
        missing = {"unit", "source", "grade"} - set(lim)
        if missing or not {"value", "unlimited", "unknown"} & set(lim):
            raise ChipError(f"{path}: limits.{key} needs value (or unlimited / unknown), unit, "
                            "source and grade")
        if lim["grade"] not in GRADES:
            raise ChipError(f"{path}: limits.{key} grade {lim['grade']!r} not in {GRADES}")
    return Chip(d.get("name", path.stem), d.get("title", path.stem), d["family"],
                bool(d.get("estimate", False)), list(d.get("kinds", [])), d.get("neuron", ""),
                list(d.get("configuration", [])), d.get("limits", {}), path)


# --- the report -------------------------------------------------------------------------------

@dataclass
class Violation:
    """The first limit a network breaks: where, what, how much, and what would make it fit."""

    layer: str
    resource: str
    need: int
    limit: int
    fix: str

    def text(self) -> str:
        return (f"{self.layer}: {self.resource}: needs {self.need:,}, the chip holds "
                f"{self.limit:,}; {self.fix}")


@dataclass
class LayerFit:
    """One neuron layer (or OR-pool, or SEW merge) on the chip: its placement `cores`, each
    {core, chip, neurons, configs, synapse_bytes} (Xylo: the hidden / output neuron ids)."""

    layer: str
    synapse: str
    kind: str
    neurons: int
    configs: int  # distinct neuron configurations in the layer (as the chip quantises them)
    synapses: int  # nonzero weights on the chip (shared kernels counted once per core)
    cores: list[dict] = field(default_factory=list)
    bound_by: str = ""  # what cut the layer into more cores than one
    memory: dict = field(default_factory=dict)  # Speck: kernel / neuron / bias memory


@dataclass
class FitReport:
    chip: Chip
    layers: list[LayerFit]
    decays: int | None = None  # per-neuron decays grouped into at most K per layer
    chips_allowed: int = 1
    refused: str | None = None  # "cannot take this model": what the chip has no form for
    violations: list[Violation] = field(default_factory=list)
    cores_used: int = 0
    chips_needed: int = 1
    binding: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def violation(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    @property
    def fits(self) -> bool:
        return self.refused is None and not self.violations

    @property
    def verdict(self) -> str:
        if self.refused is not None:
            return f"cannot take this model: {self.refused}"
        if self.violations:
            return f"does not fit: {self.violation.text()}"
        chips = f" on {self.chips_needed} chips" if self.chips_needed > 1 else ""
        return "fits" + chips + (" (an estimate)" if self.chip.estimate else "")

    def to_dict(self) -> dict:
        return {
            "chip": self.chip.name, "title": self.chip.title, "estimate": self.chip.estimate,
            "description": str(self.chip.path) if self.chip.path else None,
            "decays": self.decays, "fits": self.fits, "verdict": self.verdict,
            "refused": self.refused,
            "violation": None if self.violation is None else vars(self.violation),
            "violations": [vars(v) for v in self.violations],
            "cores_used": self.cores_used, "cores_per_chip": self.chip.limit("cores"),
            "chips_needed": self.chips_needed, "chips_allowed": self.chips_allowed,
            "binding": self.binding, "notes": self.notes,
            "limits": {k: {kk: v for kk, v in lim.items()}
                       for k, lim in self.chip.limits.items()},
            "layers": [vars(lf) for lf in self.layers],
        }

    def text(self) -> str:
        c = self.chip
        head = f"fit on {c.title}"
        if c.estimate:
            head += (" -- an estimate: the per-core budgets are not all published (each limit's "
                     f"source and grade: {c.path.name if c.path else c.name})")
        lines = [head]
        if self.decays is not None:
            lines.append(f"  decays grouped into at most {self.decays} per layer (--decays)")
        if self.layers:
            mem = "kernel/neuron/bias" if c.family == "speck" else (
                "weights" if c.family == "xylo" else "syn bytes/core")
            wl = max(len("layer"), *(len(lf.layer) for lf in self.layers)) + 2
            ws = max(len("synapse"), *(len(lf.synapse) for lf in self.layers)) + 2
            where = "ids" if c.family == "xylo" else "cores"
            wc = 14 if c.family == "xylo" else 6
            lines.append(f"  {'layer':<{wl}}{'synapse':<{ws}}{'kind':<7}{'neurons':>8}"
                         f"{'configs':>8}{where:>{wc}}  {mem:<20}bound by")
            for lf in self.layers:
                if c.family == "speck":
                    m = lf.memory
                    mtext = f"{m.get('kernel', 0)}/{m.get('neuron', 0)}/{m.get('bias', 0)}"
                    cores = ",".join(f"#{p['core']}" for p in lf.cores) or "-"
                elif c.family == "xylo":
                    mtext = str(lf.synapses)
                    cores = lf.cores[0]["ids"] if lf.cores else "-"
                else:
                    mtext = str(max((p["synapse_bytes"] for p in lf.cores), default=0))
                    cores = str(len(lf.cores))
                lines.append(f"  {lf.layer:<{wl}}{lf.synapse:<{ws}}{lf.kind:<7}{lf.neurons:>8}"
                             f"{lf.configs:>8}{cores:>{wc}}  {mtext:<20}{lf.bound_by or '-'}")
        if c.family == "loihi" and self.layers:
            lines.append(f"  cores {self.cores_used} ({c.limit('cores')} per chip), chips "
                         f"{self.chips_needed} ({self.chips_allowed} allowed); binding limit: "
                         f"{self.binding}")
        elif self.layers:
            lines.append(f"  cores {self.cores_used} of {c.limit('cores')}; binding limit: "
                         f"{self.binding}")
        for v in self.violations[0 if self.refused else 1:]:
            lines.append(f"  also: {v.text()}")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)

    def summary_row(self) -> dict:
        """One line of a --decays sweep."""
        return {"decays": "all" if self.decays is None else self.decays,
                "configs": max((lf.configs for lf in self.layers), default=0),
                "cores": self.cores_used, "chips": self.chips_needed,
                "binding": self.binding, "verdict": self.verdict}


# --- per-neuron quantities ---------------------------------------------------------------

def _valid_taps(size: int, k: int, stride: int, pad: int, out: int) -> np.ndarray:
    """[out, k]: 1 where output position o's tap u reads inside the input."""
    pos = np.arange(out)[:, None] * stride + np.arange(k)[None, :] - pad
    return ((pos >= 0) & (pos < size)).astype(np.int64)


def row_synapses(syn: Synapse) -> np.ndarray:
    """Nonzero weights feeding each output neuron of a synapse (flat C-major): the matrix's
    row counts, a conv's in-bounds nonzero taps computed without unrolling it."""
    if syn.node is None:
        return np.ones(int(np.prod(syn.in_shape)), np.int64)
    if not syn.is_conv:
        return np.count_nonzero(np.asarray(syn.node.weight), axis=1).astype(np.int64)
    node = syn.node
    _, h, w = syn.in_shape
    c_out, _, kh, kw = node.weight.shape
    oh = ir.conv_out(h, kh, node.stride[0], node.padding[0])
    ow = ir.conv_out(w, kw, node.stride[1], node.padding[1])
    nz = np.count_nonzero(np.asarray(node.weight), axis=1).astype(np.int64)  # [o, kh, kw]
    vy = _valid_taps(h, kh, node.stride[0], node.padding[0], oh)
    vx = _valid_taps(w, kw, node.stride[1], node.padding[1], ow)
    return np.einsum("yu,xv,ouv->oyx", vy, vx, nz).reshape(-1)


def channel_synapses(syn: Synapse) -> np.ndarray:
    """A spatial synapse's stored kernel per output channel (nonzero weights): the kernel is
    shared by every position of the channel."""
    w = np.asarray(syn.conv_node.weight)
    return np.count_nonzero(w.reshape(w.shape[0], -1), axis=1).astype(np.int64)


def _levels(value, core_shape, bits: int | None) -> np.ndarray:
    """A decay per neuron quantised as the chip holds it (bits: 2^bits steps; None: exact)."""
    v = np.broadcast_to(np.asarray(value, np.float64), core_shape).reshape(-1)
    if bits is None:
        return np.unique(v, return_inverse=True)[1]
    return np.clip(np.rint((1 << bits) * (1 - v)), 0, (1 << bits) - 1).astype(np.int64)


def configurations(core: Core, decay_bits: int | None) -> np.ndarray:
    """Each neuron's configuration id (decay and current decay, as the chip quantises them)."""
    dv = _levels(core.neuron.decay, core.shape, decay_bits)
    cd = core.neuron.current_decay
    du = np.zeros_like(dv) if cd is None else _levels(cd, core.shape, decay_bits)
    return dv * (int(du.max()) + 1) + du


# --- Loihi: neurocores --------------------------------------------------------------------

@dataclass
class _Layer:
    name: str
    synapse: str
    kind: str
    n: int
    configs: np.ndarray  # per neuron
    per_neuron: np.ndarray | None  # synapses per neuron (dense storage), or
    channel: np.ndarray | None = None  # per neuron: its channel (spatial storage)
    kernel: np.ndarray | None = None  # per channel: synapses of its kernel


def _loihi_layers(cg: CoreGraph, chip: Chip) -> list[_Layer]:
    bits = chip.limit("decay_bits")
    out = []
    for c in cg.cores:
        if isinstance(c, Core):
            syn = "+".join(s.name for s in c.synapses)
            kind = "conv" if c.spatial else "dense"
            cfg = configurations(c, bits)
            if c.host:
                out.append(_Layer(c.name, syn + " (host)", kind, c.n, cfg,
                                  np.zeros(c.n, np.int64)))
            elif c.spatial:
                hw = c.n // c.shape[0]
                kernel = sum(channel_synapses(s) for s in c.synapses)
                out.append(_Layer(c.name, syn, kind, c.n, cfg, None,
                                  np.repeat(np.arange(c.shape[0]), hw), kernel))
            else:
                out.append(_Layer(c.name, syn, kind, c.n, cfg,
                                  sum(row_synapses(s) for s in c.synapses)))
        elif isinstance(c, PoolCore):  # memoryless neurons behind a sum-pool of ones
            taps = int(np.prod(c.node.kernel))
            cfg = np.zeros(c.n, np.int64)
            if c.spatial:
                hw = c.n // c.shape[0]
                out.append(_Layer(c.name, c.name, "pool", c.n, cfg, None,
                                  np.repeat(np.arange(c.shape[0]), hw),
                                  np.full(c.shape[0], taps, np.int64)))
            else:
                out.append(_Layer(c.name, c.name, "pool", c.n, cfg,
                                  np.full(c.n, taps, np.int64)))
        elif isinstance(c, SpikeMerge):  # one relay neuron per element, fed by a and b
            out.append(_Layer(c.name, "+".join(c.inputs), "merge", c.n,
                              np.zeros(c.n, np.int64), np.full(c.n, 2, np.int64)))
    return out


def _place(layer: _Layer, cap: int, mem: int, n_cfg: int, wbytes: float):
    """Greedy placement of one layer: (cores [{neurons, configs, synapse_bytes}], the
    Violation when one neuron / one channel's kernel exceeds a core's memory)."""
    spatial = layer.channel is not None
    second = layer.channel if spatial else np.arange(layer.n)
    order = np.lexsort((second, layer.configs))
    cfg_sorted = layer.configs[order]
    key = cfg_sorted * (layer.n + 1) + (layer.channel[order] if spatial else 0)
    bounds = np.flatnonzero(np.diff(key)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [layer.n]])
    cost = None if spatial else layer.per_neuron[order] * wbytes
    cores: list[dict] = []
    cur: dict | None = None

    def new():
        return {"neurons": 0, "configs": set(), "bytes": 0.0, "channels": set()}

    for s, e in zip(starts, ends, strict=True):
        cfg = int(cfg_sorted[s])
        ch = int(layer.channel[order[s]]) if spatial else None
        i = s
        while i < e:
            if cur is None or (cfg not in cur["configs"] and len(cur["configs"]) >= n_cfg):
                cur = new()
                cores.append(cur)
            room = cap - cur["neurons"]
            if spatial:
                extra = 0 if ch in cur["channels"] else layer.kernel[ch] * wbytes
                k = int(min(room, e - i)) if cur["bytes"] + extra <= mem else 0
            else:
                used = np.cumsum(cost[i:e])
                extra = 0
                k = min(room, int(np.searchsorted(used, mem - cur["bytes"], side="right")))
            if k == 0:
                if cur["neurons"] == 0:
                    need = int(math.ceil(layer.kernel[ch] * wbytes if spatial else cost[i]))
                    what = "one channel's kernel" if spatial else "one neuron's synapses"
                    return cores[:-1], Violation(
                        layer.name, f"synapse memory per core ({what})", need, int(mem),
                        "prune or shrink its input (fewer input channels / features), or "
                        "split the layer into narrower ones")
                cur = new()
                cores.append(cur)
                continue
            cur["neurons"] += k
            cur["configs"].add(cfg)
            if spatial:
                cur["bytes"] += extra
                cur["channels"].add(ch)
            else:
                cur["bytes"] += float(used[k - 1])
            i += k
    return cores, None


def _fit_loihi(cg: CoreGraph | None, chip: Chip, report: FitReport,
               layers: list[_Layer] | None = None) -> None:
    cap = chip.limit("neurons_per_core")
    mem = chip.limit("synapse_bytes_per_core")
    n_cfg = chip.limit("neuron_configs_per_core")
    per_chip = chip.limit("cores")
    wbytes = chip.limit("weight_bits") / 8
    index = 0
    bound_cores = {"neurons": 0, "synapse memory": 0, "neuron configurations": 0}
    for layer in _loihi_layers(cg, chip) if layers is None else layers:
        cores, violation = _place(layer, cap, mem, n_cfg, wbytes)
        configs = int(len(np.unique(layer.configs)))
        if violation is not None:
            report.violations.append(violation)
        if layer.channel is not None:
            total = float(sum(layer.kernel)) * wbytes
        else:
            total = float(layer.per_neuron.sum()) * wbytes
        by = {"neurons": math.ceil(layer.n / cap), "synapse memory": math.ceil(total / mem),
              "neuron configurations": math.ceil(configs / n_cfg)}
        bound = max(by, key=by.get) if len(cores) > 1 else ""
        if bound:
            bound_cores[bound] += len(cores)
        placed = []
        for c in cores:
            placed.append({"core": index, "chip": index // per_chip, "neurons": c["neurons"],
                           "configs": len(c["configs"]),
                           "synapse_bytes": int(math.ceil(c["bytes"]))})
            index += 1
        synapses = int(sum(layer.kernel[sorted(c["channels"])].sum() for c in cores)
                       if layer.channel is not None else layer.per_neuron.sum())
        report.layers.append(LayerFit(layer.name, layer.synapse, layer.kind, layer.n, configs,
                                      synapses, placed, bound))
    report.cores_used = index
    report.chips_needed = max(1, math.ceil(index / per_chip))
    worst = max(bound_cores, key=bound_cores.get)
    report.binding = (f"{worst} ({bound_cores[worst]} cores in layers it cuts)"
                      if bound_cores[worst] else "none (every layer fits one core)")
    allowed = per_chip * report.chips_allowed
    if index > allowed and not report.violations:
        where = next(lf.layer for lf in report.layers if lf.cores[-1]["core"] >= allowed)
        fix = (f"place it on {report.chips_needed} chips (--chips {report.chips_needed})")
        if bound_cores["neuron configurations"] and report.decays is None:
            fix += f", or group per-neuron decays (--decays {n_cfg})"
        report.violations.append(Violation(where, f"cores ({per_chip} per chip x "
                                           f"{report.chips_allowed})", index, allowed, fix))
    report.notes.append("per-core budgets are estimates (targets/chips/loihi2.toml: Intel "
                        "publishes chip totals; the partitioner is closed source)")


# --- Xylo: one core of hidden and output neurons ------------------------------------------

def _fit_xylo(cg: CoreGraph, chip: Chip, report: FitReport) -> None:
    kinds = "Xylo takes dense feed-forward and recurrent layers only"
    for c in cg.cores:
        if isinstance(c, PoolCore):
            report.refused = f"{c.name} is a pool ({type(c.node).__name__}); {kinds}"
        elif isinstance(c, SpikeMerge):
            report.refused = f"{c.name} is a residual merge ({c.KINDS[c.op]}); {kinds}"
        elif len(c.synapses) > 1:
            report.refused = f"{c.merge} is a residual merge (an Add of currents); {kinds}"
        elif c.synapses[0].is_conv or len(c.synapses[0].in_shape) == 3:
            report.refused = f"{c.synapses[0].name} is a Conv2d; {kinds}"
        if report.refused:
            return
    layers: list[Core] = cg.neuron_cores
    if len(layers) < 2:
        report.refused = (f"{layers[0].name} is its only neuron layer; Xylo needs hidden "
                          "neurons and an output layer")
        return
    hidden, output = layers[:-1], layers[-1]
    n_hidden = sum(c.n for c in hidden)
    first = hidden[0].synapses[0]
    n_in = int(np.prod(first.in_shape))
    checks = [  # (limit key, layer, need, fix)
        ("inputs", first.name, n_in, f"feed it at most {chip.limit('inputs')} input channels "
         "(e.g. a 16-band filter bank, as Xylo Audio's front end gives)"),
        ("hidden_neurons", _crossing(hidden, chip.limit("hidden_neurons")), n_hidden,
         f"{n_hidden - (chip.limit('hidden_neurons') or 0)} fewer hidden neurons"),
        ("input_expansion_neurons", hidden[0].name, hidden[0].n,
         "fewer neurons in the first layer"),
        ("output_expansion_neurons", hidden[-1].name, hidden[-1].n,
         "fewer neurons in the layer before the output"),
        ("outputs", output.name, output.n, "fewer output neurons (e.g. a population of 1 "
         "per class)"),
    ]
    for key, layer, need, fix in checks:
        lim = chip.limit(key)
        if lim is not None and need > lim:
            report.violations.append(Violation(layer, key.replace("_", " "), need, lim, fix))
    start = 0
    for c in layers:
        syn = c.synapses[0]
        dash = np.unique(np.rint(-np.log2(np.clip(1 - np.broadcast_to(
            np.asarray(c.neuron.decay, np.float64), c.shape).reshape(-1), 1e-12, 1))))
        if c is output:
            ids = f"out 0-{c.n - 1}"
        else:
            ids = f"hid {start}-{start + c.n - 1}"
            start += c.n
        report.layers.append(LayerFit(
            c.name, syn.name, "dense", c.n, int(len(dash)), int(row_synapses(syn).sum()),
            [{"core": 0, "ids": ids, "matrix": "input" if c is layers[0] else
              "output" if c is output else "recurrent"}],
            memory={"weights": int(row_synapses(syn).sum())}))
    report.cores_used = 1
    report.binding = (f"hidden neurons ({n_hidden} of {chip.limit('hidden_neurons')})")
    report.notes.append("neuron parameters are per neuron on Xylo: per-neuron tau costs no "
                        "configurations (configs: distinct bit-shift decays, round(log2 tau))")
    report.notes.append("Xylo resets by subtraction and takes input as spike events per channel")


def _crossing(cores: list, limit: int | None) -> str:
    """The layer at which the running neuron count passes `limit` (the last one otherwise)."""
    total = 0
    for c in cores:
        total += c.n
        if limit is not None and total > limit:
            return c.name
    return cores[-1].name


# --- Speck: one layer per convolutional core ---------------------------------------------

def _log2up(x: int) -> int:
    return int(math.ceil(math.log2(x))) if x > 1 else 0


def speck_memory(f: int, c: int, kh: int, kw: int, fy: int, fx: int, bias: bool) -> dict:
    """sinabs' DynapcnnLayer.memory_summary: kernel c 2^(ceil log2(kh kw) + ceil log2 f),
    neuron f 2^(ceil log2 fy + ceil log2 fx), bias f (when the layer has one)."""
    return {"kernel": c * 2 ** (_log2up(kh * kw) + _log2up(f)),
            "neuron": f * 2 ** (_log2up(fy) + _log2up(fx)), "bias": f if bias else 0}


def _map_shape(graph, name: str) -> tuple:
    """The (C, H, W) a flat synapse input comes from: through Flattens (a pool there pools on
    the way out of the layer before: its output map)."""
    shapes = graph.shapes()
    while isinstance(graph.nodes[name], ir.Flatten):
        (name,) = graph.inputs(name)
    shape = tuple(shapes[name])
    return shape if len(shape) == 3 else (int(np.prod(shape)), 1, 1)


def _fit_speck(cg: CoreGraph, chip: Chip, report: FitReport, graph) -> None:
    kinds = "Speck takes chains of conv (or dense) layers of integrate-and-fire neurons"
    layers = []
    for c in cg.cores:
        if isinstance(c, SpikeMerge):
            report.refused = f"{c.name} is a residual merge ({c.KINDS[c.op]}); {kinds}"
            return
        if isinstance(c, PoolCore):
            continue  # pooled on the way out of the layer before
        if len(c.synapses) > 1:
            report.refused = f"{c.merge} is a residual merge (an Add of currents); {kinds}"
            return
        layers.append(c)
    for c in layers:
        decay = np.asarray(c.neuron.decay, np.float64)
        if np.any(decay != 1) or c.neuron.current_decay is not None:
            what = (f"its neurons leak (decay {float(decay.min()):.4g})" if np.any(decay != 1)
                    else "its neurons carry a synaptic current")
            report.refused = (f"{c.name}: {what}; Speck's neurons integrate and fire without "
                              "leak (train with IF neurons, tau = infinity)")
            break
    kmem, nmem, bmem = (chip.limit(k) for k in ("kernel_memory_per_core",
                                               "neuron_memory_per_core",
                                               "bias_memory_per_core"))
    needs = []
    for c in layers:
        syn = c.synapses[0]
        if syn.is_conv:
            f, cin, kh, kw = syn.node.weight.shape
            if kh != kw:
                report.refused = f"{syn.name}: a {kh}x{kw} kernel; Speck takes square kernels"
                return
        else:  # a dense layer: a conv whose kernel covers the whole input map (sinabs)
            cin, kh, kw = _map_shape(graph, syn.source)
            f = syn.node.weight.shape[0]
        shape = c.shape if len(c.shape) == 3 else (c.n, 1, 1)
        m = speck_memory(int(f), int(cin), int(kh), int(kw), int(shape[1]), int(shape[2]),
                         syn.node.bias is not None)
        needs.append(m)
        report.layers.append(LayerFit(c.name, syn.name, "conv" if syn.is_conv else "dense",
                                      c.n, 1, int(row_synapses(syn).sum()), memory=m))
    fan = {}
    for c in layers:
        for s in c.synapses:
            fan[s.origin] = fan.get(s.origin, 0) + 1
    budgets = list(zip(kmem, nmem, bmem, strict=True))
    fits = [[j for j, (k, n, b) in enumerate(budgets)
             if m["kernel"] <= k and m["neuron"] <= n and m["bias"] <= b] for m in needs]
    for lf, m, ok in zip(report.layers, needs, fits, strict=True):
        if not ok:
            key, biggest = next((key, max(lim)) for key, lim in
                                (("kernel", kmem), ("neuron", nmem), ("bias", bmem))
                                if m[key] > max(lim))
            report.violations.append(Violation(
                lf.layer, f"{key} memory (the largest core's)", m[key], biggest,
                "fewer channels (kernel memory grows with c * 2^ceil(log2 f)), or a smaller "
                "map (neuron memory: f * 2^(ceil log2 h + ceil log2 w))"))
    if len(layers) > len(budgets):
        report.violations.append(Violation(layers[len(budgets)].name, "cores (one layer "
                                           "each)", len(layers), len(budgets),
                                           "fewer layers"))
    for name, n in fan.items():
        if chip.limit("fan_out") is not None and n > chip.limit("fan_out"):
            report.violations.append(Violation(name, "fan-out (destination layers)", n,
                                               chip.limit("fan_out"), "fewer branches"))
    assignment = _match(fits) if not report.violations else {}
    if not report.violations and len(assignment) < len(layers):
        lost = next(i for i in range(len(layers)) if i not in assignment)
        report.violations.append(Violation(report.layers[lost].layer, "cores (no assignment "
                                           "of layers to cores fits every layer)",
                                           len(layers), len(assignment), "smaller layers"))
    for i, lf in enumerate(report.layers):
        if i in assignment:
            lf.cores = [{"core": assignment[i], **needs[i]}]
    report.cores_used = len(layers)
    report.binding = f"cores: one layer a core ({len(layers)} layers, {len(budgets)} cores)"
    report.notes.append("the first layer takes the input as events on the chip (DVS or host)")
    if any(isinstance(c, PoolCore) for c in cg.cores):
        report.notes.append("pools run on the way out of the layer before (Speck sums the "
                            "events a window receives; snnexport's OR-pool passes one)")


def _match(fits: list[list[int]]) -> dict[int, int]:
    """A maximum bipartite matching of layers to the cores each fits (augmenting paths)."""
    core_of: dict[int, int] = {}  # core -> layer

    def augment(i, seen):
        for j in fits[i]:
            if j not in seen:
                seen.add(j)
                if j not in core_of or augment(core_of[j], seen):
                    core_of[j] = i
                    return True
        return False

    for i in range(len(fits)):
        augment(i, set())
    return {i: j for j, i in core_of.items()}


# --- entry point --------------------------------------------------------------------------

def as_hard_reset(folded):
    """The folded IR with every soft reset taken as a hard one (a copy where one changes): the
    form the hardware lowering takes (hw.cores), for chips that reset by subtraction (their
    placement and their quantiser read the reset from the original)."""
    import copy

    soft = {n: node for n, node in folded.ordered()
            if isinstance(node, ir.Neuron) and node.reset != "hard"}
    if not soft:
        return folded
    changed = {n: copy.copy(node) for n, node in soft.items()}
    for node in changed.values():
        node.reset, node.reset_by = "hard", None
    return folded.with_nodes(changed)


def fit_graph(folded, chip, decays: int | None = None, chips: int = 1) -> FitReport:
    """Place the folded IR `folded` on `chip` (a name, a path or a Chip); `decays` K groups each
    layer's per-neuron decays into at most K values first (passes/group_decays.py, as check
    --decays does); `chips` the number of chips there are (Loihi: more needed is a broken
    limit). A network that does not fit is a report, not an exception."""
    from ..passes.group_decays import group_decays

    chip = chip if isinstance(chip, Chip) else load_chip(chip)
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise UsageError(f"--chips {chips!r}: give the number of chips, a whole number >= 1")
    report = FitReport(chip, [], decays, chips)
    if decays is not None:
        folded, _ = group_decays(folded, decays)
    # Xylo resets by subtraction; Speck either: fit only counts
    graph = folded if chip.family == "loihi" else as_hard_reset(folded)
    try:
        cg = lower(graph)
    except HardwareLoweringError as e:
        report.refused = str(e)
        return report
    if chip.family == "loihi":
        _fit_loihi(cg, chip, report)
    elif chip.family == "xylo":
        _fit_xylo(cg, chip, report)
    else:
        _fit_speck(cg, chip, report, graph)
    return report


def fit_fixed(net, chip, chips: int = 1) -> FitReport:
    """Place a fixed-point net with no graph behind it (a netx file: quant.netx_import, its
    FixedLayers) on a Loihi chip, as `fit_graph` places a folded one: one layer per block, its
    neuron configurations the distinct (vDecay, iDecay) pairs, its synapses the nonzero weights
    (per neuron for a dense block, per channel's kernel for a conv; netx's Input block has
    none: its a_in comes from outside). Another chip family: refused in the report."""
    chip = chip if isinstance(chip, Chip) else load_chip(chip)
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise UsageError(f"--chips {chips!r}: give the number of chips, a whole number >= 1")
    report = FitReport(chip, [], None, chips)
    if chip.family != "loihi":
        report.refused = (f"{net.netx_file}: a netx file is Loihi's fixed-point net; it is "
                          f"placed on a Loihi chip, not on {chip.name}")
        return report
    layers = []
    for lay in net.layers:
        du = np.broadcast_to(4096 if lay.i_decay is None else lay.i_decay, lay.shape)
        pairs = np.stack([np.broadcast_to(lay.dv, lay.shape).ravel(), du.ravel()], 1)
        cfg = np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)
        w = np.asarray(lay.weight)
        if lay.kind == "conv":
            kernel = np.count_nonzero(w.reshape(w.shape[0], -1), axis=1).astype(np.int64)
            layers.append(_Layer(lay.name, lay.name, "conv", lay.n, cfg, None,
                                 np.repeat(np.arange(lay.shape[0]), lay.n // lay.shape[0]),
                                 kernel))
        elif lay.kind == "dense":
            layers.append(_Layer(lay.name, lay.name, "dense", lay.n, cfg,
                                 np.count_nonzero(w, axis=1).astype(np.int64)))
        else:  # the Input block (or a host layer): no synapse on the chip
            layers.append(_Layer(lay.name, f"{lay.name} ({lay.kind})", "dense", lay.n, cfg,
                                 np.zeros(lay.n, np.int64)))
    _fit_loihi(None, chip, report, layers)
    return report


__all__ = ["Chip", "ChipError", "FitReport", "LayerFit", "Violation", "as_hard_reset",
           "chips_available", "fit_fixed", "fit_graph", "load_chip", "row_synapses",
           "speck_memory", "targets_dir"]
