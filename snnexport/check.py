"""Load a model (checkpoint or IR file), fold it once, and run a parity check against a target:
get the target's backend (snnexport.backends), run it, compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .backends import Backend, Lowered
from .backends import get as get_backend
from .data import load_dataset
from .data.user import data_for, given_inputs
from .errors import SnnexportError, UsageError
from .importers.source import (  # noqa: F401 (the front door; these names stay here too)
    FACTORY,
    FRAMEWORKS,
    HDF5_MAGIC,
    LoadedModel,
    _read_hdf5_model,
    _tensors_sha256,
    from_norse,
    from_snntorch,
    from_spikingjelly,
    is_factory,
    load_factory,
    load_model,
    load_module,
    load_source,
    load_weights,
    read_state_dict,
)
from .ir import nodes as ir
from .ir.graph import Graph
from .parity import TOL, ParityReport, compare
from .quant import QuantError
from .sim.limits import count, ensure_fits, first, fit_input, run_bytes, time_steps_of
from .sim.reference import SimResult, simulate

# "far below": the reference scores more than FAR_BELOW under the accuracy its checkpoint
# recorded, and by more than 3 binomial standard errors of that accuracy on the samples checked
# (so that 1 miss in 2 samples of a 90 % model is not called a mismatch of the data)
FAR_BELOW = 0.10


def data_verdict(loaded: LoadedModel, accuracy: float, samples: int, what: str,
                 expect: float | None = None) -> dict | None:
    """Whether the data match the model, from the reference's accuracy on `samples` of `what`
    (e.g. "the digits test split"): None when nothing is wrong, else a dict with `message`
    (one line), `far_below_recorded` and `below_expected` (the user's `expect`, a fraction:
    check exits 1). `recorded`: the test accuracy the checkpoint's meta holds."""
    meta = loaded.meta or {}
    recorded = meta.get("test_accuracy")
    out = {"accuracy": accuracy, "samples": samples, "data": what, "recorded": recorded,
           "recorded_on": meta.get("data"), "expected": expect,
           "far_below_recorded": False, "below_expected": False}
    why = []
    if isinstance(recorded, int | float) and 0 <= recorded <= 1 and samples > 0:
        se = (recorded * (1 - recorded) / samples) ** 0.5
        if recorded - accuracy > max(FAR_BELOW, 3 * se):
            out["far_below_recorded"] = True
            on = f" on {meta['data']}" if meta.get("data") else ""
            why.append(f"{100 * (recorded - accuracy):.1f} pp below the "
                       f"{100 * recorded:.2f} % recorded in {loaded.path}{on}")
    if expect is not None and accuracy < expect:
        out["below_expected"] = True
        why.append(f"below the {100 * expect:.2f} % expected (--expect-accuracy)")
    if not why:
        return None
    out["message"] = (f"the data do not match the model: the reference scores "
                      f"{100 * accuracy:.2f} % on {samples} samples of {what}, "
                      f"{' and '.join(why)}; check --data (the data set, its preprocessing, "
                      f"its labels) and the model")
    return out


def classes_of(graph: Graph) -> int:
    """How many classes the model scores: its output's size per sample."""
    import math

    return math.prod(graph.shapes()[graph.outputs()[-1]])


def thresholds_of(graph: Graph) -> dict[str, float]:
    out = {}
    for name, node in graph.ordered():
        if isinstance(node, ir.LIFNeuron):
            out[name] = float(node.v_threshold)
        elif isinstance(node, ir.Neuron):
            out[name] = float(node.threshold)
    return out


