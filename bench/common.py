"""What the speed benchmarks share: the one baseline, the timing, the paired ratios, and the
account of the machine that says when the ratios cannot be trusted.

The baseline (`torch_baseline`): the trained model's own torch forward, float32, under
torch.inference_mode (no autograd bookkeeping), in the bench's thread count (set again before
every run: other engines' code may change it, e.g. `artifact_input` runs in one thread), with
the same warm-up for every bench (WARMUP untimed runs when it is made, then `timed`'s pause and
one untimed run before each timed one). bench/onnx_speed.py and bench/integer_speed.py both
time it through here, so they measure the same thing.

The allocator: glibc's malloc serves a large allocation with fresh pages from mmap, and
raises that size threshold (up to 32 MB) each time a mapped block is freed, so how many of a
torch forward's intermediate tensors come back as fresh, page-faulting memory depends on what
the process allocated and freed before: the same forward took 45,000-143,000 minor page
faults and 370-600 ms of CPU, varying with the process's history, and 0-5,000 faults and
245-255 ms with the threshold fixed (bench net, 1 thread, 2026-12-07, bench/RESULTS.md).
That is why bench/onnx_speed.py and bench/integer_speed.py, whose other engines allocate
differently, measured the same baseline 1.5x apart. So every bench calls `fix_malloc` first,
which fixes the threshold at 1 GiB (`mallopt`; onnxruntime keeps its own arena either way):
every bench's engines, the baseline included, reuse their memory as a long-running deployment
would. BENCH_MALLOC=glibc leaves glibc's default for comparison.

The machine (`Machine`): the CPU model and the flags that decide which kernels run (AVX2,
AVX-512, VNNI, AMX), the load averages and the CPU time other processes took during the run
(from /proc/stat, less this process's own), and a reference float32 GEMM (torch.mm, the
bench's largest thread count) timed at the start and at the end. The ratios are called NOT
trustworthy when the two GEMM timings differ by more than NOISE (15 %), or other processes
took more than BUSY_CORES (0.25) of a core on average during the run, or the 1-minute load
average at the start was already at half the cores: then an engine may have waited for a core
that another process held (torch's OpenMP threads wait for the slowest one: a 2-thread torch
forward took 1,700-2,090 ms instead of 233-242 ms with one core busy elsewhere, issue 27;
onnxruntime far less), and the ratios measure the contention rather than the engines.
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import time

import torch

CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # --clock cpu: the process's CPU time (every thread), which the
# machine's load disturbs less than wall time (a descheduled thread costs no CPU time) but
# which counts the threads' spin-waiting; wall time is the measure, cpu time a cross-check

# before each timed run a pause and one untimed run: onnxruntime's pool threads and torch's
# OpenMP threads spin for a while after their work, and, engines interleaved, the last one's
# spinning threads took the 2 cores from the next (float ONNX / torch eager measured 2.58x
# with no pause, 3.46x with the engines apart, in runs minutes apart on a quiet machine); after
# the pause an engine's own threads are parked, so one run wakes them (each engine is timed
# warm, as a deployment running batch after batch is)
PAUSE = 0.2
WARMUP = 3  # untimed runs of the baseline when it is made: a process's first forwards are slow
NOISE = 0.15  # reference GEMM start vs end: a larger change means the machine changed
BUSY_CORES = 0.25  # other processes' CPU during the run, in cores, above which ratios lie
GEMM_N = 1536  # the reference GEMM: [N x N] x [N x N] float32, 7.2 GFLOP
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


MALLOC = "glibc's default (fix_malloc not called)"


def fix_malloc() -> str:
    """Fix glibc's mmap and trim thresholds at 1 GiB for the rest of the process (see the
    module docstring), unless BENCH_MALLOC=glibc; what was done, in words (also `MALLOC`)."""
    global MALLOC
    if os.environ.get("BENCH_MALLOC") == "glibc":
        MALLOC = "glibc's default (BENCH_MALLOC=glibc)"
        return MALLOC
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and \
            libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except OSError:
        ok = False
    MALLOC = ("glibc mmap / trim thresholds fixed at 1 GiB" if ok else
              "glibc's default (mallopt not available)")
    return MALLOC


def timed(fn):
    """Seconds of one warm run of fn (after PAUSE and one untimed run), by `clock`."""
    time.sleep(PAUSE)
    fn()
    t0 = clock()
    fn()
    return clock() - t0


def paired(rounds, num, den):
    """median (min, max) over rounds of den_time / num_time: how many times faster num is."""
    r = [d / n for n, d in zip(rounds[num], rounds[den], strict=True)]
    return statistics.median(r), min(r), max(r)


def fmt(m):
    return f"{m[0]:.2f}x ({m[1]:.2f}-{m[2]:.2f})"


def pct(m):
    return f"{100 * m[0]:.1f}% of peak ({100 * m[1]:.1f}-{100 * m[2]:.1f}%)"


def thread_counts(text: str) -> list[int]:
    """--threads "2,1" -> [2, 1]: the ratios are measured once per thread count."""
    counts = [int(t) for t in text.split(",")]
    if not counts or min(counts) < 1:
        raise SystemExit("error: --threads takes thread counts >= 1, e.g. 2,1")
    return counts


def torch_baseline(net, x, threads: int):
    """The baseline of every bench: `net(x)` (the trained model's torch forward), float32,
    under torch.inference_mode, in `threads` torch threads; warmed up WARMUP times here."""
    net = net.float().eval()
    x = torch.as_tensor(x).float().contiguous()

    def run():
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            return net(x)

    for _ in range(WARMUP):
        run()
    return run


def interleave(engines: dict, rounds: int) -> dict[str, list[float]]:
    """Each engine run once untimed, then `rounds` rounds timing every engine once in turn
    (A B C A B C ...): seconds per engine, one per round."""
    times = {k: [] for k in engines}
    with torch.inference_mode():
        for fn in engines.values():
            fn()
        for _ in range(rounds):
            for k, fn in engines.items():
                times[k].append(timed(fn))
    return times


def cpu_info() -> tuple[str, list[str]]:
    """The CPU model and which of FLAGS it has (Linux /proc/cpuinfo)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in FLAGS if f in flags]


