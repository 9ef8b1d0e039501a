"""Plug-in analyzers for the bulk-scan tests, importable by worker processes.

``Marked`` claims files that start with ``MARK`` and reports each ``EVIL`` in them; it may
sleep and log each file it analyses (the resume test counts what was analysed twice).
``Crasher`` kills the worker process that analyses a file starting with ``CRASH``, as an
out-of-memory kill would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Severity
from bastion.rules import Rule

EVIL = Rule(id="TEST-SCALE-EVIL", title="test mark", severity=Severity.HIGH,
            category=Category.CODE_EXECUTION, description="A test plug-in's mark.")


class Marked:
    name = "test-marked"
    capability = "model"
    rules = (EVIL,)
    cache_safe = True

    def claims(self, target: Target) -> bool:
        return target.head.startswith(b"MARK")

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        delay = float(os.environ.get("TEST_SCALE_DELAY", "0"))
        log = os.environ.get("TEST_SCALE_LOG")
        if delay:
            time.sleep(delay)
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(target.location.path + "\n")
        with target.open() as stream:
            data = stream.read()
        start = 0
        while (at := data.find(b"EVIL", start)) >= 0:
            yield EVIL.finding(target.location.at(offset=at), "EVIL here")
            start = at + 4


class Crasher:
    name = "test-crasher"
    capability = "crash"
    rules: tuple[Rule, ...] = ()

    def claims(self, target: Target) -> bool:
        return target.head.startswith(b"CRASH")

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        os._exit(70)
        yield from ()
