"""Evidence packs (DESIGN.md §5): what anyone needs to re-derive a month.

A pack is a folder, or a ``.zip`` / ``.tar.gz`` of one, holding
``agreement.json``, ``results.jsonl``, ``maintenance.jsonl``,
``exclusions.jsonl`` and ``manifest.json`` (sha256 of each file and of the
report it produced).  ``replay`` recomputes a month from the pack alone — no
config, no database — with the same functions the service uses, so an
exported month replays to identical figures.

Derivation restarts exactly at any non-down result (an up or unknown ends
every run), so for each (service, location) a pack holds the results from
the last non-down result at or before the month's start to ``end + 2 ×
interval`` (the tail gives the month's last result its coverage).  Replayed,
they give the same segments inside the month as the service's own
derivation of its whole history.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from orjson import loads as _loads  # parses a pack's millions of lines several times faster than json

from didban.model import (
    AgreementTerms,
    CreditTier,
    Exclusion,
    MaintenanceWindow,
    MonthReport,
    ServiceMonth,
    ServiceTerms,
    Status,
    iso_utc,
)
from sla_calc.derive import Segment, derive_segments
from sla_calc.month import settle_service
from sla_calc.periods import JalaliMonth

PACK_FILES = ("agreement.json", "results.jsonl", "maintenance.jsonl", "exclusions.jsonl")
_STATUS_BITS = {"up": 0, "down": 1, "unknown": 2}

_BITS_STATUS = (Status.UP, Status.DOWN, Status.UNKNOWN)


class BadPack(ValueError):
    """The pack is missing a file or holds something that is not the format."""


def tail_end(month: JalaliMonth, terms: AgreementTerms) -> int:
    """Results up to here matter to the month: the last one inside covers up to two intervals."""
    longest = max((s.interval_ms for s in terms.services), default=0)
    return month.end_ms() + 2 * longest


# -- timestamps ----------------------------------------------------------------

_MINUTE_MS: dict[str, int] = {}


def parse_ts(text: str) -> int:
    """ISO 8601 UTC (``2024-09-22T20:30:00Z``, optional fraction) → epoch ms.

    The fast path parses the fixed layout Didban writes, caching each minute
    (a month of one-second results has 43,200 minutes and 2.6 M timestamps);
    anything else goes through ``datetime.fromisoformat`` and must carry a
    UTC offset.
    """
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T" and text[16] == ":" and text[18].isdigit():
        minute = _MINUTE_MS.get(text[:16])
        if minute is None:
            if len(_MINUTE_MS) > 200_000:
                _MINUTE_MS.clear()
            moment = datetime.fromisoformat(text[:16]).replace(tzinfo=UTC)
            minute = _MINUTE_MS[text[:16]] = int(moment.timestamp()) * 1000
        ms = minute + int(text[17:19]) * 1000
        if len(text) > 20 and text[19] == ".":
            ms += int(text[20:-1].ljust(3, "0")[:3])
        return ms
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise BadPack(f"timestamp {text!r} has no timezone; the pack's times are UTC with a Z")
    return int(moment.timestamp() * 1000)


# -- agreement.json ------------------------------------------------------------


def terms_to_json(terms: AgreementTerms) -> dict[str, Any]:
    return {
        "timezone": terms.timezone,
        "calendar": terms.calendar,
        "month_basis": terms.month_basis,
        "notice_hours": terms.notice_hours,
        "agreement": {"id": terms.id, "title": terms.title, "valid_from": terms.valid_from,
                      "valid_until": terms.valid_until},
        "services": [
            {
                "id": s.id,
                "name": s.name,
                "interval_seconds": s.interval_ms / 1000,
                "failure_threshold": s.failure_threshold,
                "target_percent": s.target_percent,
                "monthly_base": s.monthly_base,
                "credit_tiers": [{"below": t.below, "credit_percent": t.credit_percent} for t in s.credit_tiers],
                # Only where this service's agreement differs from the pack-wide values above.
                **({"month_basis": s.month_basis} if s.month_basis else {}),
                **({"notice_hours": s.notice_hours} if s.notice_hours is not None else {}),
            }
            for s in terms.services
        ],
    }


def terms_from_json(data: dict[str, Any]) -> AgreementTerms:
    try:
        services = tuple(
            ServiceTerms(
                id=str(s["id"]),
                name=str(s.get("name", s["id"])),
                interval_ms=round(float(s["interval_seconds"]) * 1000),
                failure_threshold=int(s["failure_threshold"]),
                target_percent=float(s["target_percent"]),
                monthly_base=float(s.get("monthly_base", 0)),
                credit_tiers=tuple(CreditTier(float(t["below"]), float(t["credit_percent"]))
                                   for t in s.get("credit_tiers", [])),
                month_basis=s.get("month_basis"),
                notice_hours=float(s["notice_hours"]) if "notice_hours" in s else None,
            )
            for s in data["services"]
        )
        agreement = data.get("agreement") or {}
        return AgreementTerms(
            services=services,
            month_basis=str(data.get("month_basis", "nominal_30d")),
            notice_hours=float(data.get("notice_hours", 72)),
            timezone=str(data.get("timezone", "Asia/Tehran")),
            calendar=str(data.get("calendar", "jalali")),
            id=str(agreement.get("id", "")),
            title=str(agreement.get("title", "")),
            valid_from=str(agreement.get("valid_from", "")),
            valid_until=str(agreement.get("valid_until", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadPack(f"agreement.json: expected the §5 fields, problem with {exc}") from None


# -- maintenance.jsonl, exclusions.jsonl ------------------------------------------------


def maintenance_to_json(window: MaintenanceWindow) -> dict[str, Any]:
    return {"id": window.id, "services": list(window.services), "start": iso_utc(window.start_ms),
            "end": iso_utc(window.end_ms), "announced_at": iso_utc(window.announced_at_ms),
            "cancelled": window.cancelled}


def maintenance_from_json(data: dict[str, Any]) -> MaintenanceWindow:
    return MaintenanceWindow(str(data["id"]), tuple(data["services"]), parse_ts(data["start"]),
                             parse_ts(data["end"]), parse_ts(data["announced_at"]), bool(data.get("cancelled")))


def exclusion_to_json(exclusion: Exclusion) -> dict[str, Any]:
    return {"id": exclusion.id, "services": list(exclusion.services), "start": iso_utc(exclusion.start_ms),
            "end": iso_utc(exclusion.end_ms), "reason": exclusion.reason}


def exclusion_from_json(data: dict[str, Any]) -> Exclusion:
    return Exclusion(str(data["id"]), tuple(data["services"]), parse_ts(data["start"]), parse_ts(data["end"]),
                     str(data.get("reason", "")), str(data.get("evidence", "")))


# -- the month, from results ---------------------------------------------------------------


class ResultIndex:
    """Results of a pack or a store, per (service, location), packed as ``ts << 2 | status``.

    A month of one-second results is 2.6 M entries: one int each instead of a
    tuple keeps replay well inside its memory budget.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], list[int]] = {}

    def add(self, service: str, location: str, ts_ms: int, status: str) -> None:
        key = (service, location)
        entries = self._by_key.get(key)
        if entries is None:
            entries = self._by_key[key] = []
        entries.append(ts_ms << 2 | _STATUS_BITS[status])

    def segments(self, terms: ServiceTerms) -> list[list[Segment]]:
        service = terms.id
        out = []
        for (svc, _), entries in sorted(self._by_key.items()):
            if svc != service:
                continue
            entries.sort()
            out.append(derive_segments(((e >> 2, _BITS_STATUS[e & 3]) for e in entries), terms.interval_ms,
                                       terms.failure_threshold))
        return out


