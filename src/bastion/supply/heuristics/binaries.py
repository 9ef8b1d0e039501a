"""Native binaries by their magic bytes: ELF, PE, Mach-O (thin and fat).

A source distribution should hold sources; a wheel holds extension modules where Python
imports them. A binary is judged by its content, whatever its name: an ELF file called
``notes.txt`` is worse than one called ``_speedups.so``.
"""

from __future__ import annotations

import struct

#: Bytes of each file read to recognise a binary (PE headers sit within the first KiB).
HEAD = 1024
#: Names binaries normally have.
BINARY_SUFFIXES = (".so", ".dll", ".exe", ".dylib", ".pyd", ".sys", ".bin", ".o", ".a",
                   ".lib", ".node", ".elf")
_MACHO = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe"}


def native_kind(head: bytes) -> str | None:
    """``"ELF"``, ``"PE"``, ``"Mach-O"`` or None."""
    if head.startswith(b"\x7fELF"):
        return "ELF"
    if head[:4] in _MACHO:
        return "Mach-O"
    if head.startswith(b"\xca\xfe\xba\xbe") and len(head) >= 8:
        # Fat Mach-O: a small architecture count. Java classes share the magic but carry
        # a version of 45 or more there.
        (count,) = struct.unpack(">I", head[4:8])
        return "Mach-O" if 0 < count < 45 else None
    if head.startswith(b"MZ") and len(head) >= 0x40:
        (offset,) = struct.unpack("<I", head[0x3C:0x40])
        if offset + 4 <= len(head) and head[offset:offset + 4] == b"PE\x00\x00":
            return "PE"
    return None


def has_binary_name(name: str) -> bool:
    lower = name.lower()
    base = lower.rsplit("/", 1)[-1]
    return lower.endswith(BINARY_SUFFIXES) or ".so." in base or "." not in base


def binary_suffix(name: str) -> bool:
    """A name that says "binary" (``.so``, ``.so.1``, ``.dll``, ``.exe``, ``.dylib``...)."""
    base = name.lower().rsplit("/", 1)[-1]
    return base.endswith((".so", ".dll", ".exe", ".dylib", ".pyd")) or ".so." in base
