"""Parity: run the original torch model and a target on the same inputs and compare.

The report (docs/semantics.md §5) gives accuracy of both, prediction agreement, per-layer spike
counts, mismatching spikes per layer, and the first divergence. Mismatches are classified:

  ties        the reference H_t sat within float rounding of the threshold (|H - V_th| <= tol),
              so either answer is right to the precision the reference was computed in;
  downstream  a mismatch in the same sample at a time step and layer at or after a tie
              (a spike decided by a tie changes the reset and everything it feeds);
  unexplained every other mismatch: a real difference (a folding error, a wrong op, ...).

The first divergence carries its cause: a threshold tie; an overflow, when the fixed-point
state of that neuron saturated at or before that step; a delay, when that sample's spike
trains in the layer are the reference's shifted by a few steps (a misaligned hop count); else
the target's own cause ('quantisation' for the fixed-point IR vs the float model, otherwise
'unexplained').

A layer that never spiked in the reference on the samples checked is listed in
`silent_layers` (text and JSON): a target equal to it there proves nothing about it, so the
report says "exact, but layers ... never spiked" instead of a bare "exact".

tol is 1e-5 * max(1, |V_th|) for a float32 reference, 1e-12 * max(1, |V_th|) for float64:
generous against float rounding (about 1e-7 and 1e-16 relative per operation), far below the
size of any real error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch

from .errors import SnnexportError
from .importers.plifnet import run_torch_reference  # noqa: F401 (its home: the importer)
from .sim.reference import SimResult


class ParityError(SnnexportError, KeyError):
    """A target result that cannot be compared with the reference (layers missing)."""

    def __str__(self) -> str:  # KeyError's own str() quotes the message
        return str(self.args[0]) if self.args else ""


TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@dataclass
class LayerParity:
    name: str
    spikes_reference: int = 0
    spikes_target: int = 0
    mismatches: int = 0
    ties: int = 0
    downstream: int = 0

    @property
    def unexplained(self) -> int:
        return self.mismatches - self.ties - self.downstream


@dataclass
class ParityReport:
    target: str
    samples: int = 0
    time_steps: int = 0
    correct_reference: int = 0
    correct_target: int = 0
    agree: int = 0
    layers: list[LayerParity] = field(default_factory=list)
    first_divergence: dict | None = None
    per_step: dict = field(default_factory=dict)  # layer -> [reference, target] counts per t
    binary: list[dict] | None = None  # the binary-spike (AND-and-add) check, per spike-fed layer
    quantisation: list[dict] | None = None  # per-layer report of the fixed-point IR, if any
    # what a mismatch that is no threshold tie is put down to: 'unexplained' where target and
    # reference must agree exactly, 'quantisation' for the fixed-point IR vs the float model
    mismatch_cause: str = "unexplained"
    # shards of a distributed run (snnexport.distributed) that failed on every try: {"shard",
    # "samples": [first, last], "tries", "error"}; their samples are not in the counts above
    failed_shards: list[dict] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every spike of every layer and every prediction equal, on at least one sample. It
        proves nothing about a layer in `silent_layers`: say so wherever `exact` is shown."""
        return (self.samples > 0 and all(layer.mismatches == 0 for layer in self.layers)
                and self.agree == self.samples and not self.failed_shards)

    @property
    def silent_layers(self) -> list[str]:
        """Spiking layers that never spiked in the reference on the samples checked: a target
        that agrees with them there proves nothing about the layer (a dead layer, or the wrong
        samples)."""
        return [layer.name for layer in self.layers if layer.spikes_reference == 0]

    @property
    def unexplained(self) -> int:
        if self.mismatch_cause != "unexplained":
            return 0
        return sum(layer.unexplained for layer in self.layers)

    def to_dict(self) -> dict:
        n = max(1, self.samples)
        layers = []
        for layer in self.layers:
            d = asdict(layer)
            d["unexplained"] = layer.unexplained
            d["spikes_per_step"] = self.per_step.get(layer.name)
            layers.append(d)
        return {
            "target": self.target, "samples": self.samples, "time_steps": self.time_steps,
            "accuracy": {"reference": self.correct_reference / n,
                         "target": self.correct_target / n},
            "agreement": self.agree / n, "exact": self.exact, "unexplained": self.unexplained,
            "silent_layers": self.silent_layers,
            "mismatch_cause": self.mismatch_cause,
            "layers": layers, "first_divergence": self.first_divergence,
            **({"binary_spike_check": self.binary} if self.binary is not None else {}),
            **({"quantisation": self.quantisation} if self.quantisation is not None else {}),
            **({"failed_shards": self.failed_shards} if self.failed_shards else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def merge(cls, parts: list[ParityReport]) -> ParityReport:
        """One report from the reports of contiguous shards of the samples, in sample order
        (each made with `compare`'s sample_offset at its first sample): exactly the report one
        run over all of them gives. Counts, per-step counts and the binary-spike check's
        counts add up; the first divergence is the earliest by compare's own rule (time step,
        then layer, then sample, then neuron); failed shards are kept. `quantisation` is not
        merged: it describes the one fixed-point net of the run (check sets it)."""
        if not parts:
            raise ValueError("merge: no reports")
        out = cls(target=parts[0].target, mismatch_cause=parts[0].mismatch_cause)
        for part in parts:
            if part.target != out.target or part.mismatch_cause != out.mismatch_cause:
                raise ValueError(f"merge: reports of {out.target!r} and {part.target!r}")
            out.failed_shards.extend(part.failed_shards)
            if not part.layers:  # a shard that failed: nothing was compared
                continue
            if not out.layers:
                out.layers = [LayerParity(layer.name) for layer in part.layers]
                out.time_steps = part.time_steps
            names = [layer.name for layer in out.layers]
            if [layer.name for layer in part.layers] != names or \
                    part.time_steps != out.time_steps:
                raise ValueError("merge: shards with other layers or another T")
            for mine, theirs in zip(out.layers, part.layers, strict=True):
                for f in ("spikes_reference", "spikes_target", "mismatches", "ties",
                          "downstream"):
                    setattr(mine, f, getattr(mine, f) + getattr(theirs, f))
            for name, (ref, tgt) in part.per_step.items():
                steps = out.per_step.setdefault(name, [[0] * len(ref), [0] * len(tgt)])
                steps[0] = [a + b for a, b in zip(steps[0], ref, strict=True)]
                steps[1] = [a + b for a, b in zip(steps[1], tgt, strict=True)]
            for f in ("samples", "correct_reference", "correct_target", "agree"):
                setattr(out, f, getattr(out, f) + getattr(part, f))
            fd = part.first_divergence
            if fd is not None and (out.first_divergence is None or
                                   _divergence_key(out, fd) <
                                   _divergence_key(out, out.first_divergence)):
                out.first_divergence = fd
            if part.binary is not None:
                out.binary = _merge_binary(out.binary, part.binary)
        return out

    def text(self) -> str:
        d = self.to_dict()
        acc = d["accuracy"]
        lines = [
            f"parity vs {self.target}: {self.samples} samples, T={self.time_steps}",
            f"  accuracy reference {100 * acc['reference']:.2f} %  target "
            f"{100 * acc['target']:.2f} %  agreement {100 * d['agreement']:.2f} %",
            f"  {'layer':<16}{'ref spikes':>12}{'target':>12}{'mismatch':>10}{'ties':>6}"
            f"{'downstr':>9}{self.mismatch_cause[:6]:>8}",
        ]
        for layer in self.layers:
            lines.append(f"  {layer.name:<16}{layer.spikes_reference:>12}{layer.spikes_target:>12}"
                         f"{layer.mismatches:>10}{layer.ties:>6}{layer.downstream:>9}"
                         f"{layer.unexplained:>8}")
        fd, silent = self.first_divergence, ", ".join(self.silent_layers)
        if fd is None and silent and not self.failed_shards:
            lines.append(f"  exact, but layers {silent} never spiked: their parity proves "
                         "nothing")
        elif fd is None and self.failed_shards:
            lines.append("  every spike of every layer equal on the samples checked, but not "
                         "all were: not exact" + (f"; layers {silent} never spiked" if silent
                                                  else ""))
        elif fd is None and self.agree != self.samples:  # spikes equal, the readout not
            lines.append(f"  every spike of every layer is equal, but {self.samples - self.agree}"
                         " prediction(s) differ: the target's readout is not the reference's; "
                         "not exact")
        elif fd is None:
            lines.append("  exact: every spike of every layer is equal")
        else:
            lines.append(
                f"  first divergence: layer {fd['layer']} t={fd['time_step']} sample "
                f"{fd['sample']} neuron {fd['neuron']}: reference H={fd['reference_h']:.9g} "
                f"(spike {fd['reference_spike']}), target H={fd['target_h']} (spike "
                f"{fd['target_spike']}); cause: {fd['cause']}")
            if silent:
                lines.append(f"  layers {silent} never spiked in the reference: their parity "
                             "proves nothing")
        for row in self.quantisation or []:
            if "text" in row:  # a chain that words its own rows (Xylo)
                lines.append(f"  {row['text']}")
                continue
            extra, grouped = "", ""
            if "decays_before_grouping" in row:
                grouped = (f" (grouped from {row['decays_before_grouping']}, decay moved at most "
                           f"{row['decay_max_change']:.3g})")
            if row.get("kind") != "host":
                rms = 100 * row["weight_rms_error_relative"]
                least = (f" (min {row['weight_bits_min']})" if row.get("weight_bits_min")
                         else "")
                extra = (f", weights {row['weight_bits']} bit{least} (rms error {rms:.2f} % of "
                         f"max), scale limited by {row['limited_by']}")
            vmin = f" (min {row['vth_mant_min']})" if row.get("vth_mant_min") else ""
            lines.append(
                f"  fixed point {row['layer']}: {row['kind']}, scale {row['scale']:.6g}, "
                f"vth_mant {row['vth_mant']}{vmin}, {row['decays']} decay value(s){grouped}"
                f"{extra}; "
                f"clipped v {row.get('v_clipped', 0)}, wrapped u {row.get('u_wrapped', 0)}, "
                f"clipped bias {row.get('bias_clipped', 0)}")
        for row in self.binary or []:
            if row.get("input") == "graded":  # a SEW ADD's sums: no spike layer to check
                lines.append(
                    f"  graded input {row['layer']}: values 0..{row['max_input']} (not binary "
                    "spikes: the AND-and-add check does not apply; integer multiply-accumulate "
                    f"== float {'bit for bit' if row['and_equals_multiply'] else 'NO'})")
                continue
            lines.append(
                f"  binary-spike check {row['layer']}: inputs in {{0,1}} "
                f"{'yes' if row['inputs_binary'] else 'NO'}, AND-and-add == multiply "
                f"{'bit for bit' if row['and_equals_multiply'] else 'NO'} "
                f"({row['input_spikes']} spikes in {row['inputs']} inputs)")
        for row in self.failed_shards:
            first, last = row["samples"]
            lines.append(f"  FAILED shard {row['shard']}: samples {first}-{last} not checked "
                         f"(failed on all {row['tries']} tries: {row['error']})")
        return "\n".join(lines)


def compare(report: ParityReport, ref: SimResult, tgt: SimResult, y: torch.Tensor,
            thresholds: dict[str, float], tol: float, sample_offset: int = 0,
            saturated: dict[str, torch.Tensor] | None = None) -> None:
    """Accumulate one batch into the report (layers in network order). saturated: per layer,
    [T, B, n] where the target's fixed-point state saturated (EmulatorStats.saturated)."""
    names = list(ref.spikes)
    if not report.layers:
        report.layers = [LayerParity(n) for n in names]
        report.time_steps = int(ref.outputs.shape[0])
    missing = [n for n in names if n not in tgt.spikes]
    if missing:
        raise ParityError(f"target {report.target!r} has no spikes for layers {missing}")
    b = len(y)
    t_steps = report.time_steps
    # earliest tie per sample so far, as (time step, layer index); inf when none
    tie_at = [(float("inf"), float("inf"))] * b
    first = None
    for li, layer in enumerate(report.layers):
        rs, ts = ref.spikes[layer.name], tgt.spikes[layer.name].to(ref.spikes[layer.name].dtype)
        layer.spikes_reference += int(rs.sum())
        layer.spikes_target += int(ts.sum())
        steps = report.per_step.setdefault(layer.name, [[0] * t_steps, [0] * t_steps])
        for t in range(t_steps):
            steps[0][t] += int(rs[t].sum())
            steps[1][t] += int(ts[t].sum())
        diff = (rs != ts).reshape(t_steps, b, -1)
        if not diff.any():
            continue
        h = ref.membrane[layer.name].reshape(t_steps, b, -1)
        near = (h - thresholds[layer.name]).abs() <= tol * max(1.0, abs(thresholds[layer.name]))
        tie = diff & near
        idx = diff.nonzero().tolist()
        layer.mismatches += len(idx)
        layer.ties += int(tie.sum())
        for t, s, _ in tie.nonzero().tolist():
            tie_at[s] = min(tie_at[s], (t, li))
        for t, s, j in idx:
            if not tie[t, s, j] and tie_at[s][0] <= t and tie_at[s][1] <= li:
                layer.downstream += 1
            key = (t, li, sample_offset + s, j)
            if first is None or key < first[0]:
                r_s, t_s = rs.reshape(t_steps, b, -1)[:, s], ts.reshape(t_steps, b, -1)[:, s]
                first = (key, bool(tie[t, s, j]), float(h[t, s, j]),
                         _target_h(tgt, layer.name, t, s, j), int(r_s[t, j]), int(t_s[t, j]),
                         delay_of(r_s, t_s), _saturated_at(saturated, layer.name, t, s, j))
    if first is not None:
        (t, li, s, j), is_tie, h_ref, h_tgt, s_ref, s_tgt, delay, overflow = first
        cause = "threshold tie" if is_tie else report.mismatch_cause
        if not is_tie and overflow:
            # membrane clipped, current wrapped or host bias clipped at or before this step
            cause = "overflow: this neuron's fixed-point state saturated"
        elif not is_tie and delay:
            cause = f"delay: the target is {abs(delay)} step(s) {'late' if delay > 0 else 'early'}"
        cand = {"layer": report.layers[li].name, "time_step": t, "sample": s, "neuron": j,
                "reference_h": h_ref, "threshold": thresholds[report.layers[li].name],
                "target_h": h_tgt, "reference_spike": s_ref, "target_spike": s_tgt,
                "cause": cause}
        old = report.first_divergence
        if old is None or (t, li) < (old["time_step"], _layer_index(report, old["layer"])):
            report.first_divergence = cand
    pr, pt = ref.scores.argmax(1), tgt.scores.argmax(1)
    report.samples += b
    report.correct_reference += int((pr == y).sum())
    report.correct_target += int((pt == y).sum())
    report.agree += int((pr == pt).sum())


def _divergence_key(report: ParityReport, fd: dict) -> tuple:
    """compare's order of divergences: time step, layer (network order), sample, neuron."""
    return (fd["time_step"], _layer_index(report, fd["layer"]), fd["sample"], fd["neuron"])


def _merge_binary(rows: list[dict] | None, more: list[dict]) -> list[dict]:
    """The binary-spike check over two sets of samples (onnx_run.binary_spike_check's rows,
    layers in the same order): input counts add up, the verdicts must hold on both."""
    if rows is None:
        return [dict(row) for row in more]
    if [r["layer"] for r in rows] != [r["layer"] for r in more]:
        raise ValueError("merge: binary-spike checks of other layers")
    out = []
    for a, b in zip(rows, more, strict=True):
        out.append(dict(a, inputs=a["inputs"] + b["inputs"],
                        input_spikes=a["input_spikes"] + b["input_spikes"],
                        inputs_binary=a["inputs_binary"] and b["inputs_binary"],
                        max_input=max(a["max_input"], b["max_input"]),
                        and_equals_multiply=a["and_equals_multiply"] and
                        b["and_equals_multiply"]))
    return out


def _saturated_at(saturated, name: str, t: int, s: int, j: int) -> bool:
    where = (saturated or {}).get(name)
    return bool(where is not None and where[:t + 1, s, j].any())


def delay_of(ref: torch.Tensor, tgt: torch.Tensor, most: int = 3) -> int:
    """d > 0 when one sample's target spike trains [T, n] are the reference's d steps later
    (d < 0: earlier) wherever both are defined, with spikes in that window; 0 when no shift of
    at most `most` steps explains them. A misaligned hop count looks exactly like this."""
    t_len = ref.shape[0]
    for d in (1, -1, 2, -2, 3, -3)[:2 * most]:
        if abs(d) >= t_len:
            continue
        r, t = (ref[:t_len - d], tgt[d:]) if d > 0 else (ref[-d:], tgt[:t_len + d])
        if r.any() and torch.equal(r, t):
            return d
    return 0


def _layer_index(report: ParityReport, name: str) -> int:
    return [layer.name for layer in report.layers].index(name)


def _target_h(tgt: SimResult, name: str, t: int, s: int, j: int) -> float | None:
    if name not in tgt.membrane:
        return None
    return float(tgt.membrane[name].reshape(tgt.membrane[name].shape[0], -1,
                                            tgt.membrane[name][0, 0].numel())[t, s, j])
