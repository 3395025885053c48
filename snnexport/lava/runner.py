"""Runs a network in Lava's CPU simulator. Executed by the Lava environment's Python 3.10:

    python -m snnexport.lava.runner float MODEL.snnir INPUTS.npz OUT.npz
    python -m snnexport.lava.runner fixed MODEL.fixed.npz INPUTS.npz OUT.npz
    python -m snnexport.lava.runner netx MODEL.net INPUTS.npz OUT.npz
    python -m snnexport.lava.runner netx-file MODEL.net INPUTS.npz OUT.npz

float: the folded IR as Lava LIF + Dense/Conv processes in `floating_pt`, INPUTS x [N, *input]
static images or [N, T, *input] frames, and input_shape (the first synapse is computed here on
the host). fixed / netx: the fixed-point IR as LIF + Dense/Conv processes, or the netx HDF5 as
lava-dl builds it, in `fixed_pt`; INPUTS bias0 [N, n_1] or [N, T, n_1] holds the host layer's
current mantissas (computed by the core, so that the host arithmetic is the emulator's). With
frames the first layer's bias is set before every step. OUT: for every
layer `spikes:<name>` [T, N, n] (spiking) or `v:<name>` [T, N, n], aligned to the reference time
axis, in the IR's C-major order.

Method (checked against Lava itself, see tests/test_lava.py):
* the first synapse runs on the host: its current is constant for a static image and becomes
  the first LIF layer's bias, so that layer needs no hop;
* each later synapse is a Lava Dense/Conv and delays its output by one step: layer k, behind k
  hops, answers at Lava step t + k (+1 for netx, below) for reference step t;
* constant biases and the IMP would act during those k waiting steps: every LIF behind hops
  starts at step k with v = v_init (set right before that step; in the process paths its bias
  is also 0 until then). u needs no care: du = 1 (float) / 4095
  (fixed) keeps no current, so u at step k is the input of step k - 1 alone;
* the samples run back to back in one Lava run (class Schedule): layer k starts sample s at
  step s T + k with its v set to v_init, while the layers behind it still finish sample s - 1;
  the network is built once and the hop steps are paid once, not per sample;
* netx builds its processes from the file, with the biases in it and no way to give the input
  layer a per-sample bias before the runtime exists: one warm-up step runs first (everything
  at rest), then the input bias and every v are set; netx layers start one step later;
* every such value is written inside the runtime by a VarWriter (lava/var_writer.py: Lava's
  `Var.set` sends one element per message), and the spikes come out through Extractors
  (`SpikeTap`), so the whole run is one run call unless a non-spiking layer's v is read
  between steps (`_run_steps`);
* float: Lava fires on v > vth, the IR on H >= threshold: vth = nextafter(threshold, -inf);
* a residual graph (lowering.lower_residual: merges, delays) runs the same way (`run_graph`),
  each stage starting and aligned at its hop depth instead of its index;
* a conv on a small map runs as Lava's Sparse of its unrolled matrix, not Lava's Conv, whose
  CPU model costs ~13 us per channel pair per step whatever the map (`proc_synapse`,
  lowering.unrolled); what would pass the runner's time limit or the memory is refused in the
  core before Lava starts (target.refuse_too_large, lowering.lava_cost).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..hw.layout import to_chw, whc
from ..ir.neurons import KINDS, LIF, kind_of

STEPPING: list[tuple[int, float]] = []  # (Lava steps, seconds) of the run loop


class SpikeTap:
    """A layer's output out of the Lava runtime, one message per step: an Extractor
    (lava.proc.io.extractor) on the port, its channel buffering every step of the run. Not a
    RingBuffer sink read with `data.get()`: Lava 0.10 sends a Var to the host one element per
    message ("FIXME: send a whole vector", PyLoihiProcessModel._get_var), which took 24.7 of the
    30 s of a lava-fixed run of 2 MNIST-5k samples (21 steps, 26,000 neurons in layer 1)."""

    def __init__(self, port, steps: int):
        from lava.proc.io.extractor import Extractor

        self.shape, self.steps = tuple(port.shape), steps
        self.extractor = Extractor(shape=self.shape, buffer_size=steps)
        port.connect(self.extractor.in_port)

    def data(self) -> np.ndarray:
        """Every step's values, [*shape, steps] (a RingBuffer's data layout)."""
        return np.stack([self.extractor.receive() for _ in range(self.steps)], -1)


def run_cfg(tag: str):
    """Loihi2SimCfg selecting `tag` ('floating_pt' / 'fixed_pt'), with the models of the
    runners' own helpers named: the Extractor's (SpikeTap; it has no tag) and the VarWriter's."""
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel

    from .var_writer import MODELS, VarWriter

    return Loihi2SimCfg(select_tag=tag, exception_proc_model_map={
        Extractor: PyLoihiExtractorModel, VarWriter: MODELS[tag]})


