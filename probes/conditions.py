"""A condition language compatible with Gatus.

``[STATUS] == 200``, ``[RESPONSE_TIME] < 500``, ``[BODY].data[0].id == 7``,
``len([BODY].items) > 0``, ``has([BODY].error) == false``,
``[IP] == pat(192.168.*)``, ``[DNS_RCODE] == any(NOERROR, NXDOMAIN)``,
``[CERTIFICATE_EXPIRATION] > 48h``.

Users bring conditions from Gatus, so the goal is the same verdict *and* the
same quirks on the same inputs: the operator is found by substring search in
the order ``== != <= >= > <``; numbers are Go's int64 (floats truncated,
durations in milliseconds, anything else 0); ``len`` counts UTF-8 bytes;
``pat()`` is Go's ``filepath.Match`` (``*`` does not cross ``/``); JSON values
are printed the way Go's ``fmt`` prints them.  A condition is parsed once and
evaluated per check; the description is only built when asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter, eq, ge, gt, le, lt, ne
from typing import Any

# The operators, in the order Gatus tries them.
_OPERATORS = ("==", "!=", "<=", ">=", ">", "<")
_NUMERIC = {"<=", ">=", ">", "<"}
_INVALID = "(INVALID)"
_PATTERN_DISPLAY_LIMIT = 25


@dataclass(slots=True)
class CheckFacts:
    """What a probe observed, as the placeholders see it.

    Not frozen: the runner adds the response time to the probe's facts (one object per check, not a
    copy), and a frozen dataclass's constructor costs 2.5 times as much (1.3 µs against 0.5 µs)."""

    status: int = 0
    response_time_ms: int = 0
    body: bytes = b""
    connected: bool = False
    ip: str = ""
    dns_rcode: str = ""
    certificate_expiration_ms: int = 0  # time left before the certificate expires
    domain_expiration_ms: int = 0
    # Set by probes: when the certificate expires (epoch ms).  The runner, which
    # owns the clock, turns it into certificate_expiration_ms.
    certificate_not_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class ConditionResult:
    condition: str
    success: bool
    description: str


# -- Go formatting -------------------------------------------------------------


def go_float(value: float) -> str:
    """``fmt.Sprintf("%v", float64)``: shortest digits; %e when the exponent is < -4 or >= 6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    all_digits = "".join(map(str, digit_tuple))
    digits = all_digits.rstrip("0") or "0"
    point = len(all_digits) + exponent  # where the decimal point falls in `digits`
    minus = "-" if sign else ""
    x = point - 1
    if x < -4 or x >= 6:  # strconv's %g with the shortest precision uses eprec = 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{minus}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{minus}{digits}{'0' * (point - len(digits))}"
    return f"{minus}{digits[:point]}.{digits[point:]}"


def go_value(value: Any) -> str:
    """``fmt.Sprintf("%v", x)`` for what encoding/json produces."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def go_json(value: Any) -> str:
    """``json.Marshal`` of a decoded value: sorted keys, HTML-safe escapes."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{go_json(k)}:{go_json(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
            text = go_float(value)
            return re.sub(r"e([+-])0(\d)$", r"e\1\2", text)
        if value == int(value):
            return str(int(value))
        return repr(value)
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- Go parsing ------------------------------------------------------------------

_DURATION_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                      "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_INT64 = (-(1 << 63), (1 << 63) - 1)


def go_duration_ms(text: str) -> int | None:
    """``time.ParseDuration(text).Milliseconds()``, or None when it does not parse."""
    if not text:
        return None
    rest, sign = text, 1
    if rest[0] in "+-":
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total_ns = 0
    position = 0
    while position < len(rest):
        match = _DURATION_PART.match(rest, position)
        if not match or (not match.group(1) and not match.group(2)):
            return None
        whole, fraction, unit = match.group(1) or "0", match.group(2) or "", match.group(3)
        scale = _DURATION_UNITS_NS[unit]
        total_ns += int(whole) * scale
        if fraction:
            total_ns += int(int(fraction) * scale / 10 ** len(fraction))
        position = match.end()
    total_ns *= sign
    if not _INT64[0] <= total_ns <= _INT64[1]:
        return None
    return int(total_ns / 1_000_000)  # Go truncates toward zero


def go_parse_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``."""
    if text.isdigit() and text.isascii() and len(text) < 19 and (text[0] != "0" or len(text) == 1):
        return int(text)  # the common case: a plain decimal (a leading 0 would mean octal)
    if not text or text != text.strip():
        return None
    body = text.lstrip("+-")
    try:
        if re.fullmatch(r"0[0-7_]+", body):  # Go's base 0 reads a leading 0 as octal
            value = int(body.replace("_", ""), 8)
            value = -value if text.startswith("-") else value
        elif "_" in body and not re.match(r"0[xXoObB]", body):
            return None
        else:
            value = int(text, 0)
    except ValueError:
        return None
    return value if _INT64[0] <= value <= _INT64[1] else None


