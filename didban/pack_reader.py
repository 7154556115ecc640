"""Reading an evidence pack that may have been tampered with, or made to hurt the reader.

``didban sla replay`` is what the inspection office runs on a pack it was
handed in a dispute, so the reader trusts nothing in it:

- **Verified before computed.**  ``manifest.json`` lists the sha256 of every
  file and one digest of the whole pack; a missing, extra or changed file, a
  missing manifest or a wrong pack digest is ``PackTampered`` (exit 3) naming
  the file and both digests, and no figure is printed.  ``verify=False``
  computes a hand-made pack anyway and says so.
- **Safe containers.**  Only regular files are read: archive members that
  are links, devices, absolute paths or contain ``..`` are refused, and a
  folder pack's files must be regular files directly inside the folder (no
  symlinks out of it).
- **Bounded.**  Lines are read streaming; a line over ``MAX_LINE_BYTES`` or a
  pack over ``max_bytes`` (counted as it is read, so a zip that lies about
  its sizes gains nothing) is refused with ``file:line``.  Results are kept as
  one 8-byte integer each (``array('q')``).
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
import zipfile
from array import array
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from orjson import loads as _loads  # parses a pack's millions of lines several times faster than json

from core.model import AgreementTerms, MonthReport, ServiceTerms, Status
from didban.evidence import (
    MANIFEST,
    PACK_FILES,
    BadPack,
    compute_month,
    exclusion_from_json,
    maintenance_from_json,
    pack_digest,
    parse_ts,
    report_json,
    tail_end,
    terms_from_json,
)
from sla_calc.derive import Segment, derive_segments
from sla_calc.periods import BadMonth, JalaliMonth

MAX_LINE_BYTES = 1 << 20
DEFAULT_MAX_PACK_BYTES = 1 << 30
_STATUS_BITS = {"up": 0, "down": 1, "unknown": 2}
_BITS_STATUS = (Status.UP, Status.DOWN, Status.UNKNOWN)
_CHUNK = 1 << 20


class PackTampered(BadPack):
    """The pack does not match its manifest (or has none): its figures cannot be trusted."""


class PackRefused(BadPack):
    """The pack holds something the reader will not touch (a link, a device, a path outside it, too much)."""


class _Budget:
    """Bytes read from the whole pack, against its cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int, where: str) -> None:
        self.used += count
        if self.used > self.limit:
            raise PackRefused(f"{where}: the pack is larger than the {self.limit:,} bytes allowed "
                              "(--max-bytes raises the limit)")