def _run_steps(proc, cfg, steps: int, every_step: bool, host_sets=None):
    """Runs the network of `proc` for `steps` Lava steps: when `every_step` (a Var read between
    steps), one step per run call, yielding each step g after it ran, with host_sets[g]
    ([(Var, value)]) set through the runtime before it; else in one run call (nothing set or
    read from the host in between: the VarWriters set inside the runtime), yielding nothing.
    A layer whose v is read must have its v_init set from the host: a VarWriter writes in the
    post-management of the step before, which a read after that step would see."""
    from lava.magma.core.run_conditions import RunSteps

    if not every_step:
        proc.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        return
    for g in range(steps):
        for var, value in (host_sets or {}).get(g, ()):
            var.set(value)
        proc.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
        yield g


def _stage_writes(plan: Schedule, stages: list, first_bias: np.ndarray, helpers: bool) -> dict:
    """What the process paths write before Lava steps 1, 2, ... (step 0's values are built in:
    layer 0's first bias, every v_init), as {(stage, Var name): [(step, value)]}: each sample's
    host bias on stage 0; at every stage's start of a sample its v_init, and at its first its
    own bias (0 before). `helpers`: the unnamed stages (pool / merge / relay neurons) too."""
    writes = defaultdict(list)
    for g in range(1, plan.steps):
        bias = plan.host_bias(first_bias, g)
        if bias is not None:
            writes[0, "bias_mant"].append((g, stages[0].lava(bias)))
        for k in plan.starting(g):
            if not helpers and not stages[k].name:
                continue
            if g == plan.depths[k]:  # a layer's own bias starts with its first sample
                writes[k, "bias_mant"].append((g, stages[k].lava(stages[k].bias)))
            writes[k, "v"].append((g, stages[k].lava(stages[k].v_init)))
            if stages[k].cuba:  # the last sample's current must not carry over
                zeros = np.zeros(stages[k].n, np.asarray(stages[k].v_init).dtype)
                writes[k, "u"].append((g, stages[k].lava(zeros)))
    return writes


def _host_sets(writes: dict, read: dict, var_of) -> dict:
    """The v writes of the layers whose v is read (`read`'s keys), taken out of `writes` and
    returned as {step: [(Var, value)]} for `_run_steps` to set from the host (`_run_steps`
    says why)."""
    out = defaultdict(list)
    for k in read:
        for g, value in writes.pop((k, "v"), ()):
            out[g].append((var_of(k), value))
    return out


@dataclass
class ProcStage:
    """What one Lava LIF (+ the Dense or Conv in front of it) needs. Per-neuron arrays are in
    the IR's C-major order; `chw` (the IR shape) marks a layer kept as a W x H x C map (for a
    Conv behind it or in front of it), None a flat one."""

    name: str  # '' for an OR-pool's helper neurons (not reported)
    n: int
    # dense [out, in] (an unrolled conv: a scipy CSR matrix, proc_synapse); None for the first
    # layer or a conv
    weights: np.ndarray | None
    lif: dict  # LIF parameters other than shape, bias_mant, v (per-neuron ones C-major)
    bias: np.ndarray  # set at the layer's first step
    v_init: np.ndarray
    spiking: bool
    chw: tuple | None = None
    conv: dict | None = None  # lava Conv arguments (weight in Lava's (out, W, H, in) layout)
    # residual graphs only (None in a chain): the synapses into this LIF, its hop depth
    links: list[ProcLink] | None = None
    depth: int = 0
    cuba: bool = False  # keeps a current u: set to 0 where it starts a sample, as v

    def lava(self, a):
        """A per-neuron C-major array in this layer's Lava layout."""
        a = np.asarray(a)
        if self.chw is None or a.ndim == 0:
            return a
        return whc(a.reshape(self.chw), self.chw)

    def ir_order(self, a):
        """This layer's Lava-layout values back to a flat C-major vector."""
        return to_chw(a, self.shape).reshape(-1)

    @property
    def shape(self):
        return tuple(reversed(self.chw)) if self.chw is not None else (self.n,)


@dataclass
class ProcLink:
    """A synapse of a residual graph into a ProcStage (lowering.Link as Lava builds it): from
    the spikes of stage `source` (an index), a Dense [out, in] on the flat C-major vectors
    (`weights`; a DelayDense when `delay` > 0; a Sparse when `weights` is a CSR matrix, an
    unrolled conv: proc_synapse), a Conv (`conv`, Lava's arguments; never
    delayed: lowering.time_links) or `unit` times the unit matrix (a relay's input: a Sparse,
    a DelaySparse when `delay` > 0)."""

    source: int
    weights: np.ndarray | None
    conv: dict | None
    delay: int
    unit: float | None = None


