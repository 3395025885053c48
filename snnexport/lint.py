"""Deployment linter: what will not survive a target, per layer, with the fix.

Static rules look at the folded IR before anything is exported; `from_reports` adds what only
a run shows (threshold ties in the reference check, saturation in the fixed-point IR).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import backends
from .ir import nodes as ir
from .ir.graph import Graph

DEFAULT_MAX_DECAYS = 16


def _targets(trait: str) -> list[str]:
    """The registered targets with a backend trait ('resets_to_zero', 'bounded_decays')."""
    return [b.name for b in backends.backends() if getattr(b, trait)]


@dataclass
class Finding:
    severity: str  # 'error': the target refuses it; 'warning': it runs but differs
    rule: str
    layer: str
    targets: list[str]
    message: str
    fix: str

    def text(self) -> str:
        return (f"{self.severity}: [{self.rule}] {self.layer} ({', '.join(self.targets)}): "
                f"{self.message}. Fix: {self.fix}")


def lint(folded: Graph, max_decays: int = DEFAULT_MAX_DECAYS,
         decays_grouped: int | None = None) -> list[Finding]:
    """Static findings on the folded IR. `max_decays`: decay values a chip core can hold per
    layer; `decays_grouped`: K if the deployment groups decays (then none is reported)."""
    out: list[Finding] = []
    readout = folded.metadata.get("readout", "rate")
    for name, node in folded.ordered():
        if isinstance(node, ir.Readout):
            readout = node.mode
        if not isinstance(node, ir.Neuron):
            continue
        v0 = np.asarray(node.v_init)
        if np.any(v0 != 0):
            out.append(Finding(
                "warning", "imp-on-nir", name, ["nir (other consumers)"],
                f"learned initial membrane potential (IMP, |v0| up to {np.abs(v0).max():.3g}) "
                "is only in NIR node metadata; snnTorch, SpikingJelly, Norse start from 0",
                "deploy through snnexport's NIR import, ONNX or Lava (which carry it), or "
                "retrain without IMP"))
        if node.reset == "soft" and node.reset_by is not None:  # snnTorch subtract, beta < 1
            out.append(Finding(
                "error", "soft-reset", name, _targets("resets_to_zero") + ["nir"],
                "soft reset by an amount other than the threshold (snnTorch's subtract reset "
                "with beta < 1): Loihi's LIF resets to 0, NIR's LIF has no reset amount",
                "retrain with a zero reset (snnTorch reset_mechanism='zero'); ONNX keeps it"))
        elif node.reset == "soft":
            out.append(Finding(
                "error", "soft-reset", name, _targets("resets_to_zero"),
                "soft reset (subtract threshold): Loihi's LIF resets to 0",
                "retrain with a hard reset (v_reset = 0); NIR and ONNX keep soft reset"))
        n_decays = len(np.unique(np.asarray(node.decay)))
        if n_decays > max_decays and decays_grouped is None:
            out.append(Finding(
                "warning", "per-neuron-tau", name, _targets("bounded_decays"),
                f"{n_decays} distinct decays (per-neuron tau); a chip core holds a bounded "
                f"number of decay settings (assumed {max_decays} here)",
                f"group them with --decays K (K <= {max_decays}); `snnexport check MODEL "
                "--target fixed --decays K` reports the accuracy cost"))
    if readout in ("last", "lts", "membrane"):
        out.append(Finding("warning", "readout-on-nir", "readout", ["nir (other consumers)"],
                           f"readout mode {readout!r} is in NIR metadata only; other NIR "
                           "consumers read spike rates",
                           "read the output layer's membrane / last step yourself"))
    return out


def from_reports(checks: dict[str, dict]) -> list[Finding]:
    """Findings only a run shows: layers that never spiked and threshold ties (any target's
    parity JSON) and saturation (the fixed-point IR's quantisation rows)."""
    out: list[Finding] = []
    for target, rep in checks.items():
        for name in rep.get("silent_layers", []):
            out.append(Finding(
                "warning", "silent-layer", name, [target],
                "never spiked in the reference on the samples checked: its parity proves "
                "nothing",
                "check on more or other samples (--samples, --lava-samples); a layer that "
                "never spikes on real data is dead: check its weights and threshold, or "
                "retrain"))
        for layer in rep.get("layers", []):
            if layer.get("ties"):
                out.append(Finding(
                    "warning", "threshold-tie", layer["name"], [target],
                    f"{layer['ties']} spike(s) decided by float rounding (H within rounding "
                    "of the threshold)",
                    "nothing is wrong in the model; expect these spikes to differ on targets "
                    "with other arithmetic"))
        for row in rep.get("quantisation") or []:
            bad = {k: row.get(k, 0) for k in ("v_clipped", "u_wrapped", "bias_clipped")}
            if any(bad.values()):
                out.append(Finding(
                    "warning", "saturation", row["layer"], [target],
                    "fixed point saturates: " + ", ".join(f"{k} {v}" for k, v in bad.items()),
                    "calibrate on more representative inputs (--calib-samples), or lower the "
                    "membrane range (weights, bias) in training"))
    seen, unique = set(), []
    for f in out:  # the same tie/saturation seen by several targets: report it once per layer
        key = (f.rule, f.layer, f.message)
        if key in seen:
            for g in unique:
                if (g.rule, g.layer, g.message) == key:
                    g.targets = sorted(set(g.targets) | set(f.targets))
            continue
        seen.add(key)
        unique.append(f)
    return unique


def as_dicts(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
