"""The net a Xylo chip runs (XyloNet): one hidden population fed by the input weights and by
the recurrent weights (a feed-forward net's later hidden layers live there, each fed by the
one before), one output population read from the hidden spikes, int8 weights with one bit
shift per matrix, and per neuron dash_mem, dash_syn, threshold and bias (16-bit)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

V_MIN, V_MAX = -(2 ** 15), 2 ** 15 - 1  # 16-bit saturating state
W_MIN, W_MAX = -128, 127  # int8 weights
MAX_IN, MAX_SPIKES, MAX_OUT = 15, 31, 1  # spikes per step: input channel, hidden, output
MAX_SHIFT, MAX_DASH = 7, 15  # weight bit shifts; 4-bit decays


@dataclass
class XyloLayer:
    """One neuron layer of the float model as placed on Xylo: `start` .. `start + n` of the
    hidden population (or of the outputs), `delay` steps behind the input, `scale` integer
    units per float unit of its membrane."""

    name: str
    start: int
    n: int
    output: bool
    delay: int
    scale: float


@dataclass
class XyloNet:
    w_in: np.ndarray  # [inputs, hidden] int8
    w_rec: np.ndarray  # [hidden, hidden] int8 (row: from, column: to)
    w_out: np.ndarray  # [hidden, outputs] int8
    shift_in: int
    shift_rec: int
    shift_out: int
    dash_mem: np.ndarray  # [hidden] 0..15
    dash_syn: np.ndarray
    threshold: np.ndarray  # [hidden] int16 >= 1
    bias: np.ndarray  # [hidden] int16
    dash_mem_out: np.ndarray  # [outputs]
    dash_syn_out: np.ndarray
    threshold_out: np.ndarray
    bias_out: np.ndarray
    layers: list[XyloLayer] = field(default_factory=list)
    population: int = 1  # output neurons per class (voted)
    readout: str = "rate"
    chip: str = ""
    report: list[dict] = field(default_factory=list)  # per layer: what quantising cost

    @property
    def n_inputs(self) -> int:
        return int(self.w_in.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.w_in.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.w_out.shape[1])

    @property
    def delay(self) -> int:
        """Steps the output layer is behind the input (the number of hidden layers)."""
        return max((lay.delay for lay in self.layers), default=0)

    def validate(self) -> XyloNet:
        """Every value in the range the chip (and xylosim's types) hold; raises ValueError."""
        checks = [
            ("w_in", self.w_in, W_MIN, W_MAX), ("w_rec", self.w_rec, W_MIN, W_MAX),
            ("w_out", self.w_out, W_MIN, W_MAX),
            ("dash_mem", self.dash_mem, 0, MAX_DASH), ("dash_syn", self.dash_syn, 0, MAX_DASH),
            ("dash_mem_out", self.dash_mem_out, 0, MAX_DASH),
            ("dash_syn_out", self.dash_syn_out, 0, MAX_DASH),
            ("threshold", self.threshold, 1, V_MAX), ("threshold_out", self.threshold_out, 1,
                                                      V_MAX),
            ("bias", self.bias, V_MIN, V_MAX), ("bias_out", self.bias_out, V_MIN, V_MAX),
        ]
        for name, a, lo, hi in checks:
            a = np.asarray(a)
            if a.size and (a.min() < lo or a.max() > hi or not np.all(a == np.rint(a))):
                raise ValueError(f"XyloNet.{name}: integers in [{lo}, {hi}] only")
        for name in ("shift_in", "shift_rec", "shift_out"):
            if not 0 <= getattr(self, name) <= MAX_SHIFT:
                raise ValueError(f"XyloNet.{name}: 0 .. {MAX_SHIFT}")
        if self.w_rec.shape != (self.n_hidden, self.n_hidden) or \
                self.w_out.shape[0] != self.n_hidden:
            raise ValueError("XyloNet: weight shapes do not chain")
        return self


@dataclass
class XyloRecord:
    """A run's records, [T, B, n] int64 each, as xylosim keeps them: spike counts, v after the
    spikes' subtraction and the (first) synaptic current, of the hidden and output neurons."""

    spikes: torch.Tensor
    v: torch.Tensor
    i_syn: torch.Tensor
    spikes_out: torch.Tensor
    v_out: torch.Tensor
    i_syn_out: torch.Tensor

    FIELDS = ("spikes", "v", "i_syn", "spikes_out", "v_out", "i_syn_out")

    def differences(self, other: XyloRecord) -> dict[str, int]:
        """Per field, the number of values that differ from `other`'s."""
        return {k: int((getattr(self, k) != getattr(other, k)).sum()) for k in self.FIELDS}


XYLO_FORMAT, XYLO_VERSION = "snnexport-xylo", 1
_ARRAYS = ("w_in", "w_rec", "w_out", "dash_mem", "dash_syn", "threshold", "bias",
           "dash_mem_out", "dash_syn_out", "threshold_out", "bias_out")


def save_xylo(net: XyloNet, path):
    """One .npz: the integer arrays (int64) and a JSON header (format, version, shifts, the
    layers with their delays and scales, readout, chip, the quantisation report). Written to a
    temporary file and renamed."""
    import dataclasses
    import json

    from ...files import atomic_write

    header = {"format": XYLO_FORMAT, "version": XYLO_VERSION,
              "shifts": [net.shift_in, net.shift_rec, net.shift_out],
              "layers": [dataclasses.asdict(lay) for lay in net.layers],
              "population": net.population, "readout": net.readout, "chip": net.chip,
              "report": net.report}
    arrays = {k: np.asarray(getattr(net, k), np.int64) for k in _ARRAYS}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header, default=float)), **arrays)
    return atomic_write(path, write)


def load_xylo(path) -> XyloNet:
    """The XyloNet `save_xylo` wrote; anything else is refused in one line (ValueError)."""
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: np.asarray(z[k], np.int64) for k in _ARRAYS}
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a Xylo net file ({type(e).__name__}: {e})") from None
    if header.get("format") != XYLO_FORMAT or header.get("version") != XYLO_VERSION:
        raise ValueError(f"{path}: not a Xylo net file of version {XYLO_VERSION}")
    layers = [XyloLayer(**lay) for lay in header["layers"]]
    return XyloNet(**arrays, shift_in=header["shifts"][0], shift_rec=header["shifts"][1],
                   shift_out=header["shifts"][2], layers=layers,
                   population=header["population"], readout=header["readout"],
                   chip=header["chip"], report=header["report"]).validate()
