"""The store contract: every test here runs against both backends, SQLite and a real PostgreSQL.

The PostgreSQL server is Debian's, started for the session in a temporary
directory on a free loopback port (as ``nobody`` when the tests run as
root); each test gets a database of its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from core.model import Credit, Exclusion, MaintenanceWindow, ProbeResult, Status
from didban.settlement import close_month, settle
from sla_calc.derive import TrackerState, derive_segments
from store.backend import Backend
from store.contract import Batch, Notice, OutageChange, StoreUnavailable, TooManyCodes
from store.database import ROWS_PER_INSERT
from store.schema import SCHEMA_HEAD, SchemaTooNew, current_revision, known_revisions
from tests.postgres import Cluster, postgres_cluster  # noqa: F401 - the session's PostgreSQL
from tests.test_settlement import END, MIN, MONTH, START, config, fill

INTERVAL = 30_000


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend(path=tmp_path / "didban.sqlite")
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    return Backend(conninfo=cluster.url(cluster.new_database()), password=cluster.password)


@pytest.fixture
def store(backend: Backend) -> Iterator[Any]:
    store = backend.store()
    yield store
    store.close()


def raw(backend: Backend, sql: str) -> None:
    """A statement sent past the store's code, as a careless script or a DBA would."""
    db = backend.database()
    try:
        db.execute(sql)
    finally:
        db.close()


def run_of(pattern: str, service: str = "portal", location: str = "tabriz",
           start: int = 1_000_000) -> list[ProbeResult]:
    status = {"U": Status.UP, "D": Status.DOWN, "?": Status.UNKNOWN}
    return [ProbeResult(service, location, start + i * INTERVAL, status[c], 10.0 + i, None if c == "U" else "timeout")
            for i, c in enumerate(pattern)]


# -- the hot path ----------------------------------------------------------------------


def test_an_agents_batch_is_stored_once_however_often_it_is_sent(backend: Backend) -> None:
    results = run_of("UUDDU", location="shiraz")
    numbered = list(enumerate(results, start=1))
    store = backend.store()
    assert store.ingest("shiraz", numbered[:3], 5_000) == (3, 3)
    assert store.ingest("shiraz", numbered[:3], 6_000) == (3, 0)  # sent again: nothing new
    assert store.ingest("shiraz", numbered[1:], 7_000) == (5, 2)  # overlapping: only what it did not hold
    assert store.ingest("shiraz", [], 8_000) == (5, 0)
    assert store.results("portal", 0, 2**62) == results
    [progress] = store.agents()
    assert (progress.location, progress.last_seq, progress.last_result_ms, progress.last_ingest_ms) == \
        ("shiraz", 5, results[-1].ts_ms, 8_000)
    store.close()
    # A second process (another center) sending the same batch stores nothing either.
    other = backend.store()
    assert other.ingest("shiraz", numbered, 9_000) == (5, 0)
    assert other.count_results() == 5
    other.close()


def test_a_late_result_stored_by_another_process_is_counted_after_a_materialization(backend: Backend) -> None:
    """Two centers: one materializes segments, the other stores an agent's late result behind them."""
    first, second = backend.store(), backend.store()  # each with its own caches, as two processes
    # Results with a gap (the agent that saw it was cut off), materialized by the first store.
    first.write(Batch(results=run_of("UU") + run_of("UUU", start=1_000_000 + 7 * INTERVAL)))
    second.write(Batch(results=run_of("U", start=1_000_000 + 20 * INTERVAL)))  # second now knows the pair
    assert first.materialize("portal", "tabriz", 1_000_000 + 9 * INTERVAL, INTERVAL, 2) > 0
    late = run_of("DDD", start=1_000_000 + 2 * INTERVAL)  # the gap, reported late through the other store
    assert second.ingest("tabriz", list(enumerate(late, start=1)), 5) == (3, 3)
    for store in (first, second):
        down = [(s, e) for s, e, d in store.period_segments("portal", "tabriz", 0, 2**40, INTERVAL, 2) if d]
        assert down and down[0][0] == late[0].ts_ms, store  # the late run counts, whoever reads
    first.close()
    second.close()


