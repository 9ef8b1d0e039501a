"""YAML read safely and with line numbers: Kubernetes manifests, compose files, Ray cluster files.

``yaml.safe_load`` would do, but it loses line numbers, and a YAML "billion laughs" (aliases of
aliases of aliases) expands into exponential memory when constructed. So the text is
*composed* (aliases stay shared nodes, linear in the text) with the safe loader, and the node
graph is turned into Python values here with a budget on the nodes visited, the depth and the
documents. Only safe scalar tags are ever constructed: nothing in the file can name a class.

Mappings become :class:`YMap` and sequences :class:`YSeq`: plain ``dict``/``list`` subclasses
that remember the line of each key and item, so findings can point at the right line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Larger YAML files are not read (a manifest this big is generated, not written).
MAX_BYTES = 4 << 20
#: Documents per file (``---`` separated).
MAX_DOCUMENTS = 256
#: Nodes visited while building values, over the whole file, aliases counted each time.
MAX_NODES = 200_000
#: Nesting of mappings and sequences.
MAX_DEPTH = 64
#: Flow-collection nesting (``[[[[...``) allowed before parsing: the C composer recurses.
MAX_FLOW_NESTING = 200


class YamlError(ValueError):
    """The text is not YAML Bastion will read (syntax, size, nesting)."""


class YamlBomb(YamlError):
    """Aliases expand beyond the node budget: a YAML bomb, or something as costly."""


class YMap(dict[str, Any]):
    """A mapping that remembers its line and the line of each key (1-based)."""

    line: int
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YSeq(list[Any]):
    """A sequence that remembers its line and the line of each item (1-based)."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


def _flow_nesting(text: str) -> int:
    """Deepest ``[``/``{`` nesting, counted roughly (brackets in strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_FLOW_NESTING:
                    return deepest
        elif char in "]}" and depth:
            depth -= 1
    return deepest


def load_documents(text: str) -> list[Any]:
    """Every document of a YAML stream as :class:`YMap`/:class:`YSeq`/scalars.

    Raises :class:`YamlError` (or :class:`YamlBomb`) with a one-line reason.
    """
    import yaml
    from yaml.constructor import SafeConstructor

    if len(text) > MAX_BYTES:
        raise YamlError(f"{len(text)} characters is over the {MAX_BYTES} limit")
    if _flow_nesting(text) > MAX_FLOW_NESTING:
        raise YamlError(f"flow collections nested deeper than {MAX_FLOW_NESTING}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    builder = _Builder(SafeConstructor())
    documents: list[Any] = []
    try:
        for node in yaml.compose_all(text, Loader=loader):
            if len(documents) >= MAX_DOCUMENTS:
                raise YamlError(f"more than {MAX_DOCUMENTS} documents")
            documents.append(builder.build(node, 0) if node is not None else None)
    except YamlError:
        raise
    except yaml.YAMLError as exc:
        raise YamlError(_one_line(exc)) from None
    except (RecursionError, MemoryError) as exc:
        raise YamlError(f"too deeply nested ({type(exc).__name__})") from None
    return documents


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


class _Builder:
    def __init__(self, constructor: Any) -> None:
        self._constructor = constructor
        self._visited = 0

    def _tick(self) -> None:
        self._visited += 1
        if self._visited > MAX_NODES:
            raise YamlBomb(f"aliases expand to more than {MAX_NODES} nodes")

    def build(self, node: Any, depth: int) -> Any:
        import yaml

        self._tick()
        if depth > MAX_DEPTH:
            raise YamlError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            seq = YSeq()
            seq.line = node.start_mark.line + 1
            seq.item_lines = []
            for item in node.value:
                seq.append(self.build(item, depth + 1))
                seq.item_lines.append(item.start_mark.line + 1)
            return seq
        return self._scalar(node)

    def _scalar(self, node: Any) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception:  # an odd tag or a bad timestamp: keep the text
            return str(node.value)

    def _mapping(self, node: Any, depth: int) -> YMap:
        import yaml

        result = YMap()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        merges: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merges.extend(self._merge_sources(value_node, depth))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._tick()
                continue  # a complex key: nothing Bastion reads is keyed so
            key = self._scalar(key_node)
            name = str(key).lower() if isinstance(key, bool) else str(key)
            result[name] = self.build(value_node, depth + 1)
            result.key_lines[name] = key_node.start_mark.line + 1
        for source in merges:  # explicit keys win over merged ones, as in YAML's merge key
            for key, value in source.items():
                if key not in result:
                    result[key] = value
                    result.key_lines[key] = source.line_of(key)
        return result

    def _merge_sources(self, node: Any, depth: int) -> Iterator[YMap]:
        value = self.build(node, depth + 1)
        if isinstance(value, YMap):
            yield value
        elif isinstance(value, YSeq):
            yield from (v for v in value if isinstance(v, YMap))


def walk_strings(value: Any, line: int = 0, depth: int = 0) -> Iterator[tuple[str, int]]:
    """Every string in a built document with its line (keys excluded)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, YMap):
        for key, item in value.items():
            yield from walk_strings(item, value.line_of(key), depth + 1)
    elif isinstance(value, YSeq):
        for index, item in enumerate(value):
            yield from walk_strings(item, value.line_of(index), depth + 1)
    elif isinstance(value, str):
        yield value, line