def check(loaded: LoadedModel, target: str = "reference", data: str | None = None,
          samples: int = 200, batch_size: int = 100,
          reference_dtype: torch.dtype = torch.float32,
          target_graph: Graph | None = None,
          inputs: tuple[torch.Tensor, torch.Tensor] | None = None,
          target_dtype: torch.dtype = torch.float64,
          calib_samples: int | None = None, decays: int | None = None,
          lowered: Lowered | None = None, workers: int = 1,
          ray_address: str | None = None,
          reference_runs: ReferenceRuns | None = None, artifact=None) -> ParityReport:
    """Reference: the original model in reference_dtype, or an IR file simulated in float64
    (for targets checked against the emulator: the emulator of the fixed-point IR). Target
    'reference': the folded IR (or `target_graph`) in target_dtype. Inputs: the first `samples`
    of the data set's test split, or `inputs` = (x, labels). Fixed-point targets calibrate on
    the first `calib_samples` (default CALIB_SAMPLES) of the training split (on the inputs
    themselves when only `inputs` is given; a netx file, quantised already, takes none) and
    may group per-neuron decays into `decays` values per layer.
    `lowered`: the model already folded / quantised (deploy hands one to every target).
    Refused before anything runs (UsageError, snnexport.sim.limits): a count below 1, more
    samples than the data hold, inputs of another shape than the model's, a batch larger than
    the memory available.
    `workers` N > 1 (or `ray_address`): the samples cut into N contiguous shards, each checked
    by a Ray task (snnexport.distributed), on the same folded graph / fixed-point net made
    here once; the shards' reports merged into the one a single process gives. A shard that
    fails on every try is listed in `failed_shards` (the report is then not exact).
    `reference_runs`: reference runs kept across checks (ReferenceRuns; deploy hands one to
    every check): a batch the same reference already ran is taken from it, not run again (one
    process only: Ray shards run their own).
    `artifact`: the file the target's export wrote; the target runs that file as read back
    from disk (its backend's run_file), so the file checked is the file shipped (deploy)."""
    from . import distributed

    backend = get_backend(target)
    use_ray = distributed.wanted(workers, ray_address)
    if loaded.fixed is not None:  # a fixed-point net with no float model behind it (netx)
        refuse_calibration(loaded, calib_samples)
        plan, x, y = _fixed_model_plan(loaded, backend, target, data, samples, batch_size,
                                       inputs, decays)
        return _run_plan(plan, x, y, workers, ray_address, use_ray, reference_runs)[0]
    samples = count("--samples", samples)
    calib_samples = count("--calib-samples", CALIB_SAMPLES if calib_samples is None
                          else calib_samples)
    batch_size = count("batch_size", batch_size)
    if decays is not None:
        decays = count("--decays", decays)
    calib_x, what = None, "the given inputs"
    own = (loaded.meta or {}).get("data") or loaded.graph.metadata.get("data")
    if inputs is None or backend.fixed_point:
        data = data_for(data, loaded)  # a file names only a built-in set: never code
        if data is None and inputs is None:
            raise UsageError(f"{loaded.path}: say which data to check on with --data")
        if data is not None:
            ds = load_dataset(data, loaded.graph.metadata.get("time_steps"))
            fix = (f"check on --data {own}, the data it was trained on" if own and own != data
                   else "give data of that shape (--data)")
            fit_input(loaded.graph, ds.x_test, loaded.path, f"the {data} test split", fix)
            if backend.fixed_point:  # only the quantiser calibrates
                calib_x = first(ds.x_train, calib_samples, "--calib-samples",
                                f"the {data} training split")
            if inputs is None:
                inputs, what = (ds.x_test, ds.y_test), f"the {data} test split"
    x, y = given_inputs(inputs, f"{loaded.path}: {what}", classes_of(loaded.graph))
    x, y = first(x, samples, "--samples", what), y[:samples]
    fit_input(loaded.graph, x, loaded.path, what)
    if calib_x is None:
        calib_x = x
    # the reference and the target of one batch are in memory together: refuse up front
    t = time_steps_of(loaded.graph, x)
    batch = min(batch_size, len(x))
    ensure_fits(2 * run_bytes(loaded.graph, batch, t),
                f"{loaded.path}: checking {target} on batches of {batch} samples over T={t}",
                "lower T, the batch or the model's size")
    if lowered is None:
        lowered = Lowered(loaded.graph, target_graph)
    if loaded.reference is None:
        reference_dtype = torch.float64
    try:
        inp = lowered.input_for(backend, calib_x, decays)  # folded graph, NIR form or fixed net
    except (QuantError, UsageError) as e:  # out of Loihi 2's bounds, or of the memory
        raise type(e)(f"{loaded.path}: {e}") from None
    thresholds, tol = thresholds_of(loaded.graph), TOL[reference_dtype]
    if backend.reference == "emulator":  # the chain's emulator: ties at its own levels
        thresholds, tol = backend.chain.thresholds(inp), 0.0
    dtype = backend.dtype or target_dtype
    if artifact is not None and backend.run_file is None:
        raise UsageError(f"{artifact}: target {target!r} does not run an artifact file")
    plan = _Plan(backend, inp, dtype, loaded.graph, loaded.reference, reference_dtype,
                 thresholds, tol, batch_size,
                 f"{target} ({backend.description}, {str(dtype).split('.')[-1]})", artifact,
                 mismatch_cause=backend.mismatch_cause)
    report, counters = _run_plan(plan, x, y, workers, ray_address, use_ray, reference_runs)
    if backend.fixed_point:
        _, grouping = lowered.fixed(calib_x, decays, backend.chain)
        # --decays K: the grouping's size per layer, so the accuracy cost reads against it
        grouped = {r["layer"]: {"decays_before_grouping": r["before"],
                                "decay_max_change": r["max_change"]} for r in grouping or []}
        report.quantisation = [dict(row, v_clipped=counters["v_clipped"].get(row["layer"], 0),
                                    u_wrapped=counters["u_wrapped"].get(row["layer"], 0),
                                    bias_clipped=row.get("bias_clipped", 0) +
                                    counters["bias_clipped"].get(row["layer"], 0),
                                    **grouped.get(row["layer"], {}))
                               for row in inp.report]
    return report


