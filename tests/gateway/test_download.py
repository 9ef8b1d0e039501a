"""Downloading a model folder's files: only admitted files, confined to the folder, and the
bytes sent are the bytes checked (in-process app; the live server tests cover single files)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from bastion.gateway import access, keys, registry
from bastion.gateway import app as gateway_app
from bastion.gateway.app import create_app
from bastion.gateway.config import load_config
from bastion.gateway.principals import Permission

SCHEMA = {"shape": [None, 4], "dtype": "float32", "max_batch": 8}


class _Client:
    """The app in-process over httpx's ASGI transport (no server, no network)."""

    def __init__(self, app: object) -> None:
        self.app = app

    def get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.get(url, headers=headers)
        return asyncio.run(go())


@pytest.fixture
def client(engine: Engine, model_folder: Path) -> Iterator[tuple[_Client, str]]:
    registry.admit(engine, "folder", model_folder, loader="onnx", input_schema=SCHEMA)
    token = keys.create_key(engine, "dana").secret
    access.grant(engine, "user:dana", "folder", Permission.DOWNLOAD, separation_of_duties=True)
    app = create_app(load_config({}, environ={}), engine)
    yield _Client(app), token
    app.state.gateway.close()  # lanes, then the audit log


def test_folder_files_are_served_as_admitted(client: tuple[_Client, str],
                                             model_folder: Path) -> None:
    http, token = client
    auth = {"Authorization": f"Bearer {token}"}
    got = http.get("/v1/models/folder/download?file=tokenizer/vocab.txt", headers=auth)
    assert got.status_code == 200
    assert got.content == (model_folder / "tokenizer" / "vocab.txt").read_bytes()
    assert got.headers["content-disposition"] == 'attachment; filename="vocab.txt"'
    assert http.get("/v1/models/folder/download", headers=auth).status_code == 400
    (model_folder.parent / "outside.txt").write_text("not part of the model\n")
    for escape in ("../outside.txt", "/etc/passwd", "tokenizer/../../outside.txt",
                   "missing.bin"):
        answer = http.get(f"/v1/models/folder/download?file={escape}", headers=auth)
        assert answer.status_code == 404, escape


def test_folder_changed_after_admission_is_refused(client: tuple[_Client, str],
                                                   model_folder: Path) -> None:
    http, token = client
    auth = {"Authorization": f"Bearer {token}"}
    (model_folder / "config.json").write_text('{"labels": ["b", "a"]}\n', encoding="utf-8")
    answer = http.get("/v1/models/folder/download?file=tokenizer/vocab.txt", headers=auth)
    assert answer.status_code == 503
    assert "config.json changed since admission" in answer.json()["error"]["message"]
    (model_folder / "config.json").write_text('{"labels": ["a", "b"]}\n', encoding="utf-8")
    assert http.get("/v1/models/folder/download?file=config.json", headers=auth).status_code == 200
    (model_folder / "link.txt").symlink_to(model_folder.parent)  # a link out of the folder
    answer = http.get("/v1/models/folder/download?file=config.json", headers=auth)
    assert answer.status_code == 503
    assert "outside the model folder" in answer.json()["error"]["message"]


def test_an_unchanged_folder_is_not_hashed_again(client: tuple[_Client, str], model_folder: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Every download of one file used to hash the whole folder first (a client could make
    # the gateway hash gigabytes per request); now only when a file changed since the last
    # full check. The spy counts full checks and still runs the real one.
    checks: list[str] = []
    real = registry.verify_content

    def counted(record: registry.ModelRecord) -> None:
        checks.append(record.version)
        real(record)

    monkeypatch.setattr(registry, "verify_content", counted)
    http, token = client
    auth = {"Authorization": f"Bearer {token}"}
    url = "/v1/models/folder/download?file=tokenizer/vocab.txt"
    # Files written just now (within 2 s): checked in full every time, as a change in the
    # same clock tick would not show in their times.
    for _ in range(2):
        assert http.get(url, headers=auth).status_code == 200
    assert len(checks) == 2
    checks.clear()
    monkeypatch.setattr(gateway_app, "_SETTLED_NS", 0)  # as if they had been written long ago
    for _ in range(3):
        answer = http.get(url, headers=auth)
        assert answer.status_code == 200, answer.text
    assert len(checks) == 1
    # Another file rewritten with bytes of the same size: seen, hashed, refused.
    config = model_folder / "config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b"a", b"z", 1))
    assert len(config.read_bytes()) == len(original)
    answer = http.get(url, headers=auth)
    assert answer.status_code == 503
    assert "config.json changed since admission" in answer.json()["error"]["message"]
    assert len(checks) == 2
    config.write_bytes(original)  # put right: checked once more, then served from the stamp
    assert http.get(url, headers=auth).status_code == 200
    assert http.get(url, headers=auth).status_code == 200
    assert len(checks) == 3
    (model_folder / "extra.bin").write_bytes(b"added after admission")
    answer = http.get(url, headers=auth)
    assert answer.status_code == 503
    assert "extra.bin was added since admission" in answer.json()["error"]["message"]
