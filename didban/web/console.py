"""The operator console at ``/admin``: what an agency's staff do, in the browser.

Server-rendered HTML on the status page's server (Persian by default,
``?lang=en``), plain forms that work without JavaScript.  A person signs in
with an API token (see ``sessions``); roles are the API's: a viewer reads, an
operator announces maintenance, records exclusions and handles outages and
receipts, an admin also closes months and manages tokens and reads the audit
log.  What a role may not do is not shown, and is refused with 403 if posted
anyway.  Every form post carries the session's CSRF token, and every write is
audited as the API's are.

Each action calls the same use-case function as the API and the CLI
(``didban.operations``, ``didban.settlement``, ``didban.tokens``); this module
only reads forms and renders answers.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from core.timefmt import BadInstant, jalali, parse_instant
from didban import operations as ops
from didban.settlement import (
    BadWindow,
    InsufficientEvidence,
    NotYetEnded,
    announce_maintenance,
    notice,
    required_notice_hours,
)
from didban.tokens import BadToken, issue_token
from didban.web.api import ROLE_RANK, export_response
from didban.web.app import CONTEXT, RateLimit, WebContext, render_html, same_origin
from didban.web.i18n import label, numbers
from didban.web.sessions import COOKIE, Session, Sessions
from sla_calc.month import NoticeVerdict, truncate_percent
from sla_calc.periods import BadMonth, JalaliMonth

SESSIONS = web.AppKey("console_sessions", Sessions)
SIGN_IN_LIMIT = web.AppKey("console_sign_in_limit", RateLimit)
Form = MultiDictProxy[str | bytes | Any]


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "fa"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _here(request: web.Request, path: str | None = None) -> str:
    return f"{path or request.path}?lang={_lang(request)}"


def page(request: web.Request, template: str, session: Session | None, status: int = 200,
         **values: Any) -> web.Response:
    """A console page: the session's role decides which forms are drawn."""
    lang = _lang(request)
    role = ROLE_RANK[session.role] if session else -1
    html = render_html(f"admin/{template}", lang, request.path, session=session, flash=session.take_flash()
                       if session else "", can=lambda needed: role >= ROLE_RANK[needed],
                       csrf=session.csrf if session else "", q=lambda path: f"{path}?lang={lang}", **values)
    response = web.Response(text=html, content_type="text/html", charset="utf-8", status=status)
    response.headers["Cache-Control"] = "no-store"  # staff pages are never kept by a shared cache
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _refused(request: web.Request, session: Session | None, status: int, message: str) -> web.Response:
    return page(request, "message.html", session, status, message=message)


# -- who is signed in ------------------------------------------------------------------------------


def _session(request: web.Request) -> Session | None:
    """The signed-in session, with its token checked again (a revoked token ends it at once)."""
    sessions = request.app[SESSIONS]
    session = sessions.get(request.cookies.get(COOKIE, ""))
    if session is None:
        return None
    found = request.app[CONTEXT].records.check_token(session.token, _now_ms())
    if found.state != "ok":
        sessions.close(session.id)
        return None
    session.role = found.role  # the token's role as it is now
    return session


def _too_low(request: web.Request, session: Session, role: str) -> web.Response:
    lang = _lang(request)
    return _refused(request, session, 403, label("needs_role", lang) % label(f"role_{role}", lang))


class Refused(Exception):
    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response


def _reader(request: web.Request, role: str = "viewer") -> Session:
    session = _session(request)
    if session is None:
        raise Refused(_redirect(f"/admin/signin?lang={_lang(request)}&next={request.path}"))
    if ROLE_RANK[session.role] < ROLE_RANK[role]:
        raise Refused(_too_low(request, session, role))
    return session


async def _writer(request: web.Request, role: str) -> tuple[Session, Form]:
    """A form post by a signed-in person whose role allows it, carrying the session's CSRF token."""
    session = _session(request)
    if session is None:
        raise Refused(_refused(request, None, 401, label("signed_out", _lang(request))))
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise Refused(_refused(request, session, 403, label("bad_csrf", _lang(request))))
    if ROLE_RANK[session.role] < ROLE_RANK[role]:
        _audit(request, session, 403, {"refused": f"needs the {role} role"})
        raise Refused(_too_low(request, session, role))
    return session, form


