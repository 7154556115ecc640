"""The operator console over HTTP: sign-in, the session cookie, CSRF, roles, the notice check,
revocation.  The same console in a real browser against ``didban run`` is in test_console_browser.py."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from didban.web.app import WebContext, build_app
from store.backend import Backend
from store.sql_store import SqliteStore
from tests.test_web import NAME_FA, history, web_config

HOUR_MS = 3_600_000


@pytest.fixture
async def console(aiohttp_client: Any, db_path: Path) -> tuple[Any, dict[str, str], Path]:
    store = SqliteStore(db_path)
    history(store, "dispatch", outage_minutes_ago=(30, 0))
    history(store, "portal")
    store.close()
    backend = Backend(path=db_path)
    records = backend.web_records()
    now = int(time.time() * 1000)
    tokens = {role: records.create_token(f"{role}-person", role, now) for role in ("viewer", "operator", "admin")}
    records.close()
    client = await aiohttp_client(build_app(WebContext(web_config(), backend)))
    return client, tokens, db_path


def origin(client: Any) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def sign_in(client: Any, token: str) -> Any:
    return await client.post("/admin/signin", data={"token": token, "next": "/admin"}, headers=origin(client),
                             allow_redirects=False)


async def csrf_of(client: Any, path: str = "/admin") -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    match = re.search(r'name="csrf" value="([^"]+)"', await response.text())
    assert match
    return match.group(1)


def local(ms: int) -> str:
    from core.timefmt import jalali

    return jalali(ms)


async def test_sign_in_gives_a_strict_httponly_cookie_and_sign_out_ends_the_session(console: Any) -> None:
    client, tokens, _ = console
    assert (await client.get("/admin", allow_redirects=False)).headers["Location"].startswith("/admin/signin")
    answer = await sign_in(client, tokens["viewer"])
    assert answer.status == 303
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS (or an https public URL) it is Secure
    assert tokens["viewer"] not in cookie  # the cookie names a session, never the token
    page = await client.get("/admin")
    text = await page.text()
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'dir="rtl"' in text and NAME_FA in text
    assert re.search(r"OT-[2-9A-Z]{4}-[2-9A-Z]{4}", text)  # the open outage
    csrf = await csrf_of(client)
    assert (await client.post("/admin/signout", data={"csrf": csrf}, allow_redirects=False)).status == 303
    assert (await client.get("/admin", allow_redirects=False)).status == 303


async def test_a_wrong_token_is_refused_and_sign_in_attempts_are_rate_limited(console: Any) -> None:
    client, tokens, db_path = console
    statuses = [(await sign_in(client, "not-a-token")).status for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    assert (await sign_in(client, tokens["admin"])).status == 429  # the limit holds for a right token too
    records = Backend(path=db_path).web_records()
    refusals = [row for row in records.audit_log() if row["path"] == "/admin/signin"]
    assert len(refusals) == 5 and all(row["status"] == 401 for row in refusals)
    records.close()


async def test_a_sign_in_from_another_site_is_refused(console: Any) -> None:
    client, tokens, _ = console
    answer = await client.post("/admin/signin", data={"token": tokens["admin"]},
                               headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert answer.status == 403 and "Set-Cookie" not in answer.headers


async def test_a_form_without_the_sessions_csrf_token_changes_nothing(console: Any) -> None:
    client, tokens, db_path = console
    await sign_in(client, tokens["operator"])
    page = await (await client.get("/admin")).text()
    code = re.search(r"OT-[2-9A-Z]{4}-[2-9A-Z]{4}", page)
    assert code
    answer = await client.post(f"/admin/outages/{code.group(0)}/ack", data={"csrf": "forged"})
    assert answer.status == 403
    subscribers = Backend(path=db_path).subscribers()
    store = SqliteStore(db_path)
    outage = store.open_outages()["dispatch"]
    assert subscribers.acknowledgement(outage.id) is None
    answer = await client.post(f"/admin/outages/{code.group(0)}/ack", data={"csrf": await csrf_of(client)})
    assert answer.status == 200 and "operator-person" in await answer.text()  # after the redirect: who acknowledged
    assert subscribers.acknowledgement(outage.id) is not None
    subscribers.close()
    store.close()


async def test_a_viewer_sees_no_forms_and_is_refused_when_posting_anyway(console: Any) -> None:
    client, tokens, db_path = console
    await sign_in(client, tokens["viewer"])
    page = await (await client.get("/admin/maintenance")).text()
    assert 'action="/admin/maintenance?' not in page and "/admin/tokens" not in page
    csrf = await csrf_of(client)  # the sign-out form's
    start = int(time.time() * 1000) + 80 * HOUR_MS
    answer = await client.post("/admin/maintenance", data={
        "csrf": csrf, "services": "portal", "start": local(start), "end": local(start + HOUR_MS),
        "intent": "announce"})
    assert answer.status == 403
    assert (await client.get("/admin/tokens")).status == 403
    assert (await client.get("/admin/audit")).status == 403
    store = SqliteStore(db_path)
    assert store.maintenance() == []
    store.close()


async def test_a_late_window_is_flagged_with_its_shortfall_and_saved_only_when_confirmed(console: Any) -> None:
    client, tokens, db_path = console
    await sign_in(client, tokens["operator"])
    csrf = await csrf_of(client, "/admin/maintenance?lang=en")
    now = int(time.time() * 1000)
    start = now - now % 60_000 + 10 * HOUR_MS + 90_000  # times are typed to the minute
    form = {"csrf": csrf, "services": "portal", "start": local(start), "end": local(start + HOUR_MS), "title": "ارتقا"}
    checked = await client.post("/admin/maintenance?lang=en", data={**form, "intent": "check"})
    assert checked.status == 200 and "62.0 hours short of the 72-hour notice" in await checked.text()
    refused = await client.post("/admin/maintenance?lang=en", data={**form, "intent": "announce"})
    text = await refused.text()
    assert refused.status == 409 and 'name="confirm_late"' in text and "62.0 hours short" in text
    store = SqliteStore(db_path)
    assert store.maintenance() == []  # neither the check nor the unconfirmed late window saved anything
    saved = await client.post("/admin/maintenance?lang=en", data={**form, "intent": "announce", "confirm_late": "yes"})
    assert saved.status == 200 and "Late: 10.0 hours ahead, 62.0 hours short" in await saved.text()
    in_time = now + 80 * HOUR_MS
    await client.post("/admin/maintenance?lang=en", data={**form, "start": local(in_time),
                                                           "end": local(in_time + HOUR_MS), "intent": "announce"})
    windows = store.maintenance()
    assert len(windows) == 2 and {w.start_ms // 60_000 for w in windows} == {start // 60_000, in_time // 60_000}
    store.close()
    records = Backend(path=db_path).web_records()
    audited = [row for row in records.audit_log() if row["path"] == "/admin/maintenance"]
    assert [row["body"]["late_confirmed"] for row in audited] == [False, True]
    assert all(row["who"] == "operator-person" for row in audited)
    records.close()


async def test_revoking_a_token_ends_its_sessions_at_once(console: Any) -> None:
    client, tokens, db_path = console
    await sign_in(client, tokens["operator"])
    assert (await client.get("/admin", allow_redirects=False)).status == 200
    records = Backend(path=db_path).web_records()
    operator_id = next(t.id for t in records.tokens() if t.name == "operator-person")
    records.revoke_token(operator_id, int(time.time() * 1000))
    records.close()
    assert (await client.get("/admin", allow_redirects=False)).status == 303  # back to the sign-in page
    assert (await sign_in(client, tokens["operator"])).status == 401


async def test_an_operator_cannot_manage_tokens_and_an_admin_can_revoke_from_the_page(console: Any) -> None:
    client, tokens, db_path = console
    await sign_in(client, tokens["operator"])
    csrf = await csrf_of(client)
    assert (await client.post("/admin/tokens", data={"csrf": csrf, "name": "x", "role": "admin"})).status == 403
    await client.post("/admin/signout", data={"csrf": csrf})
    await sign_in(client, tokens["admin"])
    csrf = await csrf_of(client, "/admin/tokens?lang=en")
    created = await client.post("/admin/tokens?lang=en", data={"csrf": csrf, "name": "auditor", "role": "viewer"})
    text = await created.text()
    assert created.status == 201 and "shown this once only" in text
    new_token = re.search(r'id="new-token">([^<]+)<', text)
    assert new_token
    records = Backend(path=db_path).web_records()
    token_id = next(t.id for t in records.tokens() if t.name == "auditor")
    assert (await client.post(f"/admin/tokens/{token_id}/revoke?lang=en", data={"csrf": csrf})).status == 200
    assert records.check_token(new_token.group(1), int(time.time() * 1000)).state == "revoked"
    records.close()


async def test_the_cookie_is_secure_when_the_console_is_served_over_tls(aiohttp_client: Any, db_path: Path) -> None:
    config = web_config()  # behind a TLS-terminating proxy: the public address is https
    config = config.model_copy(update={"alerting": config.alerting.model_copy(
        update={"status_page_url": "https://status.agency.ir"})})
    backend = Backend(path=db_path)
    records = backend.web_records()
    token = records.create_token("ops", "viewer", int(time.time() * 1000))
    records.close()
    client = await aiohttp_client(build_app(WebContext(config, backend)))
    answer = await sign_in(client, token)
    assert answer.status == 303 and "Secure" in answer.headers["Set-Cookie"]
