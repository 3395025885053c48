"""SpikingJelly's model zoo at the papers' scale (issue 23): SEW-ResNet18 / 34 / 50 (ADD, PLIF,
multi-step, the BN statistics of tests/zoo_nets.py) at ImageNet's 3 x 224 x 224, T = 4, on
MNIST-5k test digits resized to 224 x 224 (grey in RGB).

    .venv/bin/python bench/zoo_scale.py [--arch sew_resnet18,sew_resnet34,sew_resnet50]
        [--images 8] [--threads 2] [--memory-gb 24] [--size 224]

Per net, each step timed (wall) with this process's peak RSS after it (getrusage ru_maxrss):
the zoo module built; imported (snnexport.check.from_spikingjelly: SpikingJelly's forward
traced) and folded; the reference check (the folded IR in float64 against SpikingJelly's own
forward, every neuron layer's spikes), the fixed-point check (the emulator against it,
calibrated on the same images, a mismatch put down to quantisation) and the integer ONNX
check (bit for bit against the emulator) of --images images; the exports (NIR, ONNX, integer ONNX,
sizes); the operation counts once and the energy on every profile.

Memory stays bounded by batching: a check holds every node's values of a batch over T
steps; the batch is the most images whose check, as check() itself estimates it before running
(2 x snnexport.sim.limits.run_bytes), takes at most half of --memory-gb or of the machine's
memory. A net whose one image does not
fit --memory-gb is refused with that estimate, not run. The run starts and ends with
bench/common.py's account of the machine (CPU model, flags, load, a reference GEMM): the
machine may be shared, and its load says how far the times are to be trusted."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import common
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/zoo_nets.py: the zoo as its users build it

from common import Machine  # noqa: E402
from zoo_nets import T, build, images  # noqa: E402

from snnexport import backends  # noqa: E402
from snnexport.check import check, from_spikingjelly  # noqa: E402
from snnexport.energy import ann_macs, counts_of, estimate, load_profile  # noqa: E402
from snnexport.energy.estimate import available_profiles  # noqa: E402
from snnexport.sim.limits import available_memory, run_bytes  # noqa: E402


def rss_gb() -> float:
    """This process's peak resident set so far, GB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class Steps:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, what: str, fn):
        t = time.perf_counter()
        out = fn()
        print(f"  {self.name} {what}: {time.perf_counter() - t:.1f} s, peak RSS {rss_gb():.2f} GB",
              flush=True)
        return out


def plan(graph, images_n: int, memory_gb: float) -> tuple[int, float, float]:
    """(batch, GB per image, GB the batches may take) for a check: the most images whose
    run, as check() estimates it before running (2 x sim.limits.run_bytes, which check
    refuses beyond the machine's memory), takes half of --memory-gb or of the machine's memory
    at most."""
    per_image = 2 * run_bytes(graph, 1, T) / 1e9
    budget = min(memory_gb, available_memory() / 1e9) / 2
    return max(0, min(images_n, int(budget // per_image))), per_image, budget


def run(arch: str, n: int, memory_gb: float, size: int) -> None:
    step = Steps(arch)
    print(f"{arch} ADD, 3 x {size} x {size}, T = {T}, {n} images", flush=True)
    net = step("build (SpikingJelly zoo)", lambda: build(arch, "ADD"))
    model = step("import", lambda: from_spikingjelly(net, (3, size, size), T))
    lowered = backends.Lowered(model.graph)
    folded = step("fold", lambda: lowered.folded)
    batch, per_image, budget = plan(model.graph, n, memory_gb)
    print(f"  {arch} memory estimate: {per_image:.2f} GB per image in a check (check's own): "
          f"batches of {batch} in {budget:.1f} GB", flush=True)
    if batch < 1:
        print(f"  {arch} REFUSED: one image needs about {per_image:.1f} GB in a check, more "
              f"than {budget:.1f} GB (half of --memory-gb {memory_gb:g} or of the machine's)")
        return
    x, y = step("images", lambda: images(n, size))
    # the float IR against SpikingJelly; the fixed-point net (emulator) against it, where a
    # mismatch is quantisation; the integer ONNX model against the emulator, bit for bit
    for target in ("reference", "fixed", "onnx-fixed"):
        rep = step(f"check {target}", lambda t=target: check(
            model, t, inputs=(x, y), samples=n, batch_size=batch, calib_samples=n,
            lowered=lowered, reference_dtype=torch.float64 if t == "reference" else
            torch.float32))
        spikes = sum(lay.spikes_reference for lay in rep.layers)
        print(f"  {arch} {target}: {rep.samples} images, exact {rep.exact}, mismatches "
              f"{sum(lay.mismatches for lay in rep.layers)} of {spikes} reference spikes in "
              f"{len(rep.layers)} layers, unexplained {rep.unexplained} (what is not a tie: "
              f"{rep.mismatch_cause}), silent layers "
              f"{len(rep.silent_layers)}, agree {rep.agree}/{rep.samples}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        for target in ("nir", "onnx", "onnx-fixed"):
            backend = backends.get(target)
            path = Path(d) / f"model{backend.exports.suffix}"
            step(f"export {target}", lambda b=backend, p=path: b.exports.write(
                lowered.input_for(b, x, None), p))
            print(f"  {arch} {target}: {path.stat().st_size / 1e6:.1f} MB", flush=True)
    counts = step("operation counts", lambda: counts_of(folded, x, 1, None))
    macs = sum(m for _, m in ann_macs(folded))
    for profile in available_profiles():
        rep = estimate(counts, load_profile(profile), macs, n, T)
        print(f"  {arch} energy {profile}: {rep.total / 1e6:.1f} uJ per inference "
              f"({rep.total:.4g} pJ; theoretical {rep.theoretical:.4g} pJ)", flush=True)
    print(f"  {arch} synaptic operations per image: MACs "
          f"{sum(c.macs for c in counts):.4g}, ACs {sum(c.sops for c in counts):.4g}, dense "
          f"{sum(c.dense for c in counts):.4g}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="sew_resnet18")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-gb", type=float, default=24.0)
    ap.add_argument("--size", type=int, default=224, help="input height and width")
    args = ap.parse_args()
    print(common.fix_malloc())
    torch.set_num_threads(args.threads)
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; torch threads {args.threads}")
    machine = Machine(args.threads)
    t0 = time.perf_counter()
    for arch in args.arch.split(","):
        run(arch, args.images, args.memory_gb, args.size)
    print(f"wall {time.perf_counter() - t0:.1f} s, peak RSS {rss_gb():.2f} GB")
    machine.finish()


if __name__ == "__main__":
    main()
