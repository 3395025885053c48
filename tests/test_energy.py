"""Operation counts (against NeuroBench, run for real, and by hand) and energy estimates."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from snnexport.check import load_model
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.energy import (
    ann_macs,
    available_profiles,
    count_operations,
    energy_of,
    load_profile,
)
from snnexport.energy.estimate import ProfileError
from snnexport.ir import Graph
from snnexport.ir import nodes as ir
from snnexport.passes.fold import fold

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
CALIB = tomllib.loads((ROOT / "calib" / "energy_references.toml").read_text())


@pytest.mark.parametrize("name", ["digits_plif_layer.pt", "digits_plif_imp_lts.pt",
                                  "mnist5k_plif.pt"])
def test_counts_equal_neurobench_synaptic_operations(name):
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    loaded = load_model(MODELS / name)
    x = load_dataset(loaded.meta["data"]).x_test[:60]
    model = TorchModel(loaded.torch_model)
    model.register_hooks()
    with torch.no_grad():
        preds = model(x)
    nb = SynapticOperations()(model, preds, (x, None))
    model.cleanup_hooks()
    ours = count_operations(fold(loaded.graph), x)
    macs = sum(c.macs for c in ours)
    sops = sum(c.sops for c in ours)
    assert macs > 0 and sops > 0
    # both are integer totals divided by the 60 samples: compare the totals exactly
    n = len(x)
    assert round(macs * n) == round(nb["Effective_MACs"] * n)
    assert round(sops * n) == round(nb["Effective_ACs"] * n)
    assert round(sum(c.dense for c in ours) * n) == round(nb["Dense"] * n)


def _neurobench(torch_model, x):
    from neurobench.metrics.workload import SynapticOperations
    from neurobench.models import TorchModel

    model = TorchModel(torch_model)
    model.register_hooks()
    with torch.no_grad():
        preds = model(x)
    nb = SynapticOperations()(model, preds, (x, None))
    model.cleanup_hooks()
    return nb


def test_pruned_net_counts_equal_neurobench_dense_included():
    """A pruned net (the smallest 30 % of every conv / linear weight set to 0): NeuroBench's
    Dense counts every weight, zeros included, so it equals the unpruned net's Dense; ours
    too. The zero weights show only in the effective counts and in dense_nonzero_weights."""
    import copy

    from snnexport.importers.plifnet import import_plifnet

    loaded = load_model(MODELS / "digits_plif_layer.pt")
    x = load_dataset("digits").x_test[:40]
    pruned = copy.deepcopy(loaded.torch_model)
    zeroed = {}
    with torch.no_grad():
        for name, m in pruned.named_modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                w, k = m.weight, -(-3 * m.weight.numel() // 10)  # ceil(30 %)
                cut = w.abs().flatten().kthvalue(k).values
                w[w.abs() <= cut] = 0
                zeroed[name] = int((w == 0).sum())
                assert zeroed[name] >= k, name
    nb = _neurobench(pruned, x)
    ours = count_operations(fold(import_plifnet(pruned)), x)
    full = count_operations(fold(loaded.graph), x)
    n = len(x)
    macs, sops = sum(c.macs for c in ours), sum(c.sops for c in ours)
    dense = sum(c.dense for c in ours)
    assert macs > 0 and sops > 0
    assert round(macs * n) == round(nb["Effective_MACs"] * n)
    assert round(sops * n) == round(nb["Effective_ACs"] * n)
    assert round(dense * n) == round(nb["Dense"] * n)
    # Dense is the architecture's: pruning does not change it
    assert round(dense * n) == round(sum(c.dense for c in full) * n)
    # the fully connected layers: every zero weight is one connection per step fewer
    t = loaded.torch_model.cfg.time_steps
    for row in ours:
        if row.name in ("layers.fc1", "layers.fc_out"):
            assert row.dense - row.dense_nonzero_weights == zeroed[row.name] * t, row.name


def tiny(kernel: np.ndarray, kind="spikes"):
    return Graph.chain([
        ("in", ir.Input((1, 3, 3), kind)),
        ("conv", ir.Conv2d(kernel.reshape(1, 1, 3, 3), None, (1, 1), (1, 1))),
        ("sn", ir.Neuron((1, 3, 3), np.array(0.5))),
        ("flat", ir.Flatten()),
        ("out", ir.Readout(9, "rate"))], {"time_steps": 3, "folded": True})


def test_hand_checked_counts_with_borders_and_a_zero_weight():
    x = torch.zeros(1, 3, 1, 3, 3)  # one sample [N, T, C, H, W]: one spike per step
    x[0, 0, 0, 0, 0] = 1  # a corner
    x[0, 1, 0, 1, 1] = 1  # the centre
    x[0, 2, 0, 0, 1] = 1  # an edge
    full = np.ones((3, 3))
    (conv, sn, _) = count_operations(tiny(full), x)
    # a 3x3 kernel with padding 1 reaches 4 outputs from a corner, 9 from the centre, 6 from
    # an edge; padding adds nothing
    assert conv.spike_fed and (conv.sops, conv.macs) == (4 + 9 + 6, 0)
    # dense: per step 4 corners x 4 + 4 edges x 6 + centre 9 = 49 connections
    assert conv.dense == 3 * 49
    holed = full.copy()
    holed[0, 0] = 0  # tap (0, 0) links input (i-1, j-1) to output (i, j): drops one link each
    (conv, *_rest) = count_operations(tiny(holed), x)
    # dense counts every weight, the zero one too (NeuroBench's Dense); the nonzero figure
    # loses the 4 links the zero tap has inside the 3x3 map, per step
    assert conv.sops == 3 + 8 + 5 and conv.dense == 3 * 49
    assert conv.dense_nonzero_weights == 3 * (49 - 4)
    # the same positions with analog values are MACs, not SOPs
    (conv, sn, _) = count_operations(tiny(full, "analog"), x * 0.5)
    assert not conv.spike_fed and (conv.macs, conv.sops) == (19, 0)
    assert sn.updates == 9 * 3 and sn.active_updates == 4 + 9 + 6


def test_profiles_cite_their_sources_and_match_the_publications():
    assert available_profiles() == ["cmos45", "loihi1", "loihi2", "truenorth"]
    for name in available_profiles():
        p = load_profile(name)
        for key, c in p.energy.items():
            assert c["source"] and c["grade"] and c["unit"] == "pJ", (name, key)
    h, d, m = CALIB["horowitz2014"], CALIB["davies2018"], CALIB["merolla2014"]
    cmos = load_profile("cmos45")
    assert cmos.e("mac") == pytest.approx(h["fp32_mult"] + h["fp32_add"])
    assert cmos.e("ac") == h["fp32_add"]
    assert cmos.e("mac_int8") == pytest.approx(h["int8_mult"] + h["int8_add"])
    assert cmos.e("ac_int8") == h["int8_add"]
    for size in ("8kB", "32kB", "1MB"):
        assert cmos.e(f"sram_read_64b_{size}") == h[f"sram_64b_{size}"]
    assert (cmos.e("mac"), cmos.e("ac")) == (CALIB["shen2024"]["e_mac"],
                                           CALIB["shen2024"]["e_ac"])
    loihi = load_profile("loihi1")
    assert loihi.e("synaptic_op") == d["synaptic_spike_op"]
    assert (loihi.e("neuron_update_inactive"), loihi.e("neuron_update_active")) == (
        d["neuron_update_inactive"], d["neuron_update_active"])
    assert loihi.e("spike") == d["spike_within_tile"]
    assert (loihi.e("spike_tile_hop_east_west"), loihi.e("spike_tile_hop_north_south")) == (
        d["tile_hop_east_west"], d["tile_hop_north_south"])
    tn = load_profile("truenorth")
    assert tn.e("synaptic_op") == m["synaptic_event_all_in"] and tn.accounting == "all-in"
    assert load_profile("loihi2").energy["synaptic_op"]["grade"] == "derived"


def test_energy_terms():
    loaded = load_model(MODELS / "digits_plif_layer.pt")
    x = load_dataset("digits").x_test[:50]
    counts = {c.name: c for c in count_operations(fold(loaded.graph), x)}
    macs = sum(c.macs for c in counts.values())
    sops = sum(c.sops for c in counts.values())
    for name in available_profiles():
        r = energy_of(loaded, name, samples=50)
        # the seed-style figure is the same formula on every target
        assert r.theoretical == pytest.approx(4.6 * macs + 0.9 * sops)
        if r.accounting == "all-in":  # never add memory on top of an all-in figure
            assert all(layer.memory == 0 for layer in r.layers)
        else:
            assert sum(layer.memory for layer in r.layers) > 0
        assert r.total > 0
    tn = energy_of(loaded, "truenorth", samples=50)
    assert tn.total == pytest.approx(26.0 * (macs + sops))
    # the ANN runs every connection once (T = 1)
    dense = sum(c.dense for c in counts.values() if c.kind == "synapse")
    assert tn.ann_macs == sum(m for _, m in ann_macs(fold(loaded.graph)))
    assert tn.ann_macs * 8 * 50 == dense * 50


def test_energy_command_writes_json_csv_png(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["energy", str(MODELS / "digits_plif_neuron.pt"), "--profile", "loihi1",
                 "--samples", "30", "--json", f"{out}.json", "--csv", f"{out}.csv",
                 "--plot", f"{out}.png"]) == 0
    d = json.loads(Path(f"{out}.json").read_text())
    assert d["profile"] == "loihi1" and d["unit"] == "pJ per inference" and d["total"] > 0
    assert Path(f"{out}.csv").read_text().splitlines()[0].startswith("name,kind,macs,sops")
    assert Path(f"{out}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "theoretical" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["energy", str(MODELS / "digits_plif_neuron.pt"), "--profile", "nope"])
    assert "choose from 'cmos45', 'loihi1', 'loihi2', 'truenorth'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\naccounting = "all-in"\n[energy.mac]\nvalue = 1.0\nunit = "pJ"\n')
    with pytest.raises(ProfileError, match="bad.toml: energy.mac lacks \\['grade', 'source'\\]"):
        load_profile(bad)
