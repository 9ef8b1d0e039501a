"""Typosquats: package names made to be mistaken for a popular one.

Attackers publish ``reqeusts``, ``numpyy`` or ``t0rch`` and wait for a typo in a
``pip install`` or a requirements file. A name is measured against the shipped list of the
most-downloaded projects (:mod:`bastion.supply.heuristics.popular`); a name *on* that list
is never a squat of another (``torch`` and ``torchvision`` are both real). The techniques,
strongest first:

* **homoglyph** – the name reads the same once look-alikes are folded (``0``/``o``,
  ``1``/``l``/``i``, ``rn``/``m``, ``vv``/``w``, Cyrillic and Greek letters);
* **separator** – the same letters with ``-``/``_``/``.`` added or removed;
* **transposition** – two neighbouring characters swapped;
* **one edit** – a character omitted, duplicated, added or replaced;
* **affix** – a popular name with ``python-``, ``py-``, ``-dev``, ``-lib``, ``2``... added
  (or removed: ``dateutil`` for ``python-dateutil``);
* **two edits** – for long names only.

One-edit neighbours are found through deletion variants (SymSpell): each popular name is
indexed under every spelling with one character deleted, so a name is checked with a few
dozen dictionary look-ups, not 5,000 distance computations; two edits are only looked for
among the long names of the top targets. Closeness alone is common among real projects,
so severity follows the *shape* of the difference (a swap, a doubled letter, a neighbouring
key) and the target's popularity, not the distance alone.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from bastion.findings import Finding, Location, Severity
from bastion.supply.heuristics import rules
from bastion.supply.heuristics.popular import popular
from bastion.supply.inventory.interface import normalize

#: Names shorter than this are not compared by edit distance: among 3-letter names nearly
#: everything is one edit from something (``six``, ``pip``, ``rsa``).
MIN_EDIT_LENGTH = 4
#: Two edits are allowed only when both names are at least this long.
MIN_TWO_EDIT_LENGTH = 8
#: Targets ranked at or above this (most downloaded) make a one-edit squat high severity.
TOP_TARGETS = 1_000
#: Longest name checked (PyPI allows any length; a long one is no squat of a short one).
MAX_NAME = 100

PREFIXES = ("python3-", "python-", "python", "py3-", "py-", "py")
SUFFIXES = ("-python3", "-python", "-py3", "-py", "-devel", "-dev", "-library", "-lib",
            "-official", "-latest", "-nightly", "-v2", "-2", "-3", "2", "3")

#: Look-alike characters folded onto the ASCII letter they imitate (after NFKC).
_CONFUSABLE = str.maketrans({
    "0": "o", "1": "l", "i": "l", "|": "l", "!": "l",
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "l", "ї": "l", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "һ": "h", "ո": "n",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "l", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ζ": "z",
})
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_SEPARATORS = str.maketrans("", "", "-_.")



@dataclass(frozen=True)
class Squat:
    """A name that imitates a popular one, and how."""

    name: str
    target: str
    #: ``homoglyph``, ``separator``, ``transposition``, ``one edit: ...``, ``affix: ...``,
    #: ``two edits``.
    technique: str
    rank: int
    distance: int = 0

    @property
    def severity(self) -> Severity:
        """High for typo-shaped look-alikes of top targets; low for mere closeness.

        Closeness alone is common among real projects (``kernel``/``kernels``,
        ``pyqrcode``/``qrcode``), so only the shapes of typos and impersonation are graded up.
        """
        top = self.rank <= TOP_TARGETS
        shortest = min(len(compact(self.name)), len(compact(self.target)))
        kind = self.technique
        if kind == "homoglyph":
            return Severity.HIGH
        if kind == "transposition":
            return Severity.HIGH if shortest >= 5 else Severity.MEDIUM
        if kind == "separator":
            return Severity.MEDIUM
        if kind in ("one edit: a character duplicated", "one edit: a doubled character omitted",
                    "one edit: a neighbouring key typed"):
            return Severity.HIGH if top and shortest >= 5 else Severity.MEDIUM
        if kind in ("one edit: a character omitted", "one edit: a character added",
                    "one edit: a character replaced"):
            return Severity.MEDIUM if top and shortest >= 5 else Severity.LOW
        if kind.startswith("affix") and top and any(a in kind for a in _SUSPICIOUS_AFFIXES):
            return Severity.MEDIUM
        return Severity.LOW


def compact(name: str) -> str:
    """The name without separators: ``scikit-learn`` → ``scikitlearn``."""
    return name.translate(_SEPARATORS)


def skeleton(name: str) -> str:
    """The name as it reads: separators dropped, look-alike characters folded."""
    text = compact(unicodedata.normalize("NFKC", name).casefold()).translate(_CONFUSABLE)
    for pair, letter in _MULTI:
        text = text.replace(pair, letter)
    return text


def osa_distance(a: str, b: str, cap: int = 3) -> int:
    """Optimal-string-alignment (Damerau) distance, a swap of neighbours being one edit.

    Only a band of ``cap`` cells either side of the diagonal is computed; the answer is
    ``cap`` whenever the distance is at least ``cap``.
    """
    if abs(len(a) - len(b)) >= cap:
        return cap
    big = cap + 1
    prev2: dict[int, int] = {}
    prev = {j: j for j in range(min(len(b), cap) + 1)}
    for i in range(1, len(a) + 1):
        row = {0: i} if i <= cap else {}
        for j in range(max(1, i - cap), min(len(b), i + cap) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            best = min(prev.get(j, big) + 1, row.get(j - 1, big) + 1, prev.get(j - 1, big) + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, prev2.get(j - 2, big) + 1)
            row[j] = best
        if min(row.values()) >= cap:
            return cap
        prev2, prev = prev, row
    return min(prev.get(len(b), big), cap)


def deletes(word: str, depth: int) -> set[str]:
    """The word with up to ``depth`` characters deleted (the word itself included)."""
    found = {word}
    frontier = {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


class Index:
    """The popular names, by compact form, skeleton and deletion variants (SymSpell)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.rank: dict[str, int] = {}
        for name in names:
            self.rank.setdefault(name, len(self.rank) + 1)
        self.by_compact: dict[str, list[str]] = {}
        self.by_skeleton: dict[str, list[str]] = {}
        self.one_edit: dict[str, list[str]] = {}
        self.long_names: dict[int, list[tuple[str, int]]] = {}
        self._built = False

    def _build(self) -> None:
        """The look-up tables, built on the first name that is not itself popular: most
        dependencies are, and an audit of them then never pays for the tables."""
        self._built = True
        for name, rank in self.rank.items():
            self.by_compact.setdefault(compact(name), []).append(name)
            self.by_skeleton.setdefault(skeleton(name), []).append(name)
            if len(name) >= MIN_EDIT_LENGTH:
                for variant in deletes(name, 1):
                    self.one_edit.setdefault(variant, []).append(name)
            if len(name) >= MIN_TWO_EDIT_LENGTH and rank <= TOP_TARGETS:
                self.long_names.setdefault(len(name), []).append((name, _letters(name)))

    def __contains__(self, name: str) -> bool:
        return name in self.rank

    def check(self, raw: str) -> Squat | None:
        """The popular name this one imitates, or None (also for popular names)."""
        name = normalize(raw.strip())[:MAX_NAME]
        if not name or name in self.rank:
            return None
        if not self._built:
            self._build()
        found = [*self._look_alikes(name), *self._edits(name), *self._affixes(name)]
        if not found:
            return None
        return max(found, key=lambda s: (s.severity.rank, -_ORDER.index(
            s.technique.split(":")[0]), -s.rank))

    def _squat(self, name: str, target: str, technique: str, distance: int = 0) -> Squat:
        return Squat(name, target, technique, self.rank[target], distance)

    def _look_alikes(self, name: str) -> Iterator[Squat]:
        for target in self.by_compact.get(compact(name), ()):
            yield self._squat(name, target, "separator")
        if len(compact(name)) < MIN_EDIT_LENGTH - 1:
            return
        for target in self.by_skeleton.get(skeleton(name), ()):
            if compact(target) != compact(name):
                yield self._squat(name, target, "homoglyph")

    def _edits(self, name: str) -> Iterator[Squat]:
        """Popular names one edit away (two for long top names), via deletion variants."""
        if len(name) < MIN_EDIT_LENGTH:
            return
        seen: set[str] = set()
        for variant in deletes(name, 1):
            for target in self.one_edit.get(variant, ()):
                if target not in seen and osa_distance(name, target, 2) == 1:
                    seen.add(target)
                    yield self._squat(name, target, _one_edit(name, target), 1)
        if len(name) < MIN_TWO_EDIT_LENGTH:
            return
        # Two edits: the long top targets of about the same length, whose letters differ
        # by at most four (each edit adds or removes at most two), compared exactly.
        letters = _letters(name)
        for length in range(len(name) - 2, len(name) + 3):
            for target, theirs in self.long_names.get(length, ()):
                if (letters ^ theirs).bit_count() <= 4 and target not in seen and osa_distance(
                        name, target, 3) == 2:
                    yield self._squat(name, target, "two edits", 2)

    def _affixes(self, name: str) -> Iterator[Squat]:
        for stem, affix in _stems(name):
            if len(compact(stem)) < 3:
                continue
            targets = [stem] if stem in self.rank else self.by_skeleton.get(skeleton(stem), [])
            for target in targets:
                yield self._squat(name, target, f"affix: {affix!r} added")
        for prefix in PREFIXES:
            if prefix + name in self.rank:
                yield self._squat(name, prefix + name, f"affix: {prefix!r} removed")
        for suffix in SUFFIXES:
            if name + suffix in self.rank:
                yield self._squat(name, name + suffix, f"affix: {suffix!r} removed")


