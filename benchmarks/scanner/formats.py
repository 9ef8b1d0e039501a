"""Hand-built binary formats for the benchmark corpus.

Some formats cannot be written by an installed library here (GGUF writer, LZ4 frame, Keras
without TensorFlow), and some hostile variants are exactly what no library would write
(a malformed safetensors header). Each writer follows the published format so that the real
loader would accept the benign variants.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import struct
import zipfile
from pathlib import Path
from typing import Any

# -- xxHash32 + LZ4 frame (joblib's ``lz4`` compressor writes LZ4 frames) -----------------

_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def xxh32(data: bytes, seed: int = 0) -> int:
    """xxHash32 (the LZ4 frame header checksum), per the xxHash specification."""
    n, i = len(data), 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 16 <= n:
            for k in range(4):
                lane = struct.unpack_from("<I", data, i + 4 * k)[0]
                v[k] = (_rotl((v[k] + lane * _P2) & _M, 13) * _P1) & _M
            i += 16
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 4 <= n:
        h = (_rotl((h + struct.unpack_from("<I", data, i)[0] * _P3) & _M, 17) * _P4) & _M
        i += 4
    while i < n:
        h = (_rotl((h + data[i] * _P5) & _M, 11) * _P1) & _M
        i += 1
    h ^= h >> 15
    h = (h * _P2) & _M
    h ^= h >> 13
    h = (h * _P3) & _M
    h ^= h >> 16
    return h


def lz4_frame(payload: bytes) -> bytes:
    """An LZ4 frame holding ``payload`` in uncompressed blocks (valid per the frame spec)."""
    flg = 0b01100000  # version 01, block independence, no checksums, no content size
    bd = 0b01110000  # max block size 4 MiB
    descriptor = bytes([flg, bd])
    out = bytearray(b"\x04\x22\x4d\x18" + descriptor + bytes([(xxh32(descriptor) >> 8) & 0xFF]))
    block = 4 * 2**20
    for start in range(0, len(payload), block):
        chunk = payload[start:start + block]
        out += struct.pack("<I", len(chunk) | 0x80000000) + chunk  # high bit: stored block
    out += b"\x00\x00\x00\x00"  # end mark
    return bytes(out)


# -- GGUF v3 ------------------------------------------------------------------------------

_GGUF_UINT32, _GGUF_STRING, _GGUF_ARRAY, _GGUF_FLOAT32 = 4, 8, 9, 6


def _gstr(s: str) -> bytes:
    data = s.encode()
    return struct.pack("<Q", len(data)) + data


def _gvalue(value: Any) -> bytes:
    if isinstance(value, str):
        return struct.pack("<I", _GGUF_STRING) + _gstr(value)
    if isinstance(value, float):
        return struct.pack("<If", _GGUF_FLOAT32, value)
    if isinstance(value, int):
        return struct.pack("<II", _GGUF_UINT32, value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return (struct.pack("<IIQ", _GGUF_ARRAY, _GGUF_STRING, len(value))
                + b"".join(_gstr(v) for v in value))
    raise TypeError(type(value))


def gguf(metadata: dict[str, Any], tensors: dict[str, tuple[tuple[int, ...], bytes]]) -> bytes:
    """A GGUF v3 file: header, typed key/values, F32 tensor infos, 32-byte aligned data."""
    align = 32
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, value in metadata.items():
        out += _gstr(key) + _gvalue(value)
    offset, blobs = 0, []
    for name, (shape, data) in tensors.items():
        out += _gstr(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", 0, offset)  # ggml type F32, offset in the data section
        blobs.append(data)
        offset += len(data) + (-len(data) % align)
    out += b"\x00" * (-len(out) % align)
    for data in blobs:
        out += data + b"\x00" * (-len(data) % align)
    return bytes(out)


def tiny_llama_gguf(chat_template: str) -> bytes:
    """A tiny llama-architecture GGUF with a tokenizer and the given chat template."""
    import numpy as np

    rng = np.random.default_rng(0)
    meta: dict[str, Any] = {
        "general.architecture": "llama", "general.name": "bench-tiny",
        "llama.context_length": 128, "llama.embedding_length": 8, "llama.block_count": 1,
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["<s>", "</s>", "a", "b"],
        "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.chat_template": chat_template,
    }
    emb = rng.standard_normal((4, 8)).astype("<f4").tobytes()
    return gguf(meta, {"token_embd.weight": ((8, 4), emb)})


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def ssti_template(marker: str) -> str:
    """The CVE-2024-34359 (llama-cpp-python) payload shape: walk to a class with builtins."""
    return ("{% for x in ().__class__.__base__.__subclasses__() %}"
            "{% if \"warning\" in x.__name__ %}"
            "{{ x()._module.__builtins__['__import__']('os').popen("
            f"\"touch {marker}\").read() }}"
            "{% endif %}{% endfor %}" + CHATML_TEMPLATE)


# -- Keras (hand-built: TensorFlow/Keras is not installed) --------------------------------

def lambda_code(marker: str) -> str:
    """base64(marshal(code)) of a lambda that would run a command: Keras' Lambda encoding."""
    fn = eval(f"lambda x: (__import__('os').system('touch {marker}'), x)[1]")
    return base64.b64encode(marshal.dumps(fn.__code__)).decode()