SegmentSource = Callable[[ServiceTerms], list[list[Segment]]]


def compute_month(
    month: JalaliMonth,
    terms: AgreementTerms,
    segments: SegmentSource,
    maintenance: Sequence[MaintenanceWindow],
    exclusions: Sequence[Exclusion],
    now_ms: int | None = None,
) -> MonthReport:
    start, end = month.bounds()
    denominator = month.denominator_ms(terms.month_basis)
    services = tuple(
        settle_service(
            service, segments(service), (start, end),
            month.denominator_ms(service.month_basis or terms.month_basis), maintenance, exclusions,
            service.notice_hours if service.notice_hours is not None else terms.notice_hours, now_ms,
        )
        for service in terms.services
    )
    return MonthReport(str(month), start, end, denominator, services, terms.id)


def service_json(figures: ServiceMonth) -> dict[str, Any]:
    """One service as §5's replay output spells it."""
    return {
        "service": figures.service,
        "availability_percent": figures.availability_percent,
        "downtime_minutes": figures.downtime_ms / 60_000,
        "excluded_minutes": figures.excluded_ms / 60_000,
        "coverage_percent": figures.coverage_percent,
        "target_percent": figures.target_percent,
        "met": figures.met,
        "credit_percent": figures.credit_percent,
        "credit_amount": figures.credit_amount,
        "late_maintenance": [late.id for late in figures.late_maintenance],
    }


def report_json(report: MonthReport) -> dict[str, Any]:
    return {
        "month": report.month,
        "start": iso_utc(report.start_ms),
        "end": iso_utc(report.end_ms),
        "denominator_minutes": report.denominator_ms / 60_000,
        "services": [service_json(s) for s in report.services],
    }


# -- reading a pack --------------------------------------------------------------------------