def float_stages(path: str):
    from ..ir.io import load_ir
    from .lowering import lower

    m1, b1, stages, _ = lower(load_ir(path))
    if stages and stages[0].links is not None:
        return residual_proc_stages(stages, fixed=False), (m1, b1, None)
    out = []
    forms = [(st.weights, None) if st.conv is None else proc_synapse(st.conv, np.float64)
             for st in stages]
    for k, st in enumerate(stages):
        (w, conv), nxt = forms[k], forms[k + 1] if k + 1 < len(stages) else (None, None)
        spatial = conv is not None or nxt[1] is not None
        vth = float(np.nextafter(st.threshold, -np.inf)) if st.spiking else 1e300
        # a current-based layer keeps u (its kind's du: 1 - current_decay); the host layer's
        # current is run on the host (`run`)
        kind = KINDS[st.neuron_kind]
        cuba = kind.has_current and k > 0
        du = np.reshape(kind.lava_du_float(st.current_decay), -1) if cuba else \
            LIF.lava_du_float(None)
        out.append(ProcStage(st.name, int(np.prod(st.shape)), w,
                             dict(du=du, dv=1.0 - st.decay, vth=vth), st.bias, st.v_init,
                             st.spiking, chw=tuple(st.shape) if spatial else None, conv=conv,
                             cuba=cuba))
    host_cd = None if not stages or stages[0].current_decay is None else \
        np.asarray(stages[0].current_decay, np.float64).reshape(-1)
    return out, (m1, b1, host_cd)


def proc_synapse(conv: dict, dtype) -> tuple:
    """(weights, conv) of a synapse given as a torch-layout conv (Synapse.conv_args' form): the
    C-major sparse matrix for Lava's Sparse where lowering.unrolled says so (a small map),
    else Lava's Conv arguments (`lava_conv_args`)."""
    from .lowering import conv_sparse, unrolled

    if unrolled(conv):
        return conv_sparse(conv, dtype), None
    return None, lava_conv_args(conv["weight"], conv["in_shape"], conv["stride"],
                                conv["padding"], conv["groups"])


def lava_conv_args(weight, in_chw, stride, padding, groups) -> dict:
    """A torch-layout cross-correlation kernel as Lava's Conv takes it: Lava convolves (flip
    the kernel) on W x H x C data with weights (out, W, H, in); stride/padding as (x, y)."""
    w = np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
    return dict(weight=np.ascontiguousarray(w), input_shape=tuple(reversed(in_chw)),
                stride=(stride[1], stride[0]), padding=(padding[1], padding[0]),
                groups=int(groups))


def fixed_stages(path: str):
    from ..quant.fixed import load_fixed

    net = load_fixed(path)
    if not net.is_chain:
        return residual_proc_stages(fixed_residual_stages(net), fixed=True), None
    out = []
    forms = []
    for k, layer in enumerate(net.layers):
        if layer.kind == "conv":
            # Lava's fixed Conv ignores weight_exp (lava #803): the fixed-point IR keeps it 0
            forms.append(proc_synapse(dict(
                weight=np.asarray(layer.weight, np.int64), in_shape=net.layers[k - 1].shape,
                stride=layer.stride, padding=layer.padding, groups=layer.groups), np.int64))
        else:
            forms.append((np.asarray(layer.weight, np.int64) if layer.kind == "dense" else None,
                          None))
    for k, layer in enumerate(net.layers):
        (w, conv), nxt = forms[k], forms[k + 1] if k + 1 < len(net.layers) else (None, None)
        spatial = conv is not None or nxt[1] is not None
        bias = np.zeros(layer.n, np.int64) if layer.bias_mant is None else np.asarray(
            layer.bias_mant, np.int64).reshape(-1)
        # a current-based layer keeps u: its kind's du, i_decay - 1 (Lava adds 1 back); the
        # host layer's current comes with its bias mantissas (computed by the core)
        kind = kind_of(layer)
        cuba = kind.has_current and layer.kind != "host"
        du = np.reshape(kind.lava_du_fixed(layer.i_decay), -1) if cuba else \
            LIF.lava_du_fixed(None)
        out.append(ProcStage("" if layer.pool else layer.name, layer.n, w,
                             dict(du=du, dv=np.asarray(layer.dv).reshape(-1),
                                  vth=int(layer.vth_mant), bias_exp=6),
                             bias, np.asarray(layer.v_init).reshape(-1), layer.spiking,
                             chw=tuple(layer.shape) if spatial else None, conv=conv,
                             cuba=cuba))
    return out, None


