"""The config's YAML reader: values as the YAML 1.2 core schema reads them, a line for every key, bounds."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pytest

from core.yamlfile import Limits, Settle, YamlProblem, read, unpack

ROOMY = Limits(max_nesting=64, max_aliases=1000, max_values=100_000)

SCALARS = [
    # (the text after "v: ", the value read, why)
    ("yes", "yes", "YAML 1.2: yes/no/on/off are text (the Norway problem)"),
    ("no", "no", "a country code stays a country code"),
    ("true", True, "true is a boolean"),
    ("False", False, "so is False"),
    ("~", None, "~ is null"),
    ("", None, "an empty value is null"),
    ("010", 10, "YAML 1.2: a leading zero is not octal"),
    ("0o17", 15, "0o is octal"),
    ("0x1F", 31, "0x is hexadecimal"),
    ("-42", -42, "a negative whole number"),
    ("1.5", 1.5, "a decimal"),
    ("1e3", 1000.0, "an exponent"),
    ("-.inf", -math.inf, "infinity"),
    ("10:30", "10:30", "YAML 1.2: no base-60 numbers"),
    ("1405-01-01", date(1405, 1, 1), "an unquoted date is a date (the config then asks for quotes)"),
    ("1405-13-01", "1405-13-01", "no such date: text"),
    ('"1405-01-01"', "1405-01-01", "quoted: text"),
    ("'true'", "true", "single-quoted: text"),
    ("!!str 5", "5", "an explicit string tag"),
    ("!!float 5", 5.0, "an explicit float tag"),
    ("دیدبان", "دیدبان", "Persian text"),
    ("http://x/?a=1#b", "http://x/?a=1#b", "a URL with a fragment (no space before #)"),
]


@pytest.mark.parametrize(("written", "value", "why"), SCALARS, ids=[row[2] for row in SCALARS])
def test_scalars_are_read_by_the_core_schema(written: str, value: Any, why: str) -> None:
    assert read(f"v: {written}\n", ROOMY).value == {"v": value}
    assert type(read(f"v: {written}\n", ROOMY).value["v"]) is type(value)


def test_every_key_and_item_has_its_line() -> None:
    text = "a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\ne: [1,\n  2]\n"
    document = read(text, ROOMY)
    assert document.value == {"a": {"b": 1, "c": ["x", {"d": 2}]}, "e": [1, 2]}
    marks: Any = document.marks

    def line(*path: str | int) -> int:
        entry, inner = None, marks
        for part in path:
            entry = inner[part]
            inner = unpack(entry)[1]
        return unpack(entry)[0]  # type: ignore[arg-type]

    assert (line("a"), line("a", "b"), line("a", "c")) == (1, 2, 3)
    assert (line("a", "c", 0), line("a", "c", 1), line("a", "c", 1, "d")) == (4, 5, 5)
    assert line("e", 1) == 7


def test_anchors_aliases_and_merge_keys() -> None:
    text = ("defaults: &defaults {interval_seconds: 30, timeout_seconds: 5}\n"
            "one: {<<: *defaults, timeout_seconds: 9}\n"
            "two:\n  timeout_seconds: 2\n  <<: [*defaults, {extra: 1}]\n"
            "same: *defaults\n")
    value = read(text, ROOMY).value
    assert value["one"] == {"interval_seconds": 30, "timeout_seconds": 9}  # its own key wins
    assert value["two"] == {"timeout_seconds": 2, "interval_seconds": 30, "extra": 1}  # wherever it is written
    assert value["same"] == value["defaults"]


REFUSED = [
    # (text, limits, the line named, what is said, why)
    ("a: 1\nb: 2\na: 3\n", ROOMY, 3, "the key 'a' is given twice (first on line 1)", "a duplicate key"),
    ("a: *nowhere\n", ROOMY, 1, "names no anchor", "an alias to nothing"),
    ("a: &x [1, *x]\n", ROOMY, 1, "names no anchor", "an alias to itself (a cycle)"),
    ("a: 1\n---\nb: 2\n", ROOMY, 2, "a second document", "two documents"),
    ("a: !!python/object:os.system x\n", ROOMY, 1, "is not supported", "a language-specific tag"),
    ("a: !!int x\n", ROOMY, 1, "'x' is not a int", "a tag its value does not fit"),
    ("? [1, 2]\n: x\n", ROOMY, 1, "keys must be plain text", "a list as a key"),
    ("a: <<: x\n", ROOMY, 1, "not valid YAML", "broken syntax"),
    ("a: {<<: 5}\n", ROOMY, 1, "<< merges a mapping", "a merge of a number"),
    ("a:\n" + "- " * 10 + "x\n", Limits(5, 1000, 1000), 2, "nested more than 5 levels deep", "depth"),
    ("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", Limits(64, 2, 1000), 2, "more than 2 aliases", "alias count"),
    ("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", Limits(64, 10, 12), 2, "once aliases are expanded", "expanded size"),
]


@pytest.mark.parametrize(("text", "limits", "line", "said", "why"), REFUSED, ids=[row[4] for row in REFUSED])
def test_what_is_not_a_config_is_refused_with_its_line(text: str, limits: Limits, line: int, said: str,
                                                      why: str) -> None:
    with pytest.raises(YamlProblem) as caught:
        read(text, limits)
    assert caught.value.line == line, caught.value.message
    assert said in caught.value.message


def test_an_empty_file_is_no_value() -> None:
    assert read("", ROOMY).value is None
    assert read("# only a comment\n", ROOMY).value is None


def test_values_at_the_settle_path_are_turned_as_each_is_read() -> None:
    text = ("d: &d {kind: base}\n"
            "groups:\n"
            "  - items:\n"
            "      - {n: 1}\n"
            "      - <<: *d\n"
            "        n: 2\n"
            "    other: [{n: 3}]\n"
            "  - items: [{n: 4}]\n")
    seen: list[Any] = []

    def turn(value: Any) -> Any:
        seen.append(dict(value))
        return ("turned", value["n"])

    document = read(text, ROOMY, Settle(("groups", None, "items", None), turn))
    assert seen == [{"n": 1}, {"kind": "base", "n": 2}, {"n": 4}]  # merged before turning; `other` left alone
    assert document.value["groups"][0]["items"] == [("turned", 1), ("turned", 2)]
    assert document.value["groups"][0]["other"] == [{"n": 3}]
    assert document.value["d"] == {"kind": "base"}
    items: Any = unpack(unpack(unpack(document.marks["groups"])[1][0])[1]["items"])[1]  # type: ignore[index]
    assert items == [4, 5]  # a settled value keeps its line, not its inner marks


def test_equal_texts_are_one_object() -> None:
    value = read("a: [maintenance, 'maintenance', {maintenance: maintenance}]\n", ROOMY).value["a"]
    assert value[0] is value[1] is next(iter(value[2])) is value[2]["maintenance"]
