"""Scale-out on Ray (snnexport.distributed): a real local Ray cluster (2 CPUs), real targets,
real Lava. A run in shards must give exactly the report one process gives; a worker killed in
the middle of its shard is retried; a shard that fails on every try is reported, not dropped."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch

from snnexport import distributed
from snnexport.backends import Backend, register, unregister
from snnexport.check import check, load_model
from snnexport.cli import main
from snnexport.data import load_dataset
from snnexport.energy import count_operations, counts_of, energy_of
from snnexport.errors import UsageError
from snnexport.passes.fold import fold
from snnexport.sim.reference import simulate

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
SAMPLES = 45  # uneven: shards of 23 and 22 samples, batches of 10 cut across them


def start_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    start_ray()
    yield
    ray.shutdown()


@pytest.fixture
def fresh_ray():
    """A test that kills Ray workers leaves the cluster to itself: Ray 2.58's driver can abort
    the whole process later ("Check failed: ... Tried to complete task that was not pending",
    task_manager.cc) when a retried task of a killed worker completes late, so the next test
    gets a new cluster."""
    yield
    ray.shutdown()
    start_ray()


@pytest.fixture(scope="module")
def lts():  # IMP + last-time-step readout: the fixed point diverges from the float model
    return load_model(MODELS / "digits_plif_imp_lts.pt")


def test_shards_are_contiguous_and_even():
    assert distributed.shards(45, 2) == [(0, 23), (23, 45)]
    assert distributed.shards(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert distributed.shards(2, 4) == [(0, 1), (1, 2)]  # never an empty shard
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(UsageError, match="--workers"):
            distributed.wanted(bad, None)


@pytest.mark.parametrize("target,workers", [("reference", 2), ("nir", 2), ("onnx", 2),
                                            ("fixed", 2), ("onnx-fixed", 3)])
def test_sharded_report_equals_one_process(lts, target, workers):
    one = check(lts, target, samples=SAMPLES, batch_size=10)
    many = check(lts, target, samples=SAMPLES, batch_size=10, workers=workers)
    assert many.to_dict() == one.to_dict()
    assert many.samples == SAMPLES and not many.failed_shards
    if target == "fixed":  # something to merge: divergences in both shards, quantisation
        assert one.first_divergence is not None and one.quantisation
        assert sum(layer.mismatches for layer in one.layers) > 0
    if target == "onnx":
        assert [row["layer"] for row in many.binary] == ["layers.conv2", "layers.fc1",
                                                         "layers.fc_out"]
        assert all(row["inputs_binary"] and row["and_equals_multiply"] for row in many.binary)


def test_energy_counts_summed_over_shards(lts):
    folded = fold(lts.graph)
    x = load_dataset("digits").x_test[:SAMPLES]
    one = [row.to_dict() for row in count_operations(folded, x)]
    assert [row.to_dict() for row in counts_of(folded, x, workers=2)] == one
    assert (energy_of(lts, "loihi2", samples=SAMPLES, workers=2).to_dict() ==
            energy_of(lts, "loihi2", samples=SAMPLES).to_dict())


@pytest.mark.parametrize("target", ["lava-fixed", "lava-float", "netx"])
def test_lava_targets_in_two_shards_equal_one_process(target):
    loaded = load_model(MODELS / "digits_plif_neuron.pt")
    one = check(loaded, target, samples=4)
    many = check(loaded, target, samples=4, workers=2)  # a Lava runner per worker
    assert many.to_dict() == one.to_dict()
    assert many.exact and many.samples == 4


def _reference_backend(name, on_batch):
    """The 'reference' target under another name, `on_batch(call number, xb)` run before
    each batch in whichever process runs it (a Ray worker here)."""
    def make_runner(folded, dtype, stats):
        calls = []

        def run(xb):
            calls.append(1)
            on_batch(len(calls), xb)
            return simulate(folded, xb, dtype=dtype, record_membrane=True)
        return run
    return register(Backend(name, "folded IR, fault-injected", make_runner))


def test_a_worker_killed_mid_shard_is_retried(tmp_path, lts, fresh_ray):
    marker = tmp_path / "killed"

    def die_once(call, xb):
        if call == 2:  # the second batch of the first shard to get there
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return  # the retry
            os.kill(os.getpid(), signal.SIGKILL)

    _reference_backend("killed-once", die_once)
    try:
        many = check(lts, "killed-once", samples=SAMPLES, batch_size=5, workers=2)
        assert marker.exists()  # a worker was killed ...
        one = check(lts, "killed-once", samples=SAMPLES, batch_size=5)  # marker there: no kill
    finally:
        unregister("killed-once")
    assert many.to_dict() == one.to_dict()  # ... and its shard redone: complete, correct
    assert many.samples == SAMPLES and not many.failed_shards


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_shard_failing_on_every_try_is_reported(tmp_path, lts, how, fresh_ray):
    ds = load_dataset("digits")
    x, y = ds.x_test[:SAMPLES].clone(), ds.y_test[:SAMPLES]
    x[30] = 1234.5  # sample 30 is in the second shard (23-44)
    tries = tmp_path / "tries"

    def poisoned(call, xb):
        if bool((xb == 1234.5).any()):
            with open(tries, "a") as f:
                f.write("try\n")
            if how == "dies":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("poisoned sample")

    _reference_backend("poisoned", poisoned)
    try:
        many = check(lts, "poisoned", inputs=(x, y), samples=SAMPLES, workers=2)
        first = check(lts, "poisoned", inputs=(x[:23], y[:23]), samples=23)
    finally:
        unregister("poisoned")
    assert tries.read_text() == "try\n" * (1 + distributed.RETRIES)
    [failed] = many.failed_shards
    assert (failed["shard"], failed["samples"], failed["tries"]) == (2, [23, 44], 3)
    assert failed["error"].startswith("RuntimeError: poisoned sample" if how == "raises"
                                      else "WorkerCrashedError")
    # the shard that ran is all there, the failed one named, nothing silently dropped
    d = many.to_dict()
    assert d.pop("failed_shards") == [failed]
    assert d == first.to_dict() | {"exact": False} and many.samples == 23 and not many.exact
    assert "FAILED shard 2: samples 23-44 not checked (failed on all 3 tries" in many.text()
    assert "exact: every spike" not in many.text()


def test_a_refusal_is_raised_once_not_retried(tmp_path, lts):
    """A snnexport refusal (UsageError, QuantError, ...) is what one process raises: a retry
    cannot change it, so it is raised at once, not retried nor reported as a failed shard."""
    ds = load_dataset("digits")
    x, y = ds.x_test[:SAMPLES].clone(), ds.y_test[:SAMPLES]
    x[40] = 1234.5
    tries = tmp_path / "tries"

    def refuse(call, xb):
        if bool((xb == 1234.5).any()):
            with open(tries, "a") as f:
                f.write("try\n")
            raise UsageError("this target refuses sample 40")

    _reference_backend("refusing", refuse)
    try:
        with pytest.raises(UsageError, match="^this target refuses sample 40$"):
            check(lts, "refusing", inputs=(x, y), samples=SAMPLES, workers=2)
    finally:
        unregister("refusing")
    assert tries.read_text() == "try\n"


def test_decays_sweep_on_ray_equals_separate_checks(tmp_path, capsys, lts):
    model = MODELS / "digits_plif_neuron.pt"
    out = tmp_path / "sweep.json"
    assert main(["check", str(model), "--target", "fixed", "--decays", "1,4", "--samples", "30",
                 "--workers", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decays sweep of fixed: 30 samples, T=8" in text
    assert "acc float" in text and "acc fixed" in text
    sweep = json.loads(out.read_text())["sweep"]
    loaded = load_model(model)
    for row, k in zip(sweep, (1, 4), strict=True):
        one = check(loaded, "fixed", samples=30, decays=k).to_dict()
        assert row["decays"] == k and row["report"] == one
        assert row["accuracy_target"] == one["accuracy"]["target"]
        assert row["mismatches"] == sum(layer["mismatches"] for layer in one["layers"])
    assert sweep[0]["report"] != sweep[1]["report"]  # K=1 and K=4 are other nets


def test_bad_workers_one_line_and_no_ray_with_one_worker(capsys):
    model = str(MODELS / "digits_plif_layer.pt")
    assert main(["check", model, "--samples", "5", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --workers 0: must be >= 1") and err.count("\n") == 1
    assert main(["energy", model, "--profile", "loihi2", "--workers", "-3"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers -3: must be >= 1")
    # a fresh process: one worker imports no Ray; an address where no Ray listens is refused
    code = (f"import sys; from snnexport.cli import main; "
            f"rc = main(['check', {model!r}, '--samples', '5']); "
            f"rc2 = main(['check', {model!r}, '--samples', '5', '--ray-address', "
            "'127.0.0.1:9']); print(rc, rc2, 'ray' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.splitlines()[-1] == "0 2 True"  # imported for the second call only
    assert run.stderr.splitlines()[-1].startswith(
        "error: --ray-address 127.0.0.1:9: no Ray cluster answers there")
    code = code.split("; rc2")[0] + "; print(rc, 'ray' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.splitlines()[-1] == "0 False"


def test_labels_stay_with_their_samples(lts):
    """The shards' inputs are copies of their own samples (a view would ship all of them):
    a check of reordered inputs in shards equals the one-process check of the same order."""
    ds = load_dataset("digits")
    order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(0))
    x, y = ds.x_test[:SAMPLES][order], ds.y_test[:SAMPLES][order]
    assert (check(lts, "fixed", inputs=(x, y), samples=SAMPLES, workers=2).to_dict() ==
            check(lts, "fixed", inputs=(x, y), samples=SAMPLES).to_dict())
