"""Writing a file so that a crash never leaves half of it where a whole one was (or will be).

One place for reports, signatures and rewritten manifests: the bytes go to a private
temporary file beside the target (same file system), which is then renamed over it.
"""

from __future__ import annotations

import os
from pathlib import Path


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
