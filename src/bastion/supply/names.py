"""Which file names are manifests, and of which kind: the one place these conventions live.

Kept free of heavy imports: ``bastion scan`` asks it about every file it walks.
"""

from __future__ import annotations


def manifest_kind(name: str) -> str | None:
    """The reader kind for a manifest's file name (its last path component), or None."""
    lower = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    if lower.endswith(".txt"):
        return "requirements" if lower.startswith(("requirements", "constraints")) else None
    if lower.endswith(".in"):
        return "requirements" if lower != "manifest.in" else None
    if lower == "pyproject.toml":
        return "pyproject"
    if lower == "poetry.lock":
        return "poetry.lock"
    if lower == "uv.lock":
        return "uv.lock"
    if lower == "pipfile.lock":
        return "Pipfile.lock"
    if lower == "pylock.toml" or (lower.startswith("pylock.") and lower.endswith(".toml")):
        return "pylock"
    if lower in ("environment.yml", "environment.yaml"):
        return "conda"
    return None
