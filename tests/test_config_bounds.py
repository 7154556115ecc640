"""Hostile config files: each is refused with FILE:LINE: and a reason, fast, with no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED = (ROOT / "config.yaml").read_text(encoding="utf-8")

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9))

HOSTILE = [
    # (why, the file's bytes, what the message must say)
    ("a billion laughs: aliases of aliases", BOMB.encode(), "once aliases are expanded"),
    ("a NUL byte on line 3", b"timezone: Asia/Tehran\nlocations: []\nagencies: \x00\n", ":3: a NUL byte"),
    ("not UTF-8", b"timezone: Asia/Tehran\nagreements: \xff\xfe\n", "not UTF-8"),
    ("100,000 nested brackets", b"a: " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested more than 64"),
    ("100,000 nested block lists", b"a:\n" + b"- " * 100_000 + b"x\n", "nested"),
    ("too many aliases", b"a: &a 1\nb: [" + b", ".join([b"*a"] * 2000) + b"]\n", "aliases"),
    ("4 million tiny values", b"a: [" + b"1," * ((4 << 20) - 8) + b"1]\n", "more than 1,000,000 values"),
    ("a key given twice", b"timezone: Asia/Tehran\nlocations: []\ntimezone: UTC\n",
     ":3: the key 'timezone' is given twice"),
    ("a tag that would build an object", b"timezone: !!python/object:os.system x\n", ":1: the tag"),
    ("a 9 MiB file", b"# " + b"x" * (9 << 20) + b"\n", "at most 8,388,608"),
    ("a 4 MB value where a number goes", SEED.replace("retention_days: 90", "retention_days: " + "9x" * 2_000_000)
     .encode(), "retention_days: expected"),
]


@pytest.mark.parametrize(("why", "content", "said"), HOSTILE, ids=[row[0] for row in HOSTILE])
def test_a_hostile_config_is_refused_in_plain_words(tmp_path: Path, why: str, content: bytes, said: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "didban.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    took = time.monotonic() - began
    assert done.returncode == 2, done.stderr[-500:]
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{path}:"), done.stderr[:300]
    assert said in done.stderr, done.stderr[:500]
    assert max(len(line) for line in done.stderr.splitlines()) < 400  # a huge value is never echoed whole
    assert took < 10, took  # bounded (the interpreter's own start counts here too)


def test_a_file_of_many_mistakes_lists_the_first_hundred(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED + "".join(f"unknown{i}: 1\n" for i in range(900)), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "didban.cli", "validate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 102, lines[-3:]
    assert lines[0].endswith("unknown0: unknown key: not allowed here (check its spelling)")
    assert lines[-2] == f"{path}: … and 800 more problems (the first 100 shown)"
    assert lines[-1] == f"{path}: 900 error(s)"