def _run_plan(plan: _Plan, x, y, workers: int, ray_address, use_ray: bool,
              reference_runs: ReferenceRuns | None):
    """The report of `plan` on samples x, y and the emulator's counters: in this process, or
    cut into shards on Ray (each checked by _check_shard, the reports merged)."""
    from . import distributed

    if not use_ray:
        report, counters = _check_shard(plan, x, y, 0, reference_runs)
    else:  # what every shard shares is shipped once; each shard gets its own inputs
        from .lava.target import LavaError  # a Lava runner that crashed or timed out: retried

        parts = distributed.shards(len(y), workers)
        results = distributed.run(_check_shard, plan,
                                  [(x[lo:hi].clone(), y[lo:hi].clone(), lo) for lo, hi in parts],
                                  workers, ray_address, refusals=(SnnexportError,),
                                  retried=(LavaError,))
        reports, counters = [], {"v_clipped": {}, "u_wrapped": {}, "bias_clipped": {}}
        for (lo, hi), result in zip(parts, results, strict=True):
            if isinstance(result, distributed.Failed):
                reports.append(plan.report_cls(plan.target, mismatch_cause=plan.mismatch_cause,
                                               failed_shards=[{
                                                   "shard": result.index + 1,
                                                   "samples": [lo, hi - 1],
                                                   "tries": result.tries,
                                                   "error": result.error}]))
                continue
            reports.append(result[0])
            for key, per_layer in result[1].items():
                for name, n in per_layer.items():
                    counters[key][name] = counters[key].get(name, 0) + n
        report = plan.report_cls.merge(reports)
    return report, counters


def _plain_emulator(net, xb, dtype):
    """The plain emulator (quant.emulator.emulate_reference): what the fast one, target
    'fixed', is compared with where no float model stands behind the net."""
    from .quant.emulator import emulate_reference

    return emulate_reference(net, xb)


CALIB_SAMPLES = 200  # training samples a fixed-point target's scales are calibrated on


def refuse_calibration(loaded: LoadedModel, calib_samples) -> None:
    """--calib-samples given for a net that is fixed point already (a netx file): refused in
    one line, not silently dropped."""
    if loaded.fixed is not None and calib_samples is not None:
        raise UsageError(f"{loaded.path}: --calib-samples calibrates the quantiser of a float "
                         f"model; {loaded.kind} is fixed point already: drop --calib-samples")


