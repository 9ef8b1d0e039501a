"""How many CPUs this process may use: the worker counts of hashing, of the gateway's
lanes and of ``bastion scan --jobs 0`` start from it."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's affinity mask can allow fewer than
    the host has), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
