"""Lock files, pyproject, conda and installed environments, per their documented layouts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.supply.inventory import (
    Inventory,
    SkipKind,
    read_environment,
    reader_for,
    site_packages_of,
)

Make = Callable[..., Inventory]

UV_LOCK = '''version = 1
requires-python = ">=3.11"

[[package]]
name = "myproject"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "torch" }]

[[package]]
name = "torch"
version = "1.13.0"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://example.invalid/torch-1.13.0-none-any.whl", hash = "sha256:00", size = 1 },
]

[[package]]
name = "from-git"
version = "2.0.0"
source = { git = "https://github.com/org/from-git?rev=abc#abc" }
'''

POETRY_LOCK = '''[[package]]
name = "MLflow"
version = "2.8.0"
description = "MLflow"
optional = false
python-versions = ">=3.8"
files = [
    {file = "mlflow-2.8.0-py3-none-any.whl", hash = "sha256:11"},
]

[[package]]
name = "local-lib"
version = "0.0.1"
description = ""
optional = false
python-versions = "*"
files = []

[package.source]
type = "directory"
url = "../local-lib"

[metadata]
lock-version = "2.0"
python-versions = "^3.11"
content-hash = "0"
'''

PYLOCK = '''lock-version = "1.0"
created-by = "hand"
requires-python = ">=3.11"

[[packages]]
name = "ctx"
version = "0.2.6"
marker = "python_version >= '3.8'"
index = "https://pypi.org/simple"
sdist = {name = "ctx-0.2.6.tar.gz", url = "https://example.invalid/c.tgz", hashes = {sha256 = "2"}}

[[packages]]
name = "checkout"
directory = {path = "./checkout"}
'''


def test_uv_lock(manifest: Make) -> None:
    inv = manifest("uv.lock", UV_LOCK)
    deps = {d.name: d for d in inv.dependencies}
    assert (deps["torch"].version, deps["torch"].hashes, deps["torch"].line) == ("1.13.0", True, 11)
    assert deps["from-git"].hashes is False
    assert [s.kind for s in inv.skipped] == [SkipKind.NOT_AUDITABLE]  # the editable project
    assert inv.hashes_expected
    assert not inv.pins_expected


def test_poetry_lock(manifest: Make) -> None:
    inv = manifest("poetry.lock", POETRY_LOCK)
    (dep,) = inv.dependencies
    assert (dep.name, dep.version, dep.hashes, dep.line) == ("mlflow", "2.8.0", True, 2)
    assert inv.skipped[0].kind is SkipKind.NOT_AUDITABLE


def test_poetry_lock_1x_hashes_in_metadata(manifest: Make) -> None:
    inv = manifest("poetry.lock", '[[package]]\nname = "six"\nversion = "1.16.0"\n\n'
                   '[metadata]\nlock-version = "1.1"\n\n[metadata.files]\n'
                   'six = [{file = "six.whl", hash = "sha256:33"}]\n')
    assert inv.dependencies[0].hashes is True


def test_pipfile_lock(manifest: Make) -> None:
    doc = {"_meta": {"hash": {"sha256": "0"}},
           "default": {"torch": {"version": "==1.13.0", "hashes": ["sha256:44"],
                                 "markers": "python_version >= '3.8'"},
                       "mine": {"editable": True, "path": "."}},
           "develop": {"pytest": {"version": "==7.0.0"}}}
    inv = manifest("Pipfile.lock", json.dumps(doc, indent=4))
    deps = {d.name: d for d in inv.dependencies}
    assert deps["torch"].version == "1.13.0"
    assert deps["torch"].hashes
    assert deps["torch"].line == 8
    assert deps["pytest"].hashes is False
    assert inv.skipped[0].kind is SkipKind.NOT_AUDITABLE


def test_pylock_pep751(manifest: Make) -> None:
    inv = manifest("pylock.toml", PYLOCK)
    (dep,) = inv.dependencies
    assert (dep.name, dep.version, dep.hashes, dep.line) == ("ctx", "0.2.6", True, 6)
    assert dep.markers == "python_version >= '3.8'"
    assert inv.skipped[0].kind is SkipKind.NOT_AUDITABLE
    assert reader_for("pylock.dev.toml") is not None


def test_pyproject_pep621_groups_and_poetry(manifest: Make) -> None:
    inv = manifest("pyproject.toml", '''[project]
name = "x"
dependencies = ["torch==1.13.0", "numpy>=1.26", "pkg @ https://example.invalid/p.whl"]
[project.optional-dependencies]
serve = ["mlflow==2.8.0"]
[dependency-groups]
dev = ["pytest>=8", {include-group = "serve"}]
[tool.poetry.dependencies]
python = "^3.11"
transformers = "4.30.0"
requests = "^2.31"
mylib = {path = "../mylib"}
''')
    deps = {d.name: d for d in inv.dependencies}
    assert deps["torch"].version == "1.13.0"
    assert deps["torch"].line == 3
    assert deps["mlflow"].version == "2.8.0"
    assert deps["transformers"].version == "4.30.0"  # Poetry: a bare version is exact
    assert deps["requests"].pinned is False
    assert deps["numpy"].pinned is False
    assert {s.kind for s in inv.skipped} == {SkipKind.NOT_AUDITABLE}
    assert not inv.pins_expected  # library ranges are not hygiene findings


def test_conda_environment(manifest: Make) -> None:
    inv = manifest("environment.yml", '''name: ml
channels: [conda-forge]
dependencies:
  - python=3.11
  - numpy=1.21.0=py39h1
  - conda-forge::pytorch==1.13.0
  - scipy=1.11
  - pandas
  - pip:
    - mlflow==2.8.0
    - -e ./src
''')
    deps = {d.name: d for d in inv.dependencies}
    assert deps["torch"].version == "1.13.0"
    assert deps["torch"].ecosystem == "conda"
    assert deps["numpy"].version == "1.21.0"
    assert deps["scipy"].pinned is False  # conda's =1.11 means 1.11.*
    assert deps["mlflow"].version == "2.8.0"
    assert deps["mlflow"].line == 10
    assert "python" not in deps
    assert inv.skipped[0].kind is SkipKind.NOT_AUDITABLE
    assert inv.skipped[0].line == 11
    assert inv.pins_expected
    assert not inv.hashes_expected


def test_conda_yaml_tags_are_not_constructed(manifest: Make) -> None:
    """Technique: YAML object construction (!!python/object) — safe_load refuses it."""
    inv = manifest("environment.yml", "dependencies: !!python/object/apply:os.system ['id']\n")
    assert inv.skipped[0].kind is SkipKind.MANIFEST_INVALID


@pytest.mark.parametrize(("name", "text"), [
    ("uv.lock", "[[package]\nname = 'x'"),
    ("poetry.lock", "name = \"unterminated"),
    ("Pipfile.lock", "{\"default\": {"),
    ("Pipfile.lock", "[1, 2]"),
    ("pylock.toml", "[[packages]]\nname = 'x'\n"),
    ("environment.yml", "dependencies: [a, b\n"),
    ("pyproject.toml", "[project\n"),
])
def test_broken_lock_files_are_a_clear_record(manifest: Make, name: str, text: str) -> None:
    inv = manifest(name, text)
    assert not inv.dependencies
    assert [s.kind for s in inv.skipped] == [SkipKind.MANIFEST_INVALID]
    assert inv.skipped[0].reason


def test_lock_file_over_the_size_limit_is_not_parsed(tmp_path: Path) -> None:
    from bastion.supply.inventory import read_manifest
    from bastion.supply.inventory.interface import MAX_MANIFEST_BYTES

    path = tmp_path / "uv.lock"
    with path.open("wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 10)
    inv = read_manifest(path, "uv.lock")
    assert [s.kind for s in inv.skipped] == [SkipKind.TOO_LARGE]


def _dist(site: Path, name: str, version: str, *, egg: bool = False) -> None:
    if egg:
        (site / f"{name}-{version}.egg-info").write_text(
            f"Metadata-Version: 1.0\nName: {name}\nVersion: {version}\n")
        return
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nVersion: 9.9\n")


def test_installed_environment_from_metadata_only(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").write_text("#!/bin/false\n")  # never run
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    _dist(site, "Torch", "1.13.0")
    _dist(site, "ctx", "0.2.6", egg=True)
    (site / "broken-1.0.dist-info").mkdir()
    (site / "evil.pth").write_text("import os; os.system('echo pwned')\n")
    assert site_packages_of(venv / "bin" / "python") == [site]
    assert site_packages_of(venv) == [site]
    inv = read_environment(site, "site")
    deps = {d.name: d for d in inv.dependencies}
    assert deps["torch"].version == "1.13.0"
    assert deps["torch"].line == 3
    assert deps["ctx"].version == "0.2.6"
    assert "broken-1.0.dist-info" in inv.skipped[0].text
