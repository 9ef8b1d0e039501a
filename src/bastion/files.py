"""Files written so that a crash never leaves half of one, and read into aligned buffers.

:func:`replace_atomic` is the one place for reports, signatures and rewritten manifests: the
bytes go to a private temporary file beside the target (same file system), which is then
renamed over it. :func:`aligned_buffer` is the buffer that bulk reads (hashing) read into.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from pathlib import Path  # not imported at run time: hashing needs this module early


def replace_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically. ``mode``: the file's permission bits (default:
    what a shell gives a new file, ``0o666`` less the umask)."""
    # A private name beside the target (what tempfile.mkstemp does, without its import cost
    # on every scan that writes a report).
    tmp = path.parent / f".{path.name}.{os.urandom(8).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode is None:
            umask = os.umask(0o022)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def aligned_buffer(size: int) -> memoryview:
    """A writable buffer of ``size`` bytes starting on a page boundary, for bulk reads.

    Where a buffer starts matters: the kernel copies file data into it, and a destination
    that is not cache-line aligned made SHA-256 over 4 GB of warm page cache ~9% slower on
    the 2-vCPU AMD EPYC machines (1.39-1.50 s against 1.28-1.29 s; a ``bytearray`` of 1 MB
    is its own ``mmap`` with a 16-byte header, so it starts 16 bytes past a page). An
    anonymous map is page-aligned by construction; it is unmapped when the view is freed.
    Where no map can be made (a sandbox's limits), a plain ``bytearray`` does the same job.
    """
    import mmap

    try:
        return memoryview(mmap.mmap(-1, size))
    except (OSError, ValueError):
        return memoryview(bytearray(size))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a file descriptor (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