def _fixed_model_plan(loaded: LoadedModel, backend: Backend, target: str, data, samples,
                      batch_size, inputs, decays):
    """(the plan, x [N, T, ...], y) of a check of a model that is a fixed-point net with no
    float model behind it (LoadedModel.fixed: a netx file) on its own inputs (--data
    FILE.npz in netx's layout, quant/netx_inputs.py): every target is compared with the
    emulator ('fixed', the fast emulator, with the plain one), the emulator also with the
    outputs recorded in the data (s:<g> / u:<g> / v:<g>); float targets and --decays are
    refused in one line (nothing float to run or to regroup). `inputs`: (x [N, T, *WHC],
    labels or None), or NetxInputs already read."""
    from .backends.loihi import LOIHI
    from .quant.netx_inputs import driven, inputs_for

    net = loaded.fixed
    fixed = ", ".join(b.name for b in backends_of(LOIHI))
    if not backend.fixed_point or backend.chain is not LOIHI:
        raise UsageError(f"{loaded.path}: {loaded.kind} is Loihi 2's fixed-point net with no "
                         f"float model behind it: target {target!r} has nothing to run; check "
                         f"it with --target {fixed} (e.g. --target netx: Lava against the "
                         "emulator)")
    if decays is not None:
        raise UsageError(f"{loaded.path}: --decays regroups the decays of a float model before "
                         f"quantising it; {loaded.kind} is already fixed point: check it as "
                         "it is")
    batch_size = count("batch_size", batch_size)
    samples = count("--samples", samples)
    ins = inputs_for(net, loaded.path, data, inputs, samples)
    net = driven(net, ins)
    t, n = ins.x.shape[0], ins.x.shape[1]
    # a batch's reference and target runs: spikes, H, u and v of every layer, int64 / float64
    ensure_fits(8 * 8 * t * min(batch_size, n) * sum(lay.n for lay in net.layers),
                f"{loaded.path}: checking {target} on batches of {min(batch_size, n)} samples "
                f"over T={t}", "check fewer samples at once or fewer steps")
    y = ins.y if ins.y is not None else torch.zeros(n, dtype=torch.int64)
    what = ("the plain emulator" if backend.reference == "model" else "the emulator")
    name = f"{target} ({backend.description}; {net.netx_file} has no float model: vs {what})"
    reference = None
    if backend.reference == "model":  # 'fixed': the fast emulator against the plain one
        import functools

        reference = functools.partial(_plain_emulator, net)
    plan = _Plan(backend, net, torch.int64, None, reference, torch.int64,
                 backend.chain.thresholds(net), 0.0, batch_size, name,
                 mismatch_cause="unexplained", report_cls=FixedModelReport,
                 recorded=ins.recorded or None, labelled=ins.y is not None, source=ins.source)
    return plan, ins.x.transpose(0, 1).contiguous(), y


def backends_of(chain) -> list[Backend]:
    from .backends import backends

    return [b for b in backends() if b.fixed_point and b.chain is chain]


