"""Trains the small current-based snnTorch net that tests/test_cuba.py checks on the fixed-point
path (tests/data/digits_synaptic.pt, its state_dict): sklearn's 8x8 digits (the bundled
`digits` data set), 64 -> 64 -> 10, snnTorch Synaptic layers (alpha 0.5, beta 0.8, zero reset
at once), T = 8, rate-coded cross-entropy, Adam, 40 epochs, seed 0 (about 2 minutes on two
cores; 97.1 % test accuracy when written). Run: .venv/bin/python tests/data/make_digits_synaptic.py
"""

from pathlib import Path

import snntorch as snn
import snntorch.utils
import torch
from torch import nn

from snnexport.data import load_dataset

T = 8


def build() -> nn.Sequential:
    lif = dict(alpha=0.5, beta=0.8, init_hidden=True, reset_mechanism="zero", reset_delay=False)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), snn.Synaptic(**lif),
                         nn.Linear(64, 10), snn.Synaptic(**lif))


def main() -> None:
    ds = load_dataset("digits")
    torch.manual_seed(0)
    net = build()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x, y = ds.x_train, ds.y_train
    for _ in range(40):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            snntorch.utils.reset(net)
            out = sum(net(x[idx]) for _ in range(T))
            loss = nn.functional.cross_entropy(out * 2.0, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    snntorch.utils.reset(net)
    with torch.no_grad():
        out = sum(net(ds.x_test) for _ in range(T))
    print("test accuracy", float((out.argmax(1) == ds.y_test).float().mean()))
    state = {k: v for k, v in net.state_dict().items() if not k.endswith((".syn", ".mem"))}
    torch.save(state, Path(__file__).with_name("digits_synaptic.pt"))


if __name__ == "__main__":
    main()