def test_the_stream_of_results_is_in_stored_order_and_its_position_commits_with_the_batch(backend: Backend) -> None:
    store = backend.store()
    store.write(Batch(results=run_of("UUU")))
    store.ingest("shiraz", list(enumerate(run_of("DD", location="shiraz"), start=1)), 1)
    feed = backend.feed()
    rows = feed.results_after(0, 0, 100)
    assert [r.location for _, r in rows] == ["tabriz"] * 3 + ["shiraz"] * 2
    assert feed.newest() == rows[-1][0]
    store.write(Batch(cursor=("derive", rows[2][0])))
    assert feed.position("derive") == rows[2][0]
    feed.close()
    store.close()


def test_results_read_back_exactly_in_and_out_of_order(store: Any) -> None:
    written = [*run_of("UUD?U"), ProbeResult("portal", "tabriz", 10**9, Status.UP, 3.25, None, "ok", 200, 42.5)]
    scrambled = [written[3], written[0], written[5], written[1], written[4], written[2]]
    store.write(Batch(results=scrambled[:3]))
    store.write(Batch(results=scrambled[3:]))
    assert store.results("portal", 0, 10**13) == written  # in time order, whatever order they came in
    assert store.count_results() == 6
    assert store.missing(written + run_of("U", start=5)) == run_of("U", start=5)
    assert store.results("nobody", 0, 10**13) == []


@pytest.mark.parametrize("count", [ROWS_PER_INSERT - 1, ROWS_PER_INSERT, 2 * ROWS_PER_INSERT + 37])
def test_a_batch_of_any_size_is_stored_whole_and_in_order(store: Any, count: int) -> None:
    """Rows go in statements of ROWS_PER_INSERT and a remainder: every one arrives, each value intact."""
    written = [ProbeResult(f"s{i % 7}", "tabriz", 1_000_000 + i, (Status.UP, Status.DOWN, Status.UNKNOWN)[i % 3],
                           i / 8, None if i % 3 == 0 else "http_status", f"detail {i}" if i % 3 else "",
                           200 + i % 3, None if i % 2 else i / 4)
               for i in range(count)]
    store.write(Batch(results=written))
    assert store.count_results() == count
    assert [r for i in range(7) for r in store.results(f"s{i}", 0, 10**13)] == sorted(
        written, key=lambda r: (int(r.service[1:]), r.ts_ms))


def test_latest_states_and_trackers_of_many_services_are_stored_and_updated_whole(backend: Backend) -> None:
    """Latest states and trackers go in statements of ROWS_PER_INSERT too, each updating what is stored."""
    services = [f"s{i}" for i in range(2 * ROWS_PER_INSERT + 37)]
    store = backend.store()
    for round_, status in enumerate((Status.DOWN, Status.UP)):  # the second round updates every row
        at = 1_000_000 + round_ * INTERVAL
        store.write(Batch(results=[ProbeResult(s, "tabriz", at + i, status, 1.0) for i, s in enumerate(services)],
                          trackers={(s, "tabriz"): TrackerState(at + i, 1_000_000, 1 + round_ + i, at + i, i % 2 == 0)
                                    for i, s in enumerate(services)}))
    store.close()
    reopened = backend.store()
    states, trackers = reopened.states(), reopened.tracker_states()
    reopened.close()
    assert {s: (states[s].status, states[s].since_ms, states[s].last_check_ms) for s in services} == {
        s: (Status.UP, 1_000_000 + INTERVAL + i, 1_000_000 + INTERVAL + i) for i, s in enumerate(services)}
    assert trackers == {(s, "tabriz"): TrackerState(1_000_000 + INTERVAL + i, 1_000_000, 2 + i,
                                                    1_000_000 + INTERVAL + i, i % 2 == 0)
                        for i, s in enumerate(services)}


