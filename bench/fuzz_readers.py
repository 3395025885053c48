"""Property-based fuzzing of every reader (.pt, .snnir, .nir models, .npz data) with
hypothesis: N generated files (default 10,000), each read (models also folded) as the CLI
does; prints the count per outcome and the time. Any outcome other than a result or the
toolkit's own error (SnnexportError) fails with hypothesis's minimal example. `make fuzz` runs
it; tests/test_fuzz.py runs a few hundred.

    .venv/bin/python bench/fuzz_readers.py [N]
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_readers import fuzz  # noqa: E402  (the harness lives beside the tests that use it)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    t0 = time.perf_counter()
    slowest = [0.0, None]
    last = [time.perf_counter()]

    def progress(done, counts):
        now = time.perf_counter()
        if now - last[0] > slowest[0]:
            slowest[:] = [now - last[0], done]
        last[0] = now
        if done % 1000 == 0:
            print(f"  {done} cases, {now - t0:.0f} s", flush=True)

    counts = fuzz(n, progress=progress)
    dt = time.perf_counter() - t0
    for label, k in sorted(counts.items()):
        print(f"{label:<28}{k:>7}")
    total = sum(counts.values())
    print(f"{total} cases in {dt:.0f} s ({total / dt:.1f} cases/s), 0 other outcomes; "
          f"slowest case {slowest[0]:.1f} s (case {slowest[1]})")


if __name__ == "__main__":
    main()