_ORDER = ("homoglyph", "transposition", "separator", "one edit", "affix", "two edits")
_SUSPICIOUS_AFFIXES = ("-dev", "-devel", "-official", "-latest", "-nightly")
_KEYBOARD = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _letters(word: str) -> int:
    """The set of a word's characters as a bit mask (collisions only weaken the filter)."""
    mask = 0
    for ch in word:
        mask |= 1 << (ord(ch) & 63)
    return mask


def _neighbours(a: str, b: str) -> bool:
    """Keys next to each other on a QWERTY row (a typo, not a different word)."""
    for row in _KEYBOARD:
        i, j = row.find(a), row.find(b)
        if i >= 0 and j >= 0 and abs(i - j) == 1:
            return True
    return False


def _stems(name: str) -> Iterator[tuple[str, str]]:
    """The name with one known prefix and/or suffix taken off."""
    heads = [(name, "")] + [(name[len(p):].lstrip("-"), p) for p in PREFIXES
                            if name.startswith(p) and len(name) > len(p) + 1]
    for head, prefix in heads:
        if prefix:
            yield head, prefix
        for suffix in SUFFIXES:
            if head.endswith(suffix) and len(head) > len(suffix) + 1:
                yield head[: -len(suffix)].rstrip("-"), "+".join(filter(None, (prefix, suffix)))


