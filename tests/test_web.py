"""The web face: status pages, subscriptions, fault receipts, the admin API, /metrics —
against a real SQLite file, a real engine and real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.config import DidbanConfig
from core.model import ProbeResult, Status
from didban.engine import Engine
from didban.metrics import Metrics
from didban.web.app import CONTEXT, WebContext, build_app, check_challenge
from store.backend import Backend
from store.contract import Batch, OutageChange
from store.schema import open_sqlite
from store.sql_store import SqliteStore
from store.web_records import WebRecords
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parent.parent

NAME_FA = "ارسال سند به دستگاه اجرایی یا دستگاه ثالث"


def web_config(target_url: str = "http://127.0.0.1:9/") -> DidbanConfig:
    return make_config([
        {"id": "dispatch", "name": {"fa": NAME_FA, "en": "Document dispatch"}, "interval_seconds": 60,
         "timeout_seconds": 2, "probes": [{"type": "http", "url": target_url}]},
        {"id": "portal", "name": {"fa": "پورتال اداره کل", "en": "Portal"},
         "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]},
    ], alerting={"channels": [  # codes are queued in the outbox; nothing is sent by these tests
        {"type": "email", "id": "mail", "host": "127.0.0.1", "port": 9, "sender": "Didban <noreply@didban.ir>"},
        {"type": "kavenegar", "id": "sms", "base_url": "http://127.0.0.1:9"}],
        "subscriber_email_channel": "mail", "subscriber_sms_channel": "sms"})


def history(store: SqliteStore, service: str, outage_minutes_ago: tuple[int, int] | None = None) -> None:
    """Two days of results every 5 minutes, with an outage (minutes ago) if given."""
    now = int(time.time() * 1000)
    results = []
    for k in range(2 * 288, -1, -1):
        ts = now - k * 300_000
        down = outage_minutes_ago is not None and outage_minutes_ago[1] * 60_000 <= now - ts <= \
            outage_minutes_ago[0] * 60_000
        results.append(ProbeResult(service, "tabriz", ts, Status.DOWN if down else Status.UP, 40.0,
                                   "http_status" if down else None))
    changes = []
    if outage_minutes_ago is not None:
        changes.append(OutageChange(service, now - outage_minutes_ago[0] * 60_000, opening=True, error="http_status"))
    store.write(Batch(results=results, changes=changes))


@pytest.fixture
async def client(aiohttp_client: Any, db_path: Path) -> Any:
    store = SqliteStore(db_path)
    history(store, "dispatch", outage_minutes_ago=(30, 0))
    history(store, "portal")
    store.close()
    context = WebContext(web_config(), Backend(path=db_path), metrics=Metrics())
    return await aiohttp_client(build_app(context))


def ours(client: TestClient) -> dict[str, str]:
    """What a browser sends with a form posted from our own page."""
    return {"Origin": str(client.make_url("/")).rstrip("/")}


def challenge_answer(html: str) -> tuple[str, str]:
    question = re.search(r"(\d+) \+ (\d+) = \?", html.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")))
    token = re.search(r'name="challenge" value="([^"]+)"', html)
    assert question and token
    return token.group(1), str(int(question.group(1)) + int(question.group(2)))


# -- public pages ---------------------------------------------------------------------------------


async def test_status_page_is_persian_rtl_with_jalali_dates_and_the_outage(client: TestClient) -> None:
    response = await client.get("/a/agency")
    html = await response.text()
    assert response.status == 200
    assert '<html lang="fa" dir="rtl">' in html
    assert NAME_FA in html
    assert re.search(r"۱۴\d\d/\d\d/\d\d", html.translate(str.maketrans("0123456789", "0123456789")))
    assert ("state-down" in html and "OT-" not in html) or "ادامه دارد" in html  # the open outage is listed
    assert "<th>مشاهده از</th>" in html and "<td>tabriz</td>" in html  # and where it was seen from
    assert html.count('class="bar ') == 2 * 90
    assert "Content-Security-Policy" in response.headers


async def test_english_toggle(client: TestClient) -> None:
    html = await (await client.get("/a/agency?lang=en")).text()
    assert '<html lang="en" dir="ltr">' in html and "Document dispatch" in html and "Availability this month" in html


async def test_month_to_date_availability_is_truncated(client: TestClient) -> None:
    html = await (await client.get("/s/portal?lang=en")).text()
    assert "100.00%" in html.replace("٪", "%")


async def test_unknown_pages_are_404(client: TestClient) -> None:
    assert (await client.get("/a/nope")).status == 404
    assert (await client.get("/receipts/RC-XXXX-XXXX")).status == 404


# -- fault receipts ------------------------------------------------------------------------------------


async def file_receipt(client: TestClient, description: str, service: str = "dispatch") -> Any:
    form = await (await client.get(f"/receipts/new?service={service}")).text()
    token, answer = challenge_answer(form)
    return await client.post("/receipts", headers=ours(client), data={"service": service, "description": description,
                                                "contact": "09121234567", "challenge": token, "answer": answer},
                             allow_redirects=False)


async def test_a_fault_report_gets_a_tracking_code_and_can_be_looked_up(client: TestClient) -> None:
    response = await file_receipt(client, "صفحه باز نمی‌شود")
    assert response.status == 303
    location = response.headers["Location"]
    code = location.split("/receipts/")[1].split("?")[0]
    assert re.fullmatch(r"RC-[2-9A-Z]{4}-[2-9A-Z]{4}", code)
    page = await (await client.get(f"/receipts/{code}")).text()
    assert code in page and "صفحه باز نمی‌شود" in page and "09121234567" not in page  # contact stays private


async def test_hostile_input_is_escaped_not_stored_as_markup(client: TestClient) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = await file_receipt(client, hostile)
    code = response.headers["Location"].split("/receipts/")[1].split("?")[0]
    page = await (await client.get(f"/receipts/{code}")).text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page


async def test_a_wrong_challenge_answer_is_refused(client: TestClient) -> None:
    form = await (await client.get("/receipts/new")).text()
    token, answer = challenge_answer(form)
    response = await client.post("/receipts", headers=ours(client), data={
        "service": "dispatch", "description": "x", "challenge": token, "answer": str(int(answer) + 1)})
    assert response.status == 400
    assert not check_challenge(client.server.app[CONTEXT], token, "x")


async def test_too_many_reports_from_one_address_are_refused(client: TestClient) -> None:
    statuses = [(await file_receipt(client, f"report {i}")).status for i in range(8)]
    assert statuses[:6] == [303] * 6 and statuses[-1] == 429


async def test_a_report_is_checked_by_an_immediate_probe(aiohttp_client: Any, aiohttp_server: Any,
                                                         db_path: Path) -> None:
    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503)

    target_app = web.Application()
    target_app.router.add_get("/", broken)
    target = await aiohttp_server(target_app)
    config = web_config(str(target.make_url("/")))
    store = SqliteStore(db_path)
    engine = Engine(config, store, "tabriz")
    await engine.open()
    try:
        client = await aiohttp_client(build_app(WebContext(config, Backend(path=db_path), prober=engine.probe_now)))
        response = await file_receipt(client, "خطای ۵۰۳")
        code = response.headers["Location"].split("/receipts/")[1].split("?")[0]
        receipt = WebRecords(open_sqlite(db_path)).receipt(code)
        assert receipt is not None and receipt.probe_confirmed is True
        assert "http_status" in (receipt.probe_detail or "")
    finally:
        await engine.stop()
        store.close()


# -- subscriptions -----------------------------------------------------------------------------------


async def test_subscribe_confirm_and_unsubscribe(client: TestClient) -> None:
    bad = await client.post("/s/portal/subscribe", headers=ours(client), data={"kind": "sms", "address": "02112345678"})
    assert bad.status == 400 and "Iranian mobile" in await bad.text()
    page = await (await client.post("/s/portal/subscribe", headers=ours(client),
                                    data={"kind": "sms", "address": "۰۹۱۲۱۲۳۴۵۶۷"})).text()
    assert 'name="code"' in page
    subscribers = client.server.app[CONTEXT].subscribers
    subscriber = subscribers.find("portal", "sms", "09121234567")
    assert subscriber is not None and not subscriber.confirmed
    wrong = await client.post("/s/portal/confirm", headers=ours(client), data={
        "kind": "sms", "address": "09121234567", "code": "000000" if subscriber.code != "000000" else "111111"})
    assert wrong.status == 400
    right = await client.post("/s/portal/confirm", headers=ours(client), data={"kind": "sms", "address": "09121234567",
                                                         "code": subscriber.code})
    assert right.status == 200 and [s.address for s in subscribers.of_service("portal")] == ["09121234567"]
    assert (await client.get(f"/unsubscribe/{subscriber.token}")).status == 200
    assert subscribers.of_service("portal") == []


# -- the admin API --------------------------------------------------------------------------------------


def tokens(client: TestClient) -> dict[str, str]:
    records = client.server.app[CONTEXT].records
    return {role: records.create_token(f"{role}-test", role, 0) for role in ("viewer", "operator", "admin")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_api_needs_a_token_with_the_right_role(client: TestClient) -> None:
    keys = tokens(client)
    assert (await client.get("/api/status")).status == 401
    assert (await client.get("/api/status", headers=bearer("dbn_wrong"))).status == 401
    window = {"services": ["portal"], "start": "2099-01-01T00:00:00+03:30", "end": "2099-01-01T02:00:00+03:30"}
    denied = await client.post("/api/maintenance", json=window, headers=bearer(keys["viewer"]))
    assert denied.status == 403 and "operator" in (await denied.json())["error"]
    assert (await client.get("/api/status", headers=bearer(keys["viewer"]))).status == 200


async def test_maintenance_through_the_api(client: TestClient) -> None:
    keys = tokens(client)
    soon = time.time() + 10 * 3600
    far = time.time() + 100 * 3600

    def window(start: float) -> dict[str, Any]:
        from datetime import UTC, datetime

        return {"services": ["portal"], "start": datetime.fromtimestamp(start, UTC).isoformat(),
                "end": datetime.fromtimestamp(start + 7200, UTC).isoformat(), "title": "ارتقای پایگاه داده"}

    late = await client.post("/api/maintenance", json=window(soon), headers=bearer(keys["operator"]))
    assert late.status == 201
    late_body = await late.json()
    assert late_body["meets_notice"] is False and 9.9 < late_body["notice_hours"] < 10.1
    # announced_at is the server's clock: a client cannot backdate it
    backdated = await client.post("/api/maintenance", json={**window(far), "announced_at": "2000-01-01T00:00:00Z"},
                                  headers=bearer(keys["operator"]))
    assert backdated.status == 422
    on_time = await client.post("/api/maintenance", json=window(far), headers=bearer(keys["operator"]))
    body = await on_time.json()
    assert body["meets_notice"] is True
    moved = await client.patch(f"/api/maintenance/{body['id']}", json={"start": window(soon)["start"],
                                                                       "end": window(soon)["end"]},
                               headers=bearer(keys["operator"]))
    assert (await moved.json())["meets_notice"] is False  # moving re-announces: the notice runs from now
    before_start = await client.patch(f"/api/maintenance/{body['id']}", json={"end": "2000-01-01T00:00:00Z"},
                                      headers=bearer(keys["operator"]))
    assert before_start.status == 409 and "would end before it starts" in await before_start.text()
    backwards = await client.patch(f"/api/maintenance/{body['id']}", headers=bearer(keys["operator"]),
                                   json={"start": window(soon)["end"], "end": window(soon)["start"]})
    assert backwards.status == 422 and "end must be after start" in await backwards.text()
    cancel = await client.post(f"/api/maintenance/{body['id']}/cancel", headers=bearer(keys["operator"]))
    assert cancel.status == 200
    listed = await (await client.get("/api/maintenance", headers=bearer(keys["viewer"]))).json()
    assert [w["cancelled"] for w in listed] == [False, True] or len(listed) == 2
    audit = await (await client.get("/api/audit", headers=bearer(keys["admin"]))).json()
    assert {entry["who"] for entry in audit} == {"operator-test"}
    assert {entry["path"] for entry in audit} >= {"/api/maintenance", f"/api/maintenance/{body['id']}/cancel"}


@pytest.mark.parametrize(("body", "status", "reason"), [
    ("not json", 400, "JSON"),
    ([], 400, "object"),
    ({"services": [], "start": "2099-01-01T00:00:00Z", "end": "2099-01-01T01:00:00Z"}, 422, "not valid"),
    ({"services": ["portal"], "start": "2099-01-01T00:00:00", "end": "2099-01-01T01:00:00"}, 422, "not valid"),
    ({"services": ["portal"], "start": "2099-01-01T02:00:00Z", "end": "2099-01-01T01:00:00Z"}, 422, "not valid"),
    ({"services": ["nope"], "start": "2099-01-01T00:00:00Z", "end": "2099-01-01T01:00:00Z"}, 400, "unknown"),
])
async def test_bad_api_requests_get_a_4xx_with_a_reason(client: TestClient, body: Any, status: int,
                                                        reason: str) -> None:
    keys = tokens(client)
    data = body if isinstance(body, str) else json.dumps(body)
    response = await client.post("/api/maintenance", data=data, headers={**bearer(keys["operator"]),
                                                                         "Content-Type": "application/json"})
    assert response.status == status
    assert reason in json.dumps(await response.json(), ensure_ascii=False)


async def test_exclusions_acks_receipts_credits_and_months(client: TestClient) -> None:
    keys = tokens(client)
    operator, admin, viewer = bearer(keys["operator"]), bearer(keys["admin"]), bearer(keys["viewer"])
    created = await client.post("/api/exclusions", json={
        "services": ["*"], "start": "2024-09-22T00:00:00Z", "end": "2024-09-22T01:00:00Z",
        "reason": "قطعی شبکهٔ ملی", "evidence": "گزارش مخابرات"}, headers=operator)
    assert created.status == 201
    [listed] = await (await client.get("/api/exclusions", headers=viewer)).json()
    assert listed["approved_by"] == "operator-test"  # not given: the token's name
    outage = (await (await client.get("/api/status", headers=viewer)).json())[0]["open_outage"]
    ack = await client.post(f"/api/outages/{outage}/ack", json={"by": "on-call"}, headers=operator)
    assert (await ack.json())["acknowledged"] is True
    receipt = await file_receipt(client, "کند است")
    code = receipt.headers["Location"].split("/receipts/")[1].split("?")[0]
    resolved = await client.post(f"/api/receipts/{code}/resolve", json={"note": "رفع شد"}, headers=operator)
    assert (await resolved.json())["state"] == "resolved"
    assert (await (await client.get("/api/receipts", headers=viewer)).json())[0]["state"] == "resolved"
    from sla_calc.periods import JalaliMonth

    current = JalaliMonth.containing(int(time.time() * 1000))
    running = await client.post(f"/api/months/{current}/close", headers=admin)
    assert running.status == 409 and "has not ended" in (await running.json())["error"]
    assert (await client.post("/api/months/1403-13/close", headers=admin)).status == 400
    # 1403-07 has no results at all: never "met", and closing it needs an explicit, recorded acceptance.
    refused = await client.post("/api/months/1403-07/close", headers=admin)
    assert refused.status == 409 and "insufficient evidence" in (await refused.json())["error"]
    closed = await client.post("/api/months/1403-07/close?accept_insufficient_evidence=true", headers=admin)
    answer = await closed.json()
    assert answer["closed_now"] is True and len(answer["pack_sha256"]) == 64
    assert answer["accepted_insufficient_evidence"]
    assert await (await client.get("/api/credits?month=1403-07", headers=viewer)).json() == []
    export = await client.get("/api/months/1403-07/export?format=csv", headers=viewer)
    assert export.status == 200 and (await export.read()).startswith(b"\xef\xbb\xbf")


async def test_openapi_document_describes_the_api(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/maintenance", "/api/exclusions", "/api/months/{month}/close"} <= set(spec["paths"])
    assert "WindowIn" in spec["components"]["schemas"]


# -- operations -----------------------------------------------------------------------------------------


async def test_health_and_readiness(aiohttp_client: Any, db_path: Path) -> None:
    SqliteStore(db_path).close()
    ready = await aiohttp_client(build_app(WebContext(web_config(), Backend(path=db_path))))
    assert (await ready.get("/healthz")).status == 200
    assert (await ready.get("/readyz")).status == 200
    stopped = await aiohttp_client(build_app(WebContext(web_config(), Backend(path=db_path),
                                                        problems=lambda: ["scheduler not running"])))
    answer = await stopped.get("/readyz")
    assert answer.status == 503 and "scheduler not running" in (await answer.json())["problems"]


@pytest.mark.parametrize(("values", "expected"), [
    ([], {"0.001": 0, "1.0": 0, "+Inf": 0}),
    ([0.001], {"0.001": 1, "0.005": 1, "+Inf": 1}),  # a value on a bound is in that bucket (le)
    ([0.0011, 0.7, 9.0], {"0.001": 0, "0.005": 1, "0.5": 1, "1.0": 2, "5.0": 2, "+Inf": 3}),
])
def test_histogram_buckets_are_cumulative_with_le_bounds(values: list[float], expected: dict[str, int]) -> None:
    from didban.metrics import LAG_BOUNDS, Buckets

    buckets = Buckets(LAG_BOUNDS)
    for value in values:
        buckets.observe(value)
    family = buckets.family("lag_seconds", "lag")
    samples = {s.labels["le"]: s.value for s in family.samples if s.name == "lag_seconds_bucket"}
    assert {le: samples[le] for le in expected} == expected
    counts = {s.name: s.value for s in family.samples if s.name != "lag_seconds_bucket"}
    assert counts == {"lag_seconds_count": len(values), "lag_seconds_sum": pytest.approx(sum(values))}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus is installed by scripts/test.sh")
async def test_metrics_pass_promtool(client: TestClient) -> None:
    metrics = client.server.app[CONTEXT].metrics
    metrics.observe_check(ProbeResult("portal", "x", 0, Status.DOWN, 120.0, "timeout"), 0.004)
    metrics.observe_check(ProbeResult("dispatch", "x", 1_796_198_041_002, Status.UP, 20.0), 0.001)
    metrics.series.month.update({"portal": 99.87, 'odd"name\\\n': 50.0})
    text = await (await client.get("/metrics")).text()
    assert 'didban_checks_total{error="timeout",status="down"} 1.0' in text
    families = {family.name: {sample.labels["service"]: sample.value for sample in family.samples}
                for family in text_string_to_metric_families(text) if family.name.startswith("didban_service_")}
    assert families == {  # the per-service series are written by hand: read back by prometheus-client's parser
        "didban_service_up": {"portal": 0.0, "dispatch": 1.0},
        "didban_service_last_check_timestamp_seconds": {"portal": 0.0, "dispatch": 1_796_198_041.002},
        "didban_service_month_availability_percent": {"portal": 99.87, 'odd"name\\\n': 50.0},
    }
    assert "didban_schedule_lag_seconds_bucket" in text and "didban_outbox_depth" in text
    promtool = await asyncio.create_subprocess_exec("promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(promtool.communicate(text.encode()), 60)
    assert promtool.returncode == 0, output.decode()


async def test_schemathesis_with_all_checks_finds_nothing(aiohttp_server: Any, db_path: Path, tmp_path: Path) -> None:
    """Every check of schemathesis, schema conformance and positive-data acceptance included; the two rules
    of a time window JSON Schema cannot state are the hooks' (tests/schemathesis_hooks.py)."""
    store = SqliteStore(db_path)
    history(store, "dispatch", outage_minutes_ago=(30, 0))
    store.close()
    context = WebContext(web_config(), Backend(path=db_path))
    server = await aiohttp_server(build_app(context))
    token = context.records.create_token("fuzz", "admin", 0)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "run", str(server.make_url("/api/openapi.json")),
        "--checks", "all", "--max-examples", "12",
        "--header", f"Authorization: Bearer {token}",
        "--exclude-path", "/api/months/{month}/export", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT)})
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    text = output.decode()
    assert process.returncode == 0, text[-3000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", text)
    assert counts is not None and counts.group(1) == counts.group(2) and int(counts.group(1)) > 100, text[-3000:]


async def test_tokens_are_listed_revoked_and_expire(client: TestClient, db_path: Path, tmp_path: Path) -> None:
    records = client.server.app[CONTEXT].records
    admin = records.create_token("root", "admin", 0)
    created = await client.post("/api/tokens", json={"name": "ops", "role": "operator", "expires_days": 30},
                                headers=bearer(admin))
    assert created.status == 201
    ops = (await created.json())["token"]
    listed = await (await client.get("/api/tokens", headers={"Authorization": f"bearer {admin}"})).json()
    assert [(t["name"], t["role"], t["state"]) for t in listed] == [("root", "admin", "active"),
                                                                   ("ops", "operator", "active")]
    assert all("token" not in t for t in listed)  # values are never shown again
    assert (await client.get("/api/status", headers={"Authorization": f"BEARER {ops}"})).status == 200
    ops_id = listed[1]["id"]
    assert (await client.post(f"/api/tokens/{ops_id}/revoke", headers=bearer(admin))).status == 200
    refused = await client.get("/api/status", headers=bearer(ops))
    assert refused.status == 401 and "revoked" in (await refused.json())["error"]
    assert (await client.post(f"/api/tokens/{ops_id}/revoke", headers=bearer(admin))).status == 404
    short = records.create_token("short", "viewer", int(time.time() * 1000), int(time.time() * 1000) + 100)
    await asyncio.sleep(0.2)
    expired = await client.get("/api/status", headers=bearer(short))
    assert expired.status == 401 and "expired" in (await expired.json())["error"]
    audit = await (await client.get("/api/audit", headers=bearer(admin))).json()
    assert [(a["who"], a["status"]) for a in audit[:2]] == [("short", 401), ("ops", 401)]
    # The CLI: the same records.
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(web_config().model_dump()), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "didban.cli", "token", "list", "--json", "--config",
                           str(config_file), "--db", str(db_path)], capture_output=True, text=True, timeout=60,
                          check=True)
    assert {row["name"]: row["state"] for row in json.loads(done.stdout)} == {
        "root": "active", "ops": "revoked", "short": "expired"}
    revoked = subprocess.run([sys.executable, "-m", "didban.cli", "token", "revoke", "1", "--config",
                              str(config_file), "--db", str(db_path)], capture_output=True, text=True, timeout=60,
                             check=False)
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.get("/api/tokens", headers=bearer(admin))).status == 401  # at once


