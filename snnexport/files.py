"""File writing shared by every artifact: never leave a half-written file behind, never
overwrite an input (check_output, called before any work), and replace only a regular file:
a device (/dev/null), a FIFO, a socket or a symbolic link to one is refused (an output written
by rename would replace the node itself), by check_output before any work and by atomic_write
again at the moment of writing (the Python API's writes go through it too)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import UsageError

TMP_SUFFIX = ".tmp"  # atomic_write's temporary files: .NAME.XXXXXXXX.tmp in the same folder
_NAME_BYTES = 200  # of NAME in the temp name: with the rest, within NAME_MAX (255) bytes


def not_regular(path: str | os.PathLike) -> str | None:
    """What an existing `path` is when an output may not replace it (a character device, a
    FIFO, ...; a symbolic link is followed), else None (absent, a regular file, a dangling
    link, or a folder, which the callers say themselves)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    for test, what in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if mode is not None and test(mode):
            return what + (" (through a symbolic link)" if os.path.islink(path) else "")
    for system in ("/dev/", "/proc/"):  # /dev/stdout -> /proc/self/fd/1 -> a redirected file
        if any(p.startswith(system) and not p.startswith("/dev/shm/") for p in _hops(path)):
            return (f"in {system.rstrip('/')} (a process's stream or a device; for standard "
                    "output give -)")
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return "not a regular file"
    return None


def _hops(path) -> list[str]:
    """The path and each symbolic link's target in turn (realpath would jump straight to the
    file a /proc/self/fd link names)."""
    hops = [os.path.abspath(path)]
    for _ in range(40):
        if not os.path.islink(hops[-1]):
            break
        target = os.readlink(hops[-1])
        hops.append(os.path.normpath(os.path.join(os.path.dirname(hops[-1]), target)))
    return hops


def _refuse_special(path, where: str = "", fix: str = "") -> None:
    what = not_regular(path)
    if what is not None:
        raise UsageError(f"{where}output {path} is {what}; snnexport replaces only regular "
                         f"files (written to a temporary file and renamed); write to a file "
                         f"({fix or 'another path'})")


def temp_prefix(name: str) -> str:
    """The temp file's prefix for output NAME: `.NAME.`, NAME cut to _NAME_BYTES bytes so that
    a legal 255-byte output name still gives a legal temp name."""
    raw = name.encode(errors="surrogateescape")[:_NAME_BYTES]
    return "." + raw.decode(errors="ignore") + "."


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call write(tmp_path), then rename tmp_path to path (same folder, so rename is atomic).
    A path that is a device, FIFO or socket (or a link to one) is refused (UsageError)."""
    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=TMP_SUFFIX,
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        _refuse_special(path)  # made one while writing: still not replaced
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """a and b name one file: the same inode when both exist (hard and symbolic links
    included), else the same resolved path (an output that does not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | os.PathLike, inputs: dict | None = None, *, command: str = "",
                 option: str = "-o", suffix: str = "", folder: bool = False) -> Path:
    """Refuse, before any work is done, an output that would overwrite an input or cannot be
    written: one UsageError line naming both paths and the fix. `inputs` maps a role ("input
    model") to a path; `folder`: the output is a folder the command writes into (deploy), which
    must not hold an input. Missing parent folders are fine when they can be created."""
    where = f"{command}: " if command else ""
    fix = f"{option} NEW_FOLDER" if folder else f"{option} other{suffix}"
    kind = "output folder" if folder else "output"
    p = Path(os.path.abspath(path))
    for role, inp in (inputs or {}).items():
        if inp is None:
            continue
        if _same(path, inp):
            same = "" if str(path) == str(inp) else f" {inp} (the same file)"
            raise UsageError(f"{where}{kind} {path} is the {role}{same}; write elsewhere ({fix})")
        if folder and p.is_dir() and os.path.exists(inp):
            held = [e.name for e in os.scandir(p) if _same(e.path, inp)]
            if held:
                raise UsageError(f"{where}output folder {path} holds the {role} {inp} (as "
                                 f"{held[0]}); deploy into another folder ({fix})")
    if os.path.lexists(p):
        if not folder:
            _refuse_special(path, where, fix)
        if folder and not p.is_dir():
            raise UsageError(f"{where}output folder {path} is not a folder; give a folder "
                             f"({fix})")
        if not folder and p.is_dir():
            raise UsageError(f"{where}output {path} is a folder, not a file; give a file name "
                             f"({fix})")
    anc = p if folder and p.is_dir() else p.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"{where}cannot write {path}: {anc} is not a folder; write elsewhere "
                         f"({fix})")
    if not _writable(anc):
        raise UsageError(f"{where}cannot write {path}: folder {anc} is not writable; write "
                         f"elsewhere ({fix})")
    return p


def _writable(folder: Path) -> bool:
    """A file can be made in `folder`: permissions, then a real probe (a read-only mount,
    procfs or root's permission override say yes to os.access and no to a write), removed."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".snnexport-probe.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True
