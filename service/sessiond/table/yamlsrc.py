"""Safe YAML with line numbers and no surprises.

* Only YAML's safe types; ``yes``/``no``/``on``/``off`` stay strings (only ``true``/``false``
  are booleans), so a state named ``On`` or a header value ``no`` means what it says.
* Every mapping remembers the line of each key and every sequence the line of each item,
  so validation errors can name ``file:line``.
* A key repeated in one mapping is an error, never a silent overwrite.
* Every line number is a :class:`Line`, an ``int`` that also names its file, so a table
  merged from several files (``include:``) still reports each problem at ``file:line``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Line(int):
    """A 1-based line number that remembers the file it is in (``file`` "" when unknown).

    An ``int`` so the compiled model and its checks keep plain line fields; the file rides
    along through merging and compiling to the message that names it.
    """

    file: str = ""

    @classmethod
    def of(cls, number: int, file: str) -> Line:
        line = cls(number)
        line.file = file
        return line


class LineDict(dict[Any, Any]):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        lines: dict[Any, int] = getattr(self, "key_lines", {})
        return lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence that knows its own line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


class YamlSourceError(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style booleans and line-tracking containers."""

    table_file = ""  # not `file` or `name`: the Reader has `name` and `line`

    def line_at(self, node: yaml.Node) -> Line:
        return Line.of(node.start_mark.line + 1, self.table_file)


# Drop the YAML 1.1 boolean resolver (yes/no/on/off) and put back true/false only.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    out.line = loader.line_at(node)
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise YamlSourceError(key_node.start_mark.line + 1, "mapping keys must be scalars")
        if key in out:
            raise YamlSourceError(
                key_node.start_mark.line + 1,
                f"duplicate key {key!r} (first at line {out.key_lines[key]})",
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = loader.line_at(key_node)
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = loader.line_at(node)
    out.item_lines = [loader.line_at(child) for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, file: str = "") -> Any:
    """Parse one YAML document whose lines name ``file``. Raises :class:`YamlSourceError`
    with the offending line."""
    loader = _Loader(text)
    loader.table_file = file
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSourceError(line, str(exc.problem or exc)) from exc
    except yaml.YAMLError as exc:
        raise YamlSourceError(1, str(exc)) from exc
    finally:
        loader.dispose()
