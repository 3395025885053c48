"""Samples per second of `check` in one process and in 2 Ray workers on this machine, on the
emulator ('fixed') and on Lava ('lava-float'), the ratio, and what the shard cost model
predicts for N machines. Measured in one run:

    .venv/bin/python bench/distributed_speed.py [--model examples/models/mnist5k_plif.pt]
                                                 [--samples 400] [--lava-samples 6]

Both runs give one core to each shard (1 torch thread in the one-process run, as Ray gives a
task one CPU; a Lava runner is its own process either way), so they differ only in the
number of shards. A local Ray (num_cpus=2) is started before the clock runs: on a cluster it
is up already (`ray start`). Each run is the whole check as a user runs it: quantisation (the
driver calibrates once), shipping, every shard's runner start (Lava: its runner process),
the samples, the merge. The two reports are checked to be equal (a fast wrong answer is no
answer).

The shard cost model: a run over n samples in N shards takes

    wall(N) = a + b * n / N

a: the start-up a run pays once whatever N is (the driver's quantisation, Ray's shipping, a
shard's runner start, all shards starting in parallel), b: the cost of one sample in one
shard. Fitted from the two runs (N = 1, 2): b = 2 (wall(1) - wall(2)) / n,
a = 2 wall(2) - wall(1). Predicted for N machines (one shard each): n / wall(N) samples/s,
at most n / a however many machines.
"""

from __future__ import annotations

import argparse
import time

import torch

from snnexport.check import check, load_model


def timed(loaded, target: str, n: int, workers: int):
    start = time.perf_counter()
    report = check(loaded, target, samples=n, workers=workers)
    return time.perf_counter() - start, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="examples/models/mnist5k_plif.pt")
    ap.add_argument("--samples", type=int, default=400, help="samples of the 'fixed' check")
    ap.add_argument("--lava-samples", type=int, default=6, help="samples of 'lava-float'")
    args = ap.parse_args()
    import ray

    torch.set_num_threads(1)  # one core per shard, as a Ray task gets
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    loaded = load_model(args.model)
    print(f"model {args.model}, T={loaded.graph.metadata['time_steps']}; local Ray with 2 CPUs "
          "(started before timing); one core per shard")
    print(f"{'target':<12}{'samples':>8}{'1 worker':>16}{'2 workers':>16}{'ratio':>7}"
          f"{'a (s)':>8}{'b (s/sample)':>14}  predicted samples/s on N machines")
    for target, n in (("fixed", args.samples), ("lava-float", args.lava_samples)):
        t1, r1 = timed(loaded, target, n, 1)
        t2, r2 = timed(loaded, target, n, 2)
        if r1.to_dict() != r2.to_dict():
            raise SystemExit(f"{target}: the 2-worker report differs from the one-process one")
        b = 2 * (t1 - t2) / n
        a = 2 * t2 - t1
        pred = "  ".join(f"N={m}: {n / (a + b * n / m):.2f}" for m in (4, 8, 16))
        limit = f"  (limit n/a = {n / a:.2f})" if a > 0 else ""
        print(f"{target:<12}{n:>8}{n / t1:>9.2f} /s {t1:>4.0f}s{n / t2:>9.2f} /s {t2:>4.0f}s"
              f"{t1 / t2:>6.2f}x{a:>8.1f}{b:>14.3f}  {pred}{limit}")
    ray.shutdown()


if __name__ == "__main__":
    main()
