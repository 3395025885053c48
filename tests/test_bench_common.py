"""bench/common.py, the account of the machine every speed bench prints: when it calls the
ratios not trustworthy, and that its measure of other processes' CPU sees a busy process."""

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import common  # noqa: E402


def test_quiet_run_is_trusted():
    # GEMM 100 -> 90 GFLOP/s is a 10 % change, within the 15 % noise; others 0.1 core; load 0.3
    assert common.distrust(100.0, 90.0, 0.1, 0.3, 2) == []


def test_each_sign_of_contention_is_named():
    gemm = common.distrust(100.0, 80.0, 0.1, 0.3, 2)  # 20 % slower at the end
    assert len(gemm) == 1 and "reference GEMM changed by 20%" in gemm[0]
    busy = common.distrust(100.0, 100.0, 1.0, 0.3, 2)  # a `yes` on one of the two cores
    assert len(busy) == 1 and "other processes took 1.00 cores" in busy[0]
    load = common.distrust(100.0, 100.0, 0.0, 1.0, 2)  # one core's worth of load at the start
    assert len(load) == 1 and "load average was 1.00" in load[0]
    assert len(common.distrust(100.0, 130.0, 1.5, 3.0, 2)) == 3


def test_other_processes_cpu_is_measured():
    """A child spinning for 2 s while this process sleeps: /proc/stat's busy time less this
    process's own must show at least half a core taken by others (a whole one on a quiet
    machine; more when others are busy too)."""
    busy0, own0, t0 = common._busy_seconds(), common._own_seconds(), time.monotonic()
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.time()\nwhile time.time() - t < 2: pass"])
    child.wait(timeout=60)
    wall = time.monotonic() - t0
    others = ((common._busy_seconds() - busy0) - (common._own_seconds() - own0)) / wall
    assert others >= 0.5, others


def test_cpu_flags_are_read_from_cpuinfo():
    model, flags = common.cpu_info()
    text = Path("/proc/cpuinfo").read_text()
    first = next(line for line in text.splitlines() if line.startswith("flags"))
    assert flags == [f for f in common.FLAGS if f in first.split(":", 1)[1].split()]
    assert model != "unknown CPU" or "model name" not in text