@dataclass
class FixedModelReport(ParityReport):
    """The report of a check of a net with no float model behind it (a netx file): the spikes
    of its spiking layers (a ParityReport), plus, where the runs record them (netx's timing),
    u and v (after the reset: what Lava's LIF holds) of every layer at every step (`state`
    rows, `first_state_divergence`), the outputs recorded elsewhere (`recorded` rows), the
    readouts (layers that cannot spike by design: their u and v are their output) and whether
    labels were given (accuracy is shown only then)."""

    state: list[dict] = field(default_factory=list)
    first_state_divergence: dict | None = None
    labelled: bool = True
    readouts: list[str] = field(default_factory=list)
    recorded: list[dict] = field(default_factory=list)
    recorded_source: str = ""

    @property
    def state_mismatches(self) -> int:
        return sum(r["u_mismatches"] + r["v_mismatches"] for r in self.state) + sum(
            r["mismatches"] for r in self.recorded)

    @property
    def unexplained(self) -> int:
        return super().unexplained + self.state_mismatches

    @property
    def exact(self) -> bool:
        return super().exact and self.state_mismatches == 0

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["state"] = self.state
        fd = self.first_state_divergence
        d["first_state_divergence"] = None if fd is None else {
            k: v for k, v in fd.items() if k != "_key"}
        d["readouts"] = self.readouts
        if self.recorded:
            d["recorded"] = {"source": self.recorded_source, "rows": self.recorded}
        d["labelled"] = self.labelled  # False: no labels, the accuracies mean nothing
        return d

    def text(self) -> str:
        lines = super().text().splitlines()
        if not self.labelled:  # no labels: no accuracy, only the agreement
            lines[1] = "  no labels given (y): accuracy not computed; agreement " + \
                lines[1].rsplit("agreement", 1)[1].strip()
        if self.readouts:
            lines.append(f"  readout {', '.join(self.readouts)}: threshold at the top of its "
                         "range (cannot spike by design); its u and v are its output, compared "
                         "at every step below")
        if self.state:
            lines.append("  state (u, v after the reset, every step): " + ", ".join(
                f"{r['layer']} u {'=' if not r['u_mismatches'] else r['u_mismatches']} "
                f"v {'=' if not r['v_mismatches'] else r['v_mismatches']}"
                for r in self.state))
        if self.first_state_divergence:
            fd = self.first_state_divergence
            lines.append(f"  first state divergence: {fd['layer']} {fd['var']} at step "
                         f"{fd['step']}, sample {fd['sample']}, neuron {fd['neuron']}: "
                         f"reference {fd['reference']}, target {fd['target']}")
        for r in self.recorded:
            first = "" if r["first"] is None else (
                f" (first at step {r['first']['step']}, sample {r['first']['sample']}, neuron "
                f"{r['first']['neuron']}: recorded {r['first']['recorded']}, emulator "
                f"{r['first']['emulator']})")
            lines.append(f"  recorded {r['layer']} {r['var']} steps {r['steps'][0]}.."
                         f"{r['steps'][1]} ({self.recorded_source}): {r['values']} values, "
                         f"{'all equal' if not r['mismatches'] else r['mismatches']}"
                         f"{'' if not r['mismatches'] else ' differ'}{first}")
        return "\n".join(lines)

    def compare_state(self, net, ref: SimResult, tgt: SimResult, offset: int) -> None:
        """u and v of every layer at every step, where both runs recorded them (`.state`)."""
        ref_state, tgt_state = getattr(ref, "state", None), getattr(tgt, "state", None)
        if not ref_state or not tgt_state:
            return
        rows = {r["layer"]: r for r in self.state}
        for k, lay in enumerate(net.layers):
            if lay.name not in ref_state or lay.name not in tgt_state:
                continue
            row = rows.get(lay.name)
            if row is None:
                row = {"layer": lay.name, "values": 0, "u_mismatches": 0, "v_mismatches": 0}
                self.state.append(row)
                rows[lay.name] = row
            for i, var in enumerate(("u", "v")):
                r = ref_state[lay.name][i].reshape(*ref_state[lay.name][i].shape[:2], -1)
                t = tgt_state[lay.name][i].reshape(r.shape)
                diff = r != t
                row["values"] += int(r.numel()) if i == 0 else 0
                row[f"{var}_mismatches"] += int(diff.sum())
                if diff.any():
                    step, b, j = diff.nonzero()[0].tolist()
                    key = (step, k, offset + b, j)
                    fd = self.first_state_divergence
                    if fd is None or key < tuple(fd["_key"]):
                        self.first_state_divergence = {
                            "_key": key, "layer": lay.name, "var": var, "step": step,
                            "sample": offset + b, "neuron": j,
                            "reference": int(r[step, b, j]), "target": int(t[step, b, j])}

    def compare_recorded(self, ref: SimResult, recorded: dict, lo: int, b: int) -> None:
        """Every recorded value (NetxInputs.recorded) of samples lo..lo+b-1 against the
        emulator's."""
        rows = {(r["layer"], r["var"]): r for r in self.recorded}
        for (name, var), (t0, arr) in recorded.items():
            rec = arr[:, lo:lo + b]
            got = ref.spikes[name] if var == "s" and name in ref.spikes else \
                (ref.state[name][0] * 0 if var == "s" else ref.state[name]["uv".index(var)])
            got = got.reshape(got.shape[0], got.shape[1], -1)[t0:t0 + rec.shape[0]].to(
                torch.int64)
            row = rows.get((name, var))
            if row is None:
                row = {"layer": name, "var": var, "steps": [t0, t0 + rec.shape[0] - 1],
                       "values": 0, "mismatches": 0, "first": None}
                self.recorded.append(row)
                rows[(name, var)] = row
            diff = got != rec
            row["values"] += int(rec.numel())
            row["mismatches"] += int(diff.sum())
            if diff.any() and row["first"] is None:
                t, s, j = diff.nonzero()[0].tolist()
                row["first"] = {"step": t0 + t, "sample": lo + s, "neuron": j,
                                "recorded": int(rec[t, s, j]), "emulator": int(got[t, s, j])}

    @classmethod
    def merge(cls, parts: list[FixedModelReport]) -> FixedModelReport:
        """ParityReport.merge, and the state and recorded rows summed (the first divergence
        the earliest)."""
        out = super().merge(parts)
        for part in parts:
            out.labelled, out.readouts = part.labelled, part.readouts
            out.recorded_source = part.recorded_source
            for kind in ("state", "recorded"):
                mine = {(r["layer"], r.get("var")): r for r in getattr(out, kind)}
                for r in getattr(part, kind):
                    have = mine.get((r["layer"], r.get("var")))
                    if have is None:
                        getattr(out, kind).append(dict(r))
                        mine[(r["layer"], r.get("var"))] = getattr(out, kind)[-1]
                        continue
                    for f in ("values", "u_mismatches", "v_mismatches", "mismatches"):
                        if f in r:
                            have[f] += r[f]
                    if r.get("first") is not None and have.get("first") is None:
                        have["first"] = r["first"]
            fd = part.first_state_divergence
            if fd is not None and (out.first_state_divergence is None or tuple(fd["_key"]) <
                                   tuple(out.first_state_divergence["_key"])):
                out.first_state_divergence = fd
        return out


