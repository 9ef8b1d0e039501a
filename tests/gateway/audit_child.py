"""An audit-writing gateway process, for the tests in ``test_audit.py``.

``python audit_child.py URL SCHEMA TAG COUNT``: prints ``ready``, waits for a line on
standard input (so that several children start appending together), then appends entries
through an
:class:`AuditWriter` (eight in flight at a time) and prints each sequence number once its
transaction has committed, one per line, flushed: what it printed is what a client would
have seen answered. ``COUNT`` 0 appends until killed. ``SCHEMA`` may be empty (SQLite).
"""

from __future__ import annotations

import sys

from bastion.db import connect
from bastion.gateway.audit import AuditEntry, AuditLog, AuditWriter


def main() -> None:
    url, schema, tag, count = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
    engine = connect(url, schema=schema)
    print("ready", flush=True)
    sys.stdin.readline()
    done = 0
    with AuditWriter(AuditLog(engine), max_batch=16) as writer:
        while count == 0 or done < count:
            futures = [writer.submit(AuditEntry(principal=tag, model="m", decision="allow",
                                                status=200, reason=f"{tag}-{done + i}"))
                       for i in range(8)]
            for future in futures:
                print(future.result(), flush=True)
            done += len(futures)
    engine.dispose()


if __name__ == "__main__":
    main()
