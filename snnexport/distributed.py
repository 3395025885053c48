"""Scale-out on Ray: a run cut into contiguous shards of its samples, one Ray task per shard.

`check`, `energy_of` and `deploy` take `workers` (default 1: one process, Ray is not even
imported) and `ray_address`. With `workers` N > 1, or an address, the samples are cut into
N contiguous shards (`shards`; sizes differ by at most one), and each shard runs as a Ray task
(`run`) on:

  * a local Ray started on demand with num_cpus=N (kept for the rest of the process, so a
    deploy's checks share it; shut down at exit), or one the caller already started
    (`ray.init` before the call), or
  * the cluster at `ray_address` (`ray.init(address=...)`: `ray start --head` on one machine,
    `ray start --address HEAD:6379` on the others, `--ray-address HEAD:6379` or `auto` here).

What a task gets: what every shard shares (the folded graph or the fixed-point net, the
reference model, thresholds: put in Ray's object store once and handed to every task, so a
fixed-point net is quantised once, in the caller, never per shard) and its shard's inputs.
The caller merges the shard results in sample order (parity.ParityReport.merge, the energy
counts' sums) into exactly what one process gives.

Failures: a task whose worker process dies (killed, out of memory) or that raises is retried
by Ray, `retries` more times (`max_retries`, `retry_exceptions`); a hang is ended by the
runner's own timeout (the Lava runner's, snnexport.lava.target), which raises and so is
retried too. A shard that fails on every try comes back as `Failed` (its index, the tries,
the last error in one line) for the caller to report, never dropped. An error the caller calls
a refusal (`refusals`: e.g. a QuantError, a UsageError, which a retry cannot change) is not
retried: it is raised here, as the one-process run raises it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

RETRIES = 2  # a shard is tried 1 + RETRIES times


@dataclass
class Failed:
    """A shard that failed on every try."""

    index: int
    tries: int
    error: str  # the last try's error, one line


@dataclass
class _Refused:
    error: BaseException


_LOCAL: dict[str, int] = {}  # 'cpus': the num_cpus of the local Ray this module started


def check_workers(workers) -> int:
    """`workers` as an int >= 1, else UsageError naming --workers."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise UsageError(f"--workers {workers!r}: a whole number >= 1 is needed (1: one "
                         "process, no Ray; N: N Ray tasks)")
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be >= 1; give --workers 1 (one process) "
                         "or more (one Ray task per shard of the samples)")
    return int(workers)


def wanted(workers, address: str | None) -> bool:
    """Whether a run goes through Ray: more than one worker, or a cluster named."""
    workers = check_workers(workers)
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise UsageError(f"--ray-address {address!r}: give HOST:PORT of a Ray head "
                         "(`ray start --head` prints it) or 'auto'")
    return workers > 1 or address is not None


def shards(n: int, workers: int) -> list[tuple[int, int]]:
    """[first, end) of at most `workers` contiguous shards of n samples, in order, sizes
    differing by at most one (the first ones larger), none empty."""
    k = max(1, min(check_workers(workers), n))
    base, extra = divmod(n, k)
    out, lo = [], 0
    for i in range(k):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def connect(workers: int, address: str | None = None):
    """Ray, initialised: the caller's if it already started one, else the cluster at
    `address`, else a local one with num_cpus=workers (restarted larger if this module
    started a smaller one)."""
    try:
        import ray
    except ImportError:
        raise UsageError("--workers > 1 and --ray-address need Ray: pip install "
                         "'snnexport[ray]' (ray==2.58.0)") from None
    if ray.is_initialized():
        if address is not None or _LOCAL.get("cpus", workers) >= workers:
            return ray
        ray.shutdown()  # ours, and too small for this run
        _LOCAL.clear()
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address is not None:
        _probe(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            text = " ".join(str(exc).split())[:300]
            raise UsageError(f"--ray-address {address}: cannot join a Ray cluster there "
                             f"({text}); start one with `ray start --head`") from None
    else:
        ray.init(num_cpus=workers, **options)
        if not _LOCAL:
            atexit.register(_shutdown)
        _LOCAL["cpus"] = workers
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """HOST:PORT must accept a connection within `timeout` s: Ray itself keeps retrying an
    address where nothing listens for minutes. 'auto' (the cluster `ray start` recorded on
    this machine) is left to Ray, which fails at once when there is none."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        if address == "auto":
            return
        raise UsageError(f"--ray-address {address}: give HOST:PORT of a Ray head (`ray start "
                         "--head` prints it) or 'auto'")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there ({exc}); "
                         "start one with `ray start --head` on that machine") from None


def _shutdown() -> None:
    import ray

    if _LOCAL and ray.is_initialized():
        ray.shutdown()
    _LOCAL.clear()


def _attempt(fn: Callable, common: Any, part: tuple, refusals: tuple, retried: tuple):
    """One try of one shard, in a Ray worker. A refusal comes back as a value: Ray does not
    retry it, `run` raises it."""
    try:
        return fn(common, *part)
    except refusals as exc:
        if isinstance(exc, retried):
            raise
        return _Refused(exc)


def describe(exc: BaseException) -> str:
    """A Ray error in one line: the task's own exception, or what happened to its worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:500]}" if text else type(exc).__name__


def run(fn: Callable, common: Any, parts: Sequence[tuple], workers: int,
        address: str | None = None, retries: int = RETRIES,
        refusals: tuple[type[BaseException], ...] = (),
        retried: tuple[type[BaseException], ...] = ()) -> list:
    """fn(common, *part) for every part, each a Ray task (one CPU), `common` shipped once
    through the object store. Returns the results in the order of `parts`; a part that
    failed on all 1 + `retries` tries is a `Failed` there. A `refusals` exception (unless it
    is also one of `retried`) is raised at once. fn must be importable by the workers (a
    module-level function of an installed package)."""
    ray = connect(check_workers(workers), address)
    task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_attempt)
    shared = ray.put(common)
    refs = [task.remote(fn, shared, tuple(part), tuple(refusals), tuple(retried))
            for part in parts]
    out: list = []
    try:
        for i, ref in enumerate(refs):
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as exc:
                out.append(Failed(i, retries + 1, describe(exc)))
                continue
            if isinstance(value, _Refused):
                raise value.error
            out.append(value)
    except BaseException:  # a refusal, Ctrl-C: stop the shards still running
        _stop(ray, refs)
        raise
    return out


def _stop(ray, refs: list, settle: float = 30.0) -> None:
    """Cancel the tasks not finished yet and wait (up to `settle` s) until they have ended, so
    no reply is in flight when the caller goes on. Not force=True on every ref: killing the
    worker of a task whose reply is already on its way makes Ray 2.58's driver abort the
    whole process later ("Check failed: ... Tried to complete task that was not pending",
    task_manager.cc); a plain cancel interrupts a running Python task (KeyboardInterrupt in
    its worker) and drops a queued one."""
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in pending:
        with contextlib.suppress(Exception):  # finished in the meantime
            ray.cancel(ref, force=False)
    if pending:
        with contextlib.suppress(Exception):
            ray.wait(pending, num_returns=len(pending), timeout=settle)