def test_latest_state_and_its_since_survive_a_reopen(backend: Backend) -> None:
    store = backend.store()
    store.write(Batch(results=run_of("UUDD")))
    store.close()
    reopened = backend.store()
    state = reopened.states()["portal"]
    reopened.close()
    assert state.status is Status.DOWN and state.since_ms == 1_000_000 + 2 * INTERVAL
    assert state.last_check_ms == 1_000_000 + 3 * INTERVAL and state.locations == {"tabriz": Status.DOWN}


def test_outages_open_once_close_with_their_code_and_resume(backend: Backend) -> None:
    store = backend.store()
    [opened] = store.write(Batch(results=run_of("DD"), changes=[OutageChange("portal", 1_000_000, True, "timeout")]))
    assert opened.end_ms is None and opened.tracking_code.startswith("OT")
    assert store.write(Batch(changes=[OutageChange("portal", 1_000_000, True, "timeout")])) == []  # never twice
    store.close()
    again = backend.store()  # a restart
    assert again.open_outages()["portal"].tracking_code == opened.tracking_code
    [closed] = again.write(Batch(changes=[OutageChange("portal", 2_000_000, False)]))
    assert (closed.id, closed.tracking_code, closed.end_ms) == (opened.id, opened.tracking_code, 2_000_000)
    assert again.open_outages() == {}
    assert [o.tracking_code for o in again.outages("portal", 0, 10**13)] == [opened.tracking_code]
    again.close()


def test_trackers_resume_after_kill_9(backend: Backend, tmp_path: Path) -> None:
    """A writer process killed with SIGKILL: what it committed is all there, trackers and outage included."""
    url = str(backend.path) if backend.path is not None else backend.conninfo
    env = {"DIDBAN_STORE_PASSWORD": backend.password or "", "PATH": "/usr/bin:/bin"}
    writer = subprocess.Popen([sys.executable, "-m", "tests.store_writer", str(url)], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert writer.stdout is not None
    committed = 0
    for line in writer.stdout:
        committed = int(line.split()[1])
        if committed >= 25:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    writer.stdout.close()
    store = backend.store()
    stored = store.count_results()
    assert committed <= stored <= committed + 1  # at most the batch in flight when the kill came
    tracker = store.tracker_states()[("portal", "tabriz")]
    assert tracker == TrackerState(1_000_000 + (stored - 1) * INTERVAL, 1_000_000 + 5 * INTERVAL, stored - 5,
                                   1_000_000 + (stored - 1) * INTERVAL, True)
    [outage] = store.open_outages().values()
    assert outage.start_ms == 1_000_000 + 5 * INTERVAL
    store.close()


def merged(segments: list[tuple[int, int, bool]]) -> list[tuple[int, int, bool]]:
    """Adjacent segments of the same kind as one: stored segments end at the horizon, derivation goes on from it."""
    out: list[tuple[int, int, bool]] = []
    for start, end, down in sorted(segments):
        if out and out[-1][2] == down and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], end), down)
        else:
            out.append((start, end, down))
    return out


def test_segments_and_horizons_give_the_figures_of_the_raw_results(store: Any) -> None:
    pattern = "UUDDDUUDUU??UDDUUUUDDDDU"
    results = run_of(pattern)
    store.write(Batch(results=results))
    derived = derive_segments([(r.ts_ms, r.status) for r in results], INTERVAL, 2)
    assert store.materialize("portal", "tabriz", 1_000_000 + 16 * INTERVAL, INTERVAL, 2) > 0
    assert merged(store.period_segments("portal", "tabriz", 0, 10**13, INTERVAL, 2)) == merged(derived)
    # A late down result before the horizon: what it may change is derived again.
    late = ProbeResult("portal", "tabriz", 1_000_000 + 6 * INTERVAL + 1, Status.DOWN, 1.0, "timeout")
    store.write(Batch(results=[late]))
    with_late = derive_segments(sorted((r.ts_ms, r.status) for r in [*results, late]), INTERVAL, 2)
    assert merged(store.period_segments("portal", "tabriz", 0, 10**13, INTERVAL, 2)) == merged(with_late)
    assert store.locations_of("portal") == ["tabriz"]


