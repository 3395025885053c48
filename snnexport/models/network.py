"""The network family of Fang et al. 2021, Table S1, with the readouts of 000 and 001.

    {{c{W}k3s1-BN-NEURON}*n_conv - MPk2s2}*n_down - {DP-FC-NEURON}*hidden - DP-FC(M*C)-OUT - vote(M)

Input is direct-encoded: a static image [B, C, H, W] is repeated over T steps, or a frame
sequence [T, B, C, H, W] (events) is fed as is. The first conv layer therefore sees analog
values; everything after the first neuron layer is spike-driven.

Readouts (per-step outputs o_t = vote(OUT_t), shape [T, B, classes]):
  rate      OUT spiking; score = mean_t o_t                       (000: spike count / rate)
  lts       OUT non-spiking (membrane of a PLIF that never fires); score = o_{T-1}   (001: LTS)
  membrane  OUT non-spiking; score = mean_t o_t                   (mean membrane)
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UsageError
from ..readout import readout_scores
from .layers import (
    SeqBatchNorm2d,
    SeqConv2d,
    SeqDropout,
    SeqFlatten,
    SeqMaxPool2d,
    VotingLayer,
)
from .neurons import IF, LIF, PLIF, TAU_PER, SpikingNeuron

NEURONS = ("plif", "lif", "if")
READOUTS = ("rate", "lts", "membrane")
ARCHS = ("plain", "sew")  # the chain above, or SEW-ResNet (models/sew_resnet.py)
CONNECTS = ("ADD", "AND", "IAND")  # SEW connect functions (Fang et al. 2021b)


def _fits(value, annotation: str) -> bool:
    """Whether `value` is of the annotated type ('int', 'float | None', 'list[int] | None',
    ...): bools are not ints, floats must be finite."""
    for alt in (a.strip() for a in annotation.split("|")):
        if alt == "None" and value is None:
            return True
        if alt == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if alt == "int" and isinstance(value, int):
            return True
        if alt == "float" and isinstance(value, (int, float)) and math.isfinite(value):
            return True
        if alt == "str" and isinstance(value, str) or alt == "dict" and isinstance(value, dict):
            return True
        if alt == "list[int]" and isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            return True
    return False


@dataclass
class NetConfig:
    """Everything needed to rebuild a network; stored in every checkpoint."""

    in_channels: int = 1
    input_size: int = 28
    channels: int = 128
    n_conv: int = 1
    n_down: int = 2
    fc_hidden: list[int] | None = None  # None: one hidden FC with a quarter of its in-features
    num_classes: int = 10
    population: int = 10
    time_steps: int = 8
    neuron: str = "plif"
    tau_init: float = 2.0
    tau_per: str = "layer"
    tau_std: float = 0.1
    imp: bool = False
    readout: str = "rate"
    dropout: float = 0.5
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = True
    fc_bias: bool = False
    # a synaptic current in every neuron layer, decaying by this fixed factor per step (None:
    # none; models/neurons.py), and PLIF decays held at 1 - 2^-n (tau a power of two): the
    # neuron a bit-shift chip (Xylo) runs
    current_decay: float | None = None
    tau_pow2: bool = False
    # SEW-ResNet (arch='sew'): SEW blocks per stage; stages after the first start with a
    # downsample block (stride 2, twice the width); n_conv / n_down / fc_hidden are unused
    arch: str = "plain"
    stages: list[int] | None = None
    connect: str = "ADD"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for f in dataclasses.fields(self):  # a checkpoint's config is data: types first
            value = getattr(self, f.name)
            if not _fits(value, str(f.type)):
                raise UsageError(f"NetConfig: {f.name} must be {f.type}, got {value!r}")
        checks = [
            (self.neuron in NEURONS, f"neuron must be one of {NEURONS}"),
            (self.tau_per in TAU_PER, f"tau_per must be one of {TAU_PER}"),
            (self.readout in READOUTS, f"readout must be one of {READOUTS}"),
            (0 <= self.n_down <= 32 and self.input_size >= 2**min(max(self.n_down, 0), 32),
             "input_size too small for n_down poolings"),
            (min(self.in_channels, self.channels, self.n_conv, self.time_steps,
                 self.num_classes, self.population) > 0 and self.n_down >= 0,
             "sizes must be > 0 (n_down >= 0)"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.neuron == "plif" or self.tau_per == "layer", "per-neuron tau needs PLIF"),
            (self.neuron == "plif" or not self.tau_pow2, "tau_pow2 needs PLIF"),
            (self.current_decay is None or 0.0 <= self.current_decay < 1.0,
             "current_decay must be in [0, 1)"),
            (self.arch in ARCHS, f"arch must be one of {ARCHS}"),
            (self.connect in CONNECTS, f"connect must be one of {CONNECTS}"),
            (self.arch == "plain" or (self.stages is not None and 0 < len(self.stages) <= 8
                                      and self.input_size >= 2 ** len(self.stages)),
             "arch 'sew' needs stages, 1 to 8 of them, and input_size >= 2**len(stages)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UsageError(f"NetConfig: {msg} (got {self})")

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UsageError(f"NetConfig: unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class PLIFNet(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in, size, i = cfg.in_channels, cfg.input_size, 0
        for d in range(cfg.n_down):
            for _ in range(cfg.n_conv):
                i += 1
                layers[f"conv{i}"] = SeqConv2d(c_in, cfg.channels, 3, 1, 1, bias=False)
                layers[f"bn{i}"] = SeqBatchNorm2d(cfg.channels)
                layers[f"sn{i}"] = self._neuron((cfg.channels, size, size))
                c_in = cfg.channels
            layers[f"pool{d + 1}"] = SeqMaxPool2d(2, 2)
            size //= 2
        layers["flatten"] = SeqFlatten()
        features = c_in * size * size
        hidden = cfg.fc_hidden if cfg.fc_hidden is not None else [features // 4]
        for j, width in enumerate(hidden, start=1):
            layers[f"dp{j}"] = SeqDropout(cfg.dropout)
            layers[f"fc{j}"] = nn.Linear(features, width, bias=cfg.fc_bias)
            layers[f"sn_fc{j}"] = self._neuron((width,))
            features = width
        n_out = cfg.num_classes * cfg.population
        layers["dp_out"] = SeqDropout(cfg.dropout)
        layers["fc_out"] = nn.Linear(features, n_out, bias=cfg.fc_bias)
        layers["sn_out"] = self._neuron((n_out,), spiking=cfg.readout == "rate")
        layers["vote"] = VotingLayer(cfg.population)
        self.layers = nn.Sequential(layers)

    def _neuron(self, shape, spiking: bool = True) -> SpikingNeuron:
        cfg = self.cfg
        common = dict(
            shape=shape, v_threshold=cfg.v_threshold, v_reset=cfg.v_reset,
            decay_input=cfg.decay_input, detach_reset=cfg.detach_reset, imp=cfg.imp,
            spiking=spiking, current_decay=cfg.current_decay,
        )
        if cfg.neuron == "plif":
            return PLIF(tau_init=cfg.tau_init, tau_per=cfg.tau_per, tau_std=cfg.tau_std,
                        tau_pow2=cfg.tau_pow2, **common)
        if cfg.neuron == "lif":
            return LIF(tau=cfg.tau_init, **common)
        return IF(**common)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Direct encoding: [B, C, H, W] -> [T, B, C, H, W]; a sequence passes unchanged."""
        if x.dim() == 4:
            return x.unsqueeze(0).expand(self.cfg.time_steps, *x.shape)
        if x.dim() == 5:
            return x
        raise UsageError(
            f"PLIFNet: input must be [B, C, H, W] or [T, B, C, H, W], got {list(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step outputs o_t after voting, [T, B, classes]."""
        return self.layers(self.encode(x))

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """Readout: per-step outputs [T, B, classes] -> class scores [B, classes]."""
        return readout_scores(outputs, self.cfg.readout, self.cfg.population)

    def neuron_layers(self) -> OrderedDict[str, SpikingNeuron]:
        return OrderedDict((n, m) for n, m in self.layers.named_children()
                           if isinstance(m, SpikingNeuron))


def build_network(cfg: NetConfig | dict) -> PLIFNet:
    if isinstance(cfg, dict):
        cfg = NetConfig.from_dict(cfg)
    if cfg.arch == "sew":
        from .sew_resnet import SEWResNet  # it subclasses PLIFNet

        return SEWResNet(cfg)
    return PLIFNet(cfg)
