"""The advisory store: imports (folder, zip, bundle), metadata, and the real snapshot."""

from __future__ import annotations

import json
import sqlite3
import time
import zipfile
from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.findings import Severity
from bastion.supply.advisories.sources import iter_source
from bastion.supply.advisories.store import AdvisoryStore, build, open_default
from bastion.supply.assess import db_notes
from bastion.supply.match import match

from .conftest import SHARED_DB

RECORD = {"id": "PYSEC-9999-1", "modified": "2025-01-02T00:00:00Z", "aliases": ["CVE-9999-1"],
          "affected": [{"package": {"ecosystem": "PyPI", "name": "Demo_Pkg"},
                        "ranges": [{"type": "ECOSYSTEM",
                                    "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]}


def vulns(store: AdvisoryStore, name: str, version: str) -> list[str]:
    advisories = store.advisories_for([name]).get(name, [])
    return [v.primary for v in match(name, version, advisories).vulnerabilities]


def test_import_folder_of_yaml_and_json(tmp_path: Path) -> None:
    src = tmp_path / "vulns" / "demo"
    src.mkdir(parents=True)
    (src / "a.json").write_text(json.dumps(RECORD))
    (src / "b.yaml").write_text(
        "id: PYSEC-9999-2\nmodified: '2025-02-01T00:00:00Z'\naffected:\n- package:\n"
        "    name: demo-pkg\n    ecosystem: PyPI\n  versions: ['1.0']\n")
    (src / "withdrawn.yaml").write_text(
        "id: PYSEC-9999-3\nwithdrawn: '2025-01-01'\n"
        "affected: [{package: {name: demo-pkg, ecosystem: PyPI}}]\n")
    (src / "broken.yaml").write_text("id: [unclosed\n")
    (src / "tag.yaml").write_text("!!python/object/apply:os.system ['id']\n")
    info = build(iter_source(tmp_path / "vulns"), tmp_path / "db.sqlite", source="test")
    assert (info.count, info.withdrawn, info.errors, info.packages) == (2, 1, 2, 1)
    assert info.date == "2025-02-01"
    store = AdvisoryStore.open(tmp_path / "db.sqlite")
    assert vulns(store, "demo-pkg", "1.0") == ["PYSEC-9999-1", "PYSEC-9999-2"]
    assert vulns(store, "demo-pkg", "2.0") == []


def test_import_osv_zip_keeps_the_newer_duplicate(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    newer = {**RECORD, "modified": "2025-06-01T00:00:00Z",
             "affected": [{**RECORD["affected"][0], "ranges": [
                 {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0"}]}]}]}
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("PYSEC-9999-1.json", json.dumps(newer))
        zf.writestr("old/PYSEC-9999-1.json", json.dumps(RECORD))
        zf.writestr("notes.txt", "ignored")
    info = build(iter_source(archive), tmp_path / "db.sqlite", source="zip")
    assert info.count == 1
    store = AdvisoryStore.open(tmp_path / "db.sqlite")
    assert vulns(store, "demo-pkg", "2.5") == ["PYSEC-9999-1"]


def test_zip_bomb_member_is_bounded(tmp_path: Path) -> None:
    """Technique: a compression bomb as an advisory record is cut at the record limit."""
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.json", b" " * (9 * 2**20))
    _origin, result = next(iter_source(archive))
    assert isinstance(result, ValueError)
    assert "over" in str(result)


def test_rebuild_replaces_atomically_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    build(iter([("x", RECORD)]), path, source="one")
    build(iter([("x", RECORD)]), path, source="two")
    assert AdvisoryStore.open(path).info.source == "two"
    assert not list(tmp_path.glob(".*tmp"))
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE meta (key, value);")
    with pytest.raises(InputError, match="not a Bastion advisory database"):
        AdvisoryStore.open(other)
    with pytest.raises(InputError):
        AdvisoryStore.open(tmp_path / "missing.sqlite")


def test_first_use_seeds_from_the_shipped_snapshot(tmp_path: Path) -> None:
    store = open_default(tmp_path / "cache" / "bastion" / "advisories.sqlite")
    assert store.info.embedded
    assert store.info.count > 2000
    assert store.info.date == "2024-10-10"
    notes = db_notes(store.info)
    assert "bastion db update" in notes[0]
    assert notes[1].startswith("warning")


def test_unwritable_cache_falls_back_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = open_default(blocker / "advisories.sqlite")
    assert store.path == ":memory:"
    assert store.info.count > 2000


# -- the real PyPA snapshot -------------------------------------------------------------------


def test_ctx_takeover_is_found_as_malicious(store: AdvisoryStore) -> None:
    advisories = store.advisories_for(["ctx"])["ctx"]
    (vuln,) = match("ctx", "0.2.6", advisories).vulnerabilities
    assert vuln.primary == "PYSEC-2022-199"
    assert vuln.malicious
    assert vuln.severity is Severity.CRITICAL
    assert match("ctx", "0.1.2", advisories).vulnerabilities == ()  # before the takeover


def test_torch_mlflow_tensorflow_pins_against_real_records(store: AdvisoryStore) -> None:
    torch = vulns(store, "torch", "1.13.0")
    assert torch == ["PYSEC-2022-43015"]  # CVE-2022-45907, eval in parse_type_line
    assert vulns(store, "torch", "1.13.1") == []
    assert set(vulns(store, "mlflow", "2.8.0")) >= {"PYSEC-2023-252", "PYSEC-2024-51"}
    assert vulns(store, "mlflow", "2.10.1") == []
    tf = vulns(store, "tensorflow", "2.4.0")
    assert len(tf) > 50
    assert len(vulns(store, "tensorflow", "2.4.0")) > len(vulns(store, "tensorflow", "2.9.0"))


def test_transformers_has_no_record_in_this_snapshot(store: AdvisoryStore) -> None:
    """The 2024-10 PyPA snapshot holds no transformers advisory: nothing is invented."""
    assert store.advisories_for(["transformers"]) == {}


def test_warm_lookup_of_500_packages_is_fast(store: AdvisoryStore) -> None:
    names = [f"not-a-package-{i}" for i in range(450)] + [
        "torch", "mlflow", "tensorflow", "pillow", "numpy", "requests", "urllib3", "jinja2",
        "werkzeug", "flask", "django", "cryptography", "pyyaml", "setuptools", "pip", "lxml",
        "aiohttp", "certifi", "idna", "scipy", "ansible", "paramiko", "sqlalchemy", "tornado",
        "twisted", "bleach", "markdown", "mistune", "pygments", "babel", "gunicorn", "uvicorn",
        "fastapi", "starlette", "httpx", "h11", "jupyter-server", "notebook", "nltk", "gradio",
        "ray", "onnx", "keras", "scikit-learn", "joblib", "protobuf", "grpcio", "transformers",
        "tqdm", "six"]
    store.advisories_for(names)  # parse once
    clock = time.perf_counter()
    found = store.advisories_for(names)
    assert time.perf_counter() - clock < 1.0
    assert "tensorflow" in found
    assert "torch" in found


@pytest.mark.skipif(not (SHARED_DB / "vulns").is_dir(), reason="shared advisory-db not present")
def test_shipped_bundle_matches_the_shared_snapshot(store: AdvisoryStore) -> None:
    yaml_files = list((SHARED_DB / "vulns").rglob("*.yaml"))
    withdrawn = sum(1 for p in yaml_files if "\nwithdrawn:" in p.read_text(encoding="utf-8"))
    assert store.info.count == len(yaml_files) - withdrawn