def test_many_periods_read_together_equal_each_read_alone(store: Any) -> None:
    store.write(Batch(results=run_of("UUDDDUUDUU") + run_of("UDDU", location="tehran") + run_of("DDDU", "dispatch")))
    store.materialize("portal", "tabriz", 1_000_000 + 6 * INTERVAL, INTERVAL, 2)
    pairs = [("portal", "tabriz", INTERVAL, 2), ("nobody", "tabriz", INTERVAL, 2), ("portal", "tehran", INTERVAL, 2),
             ("dispatch", "tabriz", INTERVAL, 3)]
    alone = [store.period_segments(s, loc, 0, 10**13, interval, threshold) for s, loc, interval, threshold in pairs]
    assert store.period_segments_many(pairs, 0, 10**13) == alone
    assert alone[1] == [] and any(down for _, _, down in alone[3])


def test_a_month_report_of_many_services_reads_the_same_segments(store: Any) -> None:
    """From 64 (service, location) on, stored segments are read in one query: the same answer."""
    pairs = []
    for i in range(70):
        store.write(Batch(results=run_of("UUDDDUUDUU?UDD"[: 6 + i % 8], service=f"svc-{i}")))
        if i % 3 == 0:
            store.materialize(f"svc-{i}", "tabriz", 1_000_000 + 5 * INTERVAL, INTERVAL, 2)
        pairs.append((f"svc-{i}", "tabriz", INTERVAL, 2))
    pairs.append(("nobody", "tabriz", INTERVAL, 2))
    alone = [store.period_segments(s, loc, 0, 10**13, interval, threshold) for s, loc, interval, threshold in pairs]
    assert store.period_segments_many(pairs, 0, 10**13) == alone


def test_retention_compacts_raw_results_and_keeps_the_downtime(store: Any) -> None:
    results = run_of("UUDDDUUDUU??UDDUUUU")
    store.write(Batch(results=results))
    before = derive_segments([(r.ts_ms, r.status) for r in results], INTERVAL, 2)
    removed = store.compact("portal", "tabriz", 1_000_000 + 15 * INTERVAL, INTERVAL, 2)
    assert removed > 0 and store.count_results() == len(results) - removed
    after = store.period_segments("portal", "tabriz", 0, 10**13, INTERVAL, 2)

    def down(segments: list[tuple[int, int, bool]]) -> int:
        return sum(end - start for start, end, is_down in segments if is_down)

    assert down(after) == down(before)


def test_a_store_that_cannot_be_reached_is_unavailable_not_an_error(tmp_path: Path) -> None:
    from store.database import PostgresDatabase

    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
        PostgresDatabase("postgresql://didban@127.0.0.1:9/didban", password="secret-password", connect_timeout_s=2)
    with pytest.raises(StoreUnavailable):
        Backend(path=tmp_path / "no" / "such" / "dir" / "didban.sqlite").store()


# -- SLA records -------------------------------------------------------------------------


def test_maintenance_and_exclusions(store: Any) -> None:
    window = MaintenanceWindow("MW-1", ("portal", "dispatch"), 5_000, 9_000, 1_000)
    store.add_maintenance(window, "به‌روزرسانی")
    assert store.maintenance(0, 10_000) == [window] and store.maintenance(9_000, 10_000) == []
    assert store.update_maintenance("MW-1", 6_000, 9_500, 2_000, None)
    assert store.maintenance_titles() == {"MW-1": "به‌روزرسانی"}
    assert store.cancel_maintenance("MW-1") and not store.update_maintenance("MW-1", 1, 2, 3, "x")
    assert store.maintenance()[0].cancelled
    exclusion = Exclusion("EX-1", ("*",), 1_000, 2_000, "قطعی مخابرات", "نامه ۱۲۳")
    store.add_exclusion(exclusion, 3_000)
    assert store.exclusions(0, 10_000) == [exclusion]


