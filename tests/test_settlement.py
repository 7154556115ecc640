"""Month figures from the store, closing, the ledger, exports and the evidence pack's replay."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.config import DidbanConfig
from core.model import Exclusion, MaintenanceWindow, ProbeResult, Status
from core.tracking import is_valid
from didban.exports import export
from didban.pack_reader import replay
from didban.settlement import SHORT_LISTED, close_month, settle, settle_in_parts, snapshot
from sla_calc.closing import due_months
from sla_calc.periods import JalaliMonth
from store.contract import Batch
from store.sql_store import SqliteStore
from store.web_records import WebRecords
from tests.conftest import ARTIFACTS, make_config

MONTH = JalaliMonth(1403, 7)
START, END = MONTH.bounds()
MIN = 60_000
INTERVAL = 5 * MIN  # every 5 minutes keeps a month of results small
NAMES = {"portal": "پورتال اداره کل", "dispatch": "ارسال سند به دستگاه اجرایی یا دستگاه ثالث"}


def config(valid_from: str = "1400-01-01") -> DidbanConfig:
    return make_config(
        [{"id": service, "name": {"fa": name, "en": service.title()}, "interval_seconds": INTERVAL // 1000,
          "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]} for service, name in NAMES.items()],
        agreements=[{"id": "sla", "title": "توافقنامه سطح خدمت آزمایشی", "valid_from": valid_from,
                     "valid_until": "1410-12-29", "target_percent": 99.5, "monthly_base": 2_000_000,
                     "credit_tiers": [{"below": 99.5, "credit_percent": 10}, {"below": 99.0, "credit_percent": 25}]}],
    )


def fill(store: SqliteStore, service: str, downs: list[tuple[int, int]] = (), location: str = "tabriz",  # type: ignore[assignment]
         first: int = -1500, last: int = 43_260) -> None:
    """Results every 5 minutes, minutes relative to the month start; down inside ``downs``."""
    results = []
    for minute in range(first, last, INTERVAL // MIN):
        down = any(a <= minute < b for a, b in downs)
        results.append(ProbeResult(service, location, START + minute * MIN, Status.DOWN if down else Status.UP,
                                   20.0, "http_status" if down else None))
    store.write(Batch(results=results))


AFTER = END + 2 * 3_600_000  # the month has ended


def export_as(store: SqliteStore, fmt: str, out: Path) -> Path:
    [written] = export(config(), store, WebRecords(store.db), snapshot(config(), store, MONTH, AFTER), [fmt], out)
    return written


@pytest.fixture
def store(db_path: Path) -> Any:
    store = SqliteStore(db_path)
    fill(store, "portal", downs=[(600, 900)])  # 300 minutes down: 99.31 %, the 10 % tier
    fill(store, "dispatch")
    yield store
    store.close()


def test_month_figures_from_the_store(store: SqliteStore) -> None:
    settled = settle(config(), store, MONTH)
    portal, dispatch = settled.figures("portal"), settled.figures("dispatch")
    assert portal is not None and dispatch is not None
    assert portal.downtime_ms == 300 * MIN and not portal.met and portal.credit_percent == 10
    assert portal.credit_amount == 200_000
    assert dispatch.availability_percent == 100 and dispatch.met
    assert dispatch.coverage_percent == 100


def test_a_month_outside_every_agreement_is_not_a_pass(store: SqliteStore) -> None:
    settled = settle(config(valid_from="1404-01-01"), store, MONTH)
    assert settled.report.services == ()
    assert settled.json()["no_agreement_in_force"] == ["portal", "dispatch"]


@pytest.mark.parametrize("packaging", ["folder", "zip", "tar.gz"])
def test_an_exported_pack_replays_to_the_report_it_came_with(store: SqliteStore, tmp_path: Path,
                                                             packaging: str) -> None:
    store.add_maintenance(MaintenanceWindow("MW-ON-TIME", ("dispatch",), START + 2000 * MIN, START + 2100 * MIN,
                                            START + 2000 * MIN - 80 * 60 * MIN))
    store.add_maintenance(MaintenanceWindow("MW-LATE", ("portal",), START + 5000 * MIN, START + 5060 * MIN,
                                            START + 5000 * MIN - 10 * 60 * MIN))
    store.add_exclusion(Exclusion("EX-1", ("*",), START + 700 * MIN, START + 750 * MIN, "national link down"), 0)
    settled = settle(config(), store, MONTH)
    folder = export_as(store, "pack", tmp_path)
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report == {k: v for k, v in settled.json().items() if k != "no_agreement_in_force"}
    pack: Path = folder
    if packaging == "zip":
        pack = tmp_path / "pack.zip"
        with zipfile.ZipFile(pack, "w") as archive:
            for file in folder.iterdir():
                archive.write(file, f"{folder.name}/{file.name}")
    elif packaging == "tar.gz":
        pack = tmp_path / "pack.tar.gz"
        with tarfile.open(pack, "w:gz") as archive:
            archive.add(folder, arcname=folder.name)
    replayed = replay(pack, str(MONTH))
    assert replayed.pop("verified") is True
    assert replayed == report
    portal = replayed["services"][0]
    assert portal["service"] == "portal" and portal["late_maintenance"] == ["MW-LATE"]
    assert portal["excluded_minutes"] == 50 and portal["downtime_minutes"] == 250


def test_replay_output_follows_the_contract(store: SqliteStore, tmp_path: Path) -> None:
    folder = export_as(store, "pack", tmp_path)
    done = subprocess.run([sys.executable, "-m", "didban.cli", "sla", "replay", str(folder), "--month", "1403-07"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert list(data) == ["month", "start", "end", "denominator_minutes", "services", "verified"]
    assert data["verified"] is True
    assert data["start"] == "2024-09-21T20:30:00Z" and data["end"] == "2024-10-21T20:30:00Z"
    assert data["denominator_minutes"] == 43200.0
    assert list(data["services"][0]) == ["service", "availability_percent", "downtime_minutes", "excluded_minutes",
                                         "coverage_percent", "target_percent", "met", "credit_percent",
                                         "credit_amount", "late_maintenance", "evidence_sufficient"]
    assert data["services"][0]["availability_percent"] == 100 * (1 - 300 / 43200)


def test_replay_of_a_broken_pack_names_the_problem(tmp_path: Path) -> None:
    (tmp_path / "agreement.json").write_text('{"services": [{"id": "x"}]}', encoding="utf-8")
    (tmp_path / "results.jsonl").write_text("", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "didban.cli", "sla", "replay", str(tmp_path), "--month", "1403-07",
                           "--no-verify"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "agreement.json" in done.stderr


def test_closing_issues_one_credit_per_service_and_is_idempotent(store: SqliteStore) -> None:
    first = close_month(config(), store, MONTH, END + 2 * 3_600_000)
    assert first.closed_now
    assert [(c.service, c.credit_percent, c.amount) for c in first.credits] == [("portal", 10, 200_000)]
    assert is_valid(first.credits[0].tracking_code) and first.credits[0].tracking_code.startswith("CR-")
    again = close_month(config(), store, MONTH, END + 3 * 3_600_000)
    assert not again.closed_now and again.adjustments == [] and again.credits == []
    assert len(store.ledger(str(MONTH))) == 1


def numbered_services(count: int) -> DidbanConfig:
    return make_config(
        [{"id": f"s{i}", "name": {"fa": f"خدمت {i}", "en": f"S{i}"}, "interval_seconds": INTERVAL // 1000,
          "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]} for i in range(count)],
        agreements=[{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                     "target_percent": 99.5}])


def test_settling_in_parts_gives_each_service_the_whole_month_figure(db_path: Path) -> None:
    many = numbered_services(7)
    store = SqliteStore(db_path)
    for i in range(6):  # s6 has no evidence at all
        fill(store, f"s{i}", downs=[(600 * i, 600 * i + 45 * i)], first=0 if i % 2 else -1500,
             last=43_260 - 9000 * (i % 3))
    whole = settle(many, store, MONTH, START + 20 * 86_400_000).report.services
    parts = list(settle_in_parts(many, store, MONTH, START + 20 * 86_400_000, part=3))
    assert parts == list(whole)
    assert len({s.availability_percent for s in parts}) > 3  # the services differ: a mix-up would show
    store.close()


def test_a_refusal_names_the_first_short_services_and_counts_the_rest(db_path: Path) -> None:
    many = numbered_services(SHORT_LISTED + 5)
    store = SqliteStore(db_path)
    with pytest.raises(ValueError, match=r"for s0 \(0.00 % covered\), s1 .* and 5 more services:"):
        close_month(many, store, MONTH, AFTER)
    store.close()


def test_a_month_cannot_be_closed_before_it_ends(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="has not ended"):
        close_month(config(), store, MONTH, END - 1)


def test_a_month_without_sufficient_evidence_is_not_met_and_needs_acceptance_to_close(db_path: Path) -> None:
    thin = SqliteStore(db_path)
    fill(thin, "portal", first=0, last=3000)  # about two days of a 30-day month, all up
    fill(thin, "dispatch")
    portal = settle(config(), thin, MONTH).figures("portal")
    assert portal is not None and portal.met and not portal.evidence_sufficient  # §5's met; not shown as met
    assert portal.verdict == "insufficient_evidence"
    with pytest.raises(ValueError, match="insufficient evidence for portal"):
        close_month(config(), thin, MONTH, AFTER)
    assert thin.month_close(str(MONTH)) is None
    outcome = close_month(config(), thin, MONTH, AFTER, accept_insufficient_evidence=True)
    assert outcome.closed_now and outcome.accepted_insufficient == ("portal",)
    closed = thin.month_close(str(MONTH))
    assert closed is not None
    assert [a["service"] for a in closed[1]["accepted_insufficient_evidence"]] == ["portal"]
    thin.close()


def test_a_closed_month_exports_from_its_archived_pack_after_raw_results_are_gone(
        store: SqliteStore, tmp_path: Path) -> None:
    outcome = close_month(config(), store, MONTH, AFTER)
    closed = store.month_close(str(MONTH))
    assert closed is not None and len(outcome.pack_sha256) == 64
    assert outcome.credits[0].pack_sha256 == outcome.pack_sha256 == store.month_pack(str(MONTH))
    for service in NAMES:  # retention drops every raw result of the month
        store.compact(service, "tabriz", END + 10 * 86_400_000, INTERVAL, 2)
    assert store.results("portal", START, END) == []
    later = END + 400 * 86_400_000
    snap = snapshot(config(), store, MONTH, later)
    assert snap.archived and snap.digest == outcome.pack_sha256
    written = export(config(), store, WebRecords(store.db), snap, ["pack", "json", "csv"], tmp_path)
    assert json.loads(written[1].read_text(encoding="utf-8"))["evidence_pack_sha256"] == outcome.pack_sha256
    assert outcome.pack_sha256 in written[2].read_text(encoding="utf-8-sig")
    replayed = replay(written[0], str(MONTH))
    assert replayed["services"] == closed[1]["services"]


def test_every_format_of_one_export_carries_the_same_digest(store: SqliteStore, tmp_path: Path) -> None:
    snap = snapshot(config(), store, MONTH, AFTER)
    pack, model, table = export(config(), store, WebRecords(store.db), snap, ["pack", "json", "csv"], tmp_path)
    manifest = json.loads((pack / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["pack_sha256"] == snap.digest
    assert json.loads(model.read_text(encoding="utf-8"))["evidence_pack_sha256"] == snap.digest
    assert snap.digest in table.read_text(encoding="utf-8-sig")
    assert snapshot(config(), store, MONTH, AFTER + 60_000).digest == snap.digest  # same evidence, same digest


def test_a_closed_month_is_immutable(store: SqliteStore, db_path: Path) -> None:
    close_month(config(), store, MONTH, END + 1)
    with sqlite3.connect(db_path) as connection, pytest.raises(sqlite3.IntegrityError, match="immutable"):
        connection.execute("UPDATE month_closes SET report = '{}'")
    with sqlite3.connect(db_path) as connection, pytest.raises(sqlite3.IntegrityError, match="immutable"):
        connection.execute("DELETE FROM ledger")


def test_late_evidence_becomes_an_adjustment_not_a_rewrite(store: SqliteStore) -> None:
    original = close_month(config(), store, MONTH, END + 1).credits[0]
    closed_report = store.month_close(str(MONTH))
    # An exclusion approved after the close covers the whole outage: the credit is no longer owed.
    store.add_exclusion(Exclusion("EX-LATE", ("portal",), START + 600 * MIN, START + 900 * MIN,
                                  "telecom outage confirmed by the provincial operator"), END + 10)
    outcome = close_month(config(), store, MONTH, END + 20)
    assert not outcome.closed_now
    [adjustment] = outcome.adjustments
    assert adjustment.kind == "adjustment" and adjustment.adjusts == original.tracking_code
    assert adjustment.credit_percent == 0 and adjustment.amount == -200_000
    assert adjustment.availability_percent == 100
    assert store.month_close(str(MONTH)) == closed_report  # the original report is untouched
    assert close_month(config(), store, MONTH, END + 30).adjustments == []  # nothing new: no-op


def test_due_months_wait_for_the_grace_period() -> None:
    grace = 60 * MIN
    assert due_months(END + grace - 1, grace)[:1] != [MONTH]
    assert due_months(END + grace, grace)[0] == MONTH


async def test_the_engine_closes_due_months_by_itself(store: SqliteStore) -> None:
    from didban.engine import Engine

    engine = Engine(config(), store, "tabriz", clock=lambda: (END + 2 * 3_600_000) / 1000)
    await engine.collector.start()
    done = await engine.settle_due()
    await engine.collector.stop()
    assert str(MONTH) in done
    assert store.month_close(str(MONTH)) is not None
    assert [c.service for c in store.ledger(str(MONTH))] == ["portal"]


async def test_a_month_short_of_evidence_is_tried_again_hourly(db_path: Path) -> None:
    from didban.engine import INSUFFICIENT_RETRY_MS, Engine

    store = SqliteStore(db_path)
    fill(store, "portal", last=10_000)  # a week of a month: too little to close
    fill(store, "dispatch")
    now = [AFTER]
    engine = Engine(config(), store, "tabriz", clock=lambda: now[0] / 1000)
    await engine.collector.start()
    try:
        assert await engine.settle_due() == []  # short: not closed
        fill(store, "portal", first=10_000)  # the rest arrives (an agent's backlog drained)
        now[0] += INSUFFICIENT_RETRY_MS - 1
        assert await engine.settle_due() == []  # not tried again within the hour
        now[0] += 1
        assert str(MONTH) in await engine.settle_due()  # an hour on: tried, and closed
    finally:
        await engine.collector.stop()
        store.close()


# -- export formats ----------------------------------------------------------------------


def test_csv_export_has_a_bom_and_persian_names(store: SqliteStore, tmp_path: Path) -> None:
    path = export_as(store, "csv", tmp_path)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0]["name_fa"] == NAMES["portal"] and rows[0]["verdict"] == "missed"
    assert rows[0]["availability_display"] == "99.30"  # 99.305…, truncated
    assert "evidence pack sha256" in data.decode("utf-8-sig")


def test_xlsx_export_has_a_summary_and_a_sheet_per_agency(store: SqliteStore, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = export_as(store, "xlsx", tmp_path)
    book = load_workbook(path)
    assert book.sheetnames == ["summary", "agency"]
    sheet = book["agency"]
    assert sheet.sheet_view.rightToLeft
    assert [cell.value for cell in sheet[2]][:3] == ["agency", "portal", NAMES["portal"]]


def test_json_export_carries_the_details(store: SqliteStore, tmp_path: Path) -> None:
    path = export_as(store, "json", tmp_path)
    model = json.loads(path.read_text(encoding="utf-8"))
    portal = model["agencies"][0]["services"][0]
    assert portal["outages"][0]["minutes"] == 300 and portal["outages"][0]["start_jalali"].startswith("1403/07/01")
    assert portal["outages"][0]["locations"] == ["tabriz"]  # where the outage was seen from
    assert len(model["evidence_pack_sha256"]) == 64


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils is installed by scripts/test.sh")
def test_pdf_export_is_persian_rtl_with_the_digest_on_every_page(store: SqliteStore, tmp_path: Path) -> None:
    close_month(config(), store, MONTH, END + 1)
    path = export_as(store, "pdf", tmp_path)
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    for name in NAMES.values():
        assert name in text, f"{name} not found in logical order"
    assert "۱۴۰۳" in text  # Jalali year in Persian digits
    digest = json.loads(export_as(store, "json", tmp_path).read_text(encoding="utf-8"))["evidence_pack_sha256"]
    pages = text.split("\f")
    assert all(digest in page for page in pages if page.strip())
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(path),
                    str(ARTIFACTS / "sla-report-page")], check=True, timeout=60)
    assert any(ARTIFACTS.glob("sla-report-page*.png"))


def test_cli_month_close_credits_and_export(store: SqliteStore, db_path: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config().model_dump()), encoding="utf-8")  # JSON is YAML

    def didban(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "didban.cli", *args, "--config", str(config_file),
                               "--db", str(db_path)], capture_output=True, text=True, timeout=120, check=False)

    shown = didban("sla", "month", "1403-07")
    assert shown.returncode == 0, shown.stderr
    assert "portal" in shown.stdout and "MISSED" in shown.stdout and "99.30" in shown.stdout
    closed = didban("sla", "close", "1403-07")
    assert closed.returncode == 0 and "1 credit(s)" in closed.stdout
    assert "already closed; nothing changed" in didban("sla", "close", "1403-07").stdout
    ledger = json.loads(didban("sla", "credits", "--month", "1403-07", "--json").stdout)
    assert [(e["service"], e["kind"], e["credit_percent"]) for e in ledger] == [("portal", "credit", 10)]
    exported = didban("sla", "export", "--month", "1403-07", "--format", "csv", "--out", str(tmp_path / "out"))
    assert exported.returncode == 0 and exported.stdout.splitlines()[0].endswith(".csv")
    assert exported.stdout.splitlines()[-1].startswith("evidence pack sha256: ")
    assert ".csv written" in exported.stderr  # progress, file by file, on stderr
    bad = didban("sla", "month", "1403-13")
    assert bad.returncode != 0 and "YYYY-MM" in bad.stderr


def test_maintenance_announced_through_the_cli_uses_the_servers_clock(db_path: Path, tmp_path: Path) -> None:
    SqliteStore(db_path).close()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config().model_dump()), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "didban.cli", "maintenance", "--config", str(config_file), "--db",
                           str(db_path), "add", "--services", "portal", "--start", "2099-01-01T02:00:00+03:30",
                           "--end", "2099-01-01T04:00:00+03:30"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "meets the 72-hour notice" in done.stdout
    late = subprocess.run([sys.executable, "-m", "didban.cli", "maintenance", "--config", str(config_file), "--db",
                           str(db_path), "add", "--services", "nope", "--start", "2099-01-01T02:00:00+03:30",
                           "--end", "2099-01-01T04:00:00+03:30"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert late.returncode != 0 and "unknown services" in late.stderr
    store = SqliteStore(db_path)
    [window] = store.maintenance()
    store.close()
    import time

    assert abs(window.announced_at_ms - time.time() * 1000) < 60_000



# -- materialized segments: the fast path gives the same figures ---------------------------


def figures(store: SqliteStore) -> list[tuple[str, float, int, int]]:
    report = settle(config(), store, MONTH).report
    return [(s.service, s.availability_percent, s.downtime_ms, s.covered_ms) for s in report.services]


def test_materialized_segments_give_the_same_month_as_raw_results(store: SqliteStore) -> None:
    fill(store, "portal", downs=[(20_000, 20_030)], location="mashhad")  # a second location
    before = figures(store)
    for cut_minute in (500, 700, 20_010, 30_000, 43_300):  # inside outages and between them
        for location in ("tabriz", "mashhad"):
            store.materialize("portal", location, START + cut_minute * MIN, INTERVAL, 2)
        store.materialize("dispatch", "tabriz", START + cut_minute * MIN, INTERVAL, 2)
        assert figures(store) == before, cut_minute
    assert store.horizon("portal", "tabriz") is not None


def test_a_late_result_before_the_horizon_is_counted(store: SqliteStore, db_path: Path) -> None:
    store.materialize("dispatch", "tabriz", END, INTERVAL, 2)
    # Three late failures of dispatch arrive (from a second probe run that was cut off), between
    # the up at minute 3000 and the up at 3005: an outage from 3000 min + 1 s to 3005 min.
    late = [ProbeResult("dispatch", "tabriz", START + 3000 * MIN + i * 1000, Status.DOWN, 1.0, "timeout")
            for i in (1, 2, 3)]
    store.write(Batch(results=late))
    materialized = figures(store)
    fresh = SqliteStore(db_path)
    with sqlite3.connect(db_path) as connection:
        connection.execute("DELETE FROM segments")
        connection.execute("DELETE FROM horizons")
    recomputed = figures(SqliteStore(db_path))
    fresh.close()
    assert materialized == recomputed
    dispatch = next(f for f in materialized if f[0] == "dispatch")
    assert dispatch[2] == 5 * MIN - 1000


def test_retention_compaction_keeps_the_month_and_its_replay(store: SqliteStore, tmp_path: Path) -> None:
    before = figures(store)
    removed = sum(store.compact(s, "tabriz", START - 60 * MIN, INTERVAL, 2) for s in NAMES)
    assert removed > 0
    assert figures(store) == before
    folder = export_as(store, "pack", tmp_path)
    assert replay(folder, str(MONTH))["services"] == json.loads((folder / "report.json").read_text())["services"]
