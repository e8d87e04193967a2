"""The settings syntax that strongswan.conf and swanctl.conf share, read into a tree.

strongswan.conf(5) defines it, and swanctl.conf(5) uses it unchanged; this module knows
nothing of what the keys mean (:mod:`ipseclab.config.swanctl` maps the swanctl.conf tree onto
the IKE configuration), so a strongswan.conf reads with it too:

* ``name { ... }`` sections, ``key = value`` lines, ``#`` comments; a value ends at a newline,
  a ``#`` or a ``}``, words are joined by one space, ``"quoted strings"`` may hold any
  character (escapes ``\\n \\t \\" \\\\``) and span lines;
* ``include PATTERN`` (shell glob, relative to the including file) adds to the section it
  stands in; sections of the same name merge and a later value replaces an earlier one;
* ``name : other, connections.base { ... }`` inherits the referenced sections' settings;
* ``key =`` with no value clears the key, so its default applies.

:func:`parse_settings` returns the root :class:`Section`, includes done and references
resolved; every :class:`Value` and :class:`Section` keeps its file and line, so whoever reads
the tree can raise a :class:`ConfigError` that points at the setting.
"""

from __future__ import annotations

import dataclasses
import glob
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.errors import ConfigError

__all__ = ["MAX_INCLUDE_DEPTH", "Section", "Value", "parse_settings"]

MAX_INCLUDE_DEPTH = 10


@dataclass
class Value:
    """One ``key = value`` with where it was written."""

    text: str
    file: str
    line: int


@dataclass
class Section:
    """A ``name [: refs] { ... }`` section; ``items`` keeps the order of first appearance."""

    name: str
    file: str
    line: int
    refs: list[str] = field(default_factory=list)
    items: dict[str, Value | Section] = field(default_factory=dict)

    def sections(self) -> list[Section]:
        return [v for v in self.items.values() if isinstance(v, Section)]


_NAME_STOP = set(".,:{}=\"# \t\r\n")


