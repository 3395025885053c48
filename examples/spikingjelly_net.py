"""A SpikingJelly network into snnexport: import, check against SpikingJelly's own forward pass
on real MNIST digits, export NIR and ONNX, estimate the energy on Loihi 2.

    python examples/spikingjelly_net.py [OUTDIR]

The weights here are seeded, not trained (so the example runs in seconds); with your own net,
load its state_dict first (torch.load(path, weights_only=True)).
"""

import sys
from pathlib import Path

import torch
from spikingjelly.activation_based import layer, neuron, surrogate

import snnexport
from snnexport.data import load_dataset

T = 4
out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

torch.manual_seed(0)
plif = dict(init_tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True)
net = torch.nn.Sequential(
    layer.Conv2d(1, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8),
    neuron.ParametricLIFNode(**plif), layer.MaxPool2d(2),
    layer.Flatten(), layer.Linear(8 * 14 * 14, 10, bias=False),
    neuron.ParametricLIFNode(**plif)).eval()
with torch.no_grad():
    net[5].weight.mul_(8)  # so that the output layer spikes

model = snnexport.load(net, input_shape=(1, 28, 28), time_steps=T)
ds = load_dataset("mnist5k")
x, y = ds.x_test[:100], ds.y_test[:100]
report = snnexport.verify(model, inputs=(x, y), samples=100)  # vs SpikingJelly itself
print(report.text())
snnexport.export(model, "nir", out / "sj.nir")
snnexport.export(model, "onnx", out / "sj.onnx")
print(snnexport.estimate_energy(model, "loihi2", inputs=(x, y), samples=100).text())
sys.exit(0 if report.unexplained == 0 else 1)
