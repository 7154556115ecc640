"""A pack defends itself: replay verifies before it computes, and refuses packs made to hurt the reader."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from didban.evidence import BadPack
from didban.exports import export
from didban.pack_reader import MAX_LINE_BYTES, PackRefused, PackTampered, replay
from didban.settlement import snapshot
from store.sql_store import SqliteStore
from store.web_records import WebRecords
from tests.test_settlement import AFTER, MONTH, config, fill


@pytest.fixture
def pack(db_path: Path, tmp_path: Path) -> Path:
    store = SqliteStore(db_path)
    fill(store, "portal", downs=[(600, 900)])
    fill(store, "dispatch")
    snap = snapshot(config(), store, MONTH, AFTER)
    [folder] = export(config(), store, WebRecords(store.db), snap, ["pack"], tmp_path / "out")
    store.close()
    return folder


def _edit(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / name
        path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    return apply


def _drop_down_lines(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if '"down"' not in line)


def _manifest(change: Callable[[dict[str, object]], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8"))
        change(manifest)
        path.write_text(json.dumps(manifest), encoding="utf-8")
    return apply


TAMPERING = [
    # (why, what is done to the pack, what the refusal must name)
    ("one result changed", _edit("results.jsonl", lambda t: t.replace('"down"', '"up"', 1)), "results.jsonl"),
    ("a service's down lines deleted", _edit("results.jsonl", _drop_down_lines), "results.jsonl"),
    ("results.jsonl deleted", lambda f: (f / "results.jsonl").unlink(), "results.jsonl"),
    ("manifest.json deleted", lambda f: (f / "manifest.json").unlink(), "manifest.json"),
    ("a file added", lambda f: (f / "extra.jsonl").write_text("{}\n"), "extra.jsonl"),
    ("the report rewritten", _edit("report.json", lambda t: t.replace("false", "true")), "report.json"),
    ("the pack digest forged", _manifest(lambda m: m.update(pack_sha256="0" * 64)), "pack digest"),
    ("a file dropped from the manifest and the pack",
     lambda f: (_manifest(lambda m: m["files"].pop("exclusions.jsonl"))(f), (f / "exclusions.jsonl").unlink()),
     "exclusions.jsonl"),
]


@pytest.mark.parametrize(("why", "tamper", "named"), TAMPERING, ids=[row[0] for row in TAMPERING])
def test_a_tampered_pack_is_refused_naming_the_file(pack: Path, why: str, tamper: Callable[[Path], None],
                                                    named: str) -> None:
    tamper(pack)
    with pytest.raises(PackTampered, match=named):
        replay(pack, str(MONTH))


def test_the_cli_exits_3_with_both_digests_and_prints_no_figures(pack: Path) -> None:
    _edit("results.jsonl", lambda t: t.replace('"down"', '"up"', 1))(pack)
    done = subprocess.run([sys.executable, "-m", "didban.cli", "sla", "replay", str(pack), "--month", str(MONTH)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert done.stdout == ""
    assert "results.jsonl" in done.stderr and "expected sha256" in done.stderr and "actual" in done.stderr


def test_no_verify_computes_a_hand_made_pack_and_says_so(pack: Path) -> None:
    (pack / "manifest.json").unlink()
    done = subprocess.run([sys.executable, "-m", "didban.cli", "sla", "replay", str(pack), "--month", str(MONTH),
                           "--no-verify"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verified"] is False


def test_a_month_the_pack_does_not_cover_names_the_months_it_covers(pack: Path) -> None:
    with pytest.raises(BadPack, match="does not cover 1403-09: it covers 1403-07"):
        replay(pack, "1403-09")


def test_a_symlink_in_a_folder_pack_is_refused(pack: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("{}\n")
    (pack / "exclusions.jsonl").unlink()
    os.symlink(outside, pack / "exclusions.jsonl")
    with pytest.raises(PackRefused, match="not a regular file"):
        replay(pack, str(MONTH))


def _zip(pack: Path, target: Path, extra: Callable[[zipfile.ZipFile], None]) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for file in sorted(pack.iterdir()):
            archive.write(file, f"{pack.name}/{file.name}")
        extra(archive)
    return target


def _zip_symlink(archive: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("didban-evidence-1403-07/link.jsonl")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive.writestr(info, "/etc/passwd")


def _tar(pack: Path, target: Path, extra: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(target, "w:gz") as archive:
        archive.add(pack, arcname=pack.name)
        extra(archive)
    return target


def _tar_member(name: str, kind: bytes, link: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, link
        archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return add


HOSTILE_ARCHIVES = [
    ("a zip member that is a symlink", lambda p, t: _zip(p, t / "p.zip", _zip_symlink), "not a regular file"),
    ("a zip member with ..", lambda p, t: _zip(p, t / "p.zip", lambda a: a.writestr("../evil.jsonl", "{}")), "'..'"),
    ("a zip member with an absolute path", lambda p, t: _zip(p, t / "p.zip", lambda a: a.writestr("/evil", "x")),
     "absolute"),
    ("a tar symlink", lambda p, t: _tar(p, t / "p.tar.gz", _tar_member(
        "didban-evidence-1403-07/x.jsonl", tarfile.SYMTYPE, "/etc/passwd")), "not a regular file"),
    ("a tar hard link", lambda p, t: _tar(p, t / "p.tar.gz", _tar_member(
        "didban-evidence-1403-07/x.jsonl", tarfile.LNKTYPE, "/etc/passwd")), "not a regular file"),
    ("a tar device", lambda p, t: _tar(p, t / "p.tar.gz", _tar_member(
        "didban-evidence-1403-07/dev", tarfile.CHRTYPE)), "not a regular file"),
    ("a tar member with ..", lambda p, t: _tar(p, t / "p.tar.gz", _tar_member(
        "didban-evidence-1403-07/../../x", tarfile.REGTYPE)), "'..'"),
]


@pytest.mark.parametrize(("why", "build", "reason"), HOSTILE_ARCHIVES, ids=[row[0] for row in HOSTILE_ARCHIVES])
def test_hostile_archive_members_are_refused(pack: Path, tmp_path: Path, why: str,
                                             build: Callable[[Path, Path], Path], reason: str) -> None:
    with pytest.raises(PackRefused, match=reason):
        replay(build(pack, tmp_path), str(MONTH))


def test_an_honest_archive_replays(pack: Path, tmp_path: Path) -> None:
    zipped = _zip(pack, tmp_path / "p.zip", lambda archive: None)
    assert replay(zipped, str(MONTH))["verified"] is True


def test_a_line_over_a_mebibyte_is_refused_with_its_place(pack: Path) -> None:
    (pack / "manifest.json").unlink()
    with (pack / "results.jsonl").open("ab") as handle:
        handle.write(b'{"service": "portal", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}\n')
    with pytest.raises(PackRefused, match=r"results\.jsonl:\d+: a line longer"):
        replay(pack, str(MONTH), verify_pack=False)


def test_a_pack_over_the_size_cap_is_refused(pack: Path) -> None:
    with pytest.raises(PackRefused, match="larger than the 10,000 bytes allowed"):
        replay(pack, str(MONTH), max_bytes=10_000)
