"""``bastion scan --ray [ADDRESS]``: the per-file work as Ray tasks (extra ``bastion-mlsec[ray]``).

Each batch of :mod:`bastion.scale.work` jobs is one task (one CPU); results stream back as
tasks finish (``ray.wait``), so the driver writes them to the cache and shows progress as a
local run does, and the report is the same. The policy and analyzers are put in the object
store once and each worker builds its scanner state once per scan.

Workers open files by the absolute path the driver walked: on a multi-node cluster the files
must be on a filesystem every node mounts at the same path (NFS, a FUSE bucket mount), and
every node must run the same Bastion as the driver (checked on each batch). ``ADDRESS`` is
what ``ray.init`` takes (``auto``, ``ray://head:10001``, ``host:6379``); without one,
``ray.init()`` joins ``$RAY_ADDRESS`` or starts a local instance, and shuts it down after.
A Ray session already initialised in this process (a notebook, a test) is used as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bastion.analyzer import Registry
from bastion.errors import UsageError
from bastion.policy import Policy
from bastion.scale.work import BatchResult, Job

#: The value of a bare ``--ray``: let ``ray.init()`` choose.
DEFAULT_ADDRESS = "default"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'bastion-mlsec[ray]'") from None
    return ray


class RayBackend:
    """Batches as Ray tasks; ``jobs`` caps the tasks running at once (default: the cluster's
    CPUs)."""

    def __init__(self, address: str, jobs: int, policy: Policy, registry: Registry,
                 default: bool) -> None:
        import uuid

        self._ray = _import_ray()
        self._address = address
        self._jobs = jobs
        self._policy = policy
        self._registry: Registry | None = None
        if not default:
            from bastion.scale.runner import _portable

            self._registry = _portable(registry)
        self._token = uuid.uuid4().hex
        self._started = False  # Ray is joined on the first batch: a fully cached scan skips it
        self._owned = False
        self._task: Any = None
        self._refs: tuple[Any, Any] | None = None
        self._pending: list[Any] = []
        #: Tasks at once: ``jobs``, or (0) every CPU of the cluster, known once joined.
        self.workers = jobs if jobs >= 1 else 2
        self.slots = self.workers

    def _start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            address = None if self._address == DEFAULT_ADDRESS else self._address
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ...
                raise UsageError(f"--ray: cannot start or join Ray at "
                                 f"{self._address!r}: {type(exc).__name__}: {exc}") from None
            self._owned = True
        from bastion.scale.work import run_remote

        self._task = ray.remote(num_cpus=1, max_retries=1)(run_remote)
        self._refs = (ray.put(self._policy), ray.put(self._registry))
        if self._jobs < 1:  # the whole cluster, two batches per CPU so none waits on the driver
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers, self.slots = max(1, cpus), max(1, cpus) * 2
        self._started = True

    def submit(self, jobs: Sequence[Job]) -> object:
        if not self._started:
            self._start()
        assert self._refs is not None
        ref = self._task.remote(self._token, self._refs[0], self._refs[1], list(jobs))
        self._pending.append(ref)
        return ref

    def wait(self) -> list[tuple[object, BatchResult | BaseException]]:
        ray = self._ray
        ready, self._pending = ray.wait(self._pending, num_returns=1)
        out: list[tuple[object, BatchResult | BaseException]] = []
        for ref in ready:
            try:
                out.append((ref, ray.get(ref)))
            except Exception as exc:  # RayTaskError, WorkerCrashedError: retried file by file
                out.append((ref, exc))
        return out

    def close(self) -> None:
        if self._pending:
            for ref in self._pending:
                self._ray.cancel(ref, force=True)
            self._pending = []
        if self._owned:
            self._ray.shutdown()
            self._owned = False
