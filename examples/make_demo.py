"""Regenerate examples/demo/ with nothing but the standard library.

The demo holds a harmless *malicious* pickle (its payload would only echo a line), a safe
safetensors model and a requirements file with known-vulnerable pins. Run from the repo root:
``python examples/make_demo.py``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

DEMO = Path(__file__).resolve().parent / "demo"


def malicious_pickle() -> bytes:
    # Protocol 2 by hand: os.system('echo ...') when unpickled. Never unpickle it.
    command = b"echo 'Bastion demo: this command ran because the model was unpickled'"
    return (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(command)) + command
            + b"q\x01\x85q\x02Rq\x03.")


def safetensors_model() -> bytes:
    weights = [0.5, -1.25, 2.0, 0.0, 3.5, -0.75]
    bias = [0.1, -0.2]
    data = struct.pack("<6f", *weights) + struct.pack("<2f", *bias)
    header = {
        "__metadata__": {"format": "pt", "description": "Bastion demo classifier"},
        "linear.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "linear.bias": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


REQUIREMENTS = """\
# Demo pins with real, published advisories: `bastion scan` reports them.
torch==1.13.0
transformers==4.30.0
mlflow==2.8.0
numpy>=1.26
"""


def main() -> None:
    DEMO.mkdir(exist_ok=True)
    (DEMO / "model.pkl").write_bytes(malicious_pickle())
    (DEMO / "classifier.safetensors").write_bytes(safetensors_model())
    (DEMO / "requirements.txt").write_text(REQUIREMENTS)


if __name__ == "__main__":
    main()
