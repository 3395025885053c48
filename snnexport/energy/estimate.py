"""Energy per layer and per inference from operation counts and a target profile.

Two estimates, reported together:
  theoretical   the seed-style figure (Shen et al. 2024, tables 5/6, and most SNN papers):
                E = E_MAC * MACs + E_AC * SOPs with the 45 nm fp32 E_MAC = 4.6 pJ and
                E_AC = 0.9 pJ of cmos45.toml, whatever the target; it ignores memory.
  target        the profile's own accounting:
                memory-aware  compute (MACs, SOPs, pool ops) + memory (one weight read per
                              operation at the profile's weight precision, membrane state read
                              and written per neuron update, SRAM energy by the size of the
                              array holding it) + neuron updates + spikes
                all-in        the per-operation figures already include memory: synaptic ops,
                              neuron updates (active / inactive) and spikes, no memory term
ANN baseline: the same weights run once as an ANN (MACs only, T = 1) at the profile's ann_mac.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SnnexportError
from ..files import atomic_write
from ..hw.fit import targets_dir
from .counts import LayerCounts

TARGETS_DIR = targets_dir()  # top-level targets/, or the wheel's snnexport/targets/
GRADES = ("measured", "pre-silicon simulated", "all-in", "derived")


class ProfileError(SnnexportError, ValueError):
    """A target profile that cannot be used; names the file."""


@dataclass
class Profile:
    name: str
    title: str
    accounting: str
    precision: dict
    limits: dict
    energy: dict  # key -> {"value", "unit", "source", "grade"}
    path: Path | None = None

    def e(self, key: str, default: float | None = None) -> float:
        if key not in self.energy:
            if default is None:
                raise ProfileError(f"{self.path}: no energy constant {key!r}")
            return default
        return float(self.energy[key]["value"])


def available_profiles() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_profile(name_or_path) -> Profile:
    path = Path(name_or_path)
    if not path.suffix:
        path = TARGETS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ProfileError(f"{path}: no such profile; available: {', '.join(available_profiles())}")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML ({e})") from None
    if not isinstance(d.get("name"), str) or not d["name"].strip():
        raise ProfileError(f"{path}: no name: give name = \"...\" (the profile's name)")
    if not isinstance(d.get("title", ""), str):
        raise ProfileError(f"{path}: title must be a string")
    energy = d.get("energy", {})
    if not isinstance(energy, dict):
        raise ProfileError(f"{path}: energy must be a table of [energy.KEY] entries")
    for key, c in energy.items():
        if not isinstance(c, dict):
            raise ProfileError(f"{path}: energy.{key} must be a table (value, unit, source, "
                               "grade)")
        missing = {"value", "unit", "source", "grade"} - set(c)
        if missing:
            raise ProfileError(f"{path}: energy.{key} lacks {sorted(missing)}")
        v = c["value"]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v < 0:
            raise ProfileError(f"{path}: energy.{key} value {v!r} must be a finite number of "
                               "pJ >= 0")
        if c["grade"] not in GRADES:
            raise ProfileError(f"{path}: energy.{key} grade {c['grade']!r} not in {GRADES}")
        if c["unit"] != "pJ":
            raise ProfileError(f"{path}: energy.{key} must be in pJ")
    if d.get("accounting") not in ("memory-aware", "all-in"):
        raise ProfileError(f"{path}: accounting must be 'memory-aware' or 'all-in'")
    return Profile(d["name"], d.get("title", d["name"]), d["accounting"], d.get("precision", {}),
                   d.get("limits", {}), d.get("energy", {}), path)


def sram_read_64b(p: Profile, n_bytes: float) -> float:
    """64-bit read energy of the array that holds n_bytes (Horowitz size tiers)."""
    for limit, key in ((8 * 1024, "sram_read_64b_8kB"), (32 * 1024, "sram_read_64b_32kB"),
                       (1024 * 1024, "sram_read_64b_1MB")):
        if n_bytes <= limit:
            return p.e(key)
    return p.e("dram_read_64b")


@dataclass
class LayerEnergy:
    name: str
    kind: str
    compute: float = 0.0  # pJ per inference
    memory: float = 0.0
    neuron: float = 0.0
    spikes: float = 0.0
    theoretical: float = 0.0
    counts: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.compute + self.memory + self.neuron + self.spikes


@dataclass
class EnergyReport:
    profile: str
    accounting: str
    samples: int
    time_steps: int
    layers: list[LayerEnergy]
    ann_macs: float
    ann_energy: float
    constants: dict

    @property
    def total(self) -> float:
        return sum(layer.total for layer in self.layers)

    @property
    def theoretical(self) -> float:
        return sum(layer.theoretical for layer in self.layers)

    def to_dict(self) -> dict:
        return {
            "profile": self.profile, "accounting": self.accounting, "samples": self.samples,
            "time_steps": self.time_steps, "unit": "pJ per inference",
            "total": self.total, "theoretical": self.theoretical,
            "ann": {"macs": self.ann_macs, "energy": self.ann_energy},
            "layers": [{"name": x.name, "kind": x.kind, "compute": x.compute,
                        "memory": x.memory, "neuron": x.neuron, "spikes": x.spikes,
                        "total": x.total, "theoretical": x.theoretical, **x.counts}
                       for x in self.layers],
            "constants": self.constants,
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        cols = ["name", "kind", "macs", "sops", "updates", "active_updates", "spikes",
                "pool_ops", "merge_ops", "compute", "memory", "neuron", "spikes_energy",
                "total", "theoretical"]
        w = csv.writer(buf)
        w.writerow(cols)
        for x in self.layers:
            c = x.counts
            w.writerow([x.name, x.kind, c.get("macs", 0), c.get("sops", 0), c.get("updates", 0),
                        c.get("active_updates", 0), c.get("spikes", 0), c.get("pool_ops", 0),
                        c.get("merge_ops", 0), x.compute, x.memory, x.neuron, x.spikes,
                        x.total, x.theoretical])
        return buf.getvalue()

    def text(self) -> str:
        lines = [f"energy on {self.profile} ({self.accounting}), pJ per inference, "
                 f"{self.samples} samples, T={self.time_steps}",
                 f"  {'layer':<16}{'MACs':>11}{'SOPs':>11}{'compute':>11}{'memory':>11}"
                 f"{'neuron':>11}{'spikes':>9}{'total':>12}"]
        for x in self.layers:
            c = x.counts
            lines.append(f"  {x.name:<16}{c.get('macs', 0):>11.0f}{c.get('sops', 0):>11.0f}"
                         f"{x.compute:>11.0f}{x.memory:>11.0f}{x.neuron:>11.0f}"
                         f"{x.spikes:>9.0f}{x.total:>12.0f}")
        lines.append(f"  total {self.total / 1e6:.3f} uJ (target accounting), theoretical "
                     f"E_MAC*MACs + E_AC*SOPs {self.theoretical / 1e6:.3f} uJ, same net as ANN "
                     f"{self.ann_energy / 1e6:.3f} uJ ({self.ann_macs:.0f} MACs)")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def estimate(counts: list[LayerCounts], profile: Profile, ann_macs: float, samples: int,
             time_steps: int) -> EnergyReport:
    theory = load_profile("cmos45") if profile.name != "cmos45" else profile
    e_mac_45, e_ac_45 = theory.e("mac"), theory.e("ac")
    weight_bits = float(profile.precision.get("weight_bits", 32))
    state_bits = float(profile.precision.get("state_bits", 32))
    rows = []
    for c in counts:
        le = LayerEnergy(c.name, c.kind, counts=c.to_dict())
        le.theoretical = e_mac_45 * c.macs + e_ac_45 * c.sops
        if c.kind == "synapse":
            sop = profile.e("synaptic_op" if "synaptic_op" in profile.energy else "ac")
            le.compute = profile.e("mac") * c.macs + sop * c.sops
            if profile.accounting == "memory-aware":
                layer_bytes = c.weights * weight_bits / 8
                le.memory = c.weight_reads * weight_bits / 64 * sram_read_64b(profile,
                                                                               layer_bytes)
        elif c.kind == "neuron":
            if "neuron_update" in profile.energy:
                le.neuron = profile.e("neuron_update") * c.updates
            else:
                le.neuron = (profile.e("neuron_update_active") * c.active_updates +
                             profile.e("neuron_update_inactive") *
                             (c.updates - c.active_updates))
            le.spikes = profile.e("spike", 0.0) * c.spikes
            if profile.accounting == "memory-aware":
                state_bytes = c.neurons * state_bits / 8
                le.memory = 2 * c.updates * state_bits / 64 * sram_read_64b(profile,
                                                                             state_bytes)
        elif c.kind == "merge":  # a residual connection: one add / AND per element per step
            le.compute = profile.e("merge_op") * c.merge_ops
        else:  # pools and the readout
            le.compute = profile.e("pool_op", 0.0) * c.pool_ops
        rows.append(le)
    return EnergyReport(profile.name, profile.accounting, samples, time_steps, rows, ann_macs,
                        profile.e("ann_mac") * ann_macs,
                        {k: v["value"] for k, v in profile.energy.items()})


def plot(report: EnergyReport, path) -> Path:
    """Per-layer energy split into compute / memory / neuron / spike terms, and firing rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [x.name for x in report.layers]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = [0.0] * len(names)
    for term in ("compute", "memory", "neuron", "spikes"):
        vals = [getattr(x, term) / 1e6 for x in report.layers]
        a.bar(names, vals, bottom=bottom, label=term)
        bottom = [p + v for p, v in zip(bottom, vals, strict=True)]
    a.set_ylabel("energy per inference (uJ)")
    a.set_title(f"{report.profile} ({report.accounting})")
    a.legend()
    a.tick_params(axis="x", rotation=60)
    neurons = [x for x in report.layers if x.kind == "neuron"]
    rates = [x.counts["spikes"] / max(1.0, x.counts["updates"]) for x in neurons]
    b.bar([x.name for x in neurons], rates)
    b.set_ylabel("firing rate (spikes per neuron per step)")
    b.set_title("firing rate per layer")
    b.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)
