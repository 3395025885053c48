"""The Table S1 network family, readouts, losses and learning of tau / IMP."""

import pytest
import torch
import torch.nn.functional as F

from snnexport.models import NetConfig, build_network, get_loss
from snnexport.models.layers import SeqDropout, VotingLayer


def small(**kw):
    base = dict(in_channels=1, input_size=8, channels=4, time_steps=3, dropout=0.0)
    base.update(kw)
    return build_network(NetConfig(**base))


def test_mnist_architecture_of_table_s1():
    net = build_network(NetConfig(channels=128))  # the 000 *MNIST row at full width
    names = list(net.layers._modules)
    assert names == ["conv1", "bn1", "sn1", "pool1", "conv2", "bn2", "sn2", "pool2", "flatten",
                     "dp1", "fc1", "sn_fc1", "dp_out", "fc_out", "sn_out", "vote"]
    assert net.layers.fc1.in_features == 128 * 7 * 7
    assert net.layers.fc1.out_features == 128 * 7 * 7 // 4  # FC2048-ish: a quarter of in
    assert net.layers.fc_out.out_features == 100  # M * C with M = 10
    assert net.layers.sn1.shape == (128, 28, 28) and net.layers.sn2.shape == (128, 14, 14)


def test_cifar_style_blocks_and_output_shapes():
    net = small(n_conv=3, n_down=2, input_size=8)
    assert [n for n in net.layers._modules if n.startswith("conv")] == [f"conv{i}" for i in
                                                                       range(1, 7)]
    out = net(torch.randn(5, 1, 8, 8))
    assert out.shape == (3, 5, 10)
    assert net(torch.randn(3, 5, 1, 8, 8)).shape == (3, 5, 10)  # a frame sequence
    with pytest.raises(ValueError, match="input must be"):
        net(torch.randn(8, 8))


def test_voting_is_population_average():
    x = torch.arange(20.0).reshape(1, 1, 20)
    out = VotingLayer(10)(x)
    assert out.flatten().tolist() == [4.5, 14.5]


def test_readouts():
    torch.manual_seed(0)
    rate, lts, mem = small(), small(readout="lts"), small(readout="membrane")
    assert rate.layers.sn_out.spiking and not lts.layers.sn_out.spiking
    counts = torch.randint(0, 11, (3, 2, 10))
    o = counts.float() / 10  # voted spikes of populations of M = 10
    assert torch.equal(rate.scores(o), counts.sum(0).float() / 30)
    # equal spike counts give exactly equal scores, however they are spread over time
    tie = torch.tensor([[[0.1, 0.3]], [[0.7, 0.2]], [[0.3, 0.6]]])  # 11 spikes each
    assert rate.scores(tie)[0, 0] == rate.scores(tie)[0, 1]
    o = torch.randn(3, 2, 10)
    assert torch.equal(lts.scores(o), o[-1])
    assert torch.equal(mem.scores(o), o.mean(0))
    spikes = rate(torch.randn(2, 1, 8, 8))
    # voted spikes of a population of 10 are multiples of 1/10
    assert torch.allclose(spikes * 10, (spikes * 10).round(), atol=1e-5)


def test_dropout_mask_shared_over_time():
    torch.manual_seed(0)
    d = SeqDropout(0.5).train()
    y = d(torch.ones(6, 4, 50))
    assert torch.equal(y[0], y[5]) and 0 < float((y[0] == 0).float().mean()) < 1
    assert torch.equal(d.eval()(torch.ones(6, 4, 50)), torch.ones(6, 4, 50))


def test_losses_against_their_definitions():
    torch.manual_seed(0)
    o, y = torch.randn(4, 3, 10), torch.tensor([1, 7, 3])
    onehot = F.one_hot(y, 10).float()
    mse = sum(((o[t] - onehot) ** 2).mean() for t in range(4)) / 4
    assert torch.allclose(get_loss("mse")(o, y), mse)
    tet = sum(F.cross_entropy(o[t], y) for t in range(4)) / 4
    assert torch.allclose(get_loss("tet")(o, y), tet)
    smooth = 0.9 * onehot + 0.1 / 10
    tet_s = sum(-(smooth * F.log_softmax(o[t], -1)).sum(-1).mean() for t in range(4)) / 4
    assert torch.allclose(get_loss("tet_s")(o, y), tet_s)
    assert torch.allclose(get_loss("lts")(o, y), F.cross_entropy(o[3], y))
    assert torch.allclose(get_loss("ce")(o, y), F.cross_entropy(o.mean(0), y))
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge")


@pytest.mark.parametrize("tau_per", ["layer", "neuron"])
def test_tau_and_imp_learn(tau_per):
    torch.manual_seed(1)
    net = small(tau_per=tau_per, imp=True, readout="lts", channels=8)
    with torch.no_grad():  # start near threshold so that a tiny random net is not silent
        for m in net.neuron_layers().values():
            m.v_init.fill_(0.9)
    before = {n: p.detach().clone() for n, p in net.named_parameters()
              if n.endswith(".a") or n.endswith(".v_init")}
    assert len(before) == 2 * 4  # a and v_init for sn1, sn2, sn_fc1, sn_out
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss = get_loss("lts")(net(torch.randn(16, 1, 8, 8)), torch.randint(0, 10, (16,)))
    opt.zero_grad()
    loss.backward()
    params = dict(net.named_parameters())
    for n in before:
        assert params[n].grad is not None and float(params[n].grad.abs().sum()) > 0, n
    opt.step()
    for n, old in before.items():
        assert not torch.equal(params[n].detach(), old), f"{n} did not change"


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="readout must be one of"):
        NetConfig(readout="max")
    with pytest.raises(ValueError, match="unknown keys"):
        NetConfig.from_dict({"chanels": 3})
    with pytest.raises(ValueError, match="per-neuron tau needs PLIF"):
        NetConfig(neuron="lif", tau_per="neuron")