def fixed_residual_stages(net) -> list:
    """The fixed-point IR of a residual net as timed lowering.Stage's with links (the method
    and its timing: lowering.lower_residual). Fixed fields: `decay` holds dv, `threshold`
    vth_mant, `bias` bias_mant, integer weights. Raises what Lava cannot take (delays)."""
    from .lowering import Link, Stage, merge_stage, time_links

    stages, shapes, leaves = [], {}, {}
    merges = {m.name: m for m in net.merges}

    def sources(name: str) -> list[str]:
        """The stages whose spikes `name` is (a SEW ADD: its summands' leaves); AND / IAND
        merge stages are made when first taken."""
        m = merges.get(name)
        if m is None:
            return [name]
        if m.op == "add":
            if name not in leaves:
                leaves[name] = [s for i in m.inputs for s in sources(i)]
            return leaves[name]
        if name not in shapes:
            for i in m.inputs:
                sources(i)
            stages.append(merge_stage(name, m.op, list(m.inputs),
                                      [net.shape_of(i) for i in m.inputs], m.shape, True))
            shapes[name] = tuple(m.shape)
        return [name]

    prev = None
    for layer in net.layers:
        links = []
        if layer.kind != "host":
            for syn in (layer, *layer.synapses):
                src = (layer.source or prev) if syn is layer else syn.source
                in_shape = net.shape_of(src)
                w = np.asarray(syn.weight, np.int64)
                conv = dict(weight=w, in_shape=in_shape, stride=tuple(syn.stride),
                            padding=tuple(syn.padding), groups=int(syn.groups)) \
                    if syn.kind == "conv" else None
                links += [Link(s, None if conv else w, conv, in_shape) for s in sources(src)]
        n = layer.n
        bias = np.zeros(n, np.int64) if layer.bias_mant is None else np.asarray(
            layer.bias_mant, np.int64).reshape(-1)
        stages.append(Stage("" if layer.pool else layer.name, None, bias,
                            np.asarray(layer.dv, np.int64).reshape(-1), int(layer.vth_mant),
                            np.asarray(layer.v_init, np.int64).reshape(-1), layer.spiking,
                            tuple(layer.shape), links=links, key=layer.name))
        shapes[layer.name] = tuple(layer.shape)
        prev = layer.name
    return time_links(stages, fixed=True)


def residual_proc_stages(stages: list, fixed: bool) -> list[ProcStage]:
    """Timed lowering.Stage's of a residual graph (float from `lowering.lower`, fixed from
    `fixed_residual_stages`) as ProcStage's: every (C, H, W) stage a W x H x C map (a Dense
    reads and writes it through C-major reshapes), links by index."""
    index = {st.key: k for k, st in enumerate(stages)}
    out = []
    for st in stages:
        links = []
        for lk in st.links:
            dtype = np.int64 if fixed else np.float64
            w, conv = (None, None) if lk.conv is None else proc_synapse(lk.conv, dtype)
            if lk.weights is not None:
                w = np.asarray(lk.weights, dtype)
            links.append(ProcLink(index[lk.source], w, conv, int(lk.delay), lk.unit))
        if fixed:
            lif = dict(du=LIF.lava_du_fixed(None), dv=np.asarray(st.decay, np.int64),
                       vth=int(st.threshold),
                       bias_exp=6)
        else:
            vth = float(np.nextafter(st.threshold, -np.inf)) if st.spiking else 1e300
            lif = dict(du=LIF.lava_du_float(None), dv=1.0 - np.asarray(st.decay, np.float64),
                       vth=vth)
        dtype = np.int64 if fixed else np.float64
        out.append(ProcStage(st.name, int(np.prod(st.shape)), None, lif,
                             np.asarray(st.bias, dtype), np.asarray(st.v_init, dtype),
                             st.spiking, chw=tuple(st.shape) if len(st.shape) == 3 else None,
                             links=links, depth=int(st.depth)))
    return out


