"""Monthly compliance exports for the inspection office: json, csv, xlsx, pdf, pack.

Every format is rendered from one model (``build_model``), and the model is
built from one ``Snapshot``: the figures computed from exactly the evidence
pack whose digest every format carries.  A closed month's snapshot is the
pack archived at close, so its exports carry the same digest for years;
anyone can re-derive the figures with ``didban sla replay``.

Rendering (``render``) is pure — a model in, bytes out — so the service runs
it in another process, off the event loop that measures.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import DidbanConfig
from core.model import iso_utc
from core.timefmt import jalali, persian_digits
from didban.evidence import archive_bytes, maintenance_to_json, tail_end, write_pack
from didban.settlement import SettledMonth, Snapshot, observers, snapshot
from sla_calc.month import truncate_percent
from sla_calc.periods import JalaliMonth
from store.contract import Store, WebRecordStore

FONTS = Path(__file__).resolve().parent / "fonts"
FORMATS = ("json", "csv", "xlsx", "pdf", "pack")


def build_model(config: DidbanConfig, store: Store, records: WebRecordStore, settled: SettledMonth,
                digest: str) -> dict[str, Any]:
    """Everything every format shows, from one settled month (a snapshot's, for exports)."""
    month = settled.month
    report = settled.report
    ledger = store.ledger(str(month))
    closed = store.month_close(str(month))
    receipts = records.receipts(report.start_ms, report.end_ms)
    agencies = []
    for agency in config.agencies:
        rows = []
        for service in agency.services:
            figures = settled.figures(service.id)
            agreement = settled.terms.agreements.get(service.id)
            if figures is None or agreement is None:
                continue
            rows.append({
                "id": service.id,
                "name_fa": service.name.fa,
                "name_en": service.name.en,
                "agreement": {"id": agreement.id, "title": agreement.title, "valid_from": agreement.valid_from,
                              "valid_until": agreement.valid_until},
                "availability_percent": figures.availability_percent,
                "availability_display": truncate_percent(figures.availability_percent),
                "target_percent": figures.target_percent,
                "met": figures.met,
                "verdict": figures.verdict,
                "evidence_sufficient": figures.evidence_sufficient,
                "downtime_minutes": round(figures.downtime_ms / 60_000, 3),
                "excluded_minutes": round(figures.excluded_ms / 60_000, 3),
                "exclusion_reasons": list(figures.exclusion_reasons),
                "coverage_percent": round(figures.coverage_percent, 3),
                "outages": [
                    {"start": iso_utc(o.start_ms), "end": iso_utc(o.end_ms), "start_jalali": jalali(o.start_ms),
                     "end_jalali": jalali(o.end_ms), "minutes": round((o.end_ms - o.start_ms) / 60_000, 3),
                     "excluded_minutes": round(o.excluded_ms / 60_000, 3),
                     "locations": observers(store, service, o.start_ms, o.end_ms)}  # the cities that saw it
                    for o in figures.outages
                ],
                "late_maintenance": [{"id": late.id, "hours_short": late.hours_short}
                                     for late in figures.late_maintenance],
                "credit_percent": figures.credit_percent,
                "credit_amount": figures.credit_amount,
                "tracking_codes": [entry.tracking_code for entry in ledger if entry.service == service.id],
                "receipts": [{"code": r.code, "state": r.state, "probe_confirmed": r.probe_confirmed}
                             for r in receipts if r.service == service.id],
            })
        if rows:
            agencies.append({"id": agency.id, "name_fa": agency.name.fa, "name_en": agency.name.en,
                             "services": rows})
    low, high = month.start_ms(), tail_end(month, settled.terms.terms)
    return {
        "month": str(month),
        "start": iso_utc(report.start_ms),
        "end": iso_utc(report.end_ms),
        "start_jalali": jalali(report.start_ms),
        "end_jalali": jalali(report.end_ms),
        "denominator_minutes": report.denominator_ms / 60_000,
        "month_basis": settled.terms.terms.month_basis,
        "closed": closed is not None,
        "closed_at": iso_utc(closed[0]) if closed else None,
        "closed_at_jalali": jalali(closed[0]) if closed else None,
        "as_of": iso_utc(settled.as_of_ms) if settled.as_of_ms is not None else None,
        "as_of_jalali": jalali(settled.as_of_ms) if settled.as_of_ms is not None else None,
        "insufficient_evidence": [s.service for s in report.services if not s.evidence_sufficient],
        "agencies": agencies,
        "no_agreement_in_force": settled.terms.not_in_force,
        "maintenance": [maintenance_to_json(m) for m in store.maintenance(low, high)],
        "evidence_pack_sha256": digest,
    }


# -- formats ------------------------------------------------------------------------------

CSV_COLUMNS = ("agency", "service", "name_fa", "name_en", "availability_display", "availability_percent",
               "target_percent", "verdict", "downtime_minutes", "excluded_minutes", "exclusion_reasons",
               "coverage_percent", "late_maintenance", "credit_percent", "credit_amount", "tracking_codes",
               "fault_receipts", "agreement")


def _flat_rows(model: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for agency in model["agencies"]:
        for service in agency["services"]:
            rows.append({
                "agency": agency["id"], "service": service["id"], "name_fa": service["name_fa"],
                "name_en": service["name_en"], "availability_display": service["availability_display"],
                "availability_percent": service["availability_percent"],
                "target_percent": service["target_percent"], "verdict": service["verdict"],
                "downtime_minutes": service["downtime_minutes"], "excluded_minutes": service["excluded_minutes"],
                "exclusion_reasons": "; ".join(service["exclusion_reasons"]),
                "coverage_percent": service["coverage_percent"],
                "late_maintenance": " ".join(m["id"] for m in service["late_maintenance"]),
                "credit_percent": service["credit_percent"], "credit_amount": service["credit_amount"],
                "tracking_codes": " ".join(service["tracking_codes"]),
                "fault_receipts": " ".join(r["code"] for r in service["receipts"]),
                "agreement": service["agreement"]["id"],
            })
    return rows


def to_json(model: dict[str, Any]) -> bytes:
    return json.dumps(model, ensure_ascii=False, indent=2).encode()


def to_csv(model: dict[str, Any]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(_flat_rows(model))
    buffer.write(f"# evidence pack sha256: {model['evidence_pack_sha256']}\n")
    # The BOM makes Excel read the file as UTF-8, so Persian names show correctly.
    return "\ufeff".encode() + buffer.getvalue().encode()


def to_xlsx(model: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "summary"
    summary.sheet_view.rightToLeft = True
    summary.append(["ماه", model["month"], "از", model["start_jalali"], "تا", model["end_jalali"]])
    summary.append(["evidence pack sha256", model["evidence_pack_sha256"]])
    summary.append([])
    header = ["agency", "services", "met", "missed", "insufficient evidence", "credits (sum of amounts)"]
    summary.append(header)
    for cell in summary[summary.max_row]:
        cell.font = Font(bold=True)
    for agency in model["agencies"]:
        services = agency["services"]
        verdicts = [s["verdict"] for s in services]
        summary.append([agency["name_fa"], len(services), verdicts.count("met"), verdicts.count("missed"),
                        verdicts.count("insufficient_evidence"), sum(s["credit_amount"] for s in services)])
    for agency in model["agencies"]:
        sheet = book.create_sheet(agency["id"][:31])
        sheet.sheet_view.rightToLeft = True
        sheet.append(list(CSV_COLUMNS))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in _flat_rows({"agencies": [agency]}):
            sheet.append([row[column] for column in CSV_COLUMNS])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def to_pdf(model: dict[str, Any]) -> bytes:
    import jinja2
    from weasyprint import HTML

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
    )
    environment.filters["fa"] = lambda value: persian_digits(str(value))
    environment.filters["pct"] = lambda value: persian_digits(truncate_percent(float(value)))
    # Dates and months (digits with / or -) keep their order inside right-to-left text: a left-to-right
    # isolate (U+2066 … U+2069) around them, which Pango's bidi honours (WeasyPrint ignores unicode-bidi).
    environment.filters["ltr"] = lambda value: f"\u2066{value}\u2069"
    html = environment.get_template("sla_report.html").render(model=model, font_dir=FONTS.as_uri())
    return bytes(HTML(string=html, base_url=str(FONTS)).write_pdf())


RENDERERS: dict[str, tuple[str, Callable[[dict[str, Any]], bytes]]] = {
    "json": ("json", to_json),
    "csv": ("csv", to_csv),
    "xlsx": ("xlsx", to_xlsx),
    "pdf": ("pdf", to_pdf),
}


def parse_formats(text: str) -> list[str]:
    """``pdf``, ``pdf,xlsx,pack`` or ``all`` → the formats, in the order given."""
    formats = list(FORMATS) if text.strip() == "all" else [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown format {', '.join(unknown) or text!r}: expected one or more of "
                         f"{', '.join(FORMATS)} (comma-separated), or all")
    return list(dict.fromkeys(formats))


def render(fmt: str, model: dict[str, Any]) -> bytes:
    """One format's bytes from the model (pure, so it can run in another process)."""
    return RENDERERS[fmt][1](model)


def file_name(month: str, fmt: str) -> str:
    return f"didban-evidence-{month}" if fmt == "pack" else f"didban-sla-{month}.{RENDERERS[fmt][0]}"


def export(config: DidbanConfig, store: Store, records: WebRecordStore, snap: Snapshot, formats: list[str], out: Path,
           renderer: Callable[[str, dict[str, Any]], bytes] = render,
           progress: Callable[[Path], None] = lambda written: None) -> list[Path]:
    """Write the month's exports into ``out``, every format from the one snapshot; return what was written
    (``progress`` hears of each file as it is done)."""
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(config, store, records, snap.settled, snap.digest)
    written = []
    for fmt in formats:
        target = out / file_name(str(snap.settled.month), fmt)
        if fmt == "pack":
            write_pack(target, snap.files)
        else:
            target.write_bytes(renderer(fmt, model))
        written.append(target)
        progress(target)
    return written


def export_one(config: DidbanConfig, store: Store, records: WebRecordStore, month: JalaliMonth, fmt: str,
               now_ms: int, renderer: Callable[[str, dict[str, Any]], bytes] = render) -> tuple[str, bytes, str]:
    """One format of the month as (file name, bytes, pack digest); a pack comes as a .tar.gz of its folder."""
    snap = snapshot(config, store, month, now_ms)
    if fmt == "pack":
        return f"{snap.folder_name}.tar.gz", archive_bytes(snap.folder_name, snap.files), snap.digest
    model = build_model(config, store, records, snap.settled, snap.digest)
    return file_name(str(month), fmt), renderer(fmt, model), snap.digest