def test_month_close_is_immutable_and_late_evidence_is_an_adjustment(backend: Backend, store: Any) -> None:
    fill(store, "portal", downs=[(600, 900)])
    fill(store, "dispatch")
    outcome = close_month(config(), store, MONTH, END + 1)
    [credit] = outcome.credits
    assert credit.service == "portal" and credit.credit_percent == 10 and outcome.pack_sha256
    assert store.archived_pack(outcome.pack_sha256)
    for statement in ("UPDATE month_closes SET report = '{}'", "DELETE FROM month_closes",
                      "UPDATE ledger SET amount = 0", "DELETE FROM ledger"):
        with pytest.raises(Exception, match="immutable"):
            raw(backend, statement)
    report = store.month_close(str(MONTH))
    store.add_exclusion(Exclusion("EX-LATE", ("portal",), START + 600 * MIN, START + 900 * MIN, "telecom"), END + 10)
    [adjustment] = close_month(config(), store, MONTH, END + 20).adjustments
    assert adjustment.adjusts == credit.tracking_code and adjustment.amount == -credit.amount
    assert store.month_close(str(MONTH)) == report
    assert [c.kind for c in store.ledger(str(MONTH))] == ["credit", "adjustment"]


def test_month_figures_are_the_same_on_both_backends(tmp_path: Path, postgres_cluster: Cluster) -> None:  # noqa: F811
    figures = []
    for backend in (Backend(path=tmp_path / "d.sqlite"),
                    Backend(conninfo=postgres_cluster.url(postgres_cluster.new_database()),
                            password=postgres_cluster.password)):
        store = backend.store()
        fill(store, "portal", downs=[(600, 900), (2_000, 2_013)])
        fill(store, "dispatch", downs=[(10, 11)])
        store.add_maintenance(MaintenanceWindow("MW", ("portal",), START + 2_000 * MIN, START + 2_010 * MIN,
                                                START - 100 * 3_600_000))
        figures.append(json.dumps([(s.service, s.availability_percent, s.downtime_ms, s.excluded_ms)
                                   for s in settle(config(), store, MONTH, END + 1).report.services]))
        store.close()
    assert figures[0] == figures[1]


def test_archived_packs_are_kept_once_and_purged_by_age(store: Any) -> None:
    data = bytes(range(256)) * 40_000  # ~10 MB: more than one chunk
    store.archive_pack("d1", "1403-07", 1_000, data)
    store.archive_pack("d1", "1403-07", 2_000, data)
    assert store.archived_pack("d1") == data and store.archived_pack("nope") is None
    assert store.purge_packs(500) == 0 and store.purge_packs(1_500) == 1 and store.archived_pack("d1") is None


def test_ledger_entries_and_filters(store: Any) -> None:
    credit = Credit("CR1", "1403-07", "portal", 10, 200_000, 99.3, 5_000)
    assert store.record_close("1403-07", 5_000, {"figures": "x"}, [credit], "abc")
    assert not store.record_close("1403-07", 6_000, {}, [])  # closed once
    store.add_ledger_entry(Credit("AD1", "1403-07", "portal", 0, -200_000, 100, 7_000, "adjustment", "CR1", "late"))
    assert [c.tracking_code for c in store.ledger("1403-07", "portal")] == ["CR1", "AD1"]
    assert store.ledger(service="dispatch") == [] and store.month_pack("1403-07") == "abc"
    assert store.month_close("1403-07") == (5_000, {"figures": "x"})


# -- notices ------------------------------------------------------------------------------