class Schedule:
    """The samples one after another in one Lava run, pipelined: sample s, step t reaches
    layer k at Lava step warm + s T + t + k. Layer k starts sample s at warm + s T + k, where its
    v is set to v_init; the Dense/Conv in front of it then already carries sample s's first
    spikes (it never needs a flush), and u holds no current across steps (du = 1 / 4095)."""

    def __init__(self, samples: int, t_steps: int, layers: int, warm: int = 0,
                 depths: list[int] | None = None):
        self.samples, self.t_steps, self.layers, self.warm = samples, t_steps, layers, warm
        # layer k's hop depth: k in a chain; a residual graph's stages their own (time_links)
        self.depths = list(range(layers)) if depths is None else list(depths)
        self.steps = warm + samples * t_steps + max(self.depths)

    def host_bias(self, first_bias: np.ndarray, g: int) -> np.ndarray | None:
        """The host current to set on layer 0 before Lava step g, or None when it keeps its
        value: first_bias [N, n] (static images: a new one per sample) or [N, T, n] (frames:
        a new one every step)."""
        i = g - self.warm
        if not 0 <= i < self.samples * self.t_steps:
            return None
        sample, t = divmod(i, self.t_steps)
        if first_bias.ndim == 3:
            return first_bias[sample][t]
        return first_bias[sample] if t == 0 else None

    def starting(self, g: int) -> list[int]:
        """The layers that start a sample at Lava step g."""
        i = g - self.warm
        return [k for k, d in enumerate(self.depths)
                if 0 <= i - d < self.samples * self.t_steps and (i - d) % self.t_steps == 0]

    def aligned(self, per_step: np.ndarray, k: int) -> np.ndarray:
        """Layer k's values [steps, n] as [T, samples, n] on the reference time axis."""
        lo = self.warm + self.depths[k]
        seq = per_step[lo:lo + self.samples * self.t_steps]
        return seq.reshape(self.samples, self.t_steps, -1).transpose(1, 0, 2)