def go_parse_float(text: str) -> float | None:
    if not text or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def go_numeric(text: str) -> int:
    """How Gatus turns a resolved operand into an int64 for ``< <= > >=``."""
    if text.isdigit() and text.isascii() and len(text) < 19 and (text[0] != "0" or len(text) == 1):
        return int(text)  # the common case, decided exactly as below would
    duration = go_duration_ms(text)
    if duration:  # a zero duration falls through, as in Gatus
        return duration
    number = go_parse_int(text)
    if number is not None:
        return number
    real = go_parse_float(text)
    if real is None or math.isnan(real):
        return 0
    if math.isinf(real):
        return _INT64[0]
    return max(_INT64[0], min(_INT64[1], int(real)))


def go_path_match(pattern: str, text: str) -> bool:
    """``filepath.Match`` on Linux: ``*`` and ``?`` never match ``/``; a bad pattern matches nothing."""
    if pattern == "*":
        return True  # Gatus special-cases a lone star
    regex = _glob_regex(pattern)
    return regex is not None and regex.fullmatch(text) is not None


def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if i + 1 >= len(pattern):
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            i += 1
            negate = i < len(pattern) and pattern[i] == "^"
            if negate:
                i += 1
            items: list[str] = []
            while True:
                if i >= len(pattern):
                    return None
                if pattern[i] == "]" and items:
                    break
                low, i = _class_char(pattern, i)
                if low is None:
                    return None
                if i < len(pattern) and pattern[i] == "-":
                    high, i = _class_char(pattern, i + 1)
                    if high is None or high < low:
                        return None
                    items.append(f"{re.escape(low)}-{re.escape(high)}")
                else:
                    items.append(re.escape(low))
            out.append("[" + ("^" if negate else "") + "".join(items) + "]")
        else:
            out.append(re.escape(char))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        if i + 1 >= len(pattern):
            return None, i
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


# -- JSON walking, as Gatus's jsonpath.Eval --------------------------------------


class _PathError(Exception):
    pass


def _split_keys(path: str) -> list[str]:
    keys, start, depth = [], 0, 0
    for i, char in enumerate(path):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "." and depth == 0:
            keys.append(path[start:i])
            start = i + 1
    keys.append(path[start:])
    return keys


def _extract(key: str, value: Any) -> Any:
    if key.endswith("]") and "[" in key:
        start = end = depth = 0
        index_text = ""
        nested = False
        for i, char in enumerate(key):
            if char == "[":
                start = i
                depth += 1
            elif char == "]" and depth == 1:
                end = i
                index_text = key[start + 1 : i]
                nested = len(key) > i + 1 and key[i + 1] == "["
                break
        index = go_parse_int(index_text) if re.fullmatch(r"[+-]?\d+", index_text) else None
        if index is None or index < 0:
            return None
        name = key[:start]
        if name == "":
            array = value if isinstance(value, list) else []
        else:
            if not isinstance(value, dict) or value.get(name) is None:
                return None
            array = value[name] if isinstance(value[name], list) else []
        if len(array) > index:
            return _extract(key[end + 1 :], array[index]) if nested else array[index]
        return None
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return value.get(key)
    return value


def _walk(path: str, document: Any) -> tuple[str, int]:
    keys = _split_keys(path)
    current = keys[0]
    value = _extract(current, document)
    if isinstance(value, dict):
        shorter = path.replace(f"{current}.", "", 1)
        if shorter == path:
            text = go_json(value)
            return text, len(text.encode())
        return _walk(shorter, value)
    if isinstance(value, str):
        if len(keys) > 1:
            raise _PathError(f"couldn't walk through {keys[1]!r}: {current!r} is a string")
        return value, len(value.encode())
    if isinstance(value, list):
        return go_value(value), len(value)
    if value is None:
        raise _PathError(f"couldn't walk through {current!r}")
    text = go_value(value)
    return text, len(text.encode())


