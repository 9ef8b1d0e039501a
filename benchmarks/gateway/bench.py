"""Gateway overhead: `bastion serve` with every protection on vs a bare FastAPI app.

Both serve the same ONNX model (an MLP, 64 inputs -> 128 -> 10 classes, softmax) from the
same machine, one uvicorn worker each; the load generator (`loadgen.py`) runs in its own
process over loopback. The gateway runs with API-key authentication, a grant lookup, a quota
(large enough never to refuse), input-schema validation, output shaping (rounded scores) and
the hash-chained audit log committed before each answer (SQLite, WAL). Rounds alternate the
two servers so a drifting load hits both alike; medians are reported.

    .venv/bin/python benchmarks/gateway/bench.py                # 3 rounds x 5 s
    .venv/bin/python benchmarks/gateway/bench.py --rounds 5 --seconds 10 --db postgresql://postgres@127.0.0.1/test

Goals (issue 6): added p50 <= 1 ms, throughput >= 0.9x bare. Tables go to stdout and to
results.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
BASTION = str(Path(PYTHON).with_name("bastion"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: (inputs, hidden width, hidden layers): "small" is a digits-sized MLP (~10 µs of compute,
#: the worst case for relative overhead); "large" an MNIST-sized MLP (~1 ms on one core).
MODELS = {"small": (64, 128, 1), "large": (784, 2048, 2)}


def write_model(path: Path, size: str) -> int:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    inputs, width, depth = MODELS[size]
    rng = np.random.default_rng(0)
    nodes = []
    inits = []
    prev, prev_dim = "x", inputs
    for i in range(depth):
        w = (rng.normal(size=(prev_dim, width)) / np.sqrt(prev_dim)).astype(np.float32)
        inits += [
            helper.make_tensor(f"W{i}", TensorProto.FLOAT, w.shape, w.flatten().tolist()),
            helper.make_tensor(f"B{i}", TensorProto.FLOAT, (width,), [0.0] * width),
        ]
        nodes += [
            helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"B{i}"], [f"a{i}"]),
            helper.make_node("Relu", [f"a{i}"], [f"h{i}"]),
        ]
        prev, prev_dim = f"h{i}", width
    w = (rng.normal(size=(prev_dim, 10)) / np.sqrt(prev_dim)).astype(np.float32)
    inits += [
        helper.make_tensor("Wo", TensorProto.FLOAT, w.shape, w.flatten().tolist()),
        helper.make_tensor("Bo", TensorProto.FLOAT, (10,), [0.0] * 10),
    ]
    nodes += [
        helper.make_node("MatMul", [prev, "Wo"], ["z0"]),
        helper.make_node("Add", ["z0", "Bo"], ["z1"]),
        helper.make_node("Softmax", ["z1"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, inputs])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 10])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return inputs


def wait_ready(url: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not become ready")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def load(
    url: str, body: Path, headers: list[str], connections: int, seconds: float
) -> dict[str, float]:
    cmd = [
        PYTHON,
        str(HERE / "loadgen.py"),
        "--url",
        url,
        "--body",
        str(body),
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--warmup",
        "1",
    ]
    for h in headers:
        cmd += ["--header", h]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1, help="inputs per request")
    parser.add_argument("--model", choices=sorted(MODELS), default="small")
    parser.add_argument("--connections", type=int, default=8, help="for the throughput runs")
    parser.add_argument("--db", default=None, help="gateway database URL (default: SQLite)")
    parser.add_argument("--redis", action="store_true", help="quota state in Redis")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bastion-gw-bench-"))
    model = work / "mlp.onnx"
    features = write_model(model, args.model)
    (work / "schema.json").write_text(
        json.dumps(
            {"shape": [None, features], "dtype": "float32", "min": -10, "max": 10, "max_batch": 256}
        )
    )
    body = work / "body.json"
    import numpy as np

    x = np.random.default_rng(1).uniform(0, 1, size=(args.batch, features)).round(4)
    body.write_text(json.dumps({"inputs": x.tolist()}))

    env = dict(os.environ)
    schema = None
    if args.db:
        env["BASTION_DB_URL"] = args.db
        if args.db.startswith("postgresql"):
            schema = "bench_" + uuid.uuid4().hex[:8]
            env["BASTION_DB_SCHEMA"] = schema  # the CLI's and serve's --db-schema
    else:
        env["BASTION_DB_URL"] = f"sqlite:///{work / 'gateway.db'}"
    env["BASTION_GATEWAY_QUOTA"] = json.dumps({"rate": 1e6, "burst": 10**7, "per-day": 10**9})
    env["BASTION_GATEWAY_LOG_LEVEL"] = "warning"
    if args.redis:
        env["BASTION_REDIS_URL"] = "redis://127.0.0.1:6379/0"
        env["BASTION_GATEWAY_REDIS_PREFIX"] = "bench-" + uuid.uuid4().hex[:8]

    def cli(*argv: str) -> str:
        return subprocess.run(
            [BASTION, *argv], env=env, capture_output=True, text=True, check=True
        ).stdout

    cli(
        "models",
        "add",
        "mlp",
        str(model),
        "--loader",
        "onnx",
        "--schema",
        str(work / "schema.json"),
    )
    secret = next(
        line.split()[1]
        for line in cli("keys", "create", "--principal", "bench").splitlines()
        if line.startswith("secret:")
    )
    cli("access", "grant", "user:bench", "mlp", "scores")

    gport, bport = free_port(), free_port()
    gateway = start(
        [BASTION, "serve", "--port", str(gport), "--log-level", "warning"],
        env,
        work / "gateway.log",
    )
    bare_env = dict(env, BARE_MODEL=str(model), PYTHONPATH=str(HERE))
    bare = start(
        [
            PYTHON,
            "-m",
            "uvicorn",
            "--factory",
            "bare_app:create",
            "--port",
            str(bport),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-server-header",
        ],
        bare_env,
        work / "bare.log",
    )
    results: dict[str, dict[str, list[float]]] = {}
    try:
        wait_ready(f"http://127.0.0.1:{gport}/readyz")
        wait_ready(f"http://127.0.0.1:{bport}/docs")
        targets = {
            "bare": (f"http://127.0.0.1:{bport}/v1/models/mlp/predict", []),
            "gateway": (
                f"http://127.0.0.1:{gport}/v1/models/mlp/predict",
                [f"Authorization: Bearer {secret}"],
            ),
        }
        for rnd in range(args.rounds):
            order = list(targets) if rnd % 2 == 0 else list(reversed(targets))
            for name in order:
                url, headers = targets[name]
                for mode, conns in (("latency", 1), ("throughput", args.connections)):
                    r = load(url, body, headers, conns, args.seconds)
                    if r["errors"]:
                        raise SystemExit(f"{name}: {r['errors']} errors (first {r['first_error']})")
                    slot = results.setdefault(f"{name}/{mode}", {})
                    for key in ("p50_ms", "p99_ms", "rps"):
                        slot.setdefault(key, []).append(r[key])
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
        verify = subprocess.run(
            [BASTION, "audit-log", "verify"], env=env, capture_output=True, text=True
        )
    finally:
        stop(gateway)
        stop(bare)
        if schema:  # leave the shared database as it was
            from bastion.db import connect, drop_schema

            drop_schema(connect(args.db, schema=schema), schema)

    med = {k: {m: statistics.median(v) for m, v in slot.items()} for k, slot in results.items()}
    lines = [
        f"Gateway benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
        f"{args.rounds} rounds x {args.seconds:g} s, {args.model} model, batch {args.batch}, "
        f"db {'SQLite' if not args.db else args.db.split(':')[0]}"
        f"{', Redis quotas' if args.redis else ', in-process quotas'}; medians)",
        "",
        "| | bare FastAPI | Bastion gateway | added / ratio | goal |",
        "|---|---|---|---|---|",
    ]
    b, g = med["bare/latency"], med["gateway/latency"]
    lines.append(
        f"| p50 latency, 1 connection (ms) | {b['p50_ms']:.3f} | {g['p50_ms']:.3f} | "
        f"+{g['p50_ms'] - b['p50_ms']:.3f} ms | ≤ +1 ms |"
    )
    lines.append(
        f"| p99 latency, 1 connection (ms) | {b['p99_ms']:.3f} | {g['p99_ms']:.3f} | "
        f"+{g['p99_ms'] - b['p99_ms']:.3f} ms | |"
    )
    bt, gt = med["bare/throughput"], med["gateway/throughput"]
    lines.append(
        f"| p50 latency, {args.connections} connections (ms) | {bt['p50_ms']:.3f} | "
        f"{gt['p50_ms']:.3f} | +{gt['p50_ms'] - bt['p50_ms']:.3f} ms | |"
    )
    lines.append(
        f"| p99 latency, {args.connections} connections (ms) | {bt['p99_ms']:.3f} | "
        f"{gt['p99_ms']:.3f} | +{gt['p99_ms'] - bt['p99_ms']:.3f} ms | |"
    )
    lines.append(
        f"| throughput, {args.connections} connections (req/s) | {bt['rps']:.0f} | "
        f"{gt['rps']:.0f} | {gt['rps'] / bt['rps']:.2f}x | ≥ 0.9x |"
    )
    lines += ["", f"Audit log after the run: {verify.stdout.strip() or verify.stderr.strip()}"]
    text = "\n".join(lines)
    print(text)
    with (HERE / "results.md").open("a") as out:
        out.write(text + "\n\n")


if __name__ == "__main__":
    main()
