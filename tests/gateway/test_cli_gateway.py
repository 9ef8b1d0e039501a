"""``bastion models / keys / access / audit-log`` through the real CLI, on both backends.

Exit codes: 0 done; 1 admission refused (scan or signature) or a broken audit chain; 2 any
other error, as one line on standard error and never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.gateway.conftest import SCHEMA, Db, Malicious

from bastion.gateway import keys
from bastion.gateway.audit import AuditEntry, AuditLog
from bastion.gateway.errors import AuthError

Cli = Callable[..., Any]


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA), encoding="utf-8")
    return path


def _ok(result: Any) -> Any:
    result.assert_clean()
    assert result.returncode == 0, result.output
    return result


def _error(result: Any, code: int, text: str) -> None:
    result.assert_clean()
    assert result.returncode == code, result.output
    assert text in result.stderr, result.stderr


def test_models(db: Db, invoke: Cli, onnx_model: Path, schema_file: Path) -> None:
    added = _ok(invoke("models", "add", "iris", onnx_model, "--schema", schema_file, "--json",
                       *db.cli_args())).json()
    assert added["version"] == "1"
    assert added["loader"] == "onnx"
    assert added["input_schema"] == SCHEMA
    text = _ok(invoke("models", "add", "iris", onnx_model, "--schema", schema_file,
                      "--loader", "onnx", *db.cli_args())).stdout
    assert text.startswith("admitted iris@2 (sha256:")
    listed = _ok(invoke("models", "list", "--json", *db.cli_args())).json()
    assert [(m["name"], m["version"]) for m in listed] == [("iris", "1"), ("iris", "2")]
    shown = _ok(invoke("models", "show", "iris", *db.cli_args())).stdout
    assert "iris@2" in shown
    assert "clean" in shown
    assert "unsigned" in shown
    _ok(invoke("models", "retire", "iris", "2", *db.cli_args()))
    assert _ok(invoke("models", "show", "iris", "--json", *db.cli_args())).json()["version"] \
        == "1"
    assert _ok(invoke("models", "show", "iris", "--version", "2", "--json",
                      *db.cli_args())).json()["status"] == "retired"
    assert "retired" in _ok(invoke("models", "list", *db.cli_args())).stdout
    assert "iris@2" not in _ok(invoke("models", "list", "--admitted", *db.cli_args())).stdout
    _error(invoke("models", "show", "nope", *db.cli_args()), 2, "no admitted model 'nope'")
    _error(invoke("models", "retire", "iris", "7", *db.cli_args()), 2, "no model iris@7")


def test_malicious_model_is_refused(db: Db, cli: Cli, malicious_pickle: Malicious,
                                    schema_file: Path) -> None:
    result = cli("models", "add", "evil", malicious_pickle.path, "--schema", schema_file,
                 *db.cli_args())
    _error(result, 1, "error: evil: admission refused:")
    assert "PICKLE-" in result.stderr
    assert "(critical)" in result.stderr
    assert _ok(cli("models", "list", "--json", *db.cli_args())).json() == []


def test_bad_model_inputs(db: Db, invoke: Cli, onnx_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    _error(invoke("models", "add", "m", onnx_model, "--schema", bad, *db.cli_args()), 2,
           "not valid JSON")
    bad.write_text('{"shape": [null, 4], "dtype": "complex64"}', encoding="utf-8")
    _error(invoke("models", "add", "m", onnx_model, "--schema", bad, *db.cli_args()), 2,
           "dtype must be one of")
    bad.write_text(" " * 70_000 + "{}", encoding="utf-8")
    _error(invoke("models", "add", "m", onnx_model, "--schema", bad, *db.cli_args()), 2,
           "larger than")
    _error(invoke("models", "add", "m", onnx_model, "--schema", tmp_path / "none.json",
                  *db.cli_args()), 2, "none.json")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 64)
    bad.write_text(json.dumps(SCHEMA), encoding="utf-8")
    _error(invoke("models", "add", "m", weights, "--schema", bad, *db.cli_args()), 2,
           "cannot tell how to load weights.bin")
    _error(invoke("models", "add", "m", tmp_path / "gone.onnx", "--schema", bad,
                  *db.cli_args()), 2, "path not found")
    assert invoke("models", "add", "m", onnx_model, *db.cli_args()).returncode == 2
    assert _ok(invoke("models", "list", "--json", *db.cli_args())).json() == []


def test_keys(db: Db, invoke: Cli) -> None:
    created = _ok(invoke("keys", "create", "--principal", "alice", "--group", "ml",
                         "--expires", "30d", *db.cli_args()))
    lines = dict(line.split(":", 1) for line in created.stdout.splitlines())
    secret = lines["secret"].strip()
    key_id = lines["key id"].strip()
    assert "shown once and cannot be shown again" in created.stderr
    principal = keys.KeyAuthenticator(db.engine).authenticate(secret)
    assert principal.name == "alice"
    assert principal.groups == {"ml"}

    made = _ok(invoke("keys", "create", "--principal", "bob", "--json", *db.cli_args())).json()
    assert made["secret"].startswith(f"bst_{made['key_id']}_")
    assert made["expires_at"] == "-"

    listed = _ok(invoke("keys", "list", *db.cli_args())).stdout
    assert key_id in listed
    assert "active" in listed
    assert secret not in listed
    as_json = _ok(invoke("keys", "list", "--json", *db.cli_args())).stdout
    assert secret not in as_json
    assert made["secret"] not in as_json
    assert "argon2" not in as_json
    expiry = datetime.fromisoformat(json.loads(as_json)[0]["expires_at"])
    assert abs(expiry - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=5)

    _ok(invoke("keys", "revoke", key_id, *db.cli_args()))
    with pytest.raises(AuthError) as refused:
        keys.KeyAuthenticator(db.engine).authenticate(secret)
    assert refused.value.reason == "revoked"
    assert "revoked" in _ok(invoke("keys", "list", "--principal", "alice",
                                   *db.cli_args())).stdout
    _error(invoke("keys", "revoke", "aaaaaaaaaaaa", *db.cli_args()), 2, "no API key")
    _error(invoke("keys", "create", "--principal", "alice", "--expires", "soon",
                  *db.cli_args()), 2, "--expires 'soon'")
    _error(invoke("keys", "create", "--principal", "al ice", *db.cli_args()), 2,
           "principal 'al ice'")


def test_access(db: Db, invoke: Cli, tmp_path: Path) -> None:
    _ok(invoke("access", "grant", "alice", "iris", "predict", "scores", *db.cli_args()))
    _error(invoke("access", "grant", "alice", "iris", "download", *db.cli_args()), 2,
           "separation of duties")
    _error(invoke("access", "grant", "alice", "iris", "scores", "root", *db.cli_args()), 2,
           "unknown permission 'root'")
    check = _ok(invoke("access", "check", "alice", "iris", "--json", *db.cli_args())).json()
    assert check["permissions"] == ["predict", "scores"]
    assert check["conflict"] is None
    _ok(invoke("access", "grant", "group:auditors", "*", "download", *db.cli_args()))
    shown = _ok(invoke("access", "check", "alice", "iris", "--group", "auditors",
                       *db.cli_args())).stdout
    assert "predict, scores, download" in shown
    assert "group:auditors on *" in shown
    assert "CONFLICT" in shown
    # The groups of the user's API keys count without --group.
    invoke("keys", "create", "--principal", "alice", "--group", "auditors", *db.cli_args())
    assert _ok(invoke("access", "check", "alice", "iris", "--json",
                      *db.cli_args())).json()["conflict"]
    group = _ok(invoke("access", "check", "group:auditors", "iris", "--json",
                       *db.cli_args())).json()
    assert group["permissions"] == ["download"]

    (tmp_path / "bastion.toml").write_text("[gateway]\nseparation-of-duties = false\n",
                                           encoding="utf-8")
    _ok(invoke("access", "grant", "bob", "iris", "predict", "download", *db.cli_args()))
    _error(invoke("access", "grant", "carol", "iris", "predict", "download",
                  "--separation-of-duties", *db.cli_args()), 2, "separation of duties")
    (tmp_path / "bastion.toml").unlink()
    _ok(invoke("access", "grant", "dave", "iris", "predict", "download",
               "--no-separation-of-duties", *db.cli_args()))

    _ok(invoke("access", "revoke", "alice", "iris", "scores", *db.cli_args()))
    _error(invoke("access", "revoke", "alice", "iris", "scores", *db.cli_args()), 2,
           "no grant of scores")
    listed = _ok(invoke("access", "list", "--subject", "alice", "--json",
                        *db.cli_args())).json()
    assert [(g["model"], g["permission"]) for g in listed] == [("iris", "predict")]
    assert "no access (deny by default)" in _ok(invoke("access", "check", "erin", "iris",
                                                       *db.cli_args())).stdout


def test_audit_log(db: Db, invoke: Cli, tmp_path: Path) -> None:
    log = AuditLog(db.engine)
    for i in range(3):
        log.append(AuditEntry(principal="alice", model="iris", decision="allow", status=200,
                              reason=f"r{i}"))
    assert "verified: 3 entries" in _ok(invoke("audit-log", "verify", *db.cli_args())).stdout
    out = tmp_path / "audit.jsonl"
    _ok(invoke("audit-log", "export", "-o", out, *db.cli_args()))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3]
    streamed = _ok(invoke("audit-log", "export", *db.cli_args())).stdout
    assert len(streamed.splitlines()) == 3

    with db.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE bastion_audit_log SET decision = 'deny' WHERE seq = 2"))
    broken = invoke("audit-log", "verify", *db.cli_args())
    broken.assert_clean()
    assert broken.returncode == 1
    assert "BROKEN at entry 2" in broken.stdout
    report = invoke("audit-log", "verify", "--json", *db.cli_args())
    assert report.returncode == 1
    assert report.json()["first_bad_seq"] == 2


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://postgres@127.0.0.1:1/test", "database postgresql"),
    ("mysql://root@127.0.0.1/x", "unsupported database"),
    ("not a url", "not a database URL"),
])
def test_unusable_databases(cli: Cli, url: str, message: str) -> None:
    result = cli("keys", "list", "--db", url)
    _error(result, 2, message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_sqlite_folder_cannot_be_made(invoke: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    _error(invoke("models", "list", "--db", f"sqlite:///{blocker}/sub/x.db"), 2,
           "cannot create the folder")


def test_db_url_from_the_environment(invoke: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    _ok(invoke("keys", "create", "--principal", "alice", env={"BASTION_DB_URL": url}))
    assert (tmp_path / "env.db").is_file()
    assert "alice" in _ok(invoke("keys", "list", env={"BASTION_DB_URL": url})).stdout