def _dense2(name: str, units: int) -> dict[str, Any]:
    return {"class_name": "Dense", "config": {"name": name, "trainable": True, "units": units,
            "activation": "relu", "use_bias": True, "dtype": "float32"}}


def keras2_config(marker: str | None) -> dict[str, Any]:
    """A Keras 2 Sequential config; with a marker, a Lambda layer with marshalled bytecode."""
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4],
                                                      "dtype": "float32", "name": "input_1"}},
              _dense2("dense", 8)]
    if marker is not None:
        layers.append({"class_name": "Lambda", "config": {
            "name": "lambda", "trainable": True, "dtype": "float32",
            "function": [lambda_code(marker), None, None], "function_type": "lambda",
            "module": "__main__", "output_shape": None, "output_shape_type": "raw",
            "output_shape_module": None, "arguments": {}}})
    layers.append(_dense2("dense_1", 3))
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}


def keras2_h5(path: Path, marker: str | None) -> None:
    """A Keras 2 HDF5 model: ``model_config`` attribute plus a ``model_weights`` group."""
    import h5py
    import numpy as np

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(keras2_config(marker))
        weights = f.create_group("model_weights")
        names = ["dense", "dense_1"] + (["lambda"] if marker else [])
        weights.attrs["layer_names"] = np.array([n.encode() for n in names])
        for name, shape in (("dense", (4, 8)), ("dense_1", (8, 3))):
            g = weights.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel:0".encode(),
                                                f"{name}/bias:0".encode()])
            sub = g.create_group(name)
            sub.create_dataset("kernel:0", data=np.ones(shape, "f4"))
            sub.create_dataset("bias:0", data=np.zeros(shape[1], "f4"))
        if marker:
            weights.create_group("lambda").attrs["weight_names"] = np.array([], dtype="S1")


def keras3_archive(path: Path, marker: str | None) -> None:
    """A Keras 3 ``.keras`` zip: config.json, metadata.json, model.weights.h5."""
    import h5py
    import numpy as np

    def dense(name: str, units: int) -> dict[str, Any]:
        return {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
                "config": {"name": name, "units": units, "activation": "relu",
                           "use_bias": True, "trainable": True}}

    layers = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
               "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "input"}},
              dense("dense", 8)]
    if marker is not None:
        layers.append({"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                       "config": {"name": "lambda", "trainable": True, "function": {
                           "class_name": "__lambda__", "config": {
                               "code": lambda_code(marker), "defaults": None,
                               "closure": None}},
                           "arguments": {}}})
    layers.append(dense("dense_1", 3))
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "sequential", "layers": layers}}
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        for name, shape in (("dense", (4, 8)), ("dense_1", (8, 3))):
            g = f.create_group(f"_layer_checkpoint_dependencies/{name}/vars")
            g.create_dataset("0", data=np.ones(shape, "f4"))
            g.create_dataset("1", data=np.zeros(shape[1], "f4"))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.6.0",
                                                "date_saved": "2026-01-01@00:00:00"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights.getvalue())


# -- safetensors --------------------------------------------------------------------------

def safetensors_raw(header: bytes, data: bytes, claimed_len: int | None = None) -> bytes:
    """A safetensors file from a raw header (for malformed variants)."""
    n = len(header) if claimed_len is None else claimed_len
    return struct.pack("<Q", n) + header + data


def safetensors_malformed() -> dict[str, bytes]:
    """Hostile safetensors headers: each breaks one invariant a loader relies on."""
    good = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
    data = b"\x00" * 16
    out_of_bounds = json.dumps(
        {"w": {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [0, 4 * 2**20]}}).encode()
    overlap = json.dumps({
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()
    return {
        "huge-header-length.safetensors": safetensors_raw(good, data, claimed_len=2**62),
        "header-not-json.safetensors": safetensors_raw(b"{\"w\": {\"dtype\": \"F32\", " * 4,
                                                       data),
        "offsets-out-of-bounds.safetensors": safetensors_raw(out_of_bounds, data),
        "overlapping-tensors.safetensors": safetensors_raw(overlap, b"\x00" * 24),
    }