@dataclass
class _Plan:
    """What every shard of one check shares (a Ray run ships it once to every worker): the
    backend, what it takes (folded graph or the fixed-point net, made once by the caller), the
    reference and the comparison's thresholds."""

    backend: Backend
    inp: object
    dtype: torch.dtype
    graph: Graph  # the model as loaded: simulated in float64 when it has no reference
    reference: Callable | None
    reference_dtype: torch.dtype
    thresholds: dict
    tol: float
    batch_size: int
    target: str  # the report's name of the target
    artifact: object = None  # the written file the target runs (Backend.run_file), if any
    mismatch_cause: str = "unexplained"  # the report's (the backend's, for a float model)
    report_cls: type = ParityReport  # FixedModelReport: a net with no float model behind it
    recorded: dict | None = None  # outputs recorded elsewhere (NetxInputs.recorded)
    labelled: bool = True  # labels given (a net with no float model: they may not be)
    source: str = ""  # where the inputs came from


def _check_shard(plan: _Plan, x: torch.Tensor, y: torch.Tensor, offset: int,
                 reference_runs: ReferenceRuns | None = None):
    """The parity report of samples offset .. offset + len(y) - 1 (x, y: those samples), and
    the emulator's saturation counters on them. One process runs all samples as one shard;
    a Ray task runs one shard of them. `reference_runs`: reference batches kept across checks
    (one process only)."""
    backend = plan.backend
    stats = None
    if backend.fixed_point:
        stats = backend.chain.new_stats()
    run_target = (backend.make_runner(plan.inp, plan.dtype, stats) if plan.artifact is None
                  else backend.run_file(plan.artifact, plan.inp, plan.dtype, stats))
    reference = plan.reference
    if backend.reference == "emulator":
        emulate = backend.chain.reference_runner(plan.inp, stats)

        def reference(xb, dtype):
            return emulate(xb)
    # a saturated fixed-point neuron explains a divergence from the float model (overflow)
    saturating = backend.fixed_point and backend.reference == "model" and plan.graph is not None
    report = plan.report_cls(target=plan.target, mismatch_cause=plan.mismatch_cause)
    if isinstance(report, FixedModelReport):
        report.labelled, report.recorded_source = plan.labelled, plan.source
        report.readouts = [lay.name for lay in plan.inp.layers
                           if not lay.spiking and not lay.pool]
    in_shape = plan.inp.input_shape if plan.graph is None else \
        plan.graph.nodes[plan.graph.order()[0]].shape
    for lo in range(0, len(y), plan.batch_size):
        xb, yb = x[lo:lo + plan.batch_size], y[lo:lo + plan.batch_size]
        if xb.dim() == len(in_shape) + 2:  # frame sequences are stored [N, T, ...]
            xb = xb.transpose(0, 1)
        if reference_runs is not None:
            ref = reference_runs.get(plan, x[lo:lo + plan.batch_size], xb, stats)
        elif reference is not None:
            ref = reference(xb, plan.reference_dtype)
        else:
            ref = simulate(plan.graph, xb, dtype=torch.float64, record_membrane=True)
        tgt = run_target(xb)
        compare(report, ref, tgt, yb, plan.thresholds, plan.tol, sample_offset=offset + lo,
                saturated=stats.saturated if saturating else None)
        if isinstance(report, FixedModelReport):  # u, v every step; recorded outputs
            report.compare_state(plan.inp, ref, tgt, offset + lo)
            if plan.recorded:
                report.compare_recorded(ref, plan.recorded, offset + lo, len(yb))
    if backend.finish is not None:
        backend.finish(report, run_target, plan.inp)
    counters = {"v_clipped": {}, "u_wrapped": {}, "bias_clipped": {}}
    if stats is not None:
        counters = {"v_clipped": dict(stats.v_clipped), "u_wrapped": dict(stats.u_wrapped),
                    "bias_clipped": dict(stats.bias_clipped)}
    return report, counters