def _busy_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (/proc/stat, every core)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reference_gemm(threads: int, reps: int = 7) -> float:
    """GFLOP/s of a float32 torch.mm [GEMM_N]^2 x [GEMM_N]^2 in `threads` threads (median of
    `reps` timed runs, each after `timed`'s pause and warm run)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.rand(GEMM_N, GEMM_N, generator=g)
        b = torch.rand(GEMM_N, GEMM_N, generator=g)
        t = statistics.median(timed(lambda: torch.mm(a, b)) for _ in range(reps))
    finally:
        torch.set_num_threads(old)
    return 2 * GEMM_N ** 3 / t / 1e9


def distrust(gemm0: float, gemm1: float, others: float, load0: float, cores: int) -> list[str]:
    """Why a run's ratios cannot be trusted (empty: they can), from the reference GEMM's
    GFLOP/s at the start and the end, the cores other processes used on average during the
    run and the 1-minute load average at the start."""
    change = abs(gemm1 - gemm0) / gemm0
    why = []
    if change > NOISE:
        why.append(f"the reference GEMM changed by {100 * change:.0f}% (> {100 * NOISE:.0f}%)")
    if others > BUSY_CORES:
        why.append(f"other processes took {others:.2f} cores (> {BUSY_CORES})")
    if load0 >= cores / 2:
        why.append(f"the load average was {load0:.2f} at the start (>= {cores / 2:g}, half "
                   "the cores)")
    return why


class Machine:
    """The machine's state at the start and the end of a bench run, and the verdict."""

    def __init__(self, threads: int):
        self.threads = threads
        self.model, self.flags = cpu_info()
        self.cores = os.cpu_count() or 1
        self.load0 = os.getloadavg()
        self.busy0, self.own0, self.wall0 = _busy_seconds(), _own_seconds(), time.monotonic()
        self.gemm0 = reference_gemm(threads)
        print(f"machine: {self.model}, {self.cores} logical CPUs, flags "
              f"{' '.join(self.flags) or 'none of ' + ' '.join(FLAGS)}; "
              f"torch {torch.__version__}; malloc: {MALLOC}")
        print(f"start: load average {self._load(self.load0)}; reference GEMM "
              f"({GEMM_N}^3 float32 torch.mm, {threads} threads) {self.gemm0:.1f} GFLOP/s")

    @staticmethod
    def _load(load):
        return " ".join(f"{v:.2f}" for v in load) + " (1, 5, 15 min)"

    def finish(self) -> bool:
        """Print the end state and whether the ratios can be trusted; returns that."""
        wall = time.monotonic() - self.wall0
        others = max(0.0, (_busy_seconds() - self.busy0) - (_own_seconds() - self.own0)) / wall
        gemm1 = reference_gemm(self.threads)
        load1 = os.getloadavg()
        change = abs(gemm1 - self.gemm0) / self.gemm0
        print(f"end: load average {self._load(load1)}; reference GEMM {gemm1:.1f} GFLOP/s "
              f"({100 * change:.0f}% from the start); other processes used "
              f"{others:.2f} cores on average over the {wall:.0f} s run")
        why = distrust(self.gemm0, gemm1, others, self.load0[0], self.cores)
        if why:
            print("RATIOS NOT TRUSTWORTHY: " + "; ".join(why) + ". The engines shared the CPU "
                  "with other work; rerun on a quiet machine.")
        else:
            print(f"ratios trustworthy: the reference GEMM within {100 * NOISE:.0f}%, other "
                  f"processes below {BUSY_CORES} cores, load below half the cores")
        return not why
