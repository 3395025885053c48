"""Property-based fuzzing of every model reader (.pt, .snnir, .nir) with hypothesis: N generated
files (default 10,000), each read and folded as the CLI does; prints the count per outcome and
the time. Any outcome other than a graph or the toolkit's own error (SnnexportError) fails with
hypothesis's minimal example. `make fuzz` runs it; tests/test_fuzz.py runs a few hundred.

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
    counts = fuzz(n)
    dt = time.perf_counter() - t0
    for label, k in sorted(counts.items()):
        print(f"{label:<28}{k:>7}")
    total = sum(counts.values())
    print(f"{total} cases in {dt:.0f} s ({total / dt:.1f} cases/s), 0 other outcomes")


if __name__ == "__main__":
    main()
