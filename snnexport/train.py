"""Training of the seed models (Adam lr 1e-3, cosine schedule T_max=64, as 000 and 002).

The bundled checkpoints in examples/models/ are made by the presets below; the README there
lists the command, split and test accuracy of each.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import torch

from .data import load_dataset
from .errors import SnnexportError
from .evaluate import evaluate, frames_first
from .importers.plifnet import import_plifnet
from .models import NetConfig, build_network, get_loss, save_checkpoint, tau_variance_penalty


class TrainingError(SnnexportError, RuntimeError):
    """Training that cannot go on (the loss diverged)."""


@dataclass
class TrainConfig:
    data: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    t_max: int = 64
    loss: str = "mse"
    tau_var_lambda: float = 0.0  # Pazderka 2024: lambda * Var(tau_l) per per-neuron layer
    shift_augment: int = 0  # random translation by up to this many pixels (0: none)
    # lambda * mean(relu(H - 2 V_th)) over the hidden spiking layers: a neuron that would fire
    # twice in one step on a chip that spikes up to 31 times a step (Xylo) is penalised
    burst_lambda: float = 0.0
    # lambda * mean(relu(|H| - R V_th) + relu(|g J| - R V_th)) over the neuron layers (R =
    # range_limit; g J the current the membrane takes): a chip with 16-bit state (Xylo) holds
    # a range of some R thresholds at a threshold of enough integer steps
    range_lambda: float = 0.0
    range_limit: float = 16.0
    seed: int = 0
    net: dict = field(default_factory=dict)


PRESETS: dict[str, TrainConfig] = {
    # a Xylo-sized net (16 inputs or fewer, dense, reset by subtraction): digits row by row as
    # spike counts on 8 channels over 8 steps, {FC-CUBA-PLIF}(128, 64; one tau per neuron) -
    # FC10-CUBA-PLIF, rate readout, cross-entropy; the neuron Xylo runs: a synaptic current
    # decaying by 1/2 a step (dash_syn 1), tau a power of two (dash_mem), no input gain
    # (decay_input False: Xylo's v += i); hidden bursts penalised (Xylo fires up to 31 spikes
    # a step), membranes and currents kept within 16 thresholds (Xylo's 16-bit state)
    "digits-rows-xylo": TrainConfig(
        data="digits-rows", epochs=200, lr=1e-2, t_max=200, loss="ce", burst_lambda=10.0,
        range_lambda=1.0, range_limit=16.0,
        net=dict(in_channels=8, input_size=1, n_down=0, fc_hidden=[128, 64], population=1,
                 time_steps=8, tau_per="neuron", tau_init=4.0, v_reset=None, dropout=0.0,
                 current_decay=0.5, tau_pow2=True, decay_input=False)),
    # 000: one tau per layer, rate readout, MSE on voted spikes.
    "digits-plif-layer": TrainConfig(
        data="digits", epochs=40, loss="mse",
        net=dict(in_channels=1, input_size=8, channels=32, time_steps=8, tau_per="layer",
                 dropout=0.2)),
    # 002: one tau per neuron, log-normal init (mean 2, sd 0.1), lambda Var(tau) = 0.01.
    "digits-plif-neuron": TrainConfig(
        data="digits", epochs=40, loss="mse", tau_var_lambda=0.01,
        net=dict(in_channels=1, input_size=8, channels=32, time_steps=8, tau_per="neuron",
                 dropout=0.2)),
    # 001: learnable initial membrane potential, last-time-step readout and loss.
    "digits-plif-imp-lts": TrainConfig(
        data="digits", epochs=40, loss="lts",
        net=dict(in_channels=1, input_size=8, channels=32, time_steps=4, tau_per="layer",
                 imp=True, readout="lts", dropout=0.2)),
    # 000 MNIST architecture {c-BN-PLIF-MP}*2-DP-FC-PLIF-DP-FC100-PLIF-vote at width 32.
    "mnist5k-plif": TrainConfig(
        data="mnist5k", epochs=24, loss="mse", shift_augment=2,
        net=dict(in_channels=1, input_size=28, channels=32, time_steps=8, tau_per="layer")),
    # 001 on a SEW-ResNet: stem c32-BN-PLIF-MP, SEW blocks (ADD) c32 + a downsample block to c64,
    # global average pooling of the spikes, FC10 into a non-spiking PLIF; IMP, LTS readout + loss
    "mnist5k-sew": TrainConfig(
        data="mnist5k", epochs=20, t_max=20, loss="lts", shift_augment=2,
        net=dict(in_channels=1, input_size=28, arch="sew", stages=[1, 1], connect="ADD",
                 channels=32, time_steps=4, tau_per="layer", imp=True, readout="lts",
                 population=1, dropout=0.2)),
}


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (zero = background after padding with the
    minimum value), the 'random cropping' augmentation of 000 for MNIST."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, [max_shift] * 4, value=float(x.min()))
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    return torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def train(cfg: TrainConfig, log=print) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ds = load_dataset(cfg.data)
    net_cfg = dict(cfg.net)
    net_cfg.setdefault("in_channels", ds.input_shape[0])
    net_cfg.setdefault("input_size", ds.input_shape[1])
    model = build_network(NetConfig.from_dict(net_cfg))
    loss_fn = get_loss(cfg.loss)
    graph = import_plifnet(model)  # its input shape: frame sequences run [T, B, ...]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.t_max)
    n = len(ds.y_train)
    penalties: list[torch.Tensor] = []

    def chip_penalties(hidden: bool):
        def hook(mod, inp, out):  # H (and J) of the layer, run again from its input
            h, th = mod.run(inp[0])[0], mod.v_threshold
            if cfg.burst_lambda and hidden:
                penalties.append(cfg.burst_lambda * torch.relu(h - 2 * th).mean())
            if cfg.range_lambda:
                lim = cfg.range_limit * th
                gj = mod.current(inp[0]) * mod.input_gain()
                penalties.append(cfg.range_lambda * (torch.relu(h.abs() - lim).mean()
                                                     + torch.relu(gj.abs() - lim).mean()))
        return hook
    hooks = [m.register_forward_hook(chip_penalties(name != "sn_out" and m.spiking))
             for name, m in model.neuron_layers().items()
             if cfg.range_lambda or cfg.burst_lambda and name != "sn_out" and m.spiking]
    start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, seen = 0.0, 0
        for lo in range(0, n, cfg.batch_size):
            idx = perm[lo:lo + cfg.batch_size]
            x = random_shift(ds.x_train[idx], cfg.shift_augment, gen)
            loss = loss_fn(model(frames_first(x, graph)), ds.y_train[idx])
            if cfg.tau_var_lambda:
                loss = loss + tau_variance_penalty(model, cfg.tau_var_lambda)
            if penalties:
                loss = loss + sum(penalties)
                penalties.clear()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        sched.step()
        if not math.isfinite(total):
            raise TrainingError(f"training diverged at epoch {epoch + 1} (loss {total}); try a "
                                "smaller learning rate or another seed")
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {total / seen:.4f}  "
            f"{time.time() - start:6.1f} s")
    for h in hooks:
        h.remove()
    result = evaluate(model, ds.x_test, ds.y_test)
    log(f"test {result.accuracy * 100:.2f} % on {ds.describe()}")
    meta = {
        "data": cfg.data, "split": ds.describe(), "test_accuracy": result.accuracy,
        "train_config": {k: v for k, v in vars(cfg).items() if k != "net"},
        "train_seconds": round(time.time() - start, 1),
        "torch": str(torch.__version__), "python": sys.version.split()[0],
    }
    return model, meta


def train_to_file(cfg: TrainConfig, out, preset: str | None = None, log=print):
    model, meta = train(cfg, log=log)
    meta["command"] = (f"snnexport train --preset {preset} -o {out}" if preset else None)
    save_checkpoint(model, out, meta)
    return model, meta