async def test_forms_posted_from_another_site_are_refused(client: TestClient) -> None:
    citizen = {"kind": "email", "address": "citizen@mail.ir"}
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/page"}):
        for path in ("/s/portal/subscribe", "/s/portal/confirm", "/receipts"):
            answer = await client.post(path, data=citizen, headers=headers)
            assert answer.status == 403, (path, headers)
    referred = await client.post("/s/portal/subscribe", data=citizen,
                                 headers={"Referer": str(client.make_url("/s/portal"))})
    assert referred.status == 200  # our own page, named by its Referer
    outbox = client.server.app[CONTEXT].notifier.outbox
    assert outbox.counts().get("pending") == 1  # only that one code was queued


async def test_confirmation_codes_are_limited_per_address_expire_and_lock(client: TestClient) -> None:
    from store.subscribers import TooManyCodes

    subscribers = client.server.app[CONTEXT].subscribers
    for service in ("portal", "dispatch", "portal"):  # from anywhere, for any service: the address counts
        answer = await client.post(f"/s/{service}/subscribe", headers=ours(client),
                                   data={"kind": "sms", "address": "09121234567"})
        assert answer.status == 200
    fourth = await client.post("/s/dispatch/subscribe", headers=ours(client),
                               data={"kind": "sms", "address": "+989121234567"})
    assert fourth.status == 429
    outbox = client.server.app[CONTEXT].notifier.outbox
    assert outbox.counts().get("pending") == 3
    with pytest.raises(TooManyCodes):
        subscribers.subscribe("portal", "sms", "09121234567", "fa", int(time.time() * 1000))
    now = int(time.time() * 1000)
    code = subscribers.find("portal", "sms", "09121234567").code
    assert subscribers.confirm_outcome("portal", "sms", "09121234567", code, now + 16 * 60_000) == "expired"
    right = subscribers.find("dispatch", "sms", "09121234567").code
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        assert subscribers.confirm_outcome("dispatch", "sms", "09121234567", wrong) == "wrong"
    assert subscribers.confirm_outcome("dispatch", "sms", "09121234567", right) == "locked"
    assert subscribers.confirm_outcome("portal", "sms", "09121234567", code) == "confirmed"