def run_processes(stages: list[ProcStage], first_bias: np.ndarray, t_steps: int,
                  tag: str) -> dict:
    """All samples in one run of LIF + Dense/Conv processes (see Schedule); returns each
    layer's aligned outputs [T, N, n] (C-major). first_bias: the host currents [N, n] (static
    images) or [N, T, n] (frames)."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import issparse

    from .var_writer import writers  # (imports Lava)

    plan = Schedule(len(first_bias), t_steps, len(stages))
    lifs, sinks = [], []
    for k, st in enumerate(stages):
        first = k == 0
        zeros = np.zeros(st.shape, dtype=first_bias.dtype)
        params = {key: st.lava(v) if isinstance(v, np.ndarray) else v
                  for key, v in st.lif.items()}
        lif = LIF(shape=st.shape,
                  bias_mant=st.lava(plan.host_bias(first_bias, 0)) if first else zeros,
                  v=st.lava(st.v_init) if first else zeros, **params)
        if not first:
            prev = stages[k - 1]
            syn = Conv(**st.conv) if st.conv is not None else (
                Sparse(weights=st.weights) if issparse(st.weights) else Dense(weights=st.weights))
            if st.conv is None and prev.chw is not None:  # map -> vector, C-major
                lifs[-1].s_out.transpose([2, 1, 0]).flatten().connect(syn.s_in)
            else:
                lifs[-1].s_out.connect(syn.s_in)
            if st.conv is None and st.chw is not None:  # vector, C-major -> map
                syn.a_out.reshape(st.chw).transpose([2, 1, 0]).connect(lif.a_in)
            else:
                syn.a_out.connect(lif.a_in)
        sink = SpikeTap(lif.s_out, plan.steps) if st.spiking else None
        lifs.append(lif)
        sinks.append(sink)
    writes = _stage_writes(plan, stages, first_bias, helpers=True)
    v_trace = {k: np.zeros((plan.steps, st.n)) for k, st in enumerate(stages) if not st.spiking}
    host_sets = _host_sets(writes, v_trace, lambda k: lifs[k].v)
    writers(writes, dict(enumerate(lifs)))
    cfg = run_cfg(tag)
    start = time.perf_counter()
    try:
        for g in _run_steps(lifs[0], cfg, plan.steps, bool(v_trace), host_sets):
            for k in v_trace:
                v_trace[k][g] = stages[k].ir_order(lifs[k].v.get())
        out = {}
        for k, st in enumerate(stages):
            if not st.name:
                continue
            if st.spiking:
                data = sinks[k].data()  # [*lava shape, steps]
                per_step = np.stack([st.ir_order(data[..., g]) for g in range(plan.steps)])
            else:
                per_step = v_trace[k]
            out[st.name] = plan.aligned(per_step, k)
    finally:
        lifs[0].stop()
    STEPPING.append((plan.steps, time.perf_counter() - start))
    return out


def run_graph(stages: list[ProcStage], first_bias: np.ndarray, t_steps: int,
              tag: str) -> dict:
    """`run_processes` for a residual graph (lowering.lower_residual): each stage's LIF takes
    every link's Dense / Conv / DelayDense / Sparse / DelaySparse on its a_in (Lava adds them),
    and starts each sample at its own depth (Schedule). Stage 0 is the host layer. Pool, merge
    and relay helpers (no name) are memoryless: nothing is set on them."""
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import DelayDense, Dense
    from lava.proc.lif.process import LIF
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import identity, issparse

    from .var_writer import writers  # (imports Lava)

    plan = Schedule(len(first_bias), t_steps, len(stages), depths=[st.depth for st in stages])
    lifs, sinks = [], []
    for k, st in enumerate(stages):
        first = k == 0
        zeros = np.zeros(st.shape, dtype=first_bias.dtype)
        params = {key: st.lava(v) if isinstance(v, np.ndarray) else v
                  for key, v in st.lif.items()}
        lif = LIF(shape=st.shape,
                  bias_mant=st.lava(plan.host_bias(first_bias, 0)) if first else zeros,
                  v=st.lava(st.v_init) if first else zeros, **params)
        for lk in st.links:
            src = stages[lk.source]
            out = lifs[lk.source].s_out
            if lk.conv is not None:  # map -> map
                syn = Conv(**lk.conv)
                out.connect(syn.s_in)
                syn.a_out.connect(lif.a_in)
                continue
            if lk.unit is not None:  # a relay's input: unit * I, waiting lk.delay steps
                n = src.n
                unit = identity(n, dtype=first_bias.dtype, format="csr") * lk.unit
                syn = Sparse(weights=unit) if not lk.delay else DelaySparse(
                    weights=unit, delays=identity(n, dtype=int, format="csr") * lk.delay)
            elif issparse(lk.weights):  # an unrolled conv (proc_synapse), never delayed
                syn = Sparse(weights=lk.weights)
            else:
                syn = Dense(weights=lk.weights) if not lk.delay else DelayDense(
                    weights=lk.weights, delays=np.full(lk.weights.shape, lk.delay, dtype=int))
            (out.transpose([2, 1, 0]).flatten() if src.chw is not None else out).connect(
                syn.s_in)  # C-major
            a_out = syn.a_out
            (a_out.reshape(st.chw).transpose([2, 1, 0]) if st.chw is not None else a_out
             ).connect(lif.a_in)
        sink = SpikeTap(lif.s_out, plan.steps) if st.spiking and st.name else None
        lifs.append(lif)
        sinks.append(sink)
    writes = _stage_writes(plan, stages, first_bias, helpers=False)  # helpers: memoryless
    v_trace = {k: np.zeros((plan.steps, st.n)) for k, st in enumerate(stages)
               if not st.spiking and st.name}
    host_sets = _host_sets(writes, v_trace, lambda k: lifs[k].v)
    writers(writes, dict(enumerate(lifs)))
    cfg = run_cfg(tag)
    start = time.perf_counter()
    try:
        for g in _run_steps(lifs[0], cfg, plan.steps, bool(v_trace), host_sets):
            for k in v_trace:
                v_trace[k][g] = stages[k].ir_order(lifs[k].v.get())
        out = {}
        for k, st in enumerate(stages):
            if not st.name:
                continue
            if st.spiking:
                data = sinks[k].data()
                per_step = np.stack([st.ir_order(data[..., g]) for g in range(plan.steps)])
            else:
                per_step = v_trace[k]
            out[st.name] = plan.aligned(per_step, k)
    finally:
        lifs[0].stop()
    STEPPING.append((plan.steps, time.perf_counter() - start))
    return out


def run_netx(path: str, first_bias: np.ndarray, t_steps: int) -> dict:
    """All samples in one run of lava-dl's netx Network built from the HDF5 file (see
    Schedule; one warm-up step first). first_bias: [N, n] (static images) or [N, T, n]."""
    from lava.lib.dl.netx import hdf5

    from ..exporters.netx_export import read_netx_meta
    from .var_writer import writers  # (imports Lava)

    meta = read_netx_meta(path)
    net = hdf5.Network(net_config=path)
    if len(net.layers) != len(meta["layers"]):
        raise RuntimeError(f"{path}: netx built {len(net.layers)} layers, the file names "
                           f"{len(meta['layers'])}")
    plan = Schedule(len(first_bias), t_steps, len(net.layers), warm=1)
    import h5py

    with h5py.File(path, "r") as f:
        keys = sorted((k for k in f["layer"] if "neuron" in f["layer"][k]), key=int)
        v_inits = [f["layer"][k]["neuron"]["vInit"][()] for k in keys]
        # a layer that keeps a current (iDecay != 4096) starts each sample with u = 0 too
        keeps_u = [bool(np.any(f["layer"][k]["neuron"]["iDecay"][()] != 4096)) for k in keys]
    sinks = []
    for block, info in zip(net.layers, meta["layers"], strict=True):
        sinks.append(SpikeTap(block.neuron.s_out, plan.steps) if info["spiking"] else None)
    shapes = [tuple(info["shape"]) for info in meta["layers"]]
    writes = defaultdict(list)  # as in run_processes; step 0 is the warm-up, at rest
    for g in range(1, plan.steps):
        bias = plan.host_bias(first_bias, g)
        if bias is not None:
            writes["in", "bias_mant"].append((g, whc(bias.reshape(shapes[0]), shapes[0])))
        for k in plan.starting(g):
            writes[k, "v"].append((g, v_inits[k]))
            if keeps_u[k]:
                writes[k, "u"].append((g, np.zeros(np.shape(v_inits[k]), np.int64)))
    v_trace = {k: np.zeros((plan.steps, int(np.prod(s)))) for k, s in enumerate(shapes)
               if not meta["layers"][k]["spiking"]}
    host_sets = _host_sets(writes, v_trace, lambda k: net.layers[k].neuron.v)
    writers(writes, {"in": net.in_layer.neuron,
                     **{k: block.neuron for k, block in enumerate(net.layers)}})
    cfg = run_cfg("fixed_pt")
    start = time.perf_counter()
    try:
        for g in _run_steps(net, cfg, plan.steps, bool(v_trace), host_sets):
            for k in v_trace:
                v_trace[k][g] = to_chw(net.layers[k].neuron.v.get(), shapes[k]).reshape(-1)
        out = {}
        for k, info in enumerate(meta["layers"]):
            if info["pool"]:
                continue
            if info["spiking"]:
                data = sinks[k].data()  # [*WHC, steps]
                per_step = np.stack([to_chw(data[..., g], shapes[k]).reshape(-1)
                                     for g in range(plan.steps)])
            else:
                per_step = v_trace[k]
            out[info["name"]] = plan.aligned(per_step, k)
    finally:
        net.stop()
    STEPPING.append((plan.steps, time.perf_counter() - start))
    return out


def run(mode: str, model_path: str, inputs_path: str, out_path: str) -> None:
    # the model first: a bad model file is the error worth reporting
    stages, host = float_stages(model_path) if mode == "float" else (
        fixed_stages(model_path) if mode == "fixed" else (None, None))
    data = np.load(inputs_path)
    t_steps = int(data["time_steps"])
    if mode == "float":
        m1, b1, host_cd = host
        # x [N, *input] static images or [N, T, *input] frames: one current per step
        x = data["x"].astype(np.float64)
        lead = x.ndim - len(data["input_shape"])  # 1 for images, 2 for frames
        firsts = x.reshape(*x.shape[:lead], -1) @ m1.T + b1
        if host_cd is not None:  # a current-based host layer: J = cd J + I, per step
            if firsts.ndim == 2:
                firsts = np.repeat(firsts[:, None], t_steps, 1)
            carry = np.zeros_like(firsts[:, 0])
            for t in range(firsts.shape[1]):
                carry = host_cd * carry + firsts[:, t]
                firsts[:, t] = carry
    else:
        firsts = data["bias0"].astype(np.int64)
    if mode == "netx":
        results = run_netx(model_path, firsts, t_steps)
    else:
        residual = bool(stages) and stages[0].links is not None
        results = (run_graph if residual else run_processes)(
            stages, firsts, t_steps, "floating_pt" if mode == "float" else "fixed_pt")
    kinds = {}
    if mode == "netx":
        from ..exporters.netx_export import read_netx_meta

        kinds = {info["name"]: info["spiking"] for info in read_netx_meta(model_path)["layers"]}
    else:
        kinds = {st.name: st.spiking for st in stages if st.name}
    np.savez(out_path, stepping=np.array(STEPPING, np.float64).reshape(-1, 2),
             **{("spikes:" if kinds[name] else "v:") + name: seq
                for name, seq in results.items()})


# --- a lava-dl netx file as netx builds it (FixedNet.lava_timing) -----------------------------

def _chw_flat(a: np.ndarray) -> np.ndarray:
    """A netx block's W x H x C values (or a flat block's) as the IR's C-major flat vector."""
    return np.ascontiguousarray(to_chw(a, a.shape)).reshape(-1)