COUNTERS = ("v_clipped", "u_wrapped", "bias_clipped")  # EmulatorStats' per-layer counts


@dataclass
class _Kept:
    key: tuple  # (kind, the reference object, dtype): ReferenceRuns.key
    samples: torch.Tensor  # the batch as check cut it, [B, ...] (frames not yet transposed)
    result: SimResult
    counters: dict | None  # the emulator's saturation counts on this batch (None: the model)
    saturated: dict | None  # the emulator's where-saturated masks of this batch
    nbytes: int


class ReferenceRuns:
    """Reference runs kept in one process for the checks that follow, so that a deploy runs
    each reference once on its samples: the trained model (reference, nir, onnx, fixed,
    lava-float) and the emulator of the fixed-point net (onnx-fixed, lava-fixed, netx).

    A run is keyed by what it depends on: which reference (the model's own forward in its
    dtype, an IR file's float64 simulation, or the emulator of one fixed-point net object,
    i.e. of one calibration and decay grouping: Lowered makes it once per settings) and the
    batch of samples, compared element for element. A batch is taken whole when that reference
    ran the same samples as one batch: the same numbers as running it again. The emulator
    (integer arithmetic per sample, after a float64 host current rounded to mantissas) also
    gives the first k rows of a batch it ran (the Lava targets' first --lava-samples of the
    fast targets' samples), with its saturation counts when that batch had none (else it runs
    again: counts of a few rows are not kept); tests/test_deploy.py checks the rows equal a run
    of the k samples alone. The float model is taken only whole: a float GEMM's rounding may
    depend on the batch size. Runs are kept up to `budget` bytes (default an eighth of the
    memory available), then run as before; `clear()` frees them. `runs`, `reused`, `seconds`:
    batches run, batches taken from a kept run, time spent running."""

    def __init__(self, budget: int | None = None):
        from .sim.limits import available_memory

        self.budget = available_memory() // 8 if budget is None else int(budget)
        self.runs, self.reused, self.seconds = 0, 0, 0.0
        self._kept: list[_Kept] = []
        self._bytes = 0

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0

    @staticmethod
    def key(plan: _Plan) -> tuple:
        if plan.backend.reference == "emulator":
            return ("emulator", plan.inp, None)
        if plan.reference is not None:
            return ("model", plan.reference, plan.reference_dtype)
        return ("simulation", plan.graph, torch.float64)

    def get(self, plan: _Plan, samples: torch.Tensor, xb: torch.Tensor, stats) -> SimResult:
        """The reference's result on `xb` (the batch `samples` as the run takes it), kept or
        run now; the emulator's saturation counts of it added to `stats`."""
        key = self.key(plan)
        emulator = key[0] == "emulator"
        n = len(samples)
        for kept in self._kept:
            if (kept.key[0] != key[0] or kept.key[1] is not key[1] or kept.key[2] != key[2]
                    or kept.samples.dtype != samples.dtype
                    or kept.samples.shape[1:] != samples.shape[1:]):
                continue
            whole = len(kept.samples) == n
            if not whole and not (emulator and n < len(kept.samples) and not any(
                    v for c in kept.counters.values() for v in c.values())):
                continue
            if not torch.equal(kept.samples[:n], samples):
                continue
            self.reused += 1
            if emulator:
                if whole:
                    for name, per_layer in kept.counters.items():
                        counts = getattr(stats, name)
                        for layer, c in per_layer.items():
                            counts[layer] = counts.get(layer, 0) + c
                stats.saturated.clear()
                stats.saturated.update({k: v if whole else v[:, :n]
                                        for k, v in kept.saturated.items()})
            return kept.result if whole else _first_rows(kept.result, n)
        import time

        start = time.perf_counter()
        if emulator:
            before = {name: dict(getattr(stats, name)) for name in COUNTERS}
            ref = plan.backend.chain.reference_runner(plan.inp, stats)(xb)
            counters = {name: {layer: c - before[name].get(layer, 0)
                               for layer, c in getattr(stats, name).items()}
                        for name in COUNTERS}
            saturated = dict(stats.saturated)
        else:
            counters = saturated = None
            if plan.reference is not None:
                ref = plan.reference(xb, plan.reference_dtype)
            else:
                ref = simulate(plan.graph, xb, dtype=torch.float64, record_membrane=True)
        self.seconds += time.perf_counter() - start
        self.runs += 1
        nbytes = _nbytes(samples, ref.outputs, ref.scores, *ref.spikes.values(),
                         *ref.membrane.values(), *(saturated or {}).values())
        if self._bytes + nbytes <= self.budget:
            self._kept.append(_Kept(key, samples.clone(), ref, counters, saturated, nbytes))
            self._bytes += nbytes
        return ref


