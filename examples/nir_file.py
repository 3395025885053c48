"""A NIR file written by another framework (here snnTorch's own exporter, which does not say
how many time steps the net runs): checked and exported to ONNX from the command line.

    python examples/nir_file.py [OUTDIR]

    snnexport check OUTDIR/snntorch.nir --time-steps 4 --data mnist5k --samples 100
    snnexport export OUTDIR/snntorch.nir --time-steps 4 --to onnx -o OUTDIR/from_nir.onnx
"""

import subprocess
import sys
import warnings
from pathlib import Path

import nir
import snntorch as snn
import torch
from snntorch.export_nir import export_to_nir

from snnexport.data import load_dataset

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
# snnTorch's exporter needs beta / threshold of the full neuron shape and ignore_dims=[0]
s1, s2 = (6, 14, 14), (10,)
lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 6, 3, stride=2, padding=1),
    snn.Leaky(beta=torch.full(s1, 0.8), threshold=torch.full(s1, 1.0), **lif),
    torch.nn.Flatten(), torch.nn.Linear(6 * 14 * 14, 10),
    snn.Leaky(beta=torch.full(s2, 0.6), threshold=torch.full(s2, 0.5), **lif))
with torch.no_grad():
    net[0].weight.mul_(3)
    net[3].weight.mul_(4)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    nir.write(out / "snntorch.nir",
              export_to_nir(net, load_dataset("mnist5k").x_test[:1], ignore_dims=[0]))
cli = [sys.executable, "-m", "snnexport.cli"]
code = subprocess.call(cli + ["check", str(out / "snntorch.nir"), "--time-steps", "4",
                              "--data", "mnist5k", "--samples", "100"])
code = code or subprocess.call(cli + ["export", str(out / "snntorch.nir"), "--time-steps", "4",
                                      "--to", "onnx", "-o", str(out / "from_nir.onnx")])
sys.exit(code)
