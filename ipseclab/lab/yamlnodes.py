"""Reading YAML with line numbers, for the lab's topology and scenario files.

PyYAML's ``safe_load`` forgets where each value came from. We *compose* the document instead
(``yaml.compose`` gives nodes that carry marks) and walk it with these small helpers, so every
error can name the file and the line of the offending key or value.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ipseclab.errors import ConfigError

_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}


class Source:
    """A file being read: its name for messages and helpers that raise located errors."""

    def __init__(self, path: Path | str, text: str | None = None) -> None:
        self.path = Path(path)
        self.file = str(path)
        if text is None:
            try:
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read: {exc.strerror}", file=self.file) from None
        self.text = text

    def compose(self) -> yaml.Node:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            raise ConfigError(f"not valid YAML: {exc.problem}", file=self.file, line=line) from None
        if root is None:
            raise ConfigError("the file is empty", file=self.file)
        return root

    def error(self, node: yaml.Node | None, message: str, token: str | None = None) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(message, file=self.file, line=line, token=token)


def nearest(word: str, known: list[str] | set[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' when a known word is close, else a list of the known words."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{close[0]}'?"
    return "; known: " + ", ".join(sorted(known))


def mapping(src: Source, node: yaml.Node, what: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """The (key node, value node) pairs of a mapping; duplicate keys are errors."""
    if not isinstance(node, yaml.MappingNode):
        raise src.error(node, f"expected a mapping for {what}")
    seen: dict[str, int] = {}
    pairs = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            raise src.error(key, f"expected a plain key in {what}")
        if key.value in seen:
            raise src.error(
                key, f"duplicate key '{key.value}' in {what} (first on line {seen[key.value]})"
            )
        seen[key.value] = key.start_mark.line + 1
        pairs.append((key, value))
    return pairs


def fields(
    src: Source,
    node: yaml.Node,
    what: str,
    known: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> dict[str, tuple[yaml.ScalarNode, yaml.Node]]:
    """A mapping with a fixed set of keys: unknown keys name the nearest known one."""
    out = {}
    for key, value in mapping(src, node, what):
        if key.value not in known:
            raise src.error(
                key, f"unknown key '{key.value}' in {what}{nearest(key.value, known)}", key.value
            )
        out[key.value] = (key, value)
    for name in required:
        if name not in out:
            raise src.error(node, f"{what} needs the key '{name}'")
    return out


def sequence(src: Source, node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise src.error(node, f"expected a list for {what}")
    return list(node.value)


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def text(src: Source, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or is_null(node):
        raise src.error(node, f"expected a single value for {what}")
    return node.value


def integer(src: Source, node: yaml.Node, what: str, minimum: int = 0) -> int:
    raw = text(src, node, what)
    try:
        value = int(raw)
    except ValueError:
        raise src.error(node, f"expected a whole number for {what}", raw) from None
    if value < minimum:
        raise src.error(node, f"{what} must be at least {minimum}", raw)
    return value


def number(src: Source, node: yaml.Node, what: str) -> float:
    raw = text(src, node, what)
    try:
        value = float(raw)
    except ValueError:
        raise src.error(node, f"expected a number of seconds for {what}", raw) from None
    if value < 0:
        raise src.error(node, f"{what} cannot be negative", raw)
    return value


def boolean(src: Source, node: yaml.Node, what: str) -> bool:
    raw = text(src, node, what).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise src.error(node, f"expected true or false for {what}", raw)


def plain(node: yaml.Node) -> Any:
    """Any value as plain Python data (for free-form option blocks)."""
    return yaml.SafeLoader("").construct_document(node)


def strings(src: Source, node: yaml.Node, what: str) -> Iterator[tuple[yaml.Node, str]]:
    """One string or a list of strings, with the node of each."""
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield item, text(src, item, what)
    else:
        yield node, text(src, node, what)