def _nbytes(*tensors) -> int:
    return sum(t.nelement() * t.element_size() for t in tensors if t is not None)


def _first_rows(res: SimResult, n: int) -> SimResult:
    """The first n samples of a result: outputs, spikes and H are [T, B, ...], scores [B, ...]."""
    return SimResult(res.outputs[:, :n], res.scores[:n],
                     {k: v[:, :n] for k, v in res.spikes.items()},
                     {k: v[:, :n] for k, v in res.membrane.items()})


@dataclass
class Sweep:
    """One check per decay grouping (`--decays 1,2,4,8`): K -> the parity report."""

    target: str
    reference: str  # what the target is compared with: 'float' (the model) or 'emulator'
    rows: list[tuple[int, ParityReport]]

    def to_dict(self) -> dict:
        out = []
        for k, rep in self.rows:
            d = rep.to_dict()
            out.append({"decays": k, "accuracy_reference": d["accuracy"]["reference"],
                        "accuracy_target": d["accuracy"]["target"],
                        "agreement": d["agreement"],
                        "mismatches": sum(layer.mismatches for layer in rep.layers),
                        "unexplained": rep.unexplained, "report": d})
        return {"target": self.target, "reference": self.reference, "sweep": out}

    def text(self) -> str:
        ref, tgt = ("float", "fixed") if self.reference == "float" else ("emulator",
                                                                         self.target)
        first = self.rows[0][1] if self.rows else None
        lines = [f"decays sweep of {self.target}"
                 + (f": {first.samples} samples, T={first.time_steps}" if first else ""),
                 f"  {'decays':>6}{'acc ' + ref:>14}{'acc ' + tgt:>14}{'agreement':>11}"
                 f"{'mismatches':>12}"]
        for row in self.to_dict()["sweep"]:
            lines.append(f"  {row['decays']:>6}{100 * row['accuracy_reference']:>12.2f} %"
                         f"{100 * row['accuracy_target']:>12.2f} %"
                         f"{100 * row['agreement']:>9.2f} %{row['mismatches']:>12}")
        return "\n".join(lines)


def sweep_decays(loaded: LoadedModel, target: str, decays: list[int], workers: int = 1,
                 ray_address: str | None = None, **options) -> Sweep:
    """check(loaded, target, decays=K, **options) for each K of `decays` (a fixed-point
    target): in sequence with `workers` 1, else each K a Ray task (snnexport.distributed), as
    many at once as there are workers (each variant quantises on the full calibration set and
    checks all its samples in its task). A variant that fails on every try raises (ShardError)."""
    from . import distributed

    backend = get_backend(target)
    if not backend.fixed_point:
        raise UsageError(f"--decays: target {target!r} does not run the fixed-point net; the "
                         "fixed-point targets take it")
    decays = [count("--decays", k) for k in decays]
    if not decays:
        raise UsageError("--decays: give K or a comma list of K values")
    if not distributed.wanted(workers, ray_address):
        rows = [(k, check(loaded, target, decays=k, **options)) for k in decays]
    else:
        results = distributed.run(_check_variant, (loaded, target, options),
                                  [(k,) for k in decays], workers, ray_address,
                                  refusals=(SnnexportError,))
        for k, r in zip(decays, results, strict=True):
            if isinstance(r, distributed.Failed):
                raise ShardError(f"{loaded.path}: --decays {k} ({target}) failed on all "
                                 f"{r.tries} tries: {r.error}")
        rows = list(zip(decays, results, strict=True))
    return Sweep(target, "float" if backend.reference == "model" else "emulator", rows)


class ShardError(SnnexportError, RuntimeError):
    """A task of a distributed run that failed on every try."""


def _check_variant(common, k: int) -> ParityReport:
    loaded, target, options = common
    return check(loaded, target, decays=k, **options)
