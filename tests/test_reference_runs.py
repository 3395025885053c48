"""Issue 15: deploy runs each reference once on its samples (the trained model for reference,
nir, onnx, fixed; the emulator for onnx-fixed and the Lava targets) and every check's result is
the one a check on its own gives. Real runs, counted; nothing mocked."""

import json

import pytest
import torch
from test_fold import random_net

from snnexport.backends import Lowered
from snnexport.check import ReferenceRuns, check, load_source
from snnexport.data import load_dataset
from snnexport.deploy import deploy
from snnexport.models import save_checkpoint
from snnexport.quant.emulator import emulate

FAST = ("reference", "nir", "onnx", "fixed", "onnx-fixed")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("refruns")
    torch.manual_seed(0)
    save_checkpoint(random_net(channels=4), d / "net.pt", meta={"data": "digits"})
    return d / "net.pt"


def test_deploy_runs_the_model_once_per_batch_and_changes_no_result(model, tmp_path):
    loaded = load_source(str(model))
    calls = []
    run = loaded.reference

    def counted(x, dtype):  # the real reference, its calls counted
        calls.append(dtype)
        return run(x, dtype)

    loaded.reference = counted
    deploy(loaded, str(tmp_path / "out"), data="digits", targets=",".join(FAST), samples=150,
           progress=False)
    # 150 samples = batches of 100 and 50, run once for the four targets compared with the
    # model (each ran them before: 8 calls)
    assert calls == [torch.float32] * 2
    for target in FAST:  # each check alone, no kept runs: the same JSON
        alone = check(load_source(str(model)), target, "digits", 150).to_dict()
        kept = json.loads((tmp_path / "out" / f"check_{target}.json").read_text())
        # deploy also records which artifact file it ran (its SHA-256): provenance, no result
        assert set(kept.pop("artifact")) == {"file", "sha256"}
        assert kept == json.loads(json.dumps(alone, default=float)), target


def test_the_emulator_runs_once_and_its_first_rows_serve_fewer_samples(model):
    loaded = load_source(str(model))
    lowered = Lowered(loaded.graph)
    runs = ReferenceRuns()
    full = check(loaded, "onnx-fixed", "digits", 60, lowered=lowered, reference_runs=runs)
    again = check(loaded, "onnx-fixed", "digits", 60, lowered=lowered, reference_runs=runs)
    assert (runs.runs, runs.reused) == (1, 1) and again.to_dict() == full.to_dict()
    # the Lava targets' --lava-samples: the first rows of the kept batch, as a run of them alone
    few = check(loaded, "onnx-fixed", "digits", 3, lowered=lowered, reference_runs=runs)
    assert (runs.runs, runs.reused) == (1, 2)
    assert few.to_dict() == check(loaded, "onnx-fixed", "digits", 3, lowered=lowered).to_dict()
    ds = load_dataset("digits", loaded.graph.metadata.get("time_steps"))
    net = lowered.fixed(ds.x_train[:200])[0]
    x = torch.as_tensor(ds.x_test[:60])
    if x.dim() == 5:
        x = x.transpose(0, 1)
    whole, alone = emulate(net, x), emulate(net, x[:, :3] if x.dim() == 5 else x[:3])
    for name in alone.spikes:  # bit for bit, row by row
        assert torch.equal(whole.spikes[name][:, :3], alone.spikes[name]), name
        assert torch.equal(whole.membrane[name][:, :3], alone.membrane[name]), name
    # a model reference is taken only whole: a float GEMM may round differently per batch size
    check(loaded, "reference", "digits", 60, lowered=lowered, reference_runs=runs)
    check(loaded, "reference", "digits", 3, lowered=lowered, reference_runs=runs)
    assert (runs.runs, runs.reused) == (3, 2)
    runs.clear()
    check(loaded, "reference", "digits", 3, lowered=lowered, reference_runs=runs)
    assert runs.runs == 4
