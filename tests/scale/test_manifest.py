"""``--from FILE``: paths relative to the manifest, comments, standard input, http URLs
downloaded from a real server on 127.0.0.1, and one finding per bad line."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.scan import payloads

from bastion.engine import scan_paths
from bastion.findings import Report
from bastion.scale import manifest, scan


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/to-ftp"):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/evil.pkl")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def server(tmp_path: Path, marker: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 serving a malicious pickle, a clean one and a big file."""
    site = tmp_path / "site"
    (site / "dl").mkdir(parents=True)
    (site / "dl" / "evil.pkl").write_bytes(payloads.reduce_os_system(str(marker), 4))
    (site / "dl" / "clean.pkl").write_bytes(b"\x80\x04N.")
    (site / "dl" / "notes.txt").write_text("release notes\n", encoding="utf-8")
    (site / "dl" / "big.bin").write_bytes(b"\0" * (3 << 20))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(_Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def store(tmp_path: Path, marker: Path) -> Path:
    root = tmp_path / "store"
    (root / "a").mkdir(parents=True)
    (root / "a" / "evil.pkl").write_bytes(payloads.inst_opcode(str(marker)))
    (root / "b").mkdir()
    (root / "b" / "clean.pkl").write_bytes(b"\x80\x04N.")
    return root


def _by_rule(report: Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in report.findings:
        out.setdefault(f.rule_id, []).append(f"{f.location.path}:{f.location.line or ''}")
    return out


def test_paths_urls_comments_and_bad_lines(store: Path, server: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    listing = store / "list.txt"
    listing.write_text("\n".join([
        "# models published today",
        "a/evil.pkl",
        "",
        "   b   ",  # a folder, with spaces around
        "missing/model.bin",
        f"{server}/dl/evil.pkl",
        f"{server}/dl/notes.txt?token=SECRET",
        f"{server}/dl/absent.pkl",
        f"{server}/to-ftp",
        "ftp://127.0.0.1/model.bin",
        f"{server}/dl/big.bin",
    ]) + "\n", encoding="utf-8")
    monkeypatch.setattr(manifest, "MAX_DOWNLOAD", 1 << 20)
    monkeypatch.chdir(tmp_path)
    report = scan([], manifest=str(listing))
    rules = _by_rule(report)
    shown = str(listing)
    assert rules["PICKLE-DANGEROUS-GLOBAL"] == sorted([f"{store}/a/evil.pkl:",
                                                       f"{server}/dl/evil.pkl:"])
    assert rules["SCAN-INPUT-MISSING"] == [f"{shown}:5"]
    assert rules["SCAN-INPUT-INVALID"] == [f"{shown}:10"]
    assert sorted(rules["SCAN-DOWNLOAD-FAILED"]) == [f"{shown}:11", f"{shown}:8", f"{shown}:9"]
    messages = {f.location.line: f.message for f in report.findings
                if f.rule_id == "SCAN-DOWNLOAD-FAILED"}
    assert "HTTP 404" in messages[8]
    assert "another scheme" in messages[9]
    assert "download limit" in messages[11]
    assert report.stats.files == 4  # two paths, two downloads
    assert report.roots == (f"{store}/a/evil.pkl", f"{store}/b")
    assert "SECRET" not in str(report.to_dict())  # signed URLs keep their secrets
    assert f"{server}/dl/notes.txt?…" in {s.path for s in report.skipped}
    assert not list(tmp_path.glob("bastion-downloads-*"))


def test_downloaded_findings_equal_a_local_scan_of_the_same_file(server: str, store: Path,
                                                                  tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{server}/dl/evil.pkl\n", encoding="utf-8")
    remote = scan([], manifest=str(listing))
    local = scan_paths([tmp_path / "site" / "dl" / "evil.pkl"])
    assert [(f.rule_id, f.message, f.location.offset) for f in remote.findings] == \
        [(f.rule_id, f.message, f.location.offset) for f in local.findings]
    assert {f.location.path for f in remote.findings} == {f"{server}/dl/evil.pkl"}


def test_standard_input_is_relative_to_the_current_folder(store: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(store)
    report = scan([], manifest="-", stdin=io.BytesIO(b"a/evil.pkl\n# b\n"))
    assert report.roots == ("a/evil.pkl",)
    assert {f.location.path for f in report.findings} == {"a/evil.pkl"}


def test_cli_from_file_with_a_url_and_jobs(store: Path, server: str, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"store/a/evil.pkl\n{server}/dl/evil.pkl\nnope.pkl\n", encoding="utf-8")
    result = run_cli("scan", "--from", "list.txt", "-q", "-f", "json", "--jobs", "2",
                     "--cache", f"sqlite:///{tmp_path / 'c.db'}", cwd=tmp_path, timeout=120)
    result.assert_clean()
    assert result.returncode == 1
    data = result.json()
    paths = {f["location"]["path"] for f in data["findings"]}
    assert paths == {"store/a/evil.pkl", f"{server}/dl/evil.pkl", "list.txt"}


@pytest.mark.parametrize(("content", "words"), [
    (None, ["--from", "not found"]),
    (b"x" * (manifest.MAX_MANIFEST + 1), ["larger than"]),
])
def test_cli_unreadable_manifests_are_usage_errors(tmp_path: Path, content: bytes | None,
                                                   words: list[str]) -> None:
    listing = tmp_path / "list.txt"
    if content is not None:
        listing.write_bytes(content)
    result = run_cli("scan", "--from", listing, cwd=tmp_path)
    result.assert_clean()
    assert result.returncode == 2
    for word in words:
        assert word in result.stderr


def test_cli_without_paths_or_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("scan", cwd=tmp_path)
    result.assert_clean()
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