class _Parser:
    """Reads one file into a Section; ``include`` recurses with the same target section."""

    def __init__(self, path: Path, depth: int, seen: tuple[Path, ...]) -> None:
        self.path = path
        self.file = str(path)
        self.depth = depth
        self.seen = seen
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=self.file) from None
        try:
            self.text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", file=self.file,
                              line=data.count(b"\n", 0, exc.start) + 1) from None
        self.pos = 0
        self.line = 1

    def error(self, message: str, token: str | None = None, line: int | None = None
              ) -> ConfigError:
        return ConfigError(message, file=self.file, line=line or self.line, token=token)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        char = self.text[self.pos]
        self.pos += 1
        if char == "\n":
            self.line += 1
        return char

    def skip_blank(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            char = self.peek()
            if char == "#":
                while self.pos < len(self.text) and self.peek() != "\n":
                    self.pos += 1
            elif char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            else:
                return

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.peek() not in _NAME_STOP:
            self.pos += 1
        return self.text[start:self.pos]

    def parse_into(self, section: Section, closing: bool) -> None:
        """Settings until ``}`` (when ``closing``) or the end of the file."""
        while True:
            self.skip_blank(newlines=True)
            char = self.peek()
            if not char:
                if closing:
                    raise self.error(f"section '{section.name}' opened on line {section.line}"
                                     " is never closed with '}'", token=section.name,
                                     line=section.line)
                return
            if char == "}":
                if not closing:
                    raise self.error("'}' without a section to close", token="}")
                self.advance()
                return
            line = self.line
            name = self.name()
            if not name:
                raise self.error("expected a key or section name", token=char)
            self.skip_blank(newlines=False)
            if name == "include" and self.peek() not in ("=", "{", ":"):
                self.include(self.value(), section, line)
                continue
            char = self.peek()
            if char == "=":
                self.advance()
                value = Value(self.value(), self.file, line)
                if value.text:
                    existing = section.items.get(name)
                    if isinstance(existing, Section):
                        raise self.error(f"'{name}' is a section here, not a key", name, line)
                    section.items.pop(name, None)  # a later value replaces and moves last
                    section.items[name] = value
                else:
                    section.items.pop(name, None)  # "key =" clears it
                continue
            refs: list[str] = []
            if char == ":":
                self.advance()
                refs = self.references()
                char = self.peek()
            if char != "{":
                raise self.error(f"expected '=' or '{{' after '{name}'", token=name, line=line)
            self.advance()
            child = section.items.get(name)
            if isinstance(child, Value):
                raise self.error(f"'{name}' is a key here, not a section", name, line)
            if child is None:
                child = Section(name, self.file, line)
                section.items[name] = child
            child.refs += [r for r in refs if r not in child.refs]
            self.parse_into(child, closing=True)

    def references(self) -> list[str]:
        refs = []
        while True:
            self.skip_blank(newlines=False)
            start = self.pos
            while self.pos < len(self.text) and self.peek() not in ",{}=\"# \t\r\n":
                self.pos += 1
            ref = self.text[start:self.pos]
            if not ref:
                raise self.error("expected a section name after ':'", token=self.peek())
            refs.append(ref)
            self.skip_blank(newlines=False)
            if self.peek() != ",":
                return refs
            self.advance()

    def value(self) -> str:
        """The rest of the value: words joined by one space, quoted strings kept whole."""
        words: list[str] = []
        current: list[str] = []
        while self.pos < len(self.text):
            char = self.peek()
            if char in "\n#}":
                break
            if char in " \t\r":
                self.advance()
                if current:
                    words.append("".join(current))
                    current = []
                continue
            if char == '"':
                current.append(self.quoted())
                continue
            current.append(self.advance())
        if current:
            words.append("".join(current))
        return " ".join(words)

    def quoted(self) -> str:
        start_line = self.line
        self.advance()
        out = []
        escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
        while self.pos < len(self.text):
            char = self.advance()
            if char == '"':
                return "".join(out)
            if char == "\\" and self.pos < len(self.text):
                nxt = self.advance()
                out.append(escapes.get(nxt, "\\" + nxt))
            else:
                out.append(char)
        raise self.error("string is never closed with '\"'", token='"', line=start_line)

    def include(self, pattern: str, section: Section, line: int) -> None:
        if not pattern:
            raise self.error("include needs a file name", token="include", line=line)
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise self.error(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", pattern, line)
        full = Path(pattern).expanduser()
        if not full.is_absolute():
            full = self.path.parent / full
        if glob.has_magic(str(full)):
            paths = [Path(p) for p in sorted(glob.glob(str(full)))]
        else:
            if not full.is_file():
                raise self.error("included file does not exist", token=pattern, line=line)
            paths = [full]
        for path in paths:
            resolved = path.resolve()
            if resolved in self.seen:
                raise self.error("file includes itself", token=pattern, line=line)
            _Parser(path, self.depth + 1, (*self.seen, resolved)).parse_into(section, False)


def parse_settings(path: str | Path) -> Section:
    """The whole tree of a strongswan.conf-syntax file, includes done, references resolved."""
    path = Path(path)
    root = Section("", str(path), 0)
    _Parser(path, 0, (path.resolve(),)).parse_into(root, closing=False)
    _resolve_references(root, root, ())
    return root


def _find(root: Section, dotted: str) -> Section | None:
    node: Section | Value | None = root
    for part in dotted.split("."):
        if not isinstance(node, Section):
            return None
        node = node.items.get(part)
    return node if isinstance(node, Section) else None


def _resolve_references(root: Section, section: Section, active: tuple[int, ...]) -> None:
    """Copy in what referenced sections hold and this one does not (strongswan.conf(5))."""
    if id(section) in active:
        raise ConfigError("sections reference each other in a loop", file=section.file,
                          line=section.line, token=section.name)
    active = (*active, id(section))
    for ref in section.refs:
        source = _find(root, ref)
        if source is None:
            raise ConfigError("referenced section does not exist", file=section.file,
                              line=section.line, token=ref)
        _resolve_references(root, source, active)
        _merge_missing(section, source)
    section.refs = []
    for child in section.sections():
        _resolve_references(root, child, active)


def _merge_missing(target: Section, source: Section) -> None:
    for key, item in source.items.items():
        mine = target.items.get(key)
        if mine is None:
            target.items[key] = _copy(item)
        elif isinstance(mine, Section) and isinstance(item, Section):
            _merge_missing(mine, item)


def _copy(item: Value | Section) -> Value | Section:
    if isinstance(item, Value):
        return dataclasses.replace(item)
    copy = Section(item.name, item.file, item.line, list(item.refs))
    copy.items = {k: _copy(v) for k, v in item.items.items()}
    return copy