class PackSource:
    """The regular files of a folder, .zip or .tar.gz pack, by name, opened only through the checks above."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_PACK_BYTES,
                 files: dict[str, bytes] | None = None) -> None:
        self.path = path
        self.budget = _Budget(max_bytes)
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, Any] = {}
        if files is not None:  # a pack Didban holds in memory (a snapshot, an archived pack)
            self._members = {name: io.BytesIO(data) for name, data in files.items()}
            return
        try:
            if path.is_dir() and not path.is_symlink():
                self._scan_folder()
            elif path.name.lower().endswith(".zip"):
                self._zip = zipfile.ZipFile(path)
                self._scan_zip(self._zip)
            elif path.name.lower().endswith((".tar.gz", ".tgz")):
                self._tar = tarfile.open(path, "r:gz")
                self._scan_tar(self._tar)
            else:
                raise BadPack(f"{path}: expected a folder, a .zip or a .tar.gz")
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise BadPack(f"{path}: cannot open the pack ({exc})") from None

    # -- listing, with the refusals ------------------------------------------------------

    def _scan_folder(self) -> None:
        for entry in sorted(self.path.iterdir()):
            mode = entry.lstat().st_mode
            if stat.S_ISDIR(mode):
                raise PackRefused(f"{entry}: a pack folder holds files only, not folders")
            if not stat.S_ISREG(mode):
                raise PackRefused(f"{entry}: not a regular file (a link or a device); refused")
            self._members[entry.name] = entry

    @staticmethod
    def _safe_name(name: str) -> PurePosixPath:
        path = PurePosixPath(name)
        if name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
            raise PackRefused(f"{name}: an absolute path or one with '..' in an archive; refused")
        return path

    def _add_member(self, name: str, member: Any) -> None:
        path = self._safe_name(name)
        if len(path.parts) > 2:
            raise PackRefused(f"{name}: nested folders in a pack; refused")
        key = path.name
        if key in self._members:
            raise PackRefused(f"{name}: the pack holds {key} twice; refused")
        self._members[key] = member

    def _scan_zip(self, archive: zipfile.ZipFile) -> None:
        prefixes = set()
        for info in archive.infolist():
            self._safe_name(info.filename)
            if info.is_dir():
                continue
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind and kind != stat.S_IFREG:
                raise PackRefused(f"{info.filename}: not a regular file (a link or a device); refused")
            prefixes.add(PurePosixPath(info.filename).parent)
            self._add_member(info.filename, info)
        if len(prefixes) > 1:
            raise PackRefused(f"{self.path}: files in more than one folder; a pack is one folder")

    def _scan_tar(self, archive: tarfile.TarFile) -> None:
        prefixes = set()
        for member in archive.getmembers():
            self._safe_name(member.name)
            if member.isdir():
                continue
            if not member.isreg():
                raise PackRefused(f"{member.name}: not a regular file (a link or a device); refused")
            prefixes.add(PurePosixPath(member.name).parent)
            self._add_member(member.name, member)
        if len(prefixes) > 1:
            raise PackRefused(f"{self.path}: files in more than one folder; a pack is one folder")

    # -- reading -----------------------------------------------------------------------

    def names(self) -> set[str]:
        return set(self._members)

    def open(self, name: str) -> IO[bytes] | None:
        member = self._members.get(name)
        if member is None:
            return None
        if self._zip is not None:
            return self._zip.open(member)
        if self._tar is not None:
            return self._tar.extractfile(member)
        if isinstance(member, io.BytesIO):
            return io.BytesIO(member.getbuffer())
        handle: IO[bytes] = member.open("rb")
        return handle

    def sha256(self, name: str) -> str:
        handle = self.open(name)
        assert handle is not None
        digest = hashlib.sha256()
        with handle:
            while chunk := handle.read(_CHUNK):
                self.budget.take(len(chunk), name)
                digest.update(chunk)
        return digest.hexdigest()

    def lines(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, JSON object) for each non-blank line; bounded per line and in all."""
        handle = self.open(name)
        if handle is None:
            return
        with handle:
            number = 0
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                number += 1
                self.budget.take(len(raw), f"{name}:{number}")
                if len(raw) > MAX_LINE_BYTES:
                    raise PackRefused(f"{name}:{number}: a line longer than {MAX_LINE_BYTES:,} bytes; refused")
                if not raw.strip():
                    continue
                try:
                    line = _loads(raw)
                except ValueError:
                    raise BadPack(f"{name}:{number}: not a JSON object") from None
                if not isinstance(line, dict):
                    raise BadPack(f"{name}:{number}: expected a JSON object")
                yield number, line

    def read_json(self, name: str) -> Any:
        handle = self.open(name)
        if handle is None:
            raise BadPack(f"{self.path}: no {name}")
        with handle:
            data = handle.read(MAX_LINE_BYTES * 16 + 1)
        self.budget.take(len(data), name)
        if len(data) > MAX_LINE_BYTES * 16:
            raise PackRefused(f"{name}: larger than {MAX_LINE_BYTES * 16:,} bytes; refused")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadPack(f"{name}: not JSON ({exc})") from None


def verify(source: PackSource) -> str:
    """Check every file against manifest.json; return the pack digest, or raise ``PackTampered``."""
    names = source.names()
    if MANIFEST not in names:
        raise PackTampered(f"{source.path}: no {MANIFEST}; the pack cannot be verified (--no-verify computes it "
                           "anyway, marked unverified)")
    manifest = source.read_json(MANIFEST)
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise PackTampered(f"{MANIFEST}: expected {{\"files\": {{name: sha256}}, \"pack_sha256\": …}}")
    for name in sorted(set(listed) - names):
        raise PackTampered(f"{name}: listed in the manifest but missing from the pack "
                           f"(expected sha256 {listed[name]})")
    for name in sorted(names - set(listed) - {MANIFEST}):
        raise PackTampered(f"{name}: in the pack but not in the manifest (actual sha256 {source.sha256(name)})")
    for required in PACK_FILES:
        if required not in listed:
            raise PackTampered(f"{required}: missing from the pack and its manifest")
    for name in sorted(listed):
        actual = source.sha256(name)
        if actual != listed[name]:
            raise PackTampered(f"{name}: changed since export: expected sha256 {listed[name]}, actual {actual}")
    expected = manifest.get("pack_sha256")
    actual = pack_digest(listed)
    if expected != actual:
        raise PackTampered(f"{MANIFEST}: wrong pack digest: expected pack_sha256 {expected}, actual {actual}")
    return actual