def _one_edit(name: str, target: str) -> str:
    """Which one edit turns ``target`` into ``name``.

    A changed digit (``elasticsearch7``, ``cupy-cuda13x``) or first letter (``grequests``) is
    how real projects name their variants, not how people mistype: it stays "plain".
    """
    if len(name) == len(target):
        if sorted(name) == sorted(target):
            return "transposition"
        at = next(i for i in range(len(name)) if name[i] != target[i])
        if at == 0 or name[at].isdigit() or target[at].isdigit():
            return "one edit: a character replaced (variant-like)"
        if _neighbours(name[at], target[at]):
            return "one edit: a neighbouring key typed"
        return "one edit: a character replaced"
    longer, shorter = (name, target) if len(name) > len(target) else (target, name)
    at = next((i for i in range(len(shorter)) if longer[i] != shorter[i]), len(shorter))
    doubled = (at > 0 and longer[at] == longer[at - 1]) or (
        at + 1 < len(longer) and longer[at] == longer[at + 1])
    if not doubled and (at == 0 or longer[at].isdigit()):
        verb = "added" if len(name) > len(target) else "omitted"
        return f"one edit: a character {verb} (variant-like)"
    if len(name) > len(target):
        return "one edit: a character duplicated" if doubled else "one edit: a character added"
    return "one edit: a doubled character omitted" if doubled else "one edit: a character omitted"


def describe(squat: Squat) -> str:
    """How the name differs from its target, in words."""
    return squat.technique


@lru_cache(maxsize=1)
def default_index() -> Index:
    """The index over the shipped list, built once per process."""
    return Index(popular())


def check(name: str) -> Squat | None:
    """The popular package ``name`` imitates, if any."""
    return default_index().check(name)


def finding(squat: Squat, location: Location, shown: str | None = None) -> Finding:
    """A typosquat finding for a name found at ``location``."""
    label = shown or squat.name
    return rules.TYPOSQUAT.finding(
        location,
        f"package name {label!r} imitates the popular package {squat.target!r} "
        f"(download rank {squat.rank}): {describe(squat)}",
        evidence=f"{label} ~ {squat.target}",
        severity=squat.severity,
        properties={"package": squat.name, "imitates": squat.target,
                    "technique": squat.technique, "rank": squat.rank,
                    "distance": squat.distance},
    )


def typosquat_findings(names_with_locations: Iterable[tuple[str, Location]]) -> list[Finding]:
    """Findings for every name that imitates a popular package (the inventory hook).

    Each name is checked once per location; the name as written is shown.
    """
    out: list[Finding] = []
    seen: set[tuple[str, Location]] = set()
    for name, location in names_with_locations:
        key = (name, location)
        if key in seen:
            continue
        seen.add(key)
        squat = check(name)
        if squat is not None:
            out.append(finding(squat, location, name))
    return out
