"""Evidence packs (DESIGN.md §5): what anyone needs to re-derive a month.

A pack is a folder, or a ``.zip`` / ``.tar.gz`` of one, holding
``agreement.json``, ``results.jsonl``, ``maintenance.jsonl``,
``exclusions.jsonl`` and ``manifest.json`` (sha256 of each file and of the
report it produced).  This module is the format: writing a pack and the
month's computation shared by the service and by ``didban.pack_reader``,
which verifies a pack and replays it from the pack alone — no config, no
database — so an exported month replays to identical figures.

Derivation restarts exactly at any non-down result (an up or unknown ends
every run), so for each (service, location) a pack holds the results from
the last non-down result at or before the month's start to ``end + 2 ×
interval`` (the tail gives the month's last result its coverage).  Replayed,
they give the same segments inside the month as the service's own
derivation of its whole history.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from core.model import (
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
from sla_calc.derive import Segment
from sla_calc.month import settle_service
from sla_calc.periods import JalaliMonth

PACK_FILES = ("agreement.json", "results.jsonl", "maintenance.jsonl", "exclusions.jsonl")
MANIFEST = "manifest.json"
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
                "min_coverage_percent": s.min_coverage_percent,
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
                min_coverage_percent=float(s.get("min_coverage_percent", 90)),
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
        "evidence_sufficient": figures.evidence_sufficient,
    }


def report_json(report: MonthReport) -> dict[str, Any]:
    return {
        "month": report.month,
        "start": iso_utc(report.start_ms),
        "end": iso_utc(report.end_ms),
        "denominator_minutes": report.denominator_ms / 60_000,
        "services": [service_json(s) for s in report.services],
    }


# -- writing a pack ------------------------------------------------------------------------------


@dataclass
class PackContents:
    terms: AgreementTerms
    results: Iterable[dict[str, Any]]
    maintenance: Sequence[MaintenanceWindow]
    exclusions: Sequence[Exclusion]


def _jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)


def evidence_files(contents: PackContents) -> dict[str, bytes]:
    """The four evidence files of §5, name → bytes (the report and the manifest are added to them)."""
    return {
        "agreement.json": json.dumps(terms_to_json(contents.terms), ensure_ascii=False, indent=2).encode(),
        "results.jsonl": _jsonl(contents.results),
        "maintenance.jsonl": _jsonl(maintenance_to_json(m) for m in contents.maintenance),
        "exclusions.jsonl": _jsonl(exclusion_to_json(e) for e in contents.exclusions),
    }


def seal(files: dict[str, bytes], report: dict[str, Any]) -> tuple[dict[str, bytes], str]:
    """Add ``report.json`` and ``manifest.json`` (each file's sha256 and the pack's); return them and the digest."""
    sealed = {**files, "report.json": json.dumps(report, ensure_ascii=False, indent=2).encode()}
    each = digests(sealed)
    digest = pack_digest(each)
    sealed[MANIFEST] = json.dumps({"files": each, "pack_sha256": digest}, indent=2).encode()
    return sealed, digest


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def write_pack(folder: Path, files: dict[str, bytes]) -> None:
    """Write a sealed pack's files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def pack_digest(digests: dict[str, str]) -> str:
    """One digest for the whole pack: sha256 over the sorted ``name  digest`` lines."""
    lines = "".join(f"{name}  {digest}\n" for name, digest in sorted(digests.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def archive_bytes(folder_name: str, files: dict[str, bytes]) -> bytes:
    """A sealed pack as a .tar.gz of one folder, byte-for-byte the same for the same pack."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            archive.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def unarchive(data: bytes) -> dict[str, bytes]:
    """The files of an archive made by ``archive_bytes`` (made by Didban itself: regular files only)."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member) if member.isreg() else None
            if handle is not None:
                files[PurePosixPath(member.name).name] = handle.read()
    return files
