"""Read one YAML document into plain values, with the line of every key and item, within bounds.

Why not a YAML library's loader: ruamel.yaml's round-trip loader (which keeps lines) is pure Python
and took 80 s on an 8 MiB file; PyYAML's C loader still resolves and constructs every node in Python
(14 s). libyaml's event stream is C speed (about 1 s for 8 MiB), so the values are built here from
the events, in one pass that also enforces the bounds a hostile file would break: nesting depth,
alias count, and the number of values once aliases are expanded (a "billion laughs" is refused
before anything is expanded: an alias costs the size of what it names, and nothing is copied).

Scalars are read by the YAML 1.2 core schema, as ruamel.yaml read them (``yes`` and ``on`` are
text, ``010`` is ten), plus unquoted ``YYYY-MM-DD`` dates, so that the config can tell people to
quote them. Merge keys (``<<: *defaults``) work; a key given twice is an error.

A caller can have the values at one place of the file settled as soon as each is read (``Settle``):
the config turns every service into its validated record there, so the plain values of 50,000
services never exist all at once, and neither do their marks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml
from yaml import events
from yaml._yaml import CParser  # libyaml: PyYAML's wheels are built with it

# The line (1-based) of every key of a mapping and every item of a list: for a scalar the line alone,
# for a mapping or a list (line, its own marks). A file of 25,000 services holds 700,000 values, and a
# tuple for each scalar would be 30 MiB more.
Marks = dict[str, "int | tuple[int, Marks]"] | list["int | tuple[int, Marks]"]


def unpack(entry: int | tuple[int, Marks]) -> tuple[int, Marks | None]:
    """(line, the marks inside) of one entry of Marks."""
    return (entry, None) if isinstance(entry, int) else entry


class YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


@dataclass(frozen=True)
class Limits:
    max_nesting: int
    max_aliases: int
    max_values: int  # once aliases are expanded


@dataclass(frozen=True)
class Settle:
    """Where and how: ``at`` is a path from the top, a key for a mapping's value, None for any item of a
    list; ``turn`` gets each value found there once it is complete and returns what the document holds
    instead. A settled value's marks are its line alone: whoever needs its inner lines reads again."""

    at: tuple[str | None, ...]
    turn: Callable[[Any], Any]


@dataclass
class Document:
    value: Any
    marks: Marks | None


_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}")
_MAY_RESOLVE = frozenset("~nNtTfF0123456789+-.")  # what a null, boolean, number or date starts with
_SPECIAL_FLOAT = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
_STR_TAG, _CORE_TAGS = "tag:yaml.org,2002:str", "tag:yaml.org,2002:"


def plain_scalar(text: str) -> Any:
    """An unquoted scalar's value by the YAML 1.2 core schema (and unquoted ISO dates)."""
    if not text or text[0] in "~nNtTfF":
        if text in _NULL:
            return None
        if text in _BOOL:
            return _BOOL[text]
        return text
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT.fullmatch(text):
            return int(text)
        if text.startswith(("0o", "0x")):
            try:
                return int(text, 0)
            except ValueError:
                return text
        if _FLOAT.fullmatch(text):
            return float(text)
        if text.lower() in _SPECIAL_FLOAT:
            return _SPECIAL_FLOAT[text.lower()]
        if _DATE.fullmatch(text):
            year, month, day = (int(part) for part in text.split("-"))
            try:
                return date(year, month, day)
            except ValueError:
                return text
    return text


_TAG_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "null": (type(None),)}


def _tagged(text: str, tag: str, line: int) -> Any:
    """A scalar with an explicit tag: ``!!str`` and the core schema's own; any other tag is refused."""
    if tag == _STR_TAG:
        return text
    name = tag.removeprefix(_CORE_TAGS)
    if name in _TAG_TYPES:
        value: Any = plain_scalar(text)
        if isinstance(value, _TAG_TYPES[name]) and not (name in ("int", "float") and isinstance(value, bool)):
            return float(str(value)) if name == "float" else value
        raise YamlProblem(line, f"{text[:80]!r} is not a {name}")
    raise YamlProblem(line, f"the tag {tag[:80]} is not supported here")


class _Open:
    """A mapping or list being built: its value, its marks, and (for a mapping) the key waiting for a value."""

    __slots__ = ("anchor", "is_map", "key", "key_line", "line", "marks", "merges", "on_path", "value",
                 "values_before")

    def __init__(self, is_map: bool, line: int, anchor: str | None, values_before: int, on_path: int) -> None:
        self.value: Any = {} if is_map else []
        self.marks: Any = {} if is_map else []
        self.is_map, self.line, self.anchor, self.values_before = is_map, line, anchor, values_before
        self.on_path = on_path  # how much of Settle.at this container's place matches; -1 when it left it
        self.key: str | None = None
        self.key_line = 0
        self.merges: list[tuple[int, Any, Any]] = []


