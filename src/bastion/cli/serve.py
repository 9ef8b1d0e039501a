"""``bastion serve``: run the model gateway with uvicorn.

Settings come from the policy's ``[gateway]`` table, ``BASTION_GATEWAY_*`` variables and the
options below, in that order. The gateway listens on 127.0.0.1 unless told otherwise; TLS is
uvicorn's (``--ssl-certfile``/``--ssl-keyfile``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import typer

from bastion.cli.common import POLICY, fail, guarded, resolve_policy


def serve(
    host: str = typer.Option("127.0.0.1", "--host", envvar="BASTION_GATEWAY_HOST",
                             help="Address to bind (0.0.0.0 exposes the gateway)."),
    port: int = typer.Option(8000, "--port", envvar="BASTION_GATEWAY_PORT", min=0, max=65535),
    db: str | None = typer.Option(None, "--db", envvar="BASTION_DB_URL",
                                  help="Database URL (default: SQLite under ~/.bastion)."),
    db_schema: str | None = typer.Option(None, "--db-schema", envvar="BASTION_DB_SCHEMA",
                                         help="PostgreSQL schema holding the tables."),
    redis_url: str | None = typer.Option(None, "--redis-url", envvar="BASTION_REDIS_URL",
                                         help="Share quota state with other replicas."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes."),
    ssl_certfile: Path | None = typer.Option(None, "--ssl-certfile", exists=True,
                                             dir_okay=False),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", exists=True, dir_okay=False),
    policy_path: Path | None = POLICY,
    log_level: str | None = typer.Option(None, "--log-level", show_default=False,
                                         help="debug, info, warning or error (default: the "
                                              "policy's [gateway] log-level, else info)."),
) -> None:
    """Serve admitted models behind authentication, permissions, quotas and an audit log."""
    with guarded():
        try:
            import uvicorn

            from bastion.gateway.config import ConfigError, load_config
        except ImportError as exc:
            fail(f"the gateway needs its extra ({exc.name} is missing)",
                 "pip install 'bastion-mlsec[gateway]'")
        policy, _source = resolve_policy(policy_path)
        try:
            config = load_config(policy.gateway, db_url=db, db_schema=db_schema,
                                 redis_url=redis_url, log_level=log_level)
        except ConfigError as exc:
            fail(str(exc))
        if workers > 1 and not config.redis_url:
            fail(f"--workers {workers} without --redis-url: each worker would keep a quota "
                 f"budget of its own ({workers} times the configured one)",
                 "give --redis-url so that the workers share one budget, or run one worker")
        from bastion.db import StorageError
        from bastion.gateway.tables import open_db

        try:  # fail here, with one line, rather than in every worker
            open_db(config.db_url, schema=config.db_schema).dispose()
        except StorageError as exc:
            fail(str(exc))
        if config.jwt is not None:
            from bastion.gateway.app import jwt_authenticator

            try:  # a JWKS file that is missing or unusable: one line here, not a worker's crash
                jwt_authenticator(config.jwt)
            except ConfigError as exc:
                fail(str(exc))
        # Workers build their app from the environment: the settings travel as JSON.
        os.environ["BASTION_GATEWAY_SETTINGS"] = json.dumps(
            config.model_dump(mode="json", by_alias=True, exclude_none=True))
        # uvicorn drains in-flight requests on SIGTERM (the audit writer flushes in the
        # lifespan's exit), then raises the signal again to die of it (status 143). A stop
        # that completed gracefully is a success: exit 0 instead, as service managers expect.
        signal.signal(signal.SIGTERM, _stopped)
        uvicorn.run(
            "bastion.gateway.app:app_from_env", factory=True, host=host, port=port,
            workers=workers, log_level=config.log_level, proxy_headers=False,
            server_header=False, timeout_graceful_shutdown=10,
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )


def _stopped(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
