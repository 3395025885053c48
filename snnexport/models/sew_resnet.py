"""SEW-ResNet (Fang et al. 2021b, "Deep Residual Learning in Spiking Neural Networks"), the
network family seed 001 (Shen et al. 2024) reports its IMP and LTS results on, sized for
small images:

    stem      conv3x3(C) - BN - NEURON - MP2
    stage s   blocks[s] SEW basic blocks at width C * 2**s; stages after the first begin with a
              downsample block (its first conv and its shortcut at stride 2)
    head      global average pooling of the spikes - DP - FC(M*classes) - OUT - vote(M)

A SEW basic block (SpikingJelly's sew_resnet.BasicBlock):

    out      = NEURON(BN(conv3x3(NEURON(BN(conv3x3(x))))))
    identity = x, or NEURON(BN(conv1x1 stride 2 (x))) in a downsample block
    y        = g(out, identity):  ADD  out + identity   (values 0, 1, 2, ...: graded)
                                  AND  out * identity   (binary)
                                  IAND (1 - out) * identity  (binary)

With ADD the block outputs are integers, not spikes: the next synapse (and the next ADD) is
fed graded values, as SEW-ResNet computes them; docs/semantics.md says how each target carries
them. The readouts are PLIFNet's (rate / lts / membrane); IMP makes every neuron's initial
potential learnable. Module paths (stem.conv, blocks.0.conv1, blocks.1.down_conv, ...) are the
IR node names, so reports point at the layer as the model writes it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .layers import (
    SeqAvgPool2d,
    SeqBatchNorm2d,
    SeqConv2d,
    SeqDropout,
    SeqFlatten,
    SeqMaxPool2d,
    VotingLayer,
)
from .network import NetConfig, PLIFNet
from .neurons import SpikingNeuron


def connect(fn: str, out: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """SEW's connect function g(out, identity), as SpikingJelly's sew_resnet writes it."""
    if fn == "ADD":
        return out + identity
    if fn == "AND":
        return out * identity
    return identity * (1.0 - out)  # IAND


class SEWBlock(nn.Module):
    """One SEW basic block; `down`: stride 2 and a conv-BN-NEURON shortcut."""

    def __init__(self, net: SEWResNet, c_in: int, c_out: int, size_out: int, down: bool):
        super().__init__()
        stride = 2 if down else 1
        shape = (c_out, size_out, size_out)
        self.connect_fn = net.cfg.connect
        self.conv1 = SeqConv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = SeqBatchNorm2d(c_out)
        self.sn1 = net._neuron(shape)
        self.conv2 = SeqConv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = SeqBatchNorm2d(c_out)
        self.sn2 = net._neuron(shape)
        self.down = down
        if down:
            self.down_conv = SeqConv2d(c_in, c_out, 1, 2, 0, bias=False)
            self.down_bn = SeqBatchNorm2d(c_out)
            self.down_sn = net._neuron(shape)

    def forward(self, x):
        out = self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))))
        identity = self.down_sn(self.down_bn(self.down_conv(x))) if self.down else x
        return connect(self.connect_fn, out, identity)


class SEWResNet(PLIFNet):
    """PLIFNet's interface (encode, forward -> per-step votes [T, B, classes], scores,
    neuron_layers, cfg) on the SEW-ResNet above."""

    def __init__(self, cfg: NetConfig):
        nn.Module.__init__(self)
        self.cfg = cfg
        c, size = cfg.channels, cfg.input_size
        self.stem = nn.Sequential(OrderedDict([
            ("conv", SeqConv2d(cfg.in_channels, c, 3, 1, 1, bias=False)),
            ("bn", SeqBatchNorm2d(c)),
            ("sn", self._neuron((c, size, size))),
            ("pool", SeqMaxPool2d(2, 2)),
        ]))
        size //= 2
        blocks, c_in = [], c
        for s, n_blocks in enumerate(cfg.stages):
            width = c * 2 ** s
            for b in range(n_blocks):
                down = s > 0 and b == 0
                if down:
                    size //= 2
                blocks.append(SEWBlock(self, c_in, width, size, down))
                c_in = width
        self.blocks = nn.ModuleList(blocks)
        n_out = cfg.num_classes * cfg.population
        self.head = nn.Sequential(OrderedDict([
            ("pool", SeqAvgPool2d(size, size)),
            ("flatten", SeqFlatten()),
            ("dp", SeqDropout(cfg.dropout)),
            ("fc", nn.Linear(c_in, n_out, bias=cfg.fc_bias)),
            ("sn", self._neuron((n_out,), spiking=cfg.readout == "rate")),
            ("vote", VotingLayer(cfg.population)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.encode(x))
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def neuron_layers(self) -> OrderedDict[str, SpikingNeuron]:
        return OrderedDict((n, m) for n, m in self.named_modules()
                           if isinstance(m, SpikingNeuron))
