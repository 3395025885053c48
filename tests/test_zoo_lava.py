"""SpikingJelly's model zoo (tests/zoo_nets.py) in the real Lava simulator: SEW-ResNet18 (ADD,
PLIF, multi-step, non-identity BN) at a reduced input of 3 x 8 x 8, lava-float every spike
equal to the float64 reference and lava-fixed every spike equal to the emulator, on 20
MNIST-5k digits.

Lava 0.10's CPU Conv makes one scipy convolve2d call per (output, input) channel pair per step
whatever the map's size (about 13 us each): the 512 x 512 channel convs of layer4 on a 1 x 1
map took 3.4 s a step each and 2 samples ran past the runner's 600 s. A conv on a small map is
given to Lava as the sparse matrix of its connections instead (lowering.unrolled,
runner.proc_synapse): the 20 samples take about a minute per target on a shared CPU."""

import numpy as np
import pytest
import torch
from zoo_nets import T, build, images

from snnexport.check import check, from_spikingjelly
from snnexport.hw.cores import conv_matrix
from snnexport.ir import nodes as ir
from snnexport.lava.lowering import conv_connections, conv_sparse, unrolled

SIZE, SAMPLES = 8, 20


@pytest.mark.parametrize("c_in, c_out, groups, hw, k, stride, pad", [
    (512, 512, 1, (1, 1), 3, 1, 1),  # SEW-ResNet18's layer4 at an 8 x 8 input
    (6, 4, 2, (7, 5), 3, 2, 1),  # grouped, strided, padded, not square
    (4, 4, 4, (6, 6), 3, 2, 1),  # depthwise (an OR-pool's window sum)
    (3, 5, 1, (8, 8), 7, 2, 3),  # the ResNet stem's 7 x 7
    (8, 6, 1, (4, 4), 1, 2, 0),  # the 1 x 1 strided downsample
])
def test_an_unrolled_conv_is_the_convolution(c_in, c_out, groups, hw, k, stride, pad):
    """The sparse matrix Lava's Sparse gets computes torch's conv2d of every input (C-major
    flat vectors), equals the IR's own dense unrolling (hw.cores.conv_matrix), and stores one
    entry per connection that is inside the map."""
    gen = torch.Generator().manual_seed(c_in * 31 + k)
    w = torch.randint(-8, 9, (c_out, c_in // groups, k, k), generator=gen).double()
    w[w == 0] = 3.0  # no zero weight: every connection is stored
    conv = dict(weight=w.numpy(), in_shape=(c_in, *hw), stride=(stride, stride),
                padding=(pad, pad), groups=groups)
    m = conv_sparse(conv)
    x = (torch.rand(5, c_in, *hw, generator=gen) < 0.5).double()
    want = torch.nn.functional.conv2d(x, w, stride=stride, padding=pad, groups=groups)
    np.testing.assert_array_equal(m @ x.reshape(5, -1).numpy().T, want.reshape(5, -1).numpy().T)
    if c_in < 100:  # (the loop unrolling is slow on 512 channels)
        np.testing.assert_array_equal(m.toarray(), conv_matrix(
            ir.Conv2d(w.numpy(), None, (stride, stride), (pad, pad), groups), (c_in, *hw)))
    assert m.nnz == conv_connections(conv)


def test_which_convs_lava_gets_unrolled():
    """Small maps are unrolled (their connections cost less than Lava's channel pairs), a
    large map stays a Conv, as does a conv whose matrix would pass UNROLL_MAX_CONNECTIONS."""
    def conv(c_in, c_out, size, k=3):
        return dict(weight=np.ones((c_out, c_in, k, k)), in_shape=(c_in, size, size),
                    stride=(1, 1), padding=(k // 2, k // 2), groups=1)

    assert unrolled(conv(512, 512, 1))  # 262,144 connections, 2.6 ms, vs 262,144 calls, 3.4 s
    assert unrolled(conv(64, 64, 8))  # 2.0 M connections, 20 ms, vs 4,096 calls, 53 ms
    assert not unrolled(conv(64, 64, 56))  # ImageNet's layer1: 113 M connections
    assert not unrolled(conv(512, 512, 4))  # 26.2 M connections: more than 2^24


@pytest.mark.parametrize("target", ["lava-float", "lava-fixed"])
def test_sew_resnet18_on_lava_spike_for_spike(target):
    x, y = images(SAMPLES, SIZE)
    model = from_spikingjelly(build("sew_resnet18", "ADD"), (3, SIZE, SIZE), T)
    report = check(model, target, inputs=(x, y), samples=SAMPLES,
                   reference_dtype=torch.float64)
    assert report.samples == SAMPLES
    assert len(report.layers) == 1 + 8 * 2 + 3  # every neuron layer of the zoo net
    assert not report.silent_layers, report.text()
    assert report.exact and all(lay.unexplained == 0 for lay in report.layers), report.text()
    if target == "lava-fixed":  # nothing saturated: the integers are the whole story
        assert all(row["v_clipped"] == row["u_wrapped"] == row["bias_clipped"] == 0
                   for row in report.quantisation), report.text()


def test_what_lava_cannot_run_in_reason_is_refused_before_it_starts():
    """Never a hang of the runner's 600 s: Lava's cost is estimated from the lowered network
    (lowering.lava_cost) and what passes the runner's limit or half the memory is refused in
    one line naming the cause, before Lava starts. At ImageNet's 3 x 224 x 224 the float
    host layer's dense matrix alone (64 x 112 x 112 outputs by 3 x 224 x 224 inputs, float64)
    is 8 x 802,816 x 150,528 bytes = 900.4 GiB; 1,000 samples at 8 x 8 are 4,000 Lava steps of
    about 145 processes."""
    from snnexport.backends import Lowered
    from snnexport.lava.target import LavaFixedTarget, LavaFloatTarget, LavaTooLarge

    big = from_spikingjelly(build("sew_resnet18", "ADD"), (3, 224, 224), T)
    with pytest.raises(LavaTooLarge) as err:
        LavaFloatTarget(Lowered(big.graph).folded)
    msg = str(err.value)
    assert "'sn1'" in msg and "900.4 GiB" in msg and "\n" not in msg, msg
    small = from_spikingjelly(build("sew_resnet18", "ADD"), (3, SIZE, SIZE), T)
    x, _ = images(20, SIZE)
    net, _ = Lowered(small.graph).fixed(x)
    with pytest.raises(LavaTooLarge) as err:
        LavaFixedTarget(net)(x.repeat(50, 1, 1, 1))
    msg = str(err.value)
    assert "1000 sample(s)" in msg and "--lava-samples" in msg and "\n" not in msg, msg
