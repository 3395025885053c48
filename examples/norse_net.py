"""A Norse network into snnexport, imported directly (Norse 1.1's to_nir writes tau wrongly,
norse #411): checked against Norse's own forward pass on real MNIST digits.

    python examples/norse_net.py [OUTDIR]

LIFBoxCell maps exactly; LIFCell only without a synaptic current carried over steps
(dt * tau_syn_inv = 1). Weights seeded, not trained.
"""

import sys
from pathlib import Path

import norse.torch as nt
import torch

import snnexport
from snnexport.data import load_dataset

T = 4
out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)

torch.manual_seed(0)
p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.5))
net = nt.SequentialState(
    torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), nt.LIFBoxCell(p),
    torch.nn.Flatten(), torch.nn.Linear(8 * 14 * 14, 10), nt.LIFBoxCell(p)).eval()
with torch.no_grad():
    net[0].weight.mul_(3)
    net[3].weight.mul_(4)

model = snnexport.load(net, input_shape=(1, 28, 28), time_steps=T)
ds = load_dataset("mnist5k")
x, y = ds.x_test[:100], ds.y_test[:100]
report = snnexport.verify(model, inputs=(x, y), samples=100)  # vs Norse itself
print(report.text())
snnexport.export(model, "onnx", out / "norse.onnx")
sys.exit(0 if report.unexplained == 0 else 1)
