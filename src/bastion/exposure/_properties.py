"""Java ``.properties`` files (TorchServe's ``config.properties``), read with bounds.

The format: ``key=value``, ``key: value`` or ``key value``; ``#`` and ``!`` comments; a
trailing backslash continues the logical line; backslash escapes (``\\t``, ``\\uXXXX``).
Later keys win, as in ``java.util.Properties``. Each entry keeps the line it starts on.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Larger files are not read.
MAX_BYTES = 1 << 20
#: Entries kept per file.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    value: str
    line: int


class PropertiesError(ValueError):
    """Not a properties file Bastion will read."""


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u" and i + 6 <= len(text):
            try:
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            except ValueError:
                pass
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


def _split(logical: str) -> tuple[str, str]:
    """Key and value of one logical line (separator: the first unescaped ``=``, ``:`` or
    whitespace)."""
    i = 0
    while i < len(logical):
        char = logical[i]
        if char == "\\":
            i += 2
            continue
        if char in "=: \t\f":
            break
        i += 1
    key = logical[:i]
    rest = logical[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest)


def parse(text: str) -> dict[str, Entry]:
    """Every key with its (last) value and line. Raises :class:`PropertiesError`."""
    if len(text) > MAX_BYTES:
        raise PropertiesError(f"{len(text)} characters is over the {MAX_BYTES} limit")
    entries: dict[str, Entry] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index
        raw = lines[index].lstrip(" \t\f")
        index += 1
        if not raw or raw[0] in "#!":
            continue
        parts = [raw]
        while _continues(parts[-1]) and index < len(lines):
            parts[-1] = parts[-1][:-1]
            parts.append(lines[index].lstrip(" \t\f"))
            index += 1
        if _continues(parts[-1]):
            parts[-1] = parts[-1][:-1]
        key, value = _split("".join(parts))
        if not key:
            continue
        if key not in entries and len(entries) >= MAX_ENTRIES:
            raise PropertiesError(f"more than {MAX_ENTRIES} entries")
        entries[key] = Entry(value.strip(), start + 1)
    return entries


def _continues(line: str) -> bool:
    """A line ends in an odd number of backslashes: the next line continues it."""
    count = len(line) - len(line.rstrip("\\"))
    return count % 2 == 1
