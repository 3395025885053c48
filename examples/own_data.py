"""Your own data: an .npz of inputs and labels, checked from the command line.

    python examples/own_data.py [OUTDIR]

Writes OUTDIR/my_digits.npz (x [N, 1, 8, 8] as the bundled digits model expects, y [N],
x_train/y_train for the fixed-point calibration) and runs
    snnexport check examples/models/digits_plif_layer.pt --data OUTDIR/my_digits.npz \
        --target onnx-fixed
Here the inputs are scikit-learn's digits prepared as the model was trained (pixel/16, then
standardised); your own data must be prepared the same way as the training data were.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

from snnexport.data import load_dataset

out = Path(sys.argv[1] if len(sys.argv) > 1 else "example_out")
out.mkdir(parents=True, exist_ok=True)
ds = load_dataset("digits")
data = out / "my_digits.npz"
np.savez(data, x=ds.x_test[:100].numpy(), y=ds.y_test[:100].numpy(),
         x_train=ds.x_train[:200].numpy(), y_train=ds.y_train[:200].numpy())
model = Path(__file__).resolve().parent / "models" / "digits_plif_layer.pt"
sys.exit(subprocess.call([sys.executable, "-m", "snnexport.cli", "check", str(model),
                          "--data", str(data), "--target", "onnx-fixed", "--samples", "100"]))
