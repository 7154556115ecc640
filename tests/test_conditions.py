"""The condition language gives Gatus's verdict and Gatus's description on the same inputs.

Each row: condition, facts, expected success, expected description (failed
conditions show their resolved values; successful ones are shown as written).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from probes.conditions import CheckFacts, Condition, format_duration_ms, go_float

HOUR_MS = 3_600_000
PAGE = (b'<!DOCTYPE html><html lang="en"><head><meta http-equiv="Content-Type" '
        b'content="text/html; charset=UTF-8" /></head><body><div id="user">jane.doe</div></body></html>')

ROWS = [
    # == and != on plain placeholders
    ("[IP] == 127.0.0.1", CheckFacts(ip="127.0.0.1"), True, "[IP] == 127.0.0.1"),
    ("[STATUS] == 200", CheckFacts(status=200), True, "[STATUS] == 200"),
    ("[STATUS] == 200", CheckFacts(status=500), False, "[STATUS] (500) == 200"),
    ("[STATUS] != 200", CheckFacts(status=500), True, "[STATUS] != 200"),
    ("[STATUS] != 200", CheckFacts(status=200), False, "[STATUS] (200) != 200"),
    ("[CONNECTED] == true", CheckFacts(connected=True), True, "[CONNECTED] == true"),
    ("[CONNECTED] == true", CheckFacts(), False, "[CONNECTED] (false) == true"),
    ("[DNS_RCODE] == NXDOMAIN", CheckFacts(dns_rcode="NOERROR"), False, "[DNS_RCODE] (NOERROR) == NXDOMAIN"),
    ("1 == 2", CheckFacts(), False, "1 == 2"),
    ("raw == raw", CheckFacts(), True, "raw == raw"),
    # < <= > >= with numbers, durations and junk (which counts as 0)
    ("[STATUS] < 300", CheckFacts(status=201), True, "[STATUS] < 300"),
    ("[STATUS] < 300", CheckFacts(status=404), False, "[STATUS] (404) < 300"),
    ("[RESPONSE_TIME] < 1s", CheckFacts(response_time_ms=50), True, "[RESPONSE_TIME] < 1s"),
    ("[RESPONSE_TIME] < potato", CheckFacts(response_time_ms=50), False, "[RESPONSE_TIME] (50) < potato (0)"),
    ("[RESPONSE_TIME] > 1s", CheckFacts(response_time_ms=2000), True, "[RESPONSE_TIME] > 1s"),
    ("[RESPONSE_TIME] >= 500", CheckFacts(response_time_ms=500), True, "[RESPONSE_TIME] >= 500"),
    ("[RESPONSE_TIME] >= 500", CheckFacts(response_time_ms=499), False, "[RESPONSE_TIME] (499) >= 500"),
    ("[RESPONSE_TIME] <= 500", CheckFacts(response_time_ms=500), True, "[RESPONSE_TIME] <= 500"),
    ("[RESPONSE_TIME] <= 500", CheckFacts(response_time_ms=750), False, "[RESPONSE_TIME] (750) <= 500"),
    ("[CERTIFICATE_EXPIRATION] > 48h", CheckFacts(certificate_expiration_ms=24 * HOUR_MS), False,
     "[CERTIFICATE_EXPIRATION] (24h) > 48h"),
    ("[CERTIFICATE_EXPIRATION] > 12h", CheckFacts(certificate_expiration_ms=24 * HOUR_MS), True,
     "[CERTIFICATE_EXPIRATION] > 12h"),
    ("[CERTIFICATE_EXPIRATION] > 2419200000", CheckFacts(certificate_expiration_ms=14 * 24 * HOUR_MS), False,
     "[CERTIFICATE_EXPIRATION] (336h) > 2419200000"),
    ("[CERTIFICATE_EXPIRATION] == 0", CheckFacts(), True, "[CERTIFICATE_EXPIRATION] == 0"),
    ("[DOMAIN_EXPIRATION] > 720h", CheckFacts(domain_expiration_ms=800 * HOUR_MS), True,
     "[DOMAIN_EXPIRATION] > 720h"),
    # [BODY] and JSON paths
    ("[BODY] == test", CheckFacts(body=b"test"), True, "[BODY] == test"),
    ("[BODY] == 123", CheckFacts(body=b"123"), True, "[BODY] == 123"),
    ("[BODY] > 123", CheckFacts(body=b"100"), False, "[BODY] (100) > 123"),
    ("[BODY].status == UP", CheckFacts(body=b'{"status":"UP"}'), True, "[BODY].status == UP"),
    ("[BODY].data.name == john", CheckFacts(body=b'{"data": {"id": 1}}'), False,
     "[BODY].data.name (INVALID) == john"),
    ("[BODY].user.firstName == [BODY].user.lastName",
     CheckFacts(body=b'{"user": {"firstName": "john", "lastName": "doe"}}'), False,
     "[BODY].user.firstName (john) == [BODY].user.lastName (doe)"),
    ("[BODY][0].id == 1", CheckFacts(body=b'[{"id": 1}, {"id": 2}]'), True, "[BODY][0].id == 1"),
    ("[BODY].data[1].id == 2", CheckFacts(body=b'{"data": [{"id": 1}, {"id": 2}]}'), True,
     "[BODY].data[1].id == 2"),
    ("[BODY].data == OK", CheckFacts(body=b"null"), False, "[BODY].data (INVALID) == OK"),
    ("[BODY].data == OK", CheckFacts(body=b'{"data": null}"'), False, "[BODY].data (INVALID) == OK"),
    ("[BODY][0].name == test", CheckFacts(body=b'{"statusCode": 500}'), False,
     "[BODY][0].name (INVALID) == test"),
    ("[BODY].data == 1", CheckFacts(body=b'{"data": "0x1"}'), True, "[BODY].data == 1"),
    ("[BODY].data == 0b10", CheckFacts(body=b'{"data": "0b0010"}'), True, "[BODY].data == 0b10"),
    ("[BODY].data == 0o2", CheckFacts(body=b'{"data": "0o2"}'), True, "[BODY].data == 0o2"),
    ("[BODY].balance > 100", CheckFacts(body=b'{"balance": "123.40000000000005"}'), True,
     "[BODY].balance > 100"),
    ("[BODY].n == 1e+06", CheckFacts(body=b'{"n": 1000000}'), True, "[BODY].n == 1e+06"),
    ("[BODY].data[0] == x", CheckFacts(body=b'{"data": [{"b": 1, "a": "<&>"}]}'), False,
     '[BODY].data[0] ({"a":"\\u003c\\u0026\\u003e","b":1}) == x'),
    # len()
    ("len([BODY].data) == 3", CheckFacts(body=b'{"data": [1, 2, 3]}'), True, "len([BODY].data) == 3"),
    ("len([BODY]) == 3", CheckFacts(body=b'[{"id": 1}, {"id": 2}, {"id": 3}]'), True, "len([BODY]) == 3"),
    ("len([BODY]) == 8", CheckFacts(body=b"john.doe"), True, "len([BODY]) == 8"),
    ("len([BODY]) == 20", CheckFacts(body=b'{"name": "john.doe"}'), True, "len([BODY]) == 20"),
    ("len([BODY].data) == 8", CheckFacts(body=b'{"name": "john.doe"}'), False, "len([BODY].data) (INVALID) == 8"),
    ("len([BODY].age) == 2", CheckFacts(body=b'{"age":18}'), True, "len([BODY].age) == 2"),
    ("len([BODY].adult) == 4", CheckFacts(body=b'{"adult":true}'), True, "len([BODY].adult) == 4"),
    ("len([BODY][0]) == 23", CheckFacts(body=b'[{"age":18,"adult":true}]'), True, "len([BODY][0]) == 23"),
    # Go counts bytes: سلام is 4 letters, 8 bytes of UTF-8.
    ("len([BODY].name) == 8", CheckFacts(body='{"name": "سلام"}'.encode()), True, "len([BODY].name) == 8"),
    ("len([STATUS]) == 3", CheckFacts(status=200), True, "len([STATUS]) == 3"),
    ("len(whatever) == 3", CheckFacts(), False, "len(whatever) (INVALID) == 3"),
    # has()
    ("has([BODY].errors) == false", CheckFacts(body=b"{}"), True, "has([BODY].errors) == false"),
    ("has([BODY].errors) == false", CheckFacts(body=b'{"errors": ["1"]}'), False,
     "has([BODY].errors) (true) == false"),
    ("has([BODY]) == true", CheckFacts(body=b"  "), False, "has([BODY]) (false) == true"),
    ("has([IP]) == true", CheckFacts(ip="10.0.0.1"), True, "has([IP]) == true"),
    # pat(): Go's filepath.Match; * does not cross '/'
    ("[BODY].name == pat(john*)", CheckFacts(body=b'{"name": "john.doe"}'), True, "[BODY].name == pat(john*)"),
    ("[BODY].name == pat(bob*)", CheckFacts(body=b'{"name": "john.doe"}'), False,
     "[BODY].name (john.doe) == pat(bob*)"),
    ('[BODY] == pat(*<div id="user">john.doe</div>*)', CheckFacts(body=PAGE), False,
     '[BODY] (<!DOCTYPE html><html lang...(truncated)) == pat(*<div id="user">john.doe</div>*)'),
    ('pat(*<div id="user">jane.doe</div>*) == [BODY]', CheckFacts(body=b'<div id="user">jane.doe</div>'), True,
     'pat(*<div id="user">jane.doe</div>*) == [BODY]'),
    ("[BODY].data == pat(*Whatever*)", CheckFacts(body=b'{"data": ["hello", "Whatever"]}'), True,
     "[BODY].data == pat(*Whatever*)"),
    ("[IP] == pat(10.*)", CheckFacts(ip="255.255.255.255"), False, "[IP] (255.255.255.255) == pat(10.*)"),
    ("[STATUS] == pat(4?4)", CheckFacts(status=404), True, "[STATUS] == pat(4?4)"),
    ("[STATUS] == pat([45]0[0-9])", CheckFacts(status=503), True, "[STATUS] == pat([45]0[0-9])"),
    ("[STATUS] == pat([^5]*)", CheckFacts(status=503), False, "[STATUS] (503) == pat([^5]*)"),
    ("[BODY] == pat(*ok*)", CheckFacts(body=b"status/ok"), False, "[BODY] (status/ok) == pat(*ok*)"),
    ("[BODY] == pat(*)", CheckFacts(body=b"a/b"), True, "[BODY] == pat(*)"),
    ("[BODY] == pat([)", CheckFacts(body=b"["), False, "[BODY] ([) == pat([)"),
    # any()
    ("[STATUS] == any(200, 429)", CheckFacts(status=429), True, "[STATUS] == any(200, 429)"),
    ("any(200, 429) == [STATUS]", CheckFacts(status=429), True, "any(200, 429) == [STATUS]"),
    ("[STATUS] == any(200, 429)", CheckFacts(status=404), False, "[STATUS] (404) == any(200, 429)"),
    ("[BODY].name == any(john.doe, jane.doe)", CheckFacts(body=b'{"name": "bob"}'), False,
     "[BODY].name (bob) == any(john.doe, jane.doe)"),
    # invalid conditions
    ("[STATUS] ? 201", CheckFacts(status=201), False, "invalid condition: [STATUS] ? 201"),
    ("[STATUS]==201", CheckFacts(status=201), False, "invalid condition: [STATUS]==201"),
    ("[STATUS]", CheckFacts(status=201), False, "invalid condition: [STATUS]"),
]


@pytest.mark.parametrize(("text", "facts", "success", "description"), ROWS, ids=[r[0] for r in ROWS])
def test_condition_matches_gatus(text: str, facts: CheckFacts, success: bool, description: str) -> None:
    outcome = Condition(text).check(facts)
    assert (outcome.success, outcome.description) == (success, description)
    assert Condition(text).evaluate(facts) is success


def test_successful_condition_is_resolved_only_when_asked() -> None:
    outcome = Condition("[BODY].status == UP").check(CheckFacts(body=b'{"status":"UP"}'), resolve_successful=True)
    assert outcome.description == "[BODY].status (UP) == UP"


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (200.0, "200"), (1e6, "1e+06"), (123456.0, "123456"), (1234567.0, "1.234567e+06"),
     (0.0001, "0.0001"), (0.00001, "1e-05"), (-2.25, "-2.25"), (1e21, "1e+21")],
)
def test_json_numbers_print_as_go_prints_them(value: float, text: str) -> None:
    assert go_float(value) == text


@pytest.mark.parametrize(("ms", "text"), [(336 * HOUR_MS, "336h"), (90 * 60_000, "1h30m"),
                                          (3_615_000, "1h0m15s"), (30_000, "30s"),
                                          (0, "0s")])
def test_durations_display_like_gatus(ms: int, text: str) -> None:
    assert format_duration_ms(ms) == text


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "didban.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["[STATUS] == 200", "--status", "200"], {"success": True, "description": "[STATUS] == 200"}),
        (["[BODY].state == ok", "--body", '{"state":"down"}'],
         {"success": False, "description": "[BODY].state (down) == ok"}),
        (["[CERTIFICATE_EXPIRATION] > 48h", "--certificate-expiration-hours", "24"],
         {"success": False, "description": "[CERTIFICATE_EXPIRATION] (24h) > 48h"}),
        (["[CONNECTED] == true", "--connected", "true"], {"success": True, "description": "[CONNECTED] == true"}),
        (["[IP] == pat(127.*)", "--ip", "127.0.0.1"], {"success": True, "description": "[IP] == pat(127.*)"}),
        (["[DNS_RCODE] == NOERROR", "--dns-rcode", "NXDOMAIN"],
         {"success": False, "description": "[DNS_RCODE] (NXDOMAIN) == NOERROR"}),
        (["[RESPONSE_TIME] < 300", "--response-time-ms", "450"],
         {"success": False, "description": "[RESPONSE_TIME] (450) < 300"}),
    ],
)
def test_condition_command_prints_json_and_exits_zero(args: list[str], expected: dict[str, object]) -> None:
    done = run_cli("condition", *args)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected


# Gatus's own scenarios for its pattern matcher (pattern/pattern_test.go): the same verdict on each.
@pytest.mark.parametrize(("pattern", "expected"), [
    ("*", True), ("**", True), ("living*", True), ("*living*", True), ("*123", True), ("*_*", True),
    ("living*_*3", True), ("living*room_*3", True), ("*vin*om*2*", True), ("livingroom_123", True),
    ("*livingroom_123*", True), ("livingroom", False), ("livingroom123", False), ("what", False),
    ("*what*", False), ("*.*", False), ("room*123", False),
])
def test_pat_agrees_with_gatus_on_its_own_scenarios(pattern: str, expected: bool) -> None:
    from probes.conditions import go_path_match

    assert go_path_match(pattern, "livingroom_123") is expected


# An integer placeholder against an integer literal is compared as integers, without the text; every verdict
# must be the general rule's (the text resolved, then compared as Gatus compares it).
_INTEGER_TEXTS = [f"{left} {op} {right}" for left in ("[STATUS]", "[response_time]", "[CERTIFICATE_EXPIRATION]")
                  for op in ("==", "!=", "<", "<=", ">", ">=")
                  for right in ("200", "0", "-5", "0x1F", "010", "1_000", "5000", "1h", "2.5", "abc", "+7")]
_INTEGER_FACTS = [CheckFacts(status=s, response_time_ms=s, certificate_expiration_ms=s)
                  for s in (0, 7, 8, 31, 200, 503, 1000, 4999, 5000, 3_600_000, -5, -3_600_000)]


@pytest.mark.parametrize("text", _INTEGER_TEXTS)
def test_integer_comparisons_give_the_general_rules_verdict(text: str) -> None:
    condition = Condition(text)
    for facts in _INTEGER_FACTS:
        assert condition.evaluate(facts) == condition._evaluate(facts), (text, facts)


def test_the_common_conditions_take_the_integer_comparison() -> None:
    assert all(Condition(text)._integers is not None
               for text in ("[STATUS] == 200", "[RESPONSE_TIME] < 5000", "[CERTIFICATE_EXPIRATION] > 336h"))