def run_netx_sample(path: str, x: np.ndarray, mode: str, shapes: list, record: bool,
                    num_layers: int | None = None, reset: tuple[int, int] = (0, 0)) -> dict:
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.source import RingBuffer as Source

    t_steps = x.shape[0]
    start = time.perf_counter()
    interval, offset = reset  # netx's periodic reset (LIFReset); interval 0: none
    net = hdf5.Network(net_config=path, num_layers=num_layers,
                       reset_interval=int(interval) or None, reset_offset=int(offset))
    if len(net.layers) != len(shapes):
        raise RuntimeError(f"{path}: netx built {len(net.layers)} blocks, snnexport read "
                           f"{len(shapes)}")
    in_shape = tuple(shapes[0]) if mode != "spikes" else None
    if mode == "spikes":
        lava_in = net.inp.shape
        chw = tuple(reversed(lava_in))
        data = np.stack([x[t].reshape(lava_in) if len(lava_in) == 1 else
                         whc(x[t].reshape(chw), chw) for t in range(t_steps)], -1)
        source = Source(data=data.astype(np.int32))
        source.s_out.connect(net.inp)
    elif mode == "a_in":
        data = np.stack([whc(x[t].reshape(in_shape), in_shape) for t in range(t_steps)], -1)
        source = Source(data=data.astype(np.int32))
        source.s_out.connect(net.in_layer.neuron.a_in)
    else:
        net.in_layer.neuron.bias_mant.init = whc(x[0].reshape(in_shape), in_shape).astype(np.int32)
    sinks = [SpikeTap(block.neuron.s_out, t_steps) for block in net.layers]
    cfg = run_cfg("fixed_pt")
    out = {}
    n = [int(np.prod(s)) for s in shapes]
    if record:
        for k in range(len(shapes)):
            out[f"u:{k}"] = np.zeros((t_steps, n[k]), np.int64)
            out[f"v:{k}"] = np.zeros((t_steps, n[k]), np.int64)
    try:
        stepping = time.perf_counter()
        if record or mode == "bias":
            for t in range(t_steps):
                if mode == "bias" and t > 0:
                    bias = whc(x[t].reshape(in_shape), in_shape)
                    net.in_layer.neuron.bias_mant.set(bias.astype(np.int32))
                net.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
                if record:
                    for k, block in enumerate(net.layers):
                        out[f"u:{k}"][t] = _chw_flat(block.neuron.u.get())
                        out[f"v:{k}"][t] = _chw_flat(block.neuron.v.get())
        else:
            net.run(condition=RunSteps(num_steps=t_steps), run_cfg=cfg)
        run_s = time.perf_counter() - stepping
        for k, sink in enumerate(sinks):
            d = sink.data()  # [*W x H x C, T]
            out[f"spikes:{k}"] = np.stack([_chw_flat(d[..., t]) for t in range(t_steps)])
    finally:
        net.stop()
    out["_seconds"] = time.perf_counter() - start
    out["_run_seconds"] = run_s
    return out


