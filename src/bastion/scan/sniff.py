"""Cheap pre-filters on a target's first bytes, one per model format, with no heavy imports.

``bastion scan`` asks every analyzer about every file; importing every format's parser to do
so would cost more than scanning a multi-GB checkpoint. Each format is therefore registered as a
:class:`~bastion.analyzer.LazyAnalyzer` whose pre-filter here says "maybe" (never a false
"no" for content the format's own ``claims`` would accept); only then is its module imported
and asked for real. A test pins that every real claim passes its pre-filter.
"""

from __future__ import annotations

from bastion.analyzer import Target

ZIP = b"PK\x03\x04"
HDF5 = b"\x89HDF\r\n\x1a\n"
TORCH_LEGACY = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
_COMPRESSED = (b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
               b"\x04\x22\x4d\x18", b"\x02\x21\x4c\x18", b"\x28\xb5\x2f\xfd",
               b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07")


def zip_file(t: Target) -> bool:
    return t.head.startswith(ZIP)


def torch_legacy(t: Target) -> bool:
    return t.head.startswith(TORCH_LEGACY)


def tar_file(t: Target) -> bool:
    return len(t.head) >= 512


def keras(t: Target) -> bool:
    head = t.head
    return HDF5 in head or head.startswith(ZIP) or head.lstrip()[:1] == b"{" or (
        t.size > len(head) and _hdf5_after_user_block(t))


def _hdf5_after_user_block(t: Target) -> bool:
    """HDF5 may sit after a user block of 512 · 2^k bytes, past the head: probe those."""
    offset = 4096
    with t.open() as stream:
        while offset + len(HDF5) <= t.size:
            stream.seek(offset)
            if stream.read(len(HDF5)) == HDF5:
                return True
            offset *= 2
    return False


def numpy(t: Target) -> bool:
    return t.head.startswith(b"\x93NUMPY")


def safetensors(t: Target) -> bool:
    return len(t.head) >= 10 and t.head[8:].lstrip(b" \t\r\n")[:1] == b"{"


def gguf(t: Target) -> bool:
    return t.head[:4] in (b"GGUF", b"FUGG")


def protobuf(t: Target) -> bool:
    """SavedModel and ONNX both open with a small varint or length-delimited field."""
    return bool(t.head) and t.head[0] in (0x08, 0x0A, 0x10, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A)


def pickle(t: Target) -> bool:
    head = t.head
    return bool(head) and (head[0] == 0x80 or head[0] in _PICKLE_FIRST)


_PICKLE_FIRST = frozenset(b"(cNI]})SVXKJMGFldUTLPi\x8c\x95")


def archive(t: Target) -> bool:
    head = t.head
    return (head.startswith(ZIP) or head.startswith(_COMPRESSED) or len(head) >= 512
            or head[:1] in (b"\x78", b"\x5d") or (t.size <= len(head) and b"PK\x05\x06" in head))