def read(text: str, limits: Limits, settle: Settle | None = None) -> Document:
    """The one document in ``text``; YamlProblem (with its line) for anything that is not one, or is too much.

    One loop over the events with the open container in a local: this runs once per value of a
    file that may hold a million, so it avoids a call per value (the profile showed the calls).
    """
    get_event = CParser(text).get_event
    anchors: dict[str, tuple[Any, Any, int]] = {}  # name → (value, marks, values once expanded)
    # Equal texts are one object: 50,000 services repeat their keys, agreement, type and conditions,
    # and the validated records keep the very strings they were given.
    texts: dict[str, str] = {}
    stack: list[_Open] = []
    top = _Open(False, 1, None, 0, -2)  # the document: a list that will hold its one value
    settle_at = settle.at if settle is not None else None
    values = aliases = documents = 0
    max_values = limits.max_values
    try:
        while (event := get_event()) is not None:
            kind = type(event)
            if kind is _SCALAR:
                values += 1
                line = event.start_mark.line + 1
                value: Any = event.value
                tag = event.tag
                if tag is not None:
                    if tag != "!":
                        value = _tagged(value, tag, line)
                elif top.key is None and top.is_map:
                    pass  # a key is text: config keys need no resolving
                elif event.implicit[0] and not event.style and (not value or value[0] in _MAY_RESOLVE):
                    value = plain_scalar(value)
                if type(value) is str:
                    value = texts.setdefault(value, value)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, None, 1)
                marks = None
            elif kind is _MAP_START or kind is _SEQ_START:
                values += 1
                line = event.start_mark.line + 1
                if len(stack) >= limits.max_nesting:
                    raise YamlProblem(line, f"nested more than {limits.max_nesting} levels deep")
                stack.append(top)
                top = _Open(kind is _MAP_START, line, event.anchor, values,
                            -1 if settle_at is None else _place(top, settle_at))
                continue
            elif kind is _MAP_END or kind is _SEQ_END:
                done, top = top, stack.pop()
                if done.merges:
                    _merge(done)
                if done.anchor is not None:
                    anchors[done.anchor] = (done.value, done.marks, values - done.values_before + 1)
                value, marks, line = done.value, done.marks, done.line
                if settle is not None and done.on_path == len(settle.at):
                    value, marks = settle.turn(value), None
            elif kind is _ALIAS:
                line = event.start_mark.line + 1
                aliases += 1
                if aliases > limits.max_aliases:
                    raise YamlProblem(line, f"more than {limits.max_aliases} aliases (*name): not a configuration")
                if event.anchor not in anchors:
                    raise YamlProblem(line, f"the alias *{event.anchor[:80]} names no anchor (&name) before it")
                value, marks, size = anchors[event.anchor]
                values += size
            else:
                if kind is _DOCUMENT_START:
                    documents += 1
                    if documents > 1:
                        raise YamlProblem(event.start_mark.line + 1, "a second document (---): a config is one")
                continue
            if values > max_values:
                raise YamlProblem(line, f"more than {limits.max_values:,} values once aliases are expanded "
                                        "(DIDBAN_CONFIG_MAX_VALUES): an alias bomb, or more than a configuration "
                                        "holds")
            # the value is complete: it goes into the open container
            if not top.is_map:
                top.value.append(value)
                top.marks.append(line if marks is None else (line, marks))
            elif top.key is None:
                if marks is not None:
                    raise YamlProblem(line, "a mapping or list used as a key: keys must be plain text")
                top.key, top.key_line = str(value), line
            else:
                key, top.key = top.key, None
                if key == "<<":
                    top.merges.append((top.key_line, value, marks))
                elif key in top.value:
                    first = unpack(top.marks[key])[0]
                    raise YamlProblem(top.key_line, f"the key {key[:80]!r} is given twice (first on line {first})")
                else:
                    top.value[key] = value
                    top.marks[key] = top.key_line if marks is None else (top.key_line, marks)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem)
        if "nesting depth" in problem:  # libyaml's own bound, met first on flow brackets
            problem = f"nested more than {limits.max_nesting} levels deep"
        raise YamlProblem(mark.line + 1 if mark is not None else 1, f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:  # the reader's errors carry a position, not a line
        raise YamlProblem(1, f"not valid YAML: {str(exc)[:160]}") from None
    if not top.value:
        return Document(None, None)
    return Document(top.value[0], unpack(top.marks[0])[1])


def _place(parent: _Open, at: tuple[str | None, ...]) -> int:
    """How much of ``at`` the place of a container opening inside ``parent`` matches (-1: none of it)."""
    if parent.on_path == -2:
        return 0  # the document's value: the path starts here
    done = parent.on_path
    if done < 0 or done >= len(at):
        return -1
    wanted = at[done]
    fits = not parent.is_map if wanted is None else parent.is_map and parent.key == wanted
    return done + 1 if fits else -1


_SCALAR, _ALIAS, _DOCUMENT_START = events.ScalarEvent, events.AliasEvent, events.DocumentStartEvent
_MAP_START, _MAP_END = events.MappingStartEvent, events.MappingEndEvent
_SEQ_START, _SEQ_END = events.SequenceStartEvent, events.SequenceEndEvent


def _merge(mapping: _Open) -> None:
    """``<<: *defaults`` (or a list of them): keys the mapping does not set itself come from the merged ones."""
    assert isinstance(mapping.value, dict)
    for line, value, marks in mapping.merges:
        if isinstance(value, dict):
            sources = [(value, marks)]
        elif isinstance(value, list):
            sources = [(item, unpack(entry)[1]) for item, entry in zip(value, marks, strict=True)]
        if not isinstance(value, dict | list) or not all(isinstance(source, dict) for source, _ in sources):
            raise YamlProblem(line, "<< merges a mapping or a list of mappings into this one")
        for source, source_marks in sources:
            for key, item in source.items():
                if key not in mapping.value:  # the mapping's own keys win, wherever they are written
                    mapping.value[key] = item
                    inner = unpack(source_marks[key])[1]
                    mapping.marks[key] = line if inner is None else (line, inner)
