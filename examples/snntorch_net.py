"""An snnTorch network into snnexport, imported directly (no NIR exporter needed): checked
against snnTorch's own forward pass on real MNIST digits, exported to ONNX.

    python examples/snntorch_net.py [OUTDIR]

snnTorch's Leaky maps exactly with reset_mechanism="zero" (any beta) or "subtract" (beta in
(0, 1]: a soft reset by thr / beta, which NIR and the Loihi targets refuse; ONNX keeps it);
the importer refuses the rest naming the module. Weights seeded, not trained.
"""

import sys
from pathlib import Path

import snntorch as snn
import torch

import snnexport
from snnexport.data import load_dataset

T = 4
out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

torch.manual_seed(0)
lif = dict(init_hidden=True, reset_mechanism="zero")
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), snn.Leaky(beta=0.8, **lif),
    torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10),
    snn.Leaky(beta=0.6, output=True, **lif)).eval()
with torch.no_grad():
    net[0].weight.mul_(3)
    net[3].weight.mul_(4)

model = snnexport.load(net, input_shape=(1, 28, 28), time_steps=T)
ds = load_dataset("mnist5k")
x, y = ds.x_test[:100], ds.y_test[:100]
report = snnexport.verify(model, inputs=(x, y), samples=100)  # vs snnTorch itself
print(report.text())
snnexport.export(model, "nir", out / "snntorch.nir")
sys.exit(0 if report.unexplained == 0 else 1)