class _Results:
    """A pack's results per (service, location), one ``ts << 2 | status`` integer each."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], array[int]] = {}
        self.unsorted: set[tuple[str, str]] = set()
        self.low: int | None = None
        self.high: int | None = None

    def add(self, service: str, location: str, ts_ms: int, status: str) -> None:
        key = (service, location)
        entries = self.by_key.get(key)
        if entries is None:
            entries = self.by_key[key] = array("q")
        entry = ts_ms << 2 | _STATUS_BITS[status]
        if entries and entry < entries[-1]:
            self.unsorted.add(key)
        entries.append(entry)

    def segments(self, terms: ServiceTerms) -> list[list[Segment]]:
        out = []
        for key, entries in sorted(self.by_key.items()):
            if key[0] != terms.id:
                continue
            if key in self.unsorted:
                entries = array("q", sorted(entries))  # results may come in any order (§5)
            out.append(derive_segments(((e >> 2, _BITS_STATUS[e & 3]) for e in entries), terms.interval_ms,
                                       terms.failure_threshold))
        return out


def covered_months(source: PackSource, low: int | None, high: int | None) -> list[str]:
    """The months a pack is evidence for: its report's, or for a hand-made pack the months its results span."""
    if "report.json" in source.names():
        report = source.read_json("report.json")
        if isinstance(report, dict) and isinstance(report.get("month"), str):
            return [report["month"]]
    if low is None or high is None:
        return []
    months: list[str] = []
    month = JalaliMonth.containing(low)
    last = JalaliMonth.containing(high)
    while month <= last and len(months) < 1200:
        months.append(str(month))
        month = month.next()
    return months


def replay(path: str | Path, month_text: str, *, verify_pack: bool = True,
           max_bytes: int = DEFAULT_MAX_PACK_BYTES) -> dict[str, Any]:
    """``didban sla replay``: the month's figures from the pack alone, after verifying it."""
    try:
        month = JalaliMonth.parse(month_text)
    except BadMonth as exc:
        raise BadPack(str(exc)) from None
    source = PackSource(Path(path), max_bytes)
    if verify_pack:
        verify(source)
    data = report_json(compute(source, month, covering=True))
    data["verified"] = verify_pack
    return data


def compute(source: PackSource, month: JalaliMonth, *, covering: bool = False,
            now_ms: int | None = None) -> MonthReport:
    """The month's figures from a pack's files, with the functions the service itself uses."""
    if "agreement.json" not in source.names() or "results.jsonl" not in source.names():
        missing = [n for n in ("agreement.json", "results.jsonl") if n not in source.names()]
        raise BadPack(f"{source.path}: no {' and no '.join(missing)}; a pack without them proves nothing")
    terms = terms_from_json(source.read_json("agreement.json"))
    results = _read_results(source, terms, month)
    if covering:
        months = covered_months(source, results.low, results.high)
        if str(month) not in months:
            raise BadPack(f"the pack does not cover {month}: it covers {', '.join(months) or 'no month'}")
    maintenance = [maintenance_from_json(m) for _, m in source.lines("maintenance.jsonl")]
    exclusions = [exclusion_from_json(e) for _, e in source.lines("exclusions.jsonl")]
    return compute_month(month, terms, results.segments, maintenance, exclusions, now_ms=now_ms)


def compute_files(files: dict[str, bytes], month: JalaliMonth, now_ms: int | None = None) -> MonthReport:
    """``compute`` for a pack held in memory (no size cap: Didban made it)."""
    return compute(PackSource(Path(f"<{month} pack>"), max_bytes=1 << 62, files=files), month, now_ms=now_ms)


def _read_results(source: PackSource, terms: AgreementTerms, month: JalaliMonth) -> _Results:
    known = {s.id for s in terms.services}
    results = _Results()
    high = tail_end(month, terms)
    low_seen: int | None = None
    high_seen: int | None = None
    for number, line in source.lines("results.jsonl"):
        try:
            service = line["service"]
            ts = parse_ts(line["ts"])
            status = line["status"]
            location = str(line.get("location", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadPack(f"results.jsonl:{number}: expected service, ts and status ({exc})") from None
        if status not in _STATUS_BITS:
            raise BadPack(f"results.jsonl:{number}: status must be up, down or unknown, got {str(status)[:80]!r}")
        if service in known:
            low_seen = ts if low_seen is None or ts < low_seen else low_seen
            high_seen = ts if high_seen is None or ts > high_seen else high_seen
            if ts < high:
                results.add(service, location, ts, status)
    results.low, results.high = low_seen, high_seen
    return results