def run_netx_file(model_path: str, inputs_path: str, out_path: str) -> None:
    """netx-file: a lava-dl netx file as `netx.hdf5.Network` builds it, one sample at a time on
    a fresh network from rest (every layer, synapse buffer and delay line empty, as a lava-dl
    user's run does), every layer from step 0. INPUTS: `x` [N, T, n_in] int (C-major), `mode`
    'a_in' (a RingBuffer into the Input block's neuron a_in: netx leaves the block's port
    unwired, lava-dl #298), 'bias' (the Input block's bias mantissa set before every step) or
    'spikes' (a RingBuffer into `net.inp`, the first synapse); `shapes` every block's C x H x W;
    `num_layers` netx's (0: all); `reset` [reset_interval (0: none), reset_offset];
    `record_state` 1 to read u and v of every block after every step. OUT: `spikes:<k>`,
    `u:<k>`, `v:<k>` [T, N, n] C-major per block k; `seconds`, `run_seconds` [N] per sample."""
    data = np.load(inputs_path)
    x = data["x"].astype(np.int64)  # [N, T, n_in]
    mode = str(data["mode"])
    shapes = [tuple(int(v) for v in s[s > 0]) for s in data["shapes"]]
    record = bool(int(data["record_state"]))
    num_layers = int(data["num_layers"]) or None
    reset = tuple(int(v) for v in data["reset"]) if "reset" in data else (0, 0)
    per: dict[str, list] = {}
    for i in range(len(x)):
        for key, value in run_netx_sample(model_path, x[i], mode, shapes, record, num_layers,
                                          reset).items():
            per.setdefault(key, []).append(value)
    result = {k: np.stack(v, 1) for k, v in per.items() if not k.startswith("_")}
    result["seconds"] = np.array(per["_seconds"], np.float64)
    result["run_seconds"] = np.array(per["_run_seconds"], np.float64)
    np.savez(out_path, **result)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("float", "fixed", "netx", "netx-file"):
        sys.exit("usage: python -m snnexport.lava.runner float|fixed|netx|netx-file MODEL "
                 "INPUTS OUT")
    if sys.argv[1] == "netx-file":
        run_netx_file(*sys.argv[2:5])
    else:
        run(*sys.argv[1:5])