def json_eval(path: str, body: bytes) -> tuple[str, int]:
    """Gatus's ``jsonpath.Eval``: (value as text, its length) or _PathError."""
    if not path and not (body[:1] == b"[" and body[-1:] == b"]"):
        return body.decode("utf-8", "replace"), len(body)
    try:
        document = json.loads(body, parse_int=float, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _PathError(str(exc)) from None
    return _walk(path, document)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- placeholders ----------------------------------------------------------------

_SIMPLE: dict[str, Callable[[CheckFacts], str]] = {
    "[STATUS]": lambda f: str(f.status),
    "[IP]": lambda f: f.ip,
    "[RESPONSE_TIME]": lambda f: str(f.response_time_ms),
    "[DNS_RCODE]": lambda f: f.dns_rcode,
    "[CONNECTED]": lambda f: "true" if f.connected else "false",
    "[CERTIFICATE_EXPIRATION]": lambda f: str(f.certificate_expiration_ms),
    "[DOMAIN_EXPIRATION]": lambda f: str(f.domain_expiration_ms),
}
_EXPIRATIONS = ("[CERTIFICATE_EXPIRATION]", "[DOMAIN_EXPIRATION]")
# The placeholders that resolve to an integer's text: go_numeric and go_parse_int read that text back as
# the same integer, so against an integer literal they can be compared as integers, without the text.
_INTEGERS = {"[STATUS]": "status", "[RESPONSE_TIME]": "response_time_ms",
             "[CERTIFICATE_EXPIRATION]": "certificate_expiration_ms", "[DOMAIN_EXPIRATION]": "domain_expiration_ms"}
_COMPARE = {"==": eq, "!=": ne, "<": lt, "<=": le, ">": gt, ">=": ge}


def resolve(element: str, facts: CheckFacts) -> str:
    """One side of a condition → its value as text (a literal stays itself)."""
    element = element.strip()
    original = element
    function = ""
    for prefix in ("len(", "has("):
        if element.startswith(prefix) and element.endswith(")"):
            function, element = prefix[:3], element[len(prefix) : -1]
            break
    upper = element.upper()
    simple = _SIMPLE.get(upper)
    if simple is not None:
        return _apply(simple(facts), function)
    if upper == "[BODY]":
        body = facts.body.decode("utf-8", "replace").strip()
        if function == "has":
            return "true" if body else "false"
        if function == "len":
            try:
                return str(json_eval("", facts.body)[1])
            except _PathError:
                return str(len(body.encode()))
        return body
    if upper.startswith("[BODY].") or upper.startswith("[BODY]["):
        path = element[len("[BODY]") :].removeprefix(".")
        try:
            value, length = json_eval(path, facts.body)
        except _PathError:
            return "false" if function == "has" else f"{original} {_INVALID}"
        if function == "has":
            return "true"
        return str(length) if function == "len" else value
    if function == "has":
        return "false"
    if function == "len":
        return f"{original} {_INVALID}"
    return original


def _apply(value: str, function: str) -> str:
    if function == "has":
        return "true" if value else "false"
    if function == "len":
        return str(len(value.encode()))
    return value


def _unwrap(text: str, prefix: str) -> str | None:
    if text.startswith(prefix) and text.endswith(")"):
        return text[len(prefix) : -1]
    return None


def is_equal(first: str, second: str) -> bool:
    if first.endswith(")") or second.endswith(")"):
        first_pattern, second_pattern = _unwrap(first, "pat("), _unwrap(second, "pat(")
        if first_pattern is not None and second_pattern is None:
            return go_path_match(first_pattern, second)
        if second_pattern is not None and first_pattern is None:
            return go_path_match(second_pattern, first)
        if first_pattern is not None:
            first = first_pattern
        if second_pattern is not None:
            second = second_pattern
        first_any, second_any = _unwrap(first, "any("), _unwrap(second, "any(")
        if first_any is not None and second_any is None:
            return any(option.strip() == second for option in first_any.split(","))
        if second_any is not None and first_any is None:
            return any(option.strip() == first for option in second_any.split(","))
        if first_any is not None:
            first = first_any
        if second_any is not None:
            second = second_any
    if first == second:
        return True  # equal text is equal as numbers too
    first_int, second_int = go_parse_int(first), go_parse_int(second)
    if first_int is not None and second_int is not None:
        return first_int == second_int
    return first == second


# -- conditions --------------------------------------------------------------------


def _compile_side(element: str) -> Callable[[CheckFacts], str]:
    """One side of a condition as a function of the facts; a literal is resolved once."""
    inner = element
    for prefix in ("len(", "has("):
        if inner.startswith(prefix) and inner.endswith(")"):
            inner = inner[len(prefix) : -1]
    if inner.strip().startswith("["):
        simple = _SIMPLE.get(element.upper())
        if simple is not None:
            return simple
        return lambda facts: resolve(element, facts)
    constant = resolve(element, CheckFacts())
    return lambda facts: constant


def _constant_number(element: str) -> int | None:
    if element.startswith("[") or "(" in element:
        return None
    return go_numeric(resolve(element, CheckFacts()))


def _integer_rule(left: str, operator: str | None, right: str) -> Callable[[CheckFacts], bool] | None:
    """``[STATUS] == 200``, ``[RESPONSE_TIME] < 5000``: the same verdict as the general rule, in one step."""
    field = _INTEGERS.get(left.upper())
    if field is None or operator is None or right.startswith("[") or "(" in right:
        return None
    literal = go_parse_int(resolve(right, CheckFacts())) if operator in ("==", "!=") else _constant_number(right)
    if literal is None:
        return None
    value, compare = attrgetter(field), _COMPARE[operator]
    return lambda facts: compare(value(facts), literal)


class Condition:
    """A parsed condition; ``evaluate`` is cheap, the description is built on demand."""

    __slots__ = ("_integers", "_left", "_left_number", "_left_value", "_operator", "_right", "_right_number",
                 "_right_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._operator = next((op for op in _OPERATORS if f" {op} " in text), None)
        self._left = self._right = ""
        if self._operator is not None:
            parts = text.split(f" {self._operator} ")
            self._left, self._right = parts[0].strip(), parts[1].strip()
        self._left_value = _compile_side(self._left)
        self._right_value = _compile_side(self._right)
        # A literal operand of < <= > >= is converted to a number once, not per check.
        self._left_number = _constant_number(self._left)
        self._right_number = _constant_number(self._right)
        self._integers = _integer_rule(self._left, self._operator, self._right)

    @property
    def valid(self) -> bool:
        return self._operator is not None

    def _resolved(self, facts: CheckFacts) -> tuple[str, str]:
        return self._left_value(facts), self._right_value(facts)

    def evaluate(self, facts: CheckFacts) -> bool:
        if self._integers is not None:
            return self._integers(facts)
        return self._evaluate(facts)

    def _evaluate(self, facts: CheckFacts) -> bool:
        if self._operator is None:
            return False
        left, right = self._left_value(facts), self._right_value(facts)
        operator = self._operator
        if operator == "==":
            return is_equal(left, right)
        if operator == "!=":
            return not is_equal(left, right)
        a = self._left_number if self._left_number is not None else go_numeric(left)
        b = self._right_number if self._right_number is not None else go_numeric(right)
        if operator == "<=":
            return a <= b
        if operator == ">=":
            return a >= b
        if operator == ">":
            return a > b
        return a < b

    def check(self, facts: CheckFacts, resolve_successful: bool = False) -> ConditionResult:
        """The verdict with Gatus's description: failed conditions show their values."""
        if self._operator is None:
            return ConditionResult(self.text, False, f"invalid condition: {self.text}")
        success = self.evaluate(facts)
        if success and not resolve_successful:
            return ConditionResult(self.text, True, self.text)
        left, right = self._resolved(facts)
        if self._operator in _NUMERIC:
            shown = [self._show_number(p, go_numeric(v)) for p, v in ((self._left, left), (self._right, right))]
            return ConditionResult(self.text, success, _prettify([self._left, self._right], shown, self._operator))
        return ConditionResult(self.text, success, _prettify([self._left, self._right], [left, right], self._operator))

    @staticmethod
    def _show_number(parameter: str, number: int) -> str:
        if parameter in _EXPIRATIONS or go_duration_ms(parameter) is not None:
            return format_duration_ms(number)
        return str(number)


def format_duration_ms(ms: int) -> str:
    """Gatus's formatDuration as it is meant to read: ``336h``, ``1h30m``, ``1h0m15s``.

    (Gatus trims the *text* "0s" then "0m", which turns 1h30m into "1h3" and
    30s into "3"; Didban trims zero components instead.  The verdict is
    unaffected: only the description differs, and only in those cases.)
    """
    seconds = int(ms / 1000)
    text = _go_duration_string(seconds)
    if seconds and seconds % 60 == 0:
        text = text.removesuffix("0s")
        if seconds % 3600 == 0:
            text = text.removesuffix("0m")
    return text


def _go_duration_string(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _prettify(parameters: list[str], resolved: list[str], operator: str) -> str:
    resolved = list(resolved)
    for own, other in ((0, 1), (1, 0)):
        if _unwrap(parameters[own], "pat(") is not None and len(resolved[other]) > _PATTERN_DISPLAY_LIMIT:
            resolved[other] = resolved[other][:_PATTERN_DISPLAY_LIMIT] + "...(truncated)"
    sides = []
    for parameter, value in zip(parameters, resolved, strict=True):
        invalid = value == f"{parameter} {_INVALID}"
        if invalid:
            sides.append(value)
        elif value != parameter:
            sides.append(f"{parameter} ({value})")
        else:
            sides.append(parameter)
    return f"{sides[0]} {operator} {sides[1]}"
