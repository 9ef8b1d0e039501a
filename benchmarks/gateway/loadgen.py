"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams (keep-alive).

Run as its own process so it never shares an interpreter with the server under test:

    python loadgen.py --url http://127.0.0.1:8000/v1/models/m/predict --body body.json \
        --header "Authorization: Bearer ..." --connections 8 --seconds 10

Prints one JSON line: requests, errors (non-2xx), throughput (req/s), p50/p90/p99 latency (ms).
Loopback only: it refuses any other host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


async def _worker(host: str, port: int, request: bytes, deadline: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
                elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                    chunked = True
            if chunked:
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            parts = status_line.split()
            if len(parts) < 2 or not parts[1].startswith(b"2"):
                errors.append(int(parts[1]) if len(parts) > 1 else 0)
    finally:
        writer.close()


async def _run(url: str, body: bytes, headers: list[str], connections: int, seconds: float,
               warmup: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loadgen: loopback targets only")
    head = [f"POST {parts.path} HTTP/1.1", f"Host: {host}:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}", *headers]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    if warmup:
        await asyncio.gather(*(_worker(host, port, request, time.perf_counter() + warmup,
                                       [], []) for _ in range(connections)))
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, request, start + seconds, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"requests": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else 0,
            "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(pct(0.50), 3), "p90_ms": round(pct(0.90), 3),
            "p99_ms": round(pct(0.99), 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, help="file holding the JSON body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        body = handle.read()
    result = asyncio.run(_run(args.url, body, args.header, args.connections, args.seconds,
                              args.warmup))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
