"""Configuration: the shipped config.yaml is valid; a bad file names file, line, key path and expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, Secrets, load_config

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
agreements:
  - id: sla
    title: t
    valid_from: "1400-01-01"
    valid_until: "1410-12-29"
    target_percent: 99.5
agencies:
  - id: agency
    name: {fa: "اداره", en: "Agency"}
    services:
      - id: portal
        name: {fa: "پورتال", en: "Portal"}
        agreement: sla
        probes:
          - type: http
            url: http://127.0.0.1:8080/
"""


def test_shipped_config_describes_the_seed_agencies() -> None:
    config = load_config(ROOT / "config.yaml")
    services = {service.id: agency.id for agency, service in config.services()}
    assert services == {
        "eaz-portal": "eaz-economy",
        "eaz-dedicated-revenue": "eaz-economy",
        "eaz-document-dispatch": "eaz-economy",
        "eaz-debt-instalment": "eaz-economy",
        "eaz-vehicle-scrapping": "eaz-economy",
        "sko-portal": "sko-governorate",
    }
    assert config.service("eaz-document-dispatch").name.fa == "ارسال سند به دستگاه اجرایی یا دستگاه ثالث"
    assert all(s.failure_threshold == 2 for _, s in config.services())


BAD = [
    # (replace this text in GOOD, with this, expected line, expected message fragment)
    ("            url: http://127.0.0.1:8080/", "            url: http://127.0.0.1:8080/\n            colour: red",
     17, "agencies.0.services.0.probes.0.colour: unknown key"),
    ("        agreement: sla", "        agreement: sla\n        interval_seconds: eighty",
     14, "agencies.0.services.0.interval_seconds: expected a number, got 'eighty'"),
    ("          - type: http\n            url: http://127.0.0.1:8080/",
     "          - type: tcp\n            target: host:eighty", 16,
     "agencies.0.services.0.probes.0.target: expected HOST:PORT with a port 1-65535, got 'host:eighty'"),
    ("          - type: http", "          - type: ftp", 15,
     "probes.0.type: expected one of 'http', 'tcp', 'dns', 'tls', 'icmp'"),
    ("        agreement: sla", "        agreement: nope", 13,
     "agencies.0.services.0.agreement: expected one of the agreements"),
    ("    target_percent: 99.5", "    target_percent: 101", 6,
     "agreements.0.target_percent: expected less than or equal to 100"),
    ("        agreement: sla", "        agreement: sla\n        timeout_seconds: 90\n        interval_seconds: 30",
     11, "timeout_seconds (90.0) must not exceed interval_seconds (30.0)"),
    ("          - type: http\n            url: http://127.0.0.1:8080/", "          - type: http",
     15, "agencies.0.services.0.probes.0.url: required key is missing"),
]


@pytest.mark.parametrize(("old", "new", "line", "fragment"), BAD, ids=[b[3][:50] for b in BAD])
def test_bad_config_names_file_line_path_and_expectation(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in GOOD
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(m.startswith(f"{path}:{line}: ") and fragment in m for m in caught.value.messages), (
        caught.value.messages
    )


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + "  - id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        load_config(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")


def test_validate_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.replace("        agreement: sla", "        agreement: sla\n        colour: red\n"
                                 "        failure_threshold: 0"), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "didban.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"{path}:14: agencies.0.services.0.colour: unknown key" in done.stderr
    assert f"{path}:15: agencies.0.services.0.failure_threshold: expected greater than or equal to 1" in done.stderr
    assert "2 error(s)" in done.stderr


def test_validate_accepts_the_shipped_config() -> None:
    done = subprocess.run([sys.executable, "-m", "didban.cli", "validate", str(ROOT / "config.yaml")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "valid (2 agencies, 6 services" in done.stdout


def test_secrets_come_from_environment_or_file_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIDBAN_SMTP_PASSWORD", "s3cret-smtp")
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("DIDBAN_SMS_API_KEY=kave-key-123\n", encoding="utf-8")
    secrets = Secrets.load(str(secrets_file))
    assert secrets.smtp_password is not None and secrets.smtp_password.get_secret_value() == "s3cret-smtp"
    assert secrets.sms_api_key is not None and secrets.sms_api_key.get_secret_value() == "kave-key-123"
    assert "s3cret" not in repr(secrets) and "kave-key" not in str(secrets)


def test_secrets_are_not_accepted_in_the_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD + "smtp_password: hunter2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "smtp_password: unknown key" in str(caught.value)
    assert "hunter2" not in str(caught.value)


INSTANTS = [
    # (what people type, the instant meant, why)
    ("1405/09/20 10:00", "2026-12-11T06:30:00+00:00", "a Jalali date and time is Tehran wall time"),
    ("1405-09-20", "2026-12-10T20:30:00+00:00", "a bare Jalali date is Tehran midnight"),
    ("۱۴۰۵/۰۹/۲۰ ۱۰:۰۰", "2026-12-11T06:30:00+00:00", "Persian digits"),
    ("2026-12-11T10:00", "2026-12-11T06:30:00+00:00", "ISO without an offset is Tehran wall time"),
    ("2026-12-11T10:00:00+00:00", "2026-12-11T10:00:00+00:00", "ISO with an offset is taken as written"),
]


@pytest.mark.parametrize(("typed", "meant", "why"), INSTANTS, ids=[row[2] for row in INSTANTS])
def test_times_are_read_as_people_write_them(typed: str, meant: str, why: str) -> None:
    from datetime import datetime

    from core.timefmt import parse_instant

    assert parse_instant(typed) == int(datetime.fromisoformat(meant).timestamp() * 1000)


def test_a_time_that_is_no_time_is_refused_with_an_example() -> None:
    from core.timefmt import BadInstant, parse_instant

    with pytest.raises(BadInstant, match="1405/09/20 10:00"):
        parse_instant("next tuesday")
    with pytest.raises(BadInstant, match="not a Jalali date"):
        parse_instant("1405/13/01")


PLAIN_WORDS = [
    # (the change to the seed config, what validate must say, why)
    ("title: t", "title: 1405-01-01",
     'expected text, got a date: quote it as "1405-01-01"', "YAML reads an unquoted date as a date"),
    ("url: http://127.0.0.1:8080/", "url: ftp://127.0.0.1/", "expected a URL starting with http:// or https://",
     "a URL pattern in words, not a regular expression"),
    ('valid_from: "1400-01-01"', 'valid_from: "98-01-01"', 'expected a Jalali date like "1405-01-01"',
     "a Jalali date pattern in words"),
    ("    services:\n      - id: portal", "    services:\n      - portal\n      - id: portal",
     "agencies.0.services.0: expected a mapping (key: value), got 'portal'",
     "a service written as text: no class names"),
]


@pytest.mark.parametrize(("old", "new", "said", "why"), PLAIN_WORDS, ids=[row[3] for row in PLAIN_WORDS])
def test_validate_speaks_plain_words(tmp_path: Path, old: str, new: str, said: str, why: str) -> None:
    path = tmp_path / "config.yaml"
    assert old in GOOD
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(said in message for message in caught.value.messages), caught.value.messages


def test_an_unknown_agreement_is_reported_together_with_structural_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(GOOD.replace("agreement: sla", "agreement: nope").replace(
        "url: http://127.0.0.1:8080/", "url: ftp://127.0.0.1/"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    messages = caught.value.messages
    assert any(":13: agencies.0.services.0.agreement: expected one of the agreements ['sla'], got 'nope'" in m
               for m in messages), messages
    assert any(":16: agencies.0.services.0.probes.0.url: expected a URL" in m for m in messages), messages