def test_four_concurrent_workers_never_send_a_notice_twice(backend: Backend) -> None:
    with closing(backend.outbox()) as outbox:
        outbox.enqueue([Notice(f"event-{i}", "mail", f"c{i}@mail.ir", "fa", "قطعی", "متن") for i in range(400)], 0)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        outbox = backend.outbox()
        while batch := outbox.claim(1_000, 7):
            for notice in batch:
                outbox.sent(notice, 1_001)
            with lock:
                claimed.extend(n.id for n in batch)
        outbox.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(claimed) == 400 and len(set(claimed)) == 400
    with closing(backend.outbox()) as outbox:
        assert outbox.counts() == {"sent": 400}


def test_the_outbox_retries_with_backoff_and_recovers_stale_claims(backend: Backend) -> None:
    outbox = backend.outbox(base_delay_s=10, stale_seconds=60)
    assert outbox.enqueue([Notice("e", "sms", "09121234567", "fa", "s", "b")] * 2, 0) == 1  # one per recipient
    [notice] = outbox.claim(0, 10)
    outbox.failed(notice, "gateway 503", permanent=False, now_ms=0)
    assert outbox.claim(1_000, 10) == []  # backing off
    [again] = outbox.claim(10_001, 10, channel="sms")
    assert again.attempts == 2
    assert outbox.recover_stale(10_001 + 61_000) == 1  # its worker died: it goes back to pending
    [row] = outbox.rows()
    assert row.state == "pending" and row.last_error == "gateway 503"
    outbox.close()


def test_subscribers_confirm_limit_codes_and_unsubscribe(backend: Backend) -> None:
    subscribers = backend.subscribers()
    first = subscribers.subscribe("portal", "email", "citizen@Mail.IR", "fa", 0)
    assert first.address == "citizen@mail.ir" and not first.confirmed  # the domain's case does not matter
    assert subscribers.confirm_outcome("portal", "email", "citizen@mail.ir", "000000x", 1) == "wrong"
    assert subscribers.confirm("portal", "email", "citizen@mail.ir", first.code, 2)
    assert [s.address for s in subscribers.of_service("portal")] == ["citizen@mail.ir"]
    subscribers.subscribe("portal", "email", "citizen@mail.ir", "fa", 3)
    subscribers.subscribe("dispatch", "email", "citizen@mail.ir", "fa", 4)
    with pytest.raises(TooManyCodes):
        subscribers.subscribe("dispatch", "email", "citizen@mail.ir", "fa", 5)
    assert subscribers.acknowledge(7, "ops", 10) and not subscribers.acknowledge(7, "ops", 11)
    assert subscribers.acknowledged(7) and not subscribers.acknowledged(8)
    assert subscribers.acknowledgement(7) == ("ops", 10) and subscribers.acknowledgement(8) is None
    assert subscribers.reply("email", "citizen@mail.ir", "STOP") == 2
    assert subscribers.of_service("portal") == []
    subscribers.close()


# -- web records --------------------------------------------------------------------------


def test_tokens_receipts_and_audit(backend: Backend) -> None:
    records = backend.web_records()
    token = records.create_token("ops", "operator", 1_000, expires_ms=5_000)
    other = records.create_token("viewer", "viewer", 1_000)
    assert records.check_token(token, 2_000).state == "ok" and records.check_token(token, 5_000).state == "expired"
    assert records.check_token("dbn_guess", 2_000).state == "unknown"
    listed = records.tokens()
    assert [(t.name, t.role) for t in listed] == [("ops", "operator"), ("viewer", "viewer")]
    assert records.revoke_token(listed[1].id, 3_000) and not records.revoke_token(listed[1].id, 3_001)
    assert records.check_token(other, 3_002).state == "revoked"
    receipt = records.file_receipt("portal", "صفحه باز نمی‌شود", "09121234567", 4_000)
    records.record_probe(receipt.code, True, "http 503")
    assert records.set_receipt_state(receipt.code.lower(), "resolved", "رفع شد", 5_000)
    found = records.receipt(receipt.code)
    assert found is not None and found.state == "resolved" and found.probe_confirmed is True
    assert [r.code for r in records.receipts(0, 10_000, "portal")] == [receipt.code]
    records.audit("ops", "POST", "/api/maintenance", 201, {"title": "به‌روزرسانی"}, 6_000)
    assert records.audit_log(5) == [{"ts_ms": 6_000, "who": "ops", "method": "POST", "path": "/api/maintenance",
                                     "status": 201, "body": {"title": "به‌روزرسانی"}}]
    records.audit("ops", "POST", "/api/maintenance", 201, {"title": "۰" * 5000}, 7_000)  # a long answer
    cut = records.audit_log(1)[0]["body"]
    assert cut["cut_to_chars"] == 2000 and cut["start"].startswith('{"title": "۰۰')
    records.close()