async def test_a_solved_challenge_is_accepted_once(client: TestClient) -> None:
    form = await (await client.get("/receipts/new")).text()
    token, answer = challenge_answer(form)
    data = {"service": "dispatch", "description": "کند است", "challenge": token, "answer": answer}
    first = await client.post("/receipts", headers=ours(client), data=data, allow_redirects=False)
    assert first.status == 303
    again = await client.post("/receipts", headers=ours(client), data=data, allow_redirects=False)
    assert again.status == 400
    assert len(client.server.app[CONTEXT].records.receipts()) == 1


async def test_a_malformed_authorization_header_never_reaches_a_log(aiohttp_server: Any, db_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    server = await aiohttp_server(build_app(WebContext(web_config(), Backend(path=db_path))))
    for header in (b"Authorization: Bearer TOPSECRET\x01VALUE", b"Authorization: TOPSECRETVALUE",
                   b"authorization:\xff\xfeTOPSECRET"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(100), 10)
        assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
        writer.close()
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "TOPSECRET" not in logged


async def test_the_home_page_shows_the_overall_state_and_refreshes_itself(client: TestClient) -> None:
    page = await (await client.get("/?lang=en")).text()
    assert 'http-equiv="refresh"' in page
    assert "Some services are down." in page  # dispatch has an open outage in the fixture


async def test_badges_show_state_and_month_availability(client: TestClient) -> None:
    state = await client.get("/badge/dispatch/state.svg?lang=en")
    assert state.status == 200 and state.content_type == "image/svg+xml"
    assert "max-age" in state.headers["Cache-Control"]
    assert "status: Down" in await state.text()  # dispatch has an open outage in the fixture
    persian = await (await client.get("/badge/portal/availability.svg")).text()
    assert "دسترس‌پذیری ماه" in persian and "٪" in persian
    english = await (await client.get("/badge/portal/availability.svg?lang=en")).text()
    assert "this month: " in english and "%" in english
    assert (await client.get("/badge/nope/state.svg")).status == 404
    assert (await client.get("/badge/portal/other.svg")).status == 404


async def test_without_a_channel_the_page_offers_no_subscription(aiohttp_client: Any, db_path: Path) -> None:
    quiet = web_config().model_copy(update={"alerting": web_config().alerting.model_copy(
        update={"channels": [], "subscriber_email_channel": None, "subscriber_sms_channel": None})})
    client = await aiohttp_client(build_app(WebContext(quiet, Backend(path=db_path))))
    page = await (await client.get("/s/portal?lang=en")).text()
    assert "/subscribe" not in page and "not offered here" in page
    refused = await client.post("/s/portal/subscribe?lang=en", headers=ours(client),
                                data={"kind": "email", "address": "citizen@mail.ir"})
    assert refused.status == 400 and "cannot be sent" in await refused.text()
