"""Lock files written by the real tools, committed as fixtures (tests have no network).

tests/supply/data/uv-real/uv.lock was written by `uv lock` (uv 0.13.9) and
tests/supply/data/poetry-real/poetry.lock by `poetry lock` (Poetry 2.5.1, resolving through
PyPI's simple index as a source, since this build machine does not reach PyPI's JSON API), each
for the pyproject.toml beside it; pylock-real/pylock.toml by `pip lock` (pip 26.3, PEP 751) and
pipenv-real/Pipfile.lock by `pipenv lock` for the Pipfile beside it. All pin requests 2.31.0,
jinja2 3.1.2, pyyaml 5.3.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.engine import scan_paths
from bastion.supply.inventory import read_manifest

DATA = Path(__file__).parent / "data" / "uv-real"
POETRY = Path(__file__).parent / "data" / "poetry-real"


def test_uv_lock_written_by_uv_is_read_exactly() -> None:
    inventory = read_manifest(DATA / "uv.lock")
    pins = {d.name: d.version for d in inventory.dependencies if d.version}
    assert pins["requests"] == "2.31.0"
    assert pins["jinja2"] == "3.1.2"
    assert pins["pyyaml"] == "5.3.1"
    # Transitive dependencies resolved by uv are part of the inventory too.
    assert {"urllib3", "idna", "certifi", "charset-normalizer", "markupsafe"} <= set(pins)
    assert all(d.hashes for d in inventory.dependencies if d.version)


def test_scan_reports_the_real_pyyaml_advisory_at_its_line() -> None:
    findings = [f for f in scan_paths([DATA]).findings
                if f.rule_id == "SUPPLY-VULNERABLE-DEPENDENCY"]
    by_package = {f.message.split("==")[0]: f for f in findings}
    assert "pyyaml" in by_package, [f.message for f in findings]
    hit = by_package["pyyaml"]
    assert "CVE-2020-14343" in hit.message
    assert hit.location.path.endswith("uv.lock")
    assert hit.location.line is not None
    lines = (DATA / "uv.lock").read_text().splitlines()
    assert 'name = "pyyaml"' in lines[hit.location.line - 1] or \
        "pyyaml" in "\n".join(lines[hit.location.line - 3:hit.location.line + 2])


def test_poetry_lock_written_by_poetry_is_read_exactly() -> None:
    inventory = read_manifest(POETRY / "poetry.lock")
    pins = {d.name: d.version for d in inventory.dependencies if d.version}
    assert (pins["requests"], pins["jinja2"], pins["pyyaml"]) == ("2.31.0", "3.1.2", "5.3.1")
    assert {"urllib3", "idna", "certifi", "charset-normalizer", "markupsafe"} <= set(pins)
    assert all(d.pinned for d in inventory.dependencies if d.version)
    findings = [f for f in scan_paths([POETRY / "poetry.lock"]).findings
                if f.rule_id == "SUPPLY-VULNERABLE-DEPENDENCY"]
    assert any(f.message.startswith("pyyaml==5.3.1") and "CVE-2020-14343" in f.message
               for f in findings), [f.message for f in findings]


@pytest.mark.parametrize("lock", ["pylock-real/pylock.toml", "pipenv-real/Pipfile.lock"])
def test_pip_lock_and_pipenv_lock_files_are_read_exactly(lock: str) -> None:
    path = Path(__file__).parent / "data" / lock
    inventory = read_manifest(path)
    pins = {d.name: d.version for d in inventory.dependencies if d.version}
    assert (pins["requests"], pins["jinja2"], pins["pyyaml"]) == ("2.31.0", "3.1.2", "5.3.1")
    findings = [f for f in scan_paths([path]).findings
                if f.rule_id == "SUPPLY-VULNERABLE-DEPENDENCY"]
    assert any(f.message.startswith("pyyaml==5.3.1") for f in findings), \
        [f.message for f in findings]


def test_the_real_test_environment_is_read_from_metadata_only() -> None:
    """The venv running these tests, installed by pip: every distribution with the version
    importlib.metadata reports, and nothing imported to learn it."""
    import importlib.metadata
    import sys

    from bastion.supply.inventory import read_environment, site_packages_of

    folders = site_packages_of(Path(sys.executable))
    assert folders
    pins = {}
    for folder in folders:
        pins.update({d.name: d.version for d in read_environment(folder, str(folder))
                     .dependencies})
    for name in ("pytest", "numpy", "packaging", "rich"):
        assert pins[name] == importlib.metadata.version(name), name
    assert len(pins) > 50
