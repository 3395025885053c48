"""Checkpoints round-trip, load without pickles, and fail clearly on bad files."""

import os

import pytest
import torch

from snnexport.models import (
    CheckpointError,
    NetConfig,
    build_network,
    load_checkpoint,
    save_checkpoint,
)


def make():
    torch.manual_seed(0)
    return build_network(NetConfig(input_size=8, channels=4, time_steps=2, tau_per="neuron",
                                   imp=True, readout="lts"))


def test_round_trip(tmp_path):
    net = make()
    path = save_checkpoint(net, tmp_path / "m.pt", meta={"note": "x"})
    loaded, meta = load_checkpoint(path)
    assert meta == {"note": "x"} and loaded.cfg == net.cfg and not loaded.training
    for (k, a), (k2, b) in zip(net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(net.eval()(x), loaded(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: no such file"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a readable torch checkpoint"):
        load_checkpoint(bad)
    good = save_checkpoint(make(), tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: not a readable"):
        load_checkpoint(cut)


def test_bare_state_dict_and_mismatched_weights(tmp_path):
    net = make()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="sd.pt: not an snnexport checkpoint"):
        load_checkpoint(tmp_path / "sd.pt")
    payload = torch.load(save_checkpoint(net, tmp_path / "m.pt"), weights_only=True)
    payload["config"]["channels"] = 5
    torch.save(payload, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="wrong.pt: state_dict does not match"):
        load_checkpoint(tmp_path / "wrong.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_code_is_not_executed(tmp_path):
    torch.save({"format": "snnexport-checkpoint", "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