def _audit(request: web.Request, session: Session, status: int, body: Any) -> None:
    request.app[CONTEXT].records.audit(session.name, request.method, request.path, status, body, _now_ms())


def _done(request: web.Request, session: Session, body: Any, message: str, path: str | None = None) -> web.Response:
    """An accepted write: audited, then back to the page (post/redirect/get) with what happened."""
    _audit(request, session, 303, body)
    session.flash = message
    return _redirect(_here(request, path))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handler(function: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await function(request)
        except Refused as refused:
            return refused.response

    wrapped.__name__ = function.__name__
    return wrapped


def _field(form: Form, name: str, limit: int = 2000) -> str:
    return str(form.get(name, "")).strip()[:limit]


class Problem(Exception):
    """A form field that cannot be read: said on the form, next to what was typed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _instant(form: Form, name: str, lang: str) -> int:
    try:
        return parse_instant(_field(form, name, 100))
    except BadInstant:
        raise Problem(label("bad_time", lang) % label(name, lang)) from None


def _services(ctx: WebContext, form: Form, lang: str) -> tuple[str, ...]:
    try:
        return ops.known_services(ctx.config, [str(s) for s in form.getall("services", [])])
    except ops.UnknownServices:
        raise Problem(label("choose_services", lang)) from None


# -- sign in and out -------------------------------------------------------------------------------


@handler
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if _session(request) is not None:
        raise web.HTTPSeeOther(_here(request, "/admin"))
    return page(request, "signin.html", None, next=request.query.get("next", "/admin"))


def _safe_next(target: str) -> str:
    # Only a console page of this site: never an open redirect.
    return target if target.startswith("/admin") and "//" not in target and "\\" not in target else "/admin"


@handler
async def sign_in(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    if not same_origin(request):
        return _refused(request, None, 403, label("cross_site", lang))
    if not request.app[SIGN_IN_LIMIT].allow(request.remote or "unknown"):
        return page(request, "signin.html", None, 429, error=label("too_many", lang), next="/admin")
    form = await request.post()
    found = ctx.records.check_token(_field(form, "token", 200), _now_ms())
    target = _safe_next(_field(form, "next", 200) or "/admin")
    if found.state != "ok" or found.role == "heartbeat":
        ctx.records.audit(found.name or "(unknown token)", "POST", request.path, 401,
                          {"refused": f"{found.state} token" if found.state != "ok" else "a heartbeat token"},
                          _now_ms())
        return page(request, "signin.html", None, 401, error=label("bad_token", lang), next=target)
    session = request.app[SESSIONS].open(_field(form, "token", 200), found.name, found.role)
    ctx.records.audit(found.name, "POST", request.path, 303, {"signed_in": found.role}, _now_ms())
    response = _redirect(f"{target}?lang={lang}")
    secure = request.secure or ctx.config.alerting.status_page_url.startswith("https://")
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", secure=secure, path="/admin",
                        max_age=int(request.app[SESSIONS].lifetime_s))
    return response


@handler
async def sign_out(request: web.Request) -> web.StreamResponse:
    session, _ = await _writer(request, "viewer")
    request.app[SESSIONS].close(session.id)
    _audit(request, session, 303, {"signed_out": True})
    response = _redirect(f"/admin/signin?lang={_lang(request)}")
    response.del_cookie(COOKIE, path="/admin")
    return response


# -- services and their outages --------------------------------------------------------------------


@handler
async def services(request: web.Request) -> web.StreamResponse:
    session = _reader(request)
    ctx = request.app[CONTEXT]
    with ctx.backend.store() as store:
        states = store.states()
    rows = []
    for agency, service in ctx.config.services():
        state = states.get(service.id)
        outage = state.open_outage if state else None
        acked = ctx.subscribers.acknowledgement(outage.id) if outage else None
        rows.append({"agency": agency, "service": service,
                     "state": state.status.value if state and state.status else "no data",
                     "since": jalali(state.since_ms) if state and state.since_ms else None,
                     "error": state.last_error if state else None,
                     "outage": outage, "outage_start": jalali(outage.start_ms) if outage else None,
                     "outage_ms": _now_ms() - outage.start_ms if outage else 0,
                     "acked_by": acked[0] if acked else None, "acked_at": jalali(acked[1]) if acked else None})
    return page(request, "services.html", session, rows=rows)


@handler
async def acknowledge(request: web.Request) -> web.StreamResponse:
    session, _ = await _writer(request, "operator")
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    with ctx.backend.store() as store:
        try:
            done = ops.acknowledge_outage(store, ctx.subscribers, request.match_info["id"], session.name, _now_ms())
        except ops.NotFound:
            return _refused(request, session, 404, label("not_found", lang))
    return _done(request, session, {"outage": done.outage.tracking_code, "already": not done.new},
                 label("acknowledged_done", lang) % done.outage.tracking_code, "/admin")


# -- maintenance -----------------------------------------------------------------------------------


def _hours(value: float, lang: str, exact: bool = False) -> str:
    return numbers(f"{value:g}" if exact else f"{value:.1f}", lang)


def _verdict_text(verdict: NoticeVerdict, lang: str) -> str:
    """What the notice rule says of a window, numbers in the reader's digits (codes stay as they are)."""
    required = _hours(verdict.required_hours, lang, exact=True)
    if verdict.meets:
        return label("meets_notice", lang) % (_hours(verdict.given_hours, lang), required)
    return label("short_notice", lang) % (_hours(verdict.given_hours, lang), _hours(verdict.hours_short, lang),
                                          required)


async def _maintenance_page(request: web.Request, session: Session, status: int = 200,
                            **values: Any) -> web.Response:
    ctx = request.app[CONTEXT]
    now = _now_ms()
    lang = _lang(request)
    with ctx.backend.store() as store:
        windows, titles = store.maintenance(), store.maintenance_titles()
    rows = []
    for w in reversed(windows):
        verdict = notice(ctx.config, w.services, w.start_ms, w.announced_at_ms)
        rows.append({"window": w, "title": titles.get(w.id, ""), "start": jalali(w.start_ms), "end": jalali(w.end_ms),
                     "announced": jalali(w.announced_at_ms), "meets": verdict.meets and not w.cancelled,
                     "verdict": _verdict_text(verdict, lang), "changeable": not w.cancelled and w.end_ms > now})
    longest = required_notice_hours(ctx.config, ["*"])
    hint = label("notice_hint", lang) % (_hours(longest, lang, exact=True),
                                         numbers(jalali(now + int(longest * 3_600_000)), lang))
    return page(request, "maintenance.html", session, status, rows=rows, hint=hint,
                all_services=list(ctx.config.services()), **values)


@handler
async def maintenance(request: web.Request) -> web.StreamResponse:
    return await _maintenance_page(request, _reader(request), form={})


def _window_form(form: Form) -> dict[str, Any]:
    return {"services": [str(s) for s in form.getall("services", [])], "start": _field(form, "start", 100),
            "end": _field(form, "end", 100), "title": _field(form, "title", 200)}


@handler
async def announce(request: web.Request) -> web.StreamResponse:
    """Check (nothing saved) or announce; a late window is saved only once its lateness is confirmed."""
    session, form = await _writer(request, "operator")
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    values = _window_form(form)
    try:
        chosen = _services(ctx, form, lang)
        start, end = _instant(form, "start", lang), _instant(form, "end", lang)
    except Problem as problem:
        return await _maintenance_page(request, session, 400, form=values, error=problem.message)
    now = _now_ms()
    verdict = notice(ctx.config, chosen, start, now)
    confirmed = form.get("confirm_late") == "yes"
    if form.get("intent") == "check" or (not verdict.meets and not confirmed):
        return await _maintenance_page(request, session, 200 if form.get("intent") == "check" else 409, form=values,
                                       verdict=_verdict_text(verdict, lang), late=not verdict.meets)
    with ctx.backend.store() as store:
        try:
            announced = announce_maintenance(ctx.config, store, chosen, start, end, values["title"], now, ctx.notifier)
        except BadWindow as exc:
            return await _maintenance_page(request, session, 422, form=values, error=str(exc))
    ctx.board.invalidate()
    window = announced.window
    return _done(request, session, {"id": window.id, "services": list(window.services), "start": jalali(start),
                                    "end": jalali(end), "meets_notice": verdict.meets, "late_confirmed": confirmed},
                 label("announced_done", lang) % (window.id, _verdict_text(verdict, lang)))


@handler
async def move(request: web.Request) -> web.StreamResponse:
    """Moving a window announces it again: the same notice check and confirmation as announcing."""
    session, form = await _writer(request, "operator")
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    window_id = request.match_info["id"]
    moving = {"id": window_id, "start": _field(form, "start", 100), "end": _field(form, "end", 100)}
    try:
        start, end = _instant(form, "start", lang), _instant(form, "end", lang)
    except Problem as problem:
        return await _maintenance_page(request, session, 400, form={}, moving=moving, move_error=problem.message)
    now = _now_ms()
    with ctx.backend.store() as store:
        try:
            window = ops.find_window(store, window_id)
        except ops.NotFound:
            return _refused(request, session, 404, label("not_found", lang))
        verdict = notice(ctx.config, window.services, start, now)
        if not verdict.meets and form.get("confirm_late") != "yes" and (start, end) != (window.start_ms, window.end_ms):
            return await _maintenance_page(request, session, 409, form={}, moving=moving,
                                           move_verdict=_verdict_text(verdict, lang))
        try:
            moved = ops.move_maintenance(store, window_id, start, end, None, now)
        except ops.Conflict as exc:
            return await _maintenance_page(request, session, 409, form={}, moving=moving, move_error=str(exc))
    ctx.board.invalidate()
    return _done(request, session, {"id": moved.id, "start": jalali(moved.start_ms), "end": jalali(moved.end_ms)},
                 label("moved_done", lang) % (moved.id, _verdict_text(verdict, lang)), "/admin/maintenance")


@handler
async def cancel(request: web.Request) -> web.StreamResponse:
    session, _ = await _writer(request, "operator")
    ctx = request.app[CONTEXT]
    with ctx.backend.store() as store:
        try:
            ops.cancel_maintenance(store, request.match_info["id"])
        except ops.NotFound:
            return _refused(request, session, 404, label("not_found", _lang(request)))
    ctx.board.invalidate()
    return _done(request, session, {"id": request.match_info["id"], "cancelled": True},
                 label("cancelled_done", _lang(request)) % request.match_info["id"], "/admin/maintenance")


# -- infrastructure exclusions ---------------------------------------------------------------------


async def _exclusions_page(request: web.Request, session: Session, status: int = 200, **values: Any) -> web.Response:
    ctx = request.app[CONTEXT]
    with ctx.backend.store() as store:
        rows = [{"exclusion": e, "start": jalali(e.start_ms), "end": jalali(e.end_ms)}
                for e in reversed(store.exclusions())]
    return page(request, "exclusions.html", session, status, rows=rows, all_services=list(ctx.config.services()),
                **values)


@handler
async def exclusions(request: web.Request) -> web.StreamResponse:
    session = _reader(request)
    return await _exclusions_page(request, session, form={"approved_by": session.name})


@handler
async def record_exclusion(request: web.Request) -> web.StreamResponse:
    session, form = await _writer(request, "operator")
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    values = {**_window_form(form), "reason": _field(form, "reason", 500), "evidence": _field(form, "evidence"),
              "approved_by": _field(form, "approved_by", 200)}
    try:
        chosen = _services(ctx, form, lang)
        start, end = _instant(form, "start", lang), _instant(form, "end", lang)
        with ctx.backend.store() as store:
            exclusion = ops.record_exclusion(ctx.config, store, chosen, start, end, values["reason"],
                                             values["evidence"], values["approved_by"] or session.name, _now_ms())
    except Problem as problem:
        return await _exclusions_page(request, session, 400, form=values, error=problem.message)
    except ops.Conflict as exc:
        return await _exclusions_page(request, session, 422, form=values, error=str(exc))
    return _done(request, session, {"id": exclusion.id, "services": list(exclusion.services),
                                    "reason": exclusion.reason, "approved_by": exclusion.approved_by},
                 label("exclusion_done", lang) % exclusion.id)


# -- citizens' fault receipts ----------------------------------------------------------------------


@handler
async def receipts(request: web.Request) -> web.StreamResponse:
    session = _reader(request)
    ctx = request.app[CONTEXT]
    shown = request.query.get("state", "open")
    rows = []
    with ctx.backend.store() as store:
        for receipt in reversed(ctx.records.receipts()):
            if shown != "all" and receipt.state != shown:
                continue
            # What the probes saw: the re-check when it was filed, and the service's outages around it.
            around = store.outages(receipt.service, receipt.created_ms - 3_600_000, receipt.created_ms + 3_600_000)
            rows.append({"receipt": receipt, "filed": jalali(receipt.created_ms),
                         "service": ctx.config.service(receipt.service),
                         "outages": [o.tracking_code for o in around]})
            if len(rows) >= 200:
                break
    return page(request, "receipts.html", session, rows=rows, shown=shown)


@handler
async def handle_receipt(request: web.Request) -> web.StreamResponse:
    session, form = await _writer(request, "operator")
    lang = _lang(request)
    code = request.match_info["code"]
    try:
        state = ops.handle_receipt(request.app[CONTEXT].records, code, request.match_info["action"],
                                   _field(form, "note"), _now_ms())
    except ops.NotFound:
        return _refused(request, session, 404, label("not_found", lang))
    return _done(request, session, {"code": code.upper(), "state": state},
                 label("receipt_done", lang) % (code.upper(), label(f"receipt_{state}", lang)), "/admin/receipts")


# -- months ----------------------------------------------------------------------------------------


def _month(request: web.Request) -> JalaliMonth:
    try:
        return JalaliMonth.parse(request.match_info["month"])
    except BadMonth:
        raise web.HTTPNotFound(text=label("not_found", _lang(request))) from None


@handler
async def months(request: web.Request) -> web.StreamResponse:
    session = _reader(request)
    ctx = request.app[CONTEXT]
    now = _now_ms()
    month = JalaliMonth.containing(now)
    rows = []
    with ctx.backend.store() as store:
        for _ in range(6):
            closed = store.month_close(str(month))
            rows.append({"month": str(month), "ended": month.end_ms() <= now,
                         "closed": jalali(closed[0]) if closed else None, "pack": store.month_pack(str(month))})
            month = month.previous()
    return page(request, "months.html", session, rows=rows)


async def _month_page(request: web.Request, session: Session, month: JalaliMonth, status: int = 200,
                      **values: Any) -> web.Response:
    ctx = request.app[CONTEXT]
    model = await ctx.workshop.run(ops.month_figures, ctx.config, ctx.backend, month, _now_ms())
    with ctx.backend.store() as store:
        ledger = store.ledger(str(month))
        pack = store.month_pack(str(month))
    entries = [{"entry": e, "issued": jalali(e.issued_ms)} for e in ledger]
    return page(request, "month.html", session, status, model=model, month=str(month), entries=entries, pack=pack,
                ended=month.end_ms() <= _now_ms(), formats=("pdf", "xlsx", "csv", "json", "pack"),
                shown_percent=truncate_percent, **values)


@handler
async def month(request: web.Request) -> web.StreamResponse:
    return await _month_page(request, _reader(request), _month(request))


@handler
async def close_month(request: web.Request) -> web.StreamResponse:
    session, form = await _writer(request, "admin")
    ctx = request.app[CONTEXT]
    month = _month(request)
    accept = form.get("accept_insufficient_evidence") == "yes"
    try:
        outcome = await ctx.workshop.run(ops.close_month, ctx.config, ctx.backend, month, _now_ms(), accept)
    except (NotYetEnded, InsufficientEvidence) as exc:
        _audit(request, session, 409, {"refused": str(exc)})
        return await _month_page(request, session, month, 409, error=str(exc))
    lang = _lang(request)
    message = label("closed_done" if outcome.closed_now else "adjusted_done", lang) % (
        numbers(outcome.month, lang), numbers(len(outcome.credits), lang), numbers(len(outcome.adjustments), lang))
    return _done(request, session, {"month": outcome.month, "closed_now": outcome.closed_now,
                                    "credits": [c.tracking_code for c in outcome.credits],
                                    "adjustments": [a.tracking_code for a in outcome.adjustments],
                                    "pack_sha256": outcome.pack_sha256}, message, f"/admin/months/{month}")


@handler
async def export(request: web.Request) -> web.StreamResponse:
    _reader(request)
    fmt = request.query.get("format", "pdf")
    if fmt not in ("pdf", "xlsx", "csv", "json", "pack"):
        raise web.HTTPBadRequest(text="format must be one of pdf, xlsx, csv, json, pack")
    return await export_response(request.app[CONTEXT], _month(request), fmt)


# -- tokens and the audit log (admins) -------------------------------------------------------------


async def _tokens_page(request: web.Request, session: Session, status: int = 200, **values: Any) -> web.Response:
    now = _now_ms()
    rows = [{"token": t, "created": jalali(t.created_ms), "expires": jalali(t.expires_ms) if t.expires_ms else None,
             "state": t.state(now)} for t in reversed(request.app[CONTEXT].records.tokens())]
    return page(request, "tokens.html", session, status, rows=rows, **values)


@handler
async def tokens(request: web.Request) -> web.StreamResponse:
    return await _tokens_page(request, _reader(request, "admin"))


@handler
async def create_token(request: web.Request) -> web.StreamResponse:
    session, form = await _writer(request, "admin")
    ctx = request.app[CONTEXT]
    name, role, days = _field(form, "name", 100), _field(form, "role", 20), _field(form, "expires_days", 20)
    lang = _lang(request)
    try:
        if not name or role not in ROLE_RANK:
            raise BadToken(label("token_fields", lang))
        expires_days = float(days) if days else None
        if expires_days is not None and not 0.001 <= expires_days <= 3650:
            raise BadToken(label("token_fields", lang))
        issued = issue_token(ctx.config, ctx.records, name, role, _now_ms(), expires_days)
    except (BadToken, ValueError) as exc:
        return await _tokens_page(request, session, 422, error=str(exc) if isinstance(exc, BadToken)
                                  else label("token_fields", lang))
    _audit(request, session, 201, {"name": name, "role": role, "expires_days": expires_days})
    # Shown on this page only, never again (it is stored as a digest).
    return await _tokens_page(request, session, 201, issued={"name": name, "role": role, "token": issued.token})


@handler
async def revoke_token(request: web.Request) -> web.StreamResponse:
    session, _ = await _writer(request, "admin")
    text = request.match_info["id"]
    lang = _lang(request)
    if not (text.isascii() and text.isdigit() and len(text) <= 18) or not request.app[CONTEXT].records.revoke_token(
            int(text), _now_ms()):
        return _refused(request, session, 404, label("not_found", lang))
    return _done(request, session, {"id": int(text), "revoked": True}, label("revoked_done", lang) % text,
                 "/admin/tokens")


@handler
async def audit_log(request: web.Request) -> web.StreamResponse:
    session = _reader(request, "admin")
    rows = [{**row, "at": jalali(row["ts_ms"]), "body_text": json.dumps(row["body"], ensure_ascii=False)}
            for row in request.app[CONTEXT].records.audit_log(200)]
    return page(request, "audit.html", session, rows=rows)


def register(app: web.Application) -> None:
    app[SESSIONS] = Sessions()
    app[SIGN_IN_LIMIT] = RateLimit(per_minute=5, burst=5)
    routes = [
        ("GET", "/admin/signin", sign_in_form), ("POST", "/admin/signin", sign_in),
        ("POST", "/admin/signout", sign_out),
        ("GET", "/admin", services), ("POST", "/admin/outages/{id}/ack", acknowledge),
        ("GET", "/admin/maintenance", maintenance), ("POST", "/admin/maintenance", announce),
        ("POST", "/admin/maintenance/{id}/move", move), ("POST", "/admin/maintenance/{id}/cancel", cancel),
        ("GET", "/admin/exclusions", exclusions), ("POST", "/admin/exclusions", record_exclusion),
        ("GET", "/admin/receipts", receipts), ("POST", "/admin/receipts/{code}/{action}", handle_receipt),
        ("GET", "/admin/months", months), ("GET", "/admin/months/{month}", month),
        ("POST", "/admin/months/{month}/close", close_month), ("GET", "/admin/months/{month}/export", export),
        ("GET", "/admin/tokens", tokens), ("POST", "/admin/tokens", create_token),
        ("POST", "/admin/tokens/{id}/revoke", revoke_token),
        ("GET", "/admin/audit", audit_log),
    ]
    for method, path, function in routes:
        app.router.add_route(method, path, function)