class _Pack:
    """Opens the members of a folder, .zip or .tar.gz pack by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._prefix = ""
        if path.is_dir():
            return
        name = path.name.lower()
        try:
            if name.endswith(".zip"):
                self._zip = zipfile.ZipFile(path)
                names = self._zip.namelist()
            elif name.endswith((".tar.gz", ".tgz")):
                self._tar = tarfile.open(path, "r:gz")
                names = self._tar.getnames()
            else:
                raise BadPack(f"{path}: expected a folder, a .zip or a .tar.gz")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise BadPack(f"{path}: cannot open the pack ({exc})") from None
        agreement = next((n for n in names if n.endswith("agreement.json")), None)
        if agreement is None:
            raise BadPack(f"{path}: no agreement.json inside")
        self._prefix = agreement[: -len("agreement.json")]

    def open(self, member: str) -> IO[bytes] | None:
        if self._zip is not None:
            try:
                return self._zip.open(self._prefix + member)
            except KeyError:
                return None
        if self._tar is not None:
            try:
                return self._tar.extractfile(self._prefix + member)
            except KeyError:
                return None
        file = self.path / member
        return file.open("rb") if file.exists() else None


def _lines(handle: IO[bytes] | None, member: str) -> Iterator[dict[str, Any]]:
    if handle is None:
        return
    with handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = _loads(raw)
            except ValueError:
                if not raw.strip():
                    continue
                raise BadPack(f"{member}:{number}: not a JSON object") from None
            if not isinstance(line, dict):
                raise BadPack(f"{member}:{number}: expected a JSON object")
            yield line


def replay(path: str | Path, month_text: str) -> dict[str, Any]:
    """``didban sla replay``: the month's figures from the pack alone."""
    pack = _Pack(Path(path))
    month = JalaliMonth.parse(month_text)
    agreement = pack.open("agreement.json")
    if agreement is None:
        raise BadPack(f"{path}: no agreement.json")
    with agreement:
        try:
            terms = terms_from_json(json.load(agreement))
        except ValueError as exc:
            raise BadPack(f"agreement.json: not JSON ({exc})") from None
    known = {s.id for s in terms.services}
    index = ResultIndex()
    high = tail_end(month, terms)
    for number, line in enumerate(_lines(pack.open("results.jsonl"), "results.jsonl"), 1):
        try:
            service = line["service"]
            ts = parse_ts(line["ts"])
            status = line["status"]
            location = line.get("location", "")
        except (KeyError, TypeError, ValueError) as exc:
            raise BadPack(f"results.jsonl:{number}: expected service, ts and status ({exc})") from None
        if status not in _STATUS_BITS:
            raise BadPack(f"results.jsonl:{number}: status must be up, down or unknown, got {status!r}")
        if service in known and ts < high:
            index.add(service, location, ts, status)
    maintenance = [maintenance_from_json(m) for m in _lines(pack.open("maintenance.jsonl"), "maintenance.jsonl")]
    exclusions = [exclusion_from_json(e) for e in _lines(pack.open("exclusions.jsonl"), "exclusions.jsonl")]
    return report_json(compute_month(month, terms, index.segments, maintenance, exclusions))


# -- writing a pack ------------------------------------------------------------------------------


@dataclass
class PackContents:
    terms: AgreementTerms
    results: Iterable[dict[str, Any]]
    maintenance: Sequence[MaintenanceWindow]
    exclusions: Sequence[Exclusion]


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)


def pack_files(contents: PackContents, report: dict[str, Any]) -> dict[str, bytes]:
    """The pack's files, name → bytes; ``report.json`` is the report the pack produced."""
    return {
        "agreement.json": json.dumps(terms_to_json(contents.terms), ensure_ascii=False, indent=2).encode(),
        "results.jsonl": _jsonl(contents.results),
        "maintenance.jsonl": _jsonl(maintenance_to_json(m) for m in contents.maintenance),
        "exclusions.jsonl": _jsonl(exclusion_to_json(e) for e in contents.exclusions),
        "report.json": json.dumps(report, ensure_ascii=False, indent=2).encode(),
    }


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def write_pack(folder: Path, files: dict[str, bytes]) -> str:
    """Write the files and ``manifest.json`` (their sha256, and the pack's); return the pack digest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    each = digests(files)
    digest = pack_digest(each)
    manifest = {"files": each, "pack_sha256": digest}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return digest


def pack_digest(digests: dict[str, str]) -> str:
    """One digest for the whole pack: sha256 over the sorted ``name  digest`` lines."""
    lines = "".join(f"{name}  {digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def verify_pack(folder: Path) -> list[str]:
    """Files whose content no longer matches manifest.json (empty: the pack is intact)."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [name for name, digest in manifest["files"].items()
            if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]