def test_the_feed_reads_results_in_stored_order_from_its_cursor(backend: Backend) -> None:
    store = backend.store()
    store.write(Batch(results=run_of("UUD")))
    store.write(Batch(results=run_of("U", service="dispatch")))
    feed = backend.feed()
    first = feed.results_after(0, 0, 2)
    assert [r.ts_ms for _, r in first] == [1_000_000, 1_000_000 + INTERVAL]
    feed.advance("results", first[-1][0])
    rest = feed.results_after(feed.position("results"), 0, 10)
    assert [(r.service, r.status) for _, r in rest] == [("portal", Status.DOWN), ("dispatch", Status.UP)]
    feed.close()
    store.close()


# -- the schema ---------------------------------------------------------------------------


def test_the_schema_is_versioned_and_a_newer_one_is_refused(backend: Backend) -> None:
    db = backend.database()
    assert current_revision(db) == SCHEMA_HEAD == known_revisions()[-1]
    db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.close()
    with pytest.raises(SchemaTooNew, match="9999"):
        backend.store()


def test_a_store_at_an_older_revision_is_upgraded_forward(backend: Backend) -> None:
    db = backend.database()
    db.execute("DROP INDEX segments_by_end")
    db.execute("ALTER TABLE exclusions DROP COLUMN approved_by")
    db.execute("UPDATE alembic_version SET version_num = '0001'")
    db.close()
    store = backend.store()  # opening it applies what came after 0001
    assert current_revision(store.db) == SCHEMA_HEAD
    exists = ("SELECT count(*) FROM sqlite_master WHERE name = 'segments_by_end'" if backend.path is not None
              else "SELECT count(*) FROM pg_indexes WHERE indexname = 'segments_by_end'")
    assert store.db.execute(exists).fetchone()[0] == 1
    store.add_exclusion(Exclusion("EX-2", ("*",), 1_000, 2_000, "telecom", "letter 12", "مدیر فناوری"), 3_000)
    assert store.exclusions()[0].approved_by == "مدیر فناوری"
    store.close()


def test_two_processes_upgrading_one_store_upgrade_it_once(backend: Backend) -> None:
    stores: list[Any] = []
    threads = [threading.Thread(target=lambda: stores.append(backend.store())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(stores) == 3
    for opened in stores:
        opened.close()
    db = backend.database()
    assert db.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    db.close()


def test_an_older_sqlite_store_is_adopted_with_what_it_holds(tmp_path: Path) -> None:
    """A store made before schema versions: its tables are kept, missing columns added, the version recorded."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript("""
            CREATE TABLE services (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
            CREATE TABLE locations (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
            CREATE TABLE results (service INTEGER NOT NULL, location INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
                status INTEGER NOT NULL, latency_ms REAL NOT NULL, error TEXT, detail TEXT, http_status INTEGER);
            INSERT INTO services VALUES (1, 'portal');
            INSERT INTO locations VALUES (1, 'tabriz');
            INSERT INTO results VALUES (1, 1, 1000, 0, 12.5, NULL, NULL, 200);
        """)
    store = Backend(path=path).store()
    assert store.results("portal", 0, 2_000) == [ProbeResult("portal", "tabriz", 1000, Status.UP, 12.5, None, "", 200)]
    assert current_revision(store.db) == SCHEMA_HEAD
    store.close()
