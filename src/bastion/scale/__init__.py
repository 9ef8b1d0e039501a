"""Hub-scale scanning: a content-addressed result cache, parallel and Ray runs, manifests.

:func:`scan` is :func:`bastion.scan_paths` with the bulk options of ``bastion scan``:

* ``cache``: a database URL (:mod:`bastion.db`: SQLite file or PostgreSQL) for the result
  cache (:mod:`bastion.scale.cache`; key: :mod:`bastion.scale.keys`); an unchanged file is
  never analysed twice, and results are committed as they come, so a killed scan resumes;
* ``jobs``: worker processes on this machine (:mod:`bastion.scale.runner`);
* ``ray``: Ray tasks instead (:mod:`bastion.scale.ray`);
* ``manifest``: more inputs from a list of paths and URLs (:mod:`bastion.scale.manifest`).

The report is the one a plain serial scan gives (same findings in the same order, same
skips and notes); ``stats.cached`` says how many files came from the cache. Whole-scan
checks (required signatures) run every time, over every file, cached or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bastion.analyzer import Context, Registry
from bastion.engine import FileOutcome, Progress, scan_paths
from bastion.errors import UsageError
from bastion.findings import Report
from bastion.policy import DEFAULT, Policy
from bastion.walk import FileEntry, WalkItem

if TYPE_CHECKING:
    from bastion.scale.cache import ResultCache

#: ``--cache`` words that mean "the default database" and "no cache".
CACHE_ON = frozenset({"default", "1", "true", "yes", "on"})
CACHE_OFF = frozenset({"0", "false", "no", "off", ""})


def cache_url(value: str | None) -> str | None:
    """The database URL a ``--cache`` value (or ``$BASTION_CACHE``) means; None: no cache."""
    if value is None or value.strip().lower() in CACHE_OFF:
        return None
    if value.strip().lower() in CACHE_ON:
        from bastion.db import default_url

        return default_url()
    if "://" not in value:
        raise UsageError(f"--cache {value!r}: expected a database URL (sqlite:///path.db, "
                         "postgresql://user@host/db) or nothing for the default")
    return value


def ray_address(value: str | None) -> str | None:
    """The Ray address a ``--ray`` value (or ``$BASTION_RAY``) means; None: no Ray."""
    if value is None or value.strip().lower() in CACHE_OFF:
        return None
    if value.strip().lower() in CACHE_ON:
        from bastion.scale.ray import DEFAULT_ADDRESS

        return DEFAULT_ADDRESS
    return value.strip()


def scan(
    paths: Sequence[str | Path],
    policy: Policy = DEFAULT,
    *,
    registry: Registry | None = None,
    policy_source: str = "",
    progress: Progress | None = None,
    cache: str | ResultCache | None = None,
    jobs: int = 1,
    ray: str | None = None,
    manifest: str | None = None,
    stdin: IO[bytes] | None = None,
) -> Report:
    """Scan like :func:`bastion.scan_paths`, with a result cache (a database URL or an open
    :class:`~bastion.scale.cache.ResultCache`), ``jobs`` worker processes (0: one per CPU),
    Ray (an address, or ``"default"``) and a manifest of more inputs (``"-"``: ``stdin``)."""
    if jobs < 0:
        raise UsageError(f"--jobs {jobs}: expected 0 (one per CPU) or more")
    if jobs == 0:
        from bastion.cpus import usable_cpus

        jobs = usable_cpus()  # the CPUs this process may run on, not the host's
    notes: list[str] = []
    inputs: list[WalkItem] = []
    roots = [str(p) for p in paths]
    loaded = None
    opened: ResultCache | None = None
    try:
        if manifest is not None:
            from bastion.scale import manifest as manifests

            loaded = manifests.load(manifest, stdin=stdin)
            roots.extend(loaded.paths)
            inputs.extend(loaded.findings)
            inputs.extend(loaded.files)
        store: ResultCache | None
        if isinstance(cache, str):
            store = opened = _open_cache(cache, notes)
        else:
            store = cache
        default = registry is None
        if registry is None:
            registry = Registry.default()
        runner = None
        if store is not None or jobs > 1 or ray is not None or notes:
            from bastion.scale.runner import make_runner

            inner = make_runner(jobs=jobs, cache=store, ray_address=ray,
                                default_registry=default)

            def runner(entries: Sequence[FileEntry], ctx: Context,
                       progress: Progress | None) -> Sequence[FileOutcome]:
                for note in notes:
                    ctx.note(note)
                return inner(entries, ctx, progress)

        return scan_paths(roots, policy, registry=registry, policy_source=policy_source,
                          progress=progress, inputs=inputs, runner=runner)
    finally:
        if loaded is not None:
            loaded.cleanup()
        if opened is not None:
            opened.close()


def _open_cache(url: str, notes: list[str]) -> ResultCache | None:
    """The cache at ``url``; a database that cannot be reached is a note, not a failed scan
    (a URL that is not one is a usage error)."""
    try:
        from bastion.db import StorageError, connect
        from bastion.scale.cache import open_cache
    except ImportError as exc:  # SQLAlchemy missing: the cache extra is not installed
        raise UsageError(f"--cache needs SQLAlchemy ({exc.name} is not installed): "
                         "pip install 'bastion-mlsec[cache]'") from None
    try:
        connect(url).dispose()  # parses the URL and names the backend; connects to nothing
    except StorageError as exc:
        raise UsageError(f"--cache: {exc}") from None
    try:
        return open_cache(url)
    except StorageError as exc:
        notes.append(f"result cache not used ({exc}); every file was analysed")
        return None


__all__ = ["cache_url", "ray_address", "scan"]
