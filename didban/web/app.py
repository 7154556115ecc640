"""The web face of Didban, in the same process: status pages, fault receipts,
subscriptions, the admin API, the operator console (``/admin``), ``/metrics``,
``/healthz`` and ``/readyz``.

Public pages are server-rendered HTML (Persian by default, ``?lang=en``), work
without JavaScript and load nothing from outside.  Writes from the public are
bounded: a per-IP rate limit, a size limit and a small arithmetic challenge;
everything shown is escaped by the templates.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from yarl import URL

from alerting.notifier import Notifier
from core.addresses import BadAddress
from core.config import DidbanConfig
from core.model import ProbeResult, Status
from core.timefmt import jalali
from didban.web.i18n import elapsed, label, numbers
from didban.web.status import StatusBoard
from didban.workshop import Workshop
from store.backend import Backend
from store.contract import SubscriberStore, TooManyCodes, WebRecordStore

HERE = Path(__file__).resolve().parent
FONTS = HERE.parent / "fonts"
MAX_BODY = 16 * 1024  # a citizen's form post
MAX_API_BODY = 256 * 1024  # an API body: larger than any the schema allows, so the schema's limits answer 422
Prober = Callable[[str], Awaitable[ProbeResult | None]]


class RateLimit:
    """At most ``burst`` writes per client address, refilled at ``per_minute``."""

    def __init__(self, per_minute: float = 6, burst: int = 6) -> None:
        self.rate = per_minute / 60
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # bound the memory an attacker can make us use
            self._buckets.clear()
        return True


@dataclass
class WebContext:
    config: DidbanConfig
    backend: Backend  # opens the store objects the web uses (each request's worker opens its own store)
    prober: Prober | None = None  # re-probes a service when a citizen reports a fault
    heartbeat: Callable[[str], ProbeResult | None] | None = None  # records a heartbeat service's report
    problems: Callable[[], list[str]] = list  # what makes the service not ready (named on /readyz)
    metrics: Any = None
    refresh: Callable[[], None] = lambda: None  # brings gauges up to date before /metrics answers
    # A center stores agents' batches: (location, read the batch → [(seq, result)], now_ms)
    # → (acknowledged seq, newly stored, how many the batch held); the reader raises BadBatch.
    ingest: Callable[[str, Callable[[], list[Any]], int], Awaitable[tuple[int, int, int]]] | None = None
    board: StatusBoard = field(init=False)
    records: WebRecordStore = field(init=False)
    subscribers: SubscriberStore = field(init=False)
    notifier: Notifier = field(init=False)
    limiter: RateLimit = field(default_factory=RateLimit)
    pages: dict[tuple[str, str | None, str], tuple[int, bytes, bytes]] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    workshop: Workshop = field(default_factory=Workshop)  # heavy work, off the event loop
    owns_workshop: bool = True  # False: the service shares it with the engine and closes it after the engine
    used_challenges: UsedChallenges = field(default_factory=lambda: UsedChallenges())

    def __post_init__(self) -> None:
        self.board = StatusBoard(self.config, self.backend.store, prerender=self.prerender_agency)
        self.records = self.backend.web_records()
        self.subscribers = self.backend.subscribers()
        self.notifier = Notifier(self.config, self.backend.outbox(), self.subscribers)

    def page(self, agency_id: str, service_id: str | None, lang: str, version: int,
             statuses: list[Any]) -> tuple[int, bytes, bytes]:
        """A board page, rendered and gzipped once per board version."""
        key = (agency_id, service_id, lang)
        cached = self.pages.get(key)
        if cached is None or cached[0] != version:
            agency = next(a for a in self.config.agencies if a.id == agency_id)
            shown = [s for s in statuses if service_id is None or s.id == service_id]
            path = f"/a/{agency_id}" if service_id is None else f"/s/{service_id}"
            kinds = [kind for kind, channel in (("email", self.config.alerting.subscriber_email_channel),
                                                 ("sms", self.config.alerting.subscriber_sms_channel)) if channel]
            html = render_html("agency.html", lang, path, services=shown, subscribe_kinds=kinds,
                               agency_name=agency.name.fa if lang == "fa" else agency.name.en).encode()
            cached = self.pages[key] = (version, html, gzip.compress(html, compresslevel=5))
        return cached

    def prerender_agency(self, agency_id: str, version: int, statuses: list[Any]) -> None:
        for lang in ("fa", "en"):
            self.page(agency_id, None, lang, version, statuses)

    def close(self) -> None:
        if self.owns_workshop:
            self.workshop.close()
        self.records.close()
        self.subscribers.close()
        self.notifier.outbox.close()


CONTEXT = web.AppKey("context", WebContext)
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
_TEMPLATES.filters["num"] = numbers
_TEMPLATES.filters["elapsed"] = elapsed


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "fa"


def render_html(template: str, lang: str, path: str, **values: Any) -> str:
    return _TEMPLATES.get_template(template).render(
        lang=lang, t=lambda key: label(key, lang), request_path=path, pc="٪" if lang == "fa" else "%",
        now=jalali(int(time.time() * 1000)), **values)


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    html = render_html(template, _lang(request), request.path, **values)
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)


@web.middleware
async def public_body_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Public pages take small forms only; the API's own bodies are bounded by its schema."""
    if not request.path.startswith("/api/"):
        request = request.clone(client_max_size=MAX_BODY)
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # Our own pages' form posts carry their origin (the forms' CSRF check); nothing leaks to other sites.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


def same_origin(request: web.Request) -> bool:
    """A state-changing form post must come from our own pages: its Origin (or Referer) is this site.

    A hostile page elsewhere cannot make a citizen's browser subscribe someone, confirm or file a receipt.
    """
    claimed = request.headers.get("Origin") or request.headers.get("Referer") or ""
    if not claimed or claimed == "null":
        return False
    origin = URL(claimed)
    ours = {request.host.lower(), URL(request.app[CONTEXT].config.alerting.status_page_url).raw_authority.lower()}
    return origin.scheme in ("http", "https") and origin.raw_authority.lower() in ours


def _cross_site(request: web.Request) -> web.Response:
    return render(request, "message.html", 403, message=label("cross_site", _lang(request)), back="/",
                  confirm=None)


class UsedChallenges:
    """Solved receipt challenges, remembered until they expire: each is accepted once."""

    def __init__(self) -> None:
        self._used: dict[str, float] = {}

    def first_use(self, token: str) -> bool:
        now = time.time()
        if len(self._used) > 10_000:
            self._used = {t: expires for t, expires in self._used.items() if expires > now}
        if token in self._used:
            return False
        expires = token.partition(":")[0]
        self._used[token] = float(expires) if expires.isdigit() else now + 1800
        return True


# -- challenge: a small sum, signed so the server keeps no state --------------------------


def new_challenge(ctx: WebContext) -> dict[str, str]:
    a, b = secrets.randbelow(9) + 1, secrets.randbelow(9) + 1
    expires = int(time.time()) + 1800
    nonce = secrets.token_hex(8)  # every challenge is distinct, so "accepted once" means once
    signature = hmac.new(ctx.secret, f"{a + b}:{expires}:{nonce}".encode(), hashlib.sha256).hexdigest()
    return {"question": f"{a} + {b} = ?", "token": f"{expires}:{nonce}:{signature}"}


def check_challenge(ctx: WebContext, token: str, answer: str) -> bool:
    expires, _, rest = token.partition(":")
    nonce, _, signature = rest.partition(":")
    if not expires.isdigit() or int(expires) < time.time() or not answer.strip().isdigit():
        return False
    expected = hmac.new(ctx.secret, f"{int(answer.strip())}:{expires}:{nonce}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


# -- public pages -------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """Every agency with its overall state now: all up, some down, or no data (from the cached boards)."""
    ctx = request.app[CONTEXT]
    overall = {}
    for agency in ctx.config.agencies:
        _, statuses = await ctx.board.board(agency.id)
        states = {s.state for s in statuses}
        overall[agency.id] = "down" if "down" in states else "up" if states == {"up"} else "unknown"
    worst = "down" if "down" in overall.values() else "up" if set(overall.values()) == {"up"} else "unknown"
    return render(request, "index.html", agencies=ctx.config.agencies, overall=overall, worst=worst)


async def _board_page(request: web.Request, agency_id: str, service_id: str | None) -> web.Response:
    """An agency's (or one service's) board, rendered once per board version and language."""
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    version, statuses = await ctx.board.board(agency_id)
    cached = ctx.page(agency_id, service_id, lang, version, statuses)
    response = web.Response(content_type="text/html", charset="utf-8")
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.body = cached[2]  # compressed once per board version, not per request
        response.headers["Content-Encoding"] = "gzip"
    else:
        response.body = cached[1]
    response.headers["Vary"] = "Accept-Encoding"
    return response


async def agency_page(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    agency = next((a for a in ctx.config.agencies if a.id == request.match_info["agency"]), None)
    if agency is None:
        raise web.HTTPNotFound(text=label("not_found", _lang(request)))
    return await _board_page(request, agency.id, None)


async def service_page(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    service_id = request.match_info["service"]
    for agency, service in ctx.config.services():
        if service.id == service_id:
            return await _board_page(request, agency.id, service_id)
    raise web.HTTPNotFound(text=label("not_found", _lang(request)))


async def badge(request: web.Request) -> web.Response:
    """``/badge/SERVICE/state.svg`` and ``/badge/SERVICE/availability.svg`` (month to date, truncated)."""
    from didban.web.badges import availability_badge, state_badge

    ctx = request.app[CONTEXT]
    lang = _lang(request)
    service_id, kind = request.match_info["service"], request.match_info["kind"]
    agency = next((a.id for a, s in ctx.config.services() if s.id == service_id), None)
    if agency is None or kind not in ("state", "availability"):
        raise web.HTTPNotFound(text=label("not_found", lang))
    _, statuses = await ctx.board.board(agency)
    status = next(s for s in statuses if s.id == service_id)
    svg = (state_badge(status.state, lang) if kind == "state"
           else availability_badge(status.month_availability, status.verdict, lang))
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=60"})


def _known_service(ctx: WebContext, service_id: str) -> bool:
    return any(s.id == service_id for _, s in ctx.config.services())


async def subscribe(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    service_id = request.match_info["service"]
    back = f"/s/{service_id}?lang={lang}"
    if not _known_service(ctx, service_id):
        raise web.HTTPNotFound(text=label("not_found", lang))
    if not same_origin(request):
        return _cross_site(request)
    if not ctx.limiter.allow(_client(request)):
        return render(request, "message.html", 429, message=label("too_many", lang), back=back, confirm=None)
    form = await request.post()
    kind, address = str(form.get("kind", "")), str(form.get("address", ""))
    channel = {"email": ctx.config.alerting.subscriber_email_channel,
               "sms": ctx.config.alerting.subscriber_sms_channel}.get(kind)
    if channel is None:  # nothing could deliver the code, nor any notice: say so instead of pretending
        return render(request, "message.html", 400, message=label("no_channel", lang), back=back, confirm=None)
    try:
        subscriber = ctx.subscribers.subscribe(service_id, kind, address, lang, int(time.time() * 1000))
    except BadAddress as exc:
        return render(request, "message.html", 400, message=str(exc), back=back, confirm=None)
    except TooManyCodes:
        return render(request, "message.html", 429, message=label("codes_limit", lang), back=back, confirm=None)
    ctx.notifier.confirm_subscription(service_id, kind, subscriber.address, lang, subscriber.code, subscriber.token,
                                      int(time.time() * 1000))
    return render(request, "message.html", message=label("subscribed_check", lang), back=back,
                  confirm={"service": service_id, "kind": kind, "address": subscriber.address})


async def confirm(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    service_id = request.match_info["service"]
    back = f"/s/{service_id}?lang={lang}"
    if not same_origin(request):
        return _cross_site(request)
    if not ctx.limiter.allow(_client(request)):
        return render(request, "message.html", 429, message=label("too_many", lang), back=back, confirm=None)
    form = await request.post()
    try:
        outcome = ctx.subscribers.confirm_outcome(service_id, str(form.get("kind", "")),
                                                  str(form.get("address", "")), str(form.get("code", "")))
    except BadAddress:
        outcome = "wrong"
    message = {"confirmed": "subscription_confirmed", "wrong": "wrong_code", "expired": "code_expired",
               "locked": "code_locked"}[outcome]
    return render(request, "message.html", 200 if outcome == "confirmed" else 400, message=label(message, lang),
                  back=back, confirm=None)


async def unsubscribe(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    ok = ctx.subscribers.unsubscribe(request.match_info["token"])
    return render(request, "message.html", 200 if ok else 404,
                  message=label("unsubscribed" if ok else "unknown_link", _lang(request)), back="/", confirm=None)


# -- citizens' fault receipts -------------------------------------------------------------------


async def receipt_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    ctx = request.app[CONTEXT]
    return render(request, "receipt_form.html", status, agencies=ctx.config.agencies,
                  selected=request.query.get("service", ""), challenge=new_challenge(ctx), error=error)


async def file_receipt(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    if not same_origin(request):
        return _cross_site(request)
    if not ctx.limiter.allow(_client(request)):
        return await receipt_form(request, label("too_many", lang), 429)
    form = await request.post()
    service_id = str(form.get("service", ""))
    description = str(form.get("description", "")).strip()
    contact = str(form.get("contact", "")).strip()
    if not _known_service(ctx, service_id) or not description or len(description) > 2000 or len(contact) > 254:
        return await receipt_form(request, label("what_went_wrong", lang), 400)
    challenge = str(form.get("challenge", ""))
    if not check_challenge(ctx, challenge, str(form.get("answer", ""))) or not ctx.used_challenges.first_use(challenge):
        return await receipt_form(request, label("wrong_answer", lang), 400)
    now_ms = int(time.time() * 1000)
    receipt = ctx.records.file_receipt(service_id, description, contact, now_ms)
    if ctx.prober is not None:
        result = await ctx.prober(service_id)
        if result is not None:
            ctx.records.record_probe(receipt.code, result.status is Status.DOWN,
                                     f"{result.status.value} {result.error or ''} {result.detail}".strip())
    raise web.HTTPSeeOther(f"/receipts/{receipt.code}?lang={lang}&created=1")


async def show_receipt(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    lang = _lang(request)
    receipt = ctx.records.receipt(request.match_info["code"])
    if receipt is None:
        raise web.HTTPNotFound(text=label("not_found", lang))
    service = ctx.config.service(receipt.service)
    return render(request, "receipt.html", receipt=receipt, created=bool(request.query.get("created")),
                  service_name=service.name.fa if lang == "fa" else service.name.en, filed=jalali(receipt.created_ms))


# -- operations -----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    problems = []
    try:
        ctx.records.receipts(0, 1)
    except Exception as exc:  # the store must answer for the service to be ready
        problems.append(f"store: {type(exc).__name__}")
    problems.extend(ctx.problems())
    return web.json_response({"ready": not problems, "problems": problems}, status=503 if problems else 200)


async def metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    ctx = request.app[CONTEXT]
    if ctx.metrics is None:
        raise web.HTTPNotFound(text="metrics are not enabled")
    ctx.refresh()
    ctx.metrics.outbox_depth.set(sum(v for k, v in ctx.notifier.outbox.counts().items() if k in ("pending", "sending")))
    # Off the loop that measures: with 50,000 services /metrics is 150,000 series, a second of rendering.
    body = await asyncio.to_thread(ctx.metrics.exposition)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name == "style.css":
        return web.FileResponse(HERE / "static" / "style.css")
    if name in ("Vazirmatn-Regular.woff2", "Vazirmatn-Bold.woff2"):
        response = web.FileResponse(FONTS / name)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response
    raise web.HTTPNotFound()


def build_app(context: WebContext) -> web.Application:
    from didban import redact
    from didban.web import api, console

    redact.install()  # a malformed Authorization header never reaches a log
    app = web.Application(client_max_size=MAX_API_BODY,
                          middlewares=[security_headers, public_body_limit, api.errors_as_json])
    app[CONTEXT] = context
    app.router.add_get("/", index)
    app.router.add_get("/a/{agency}", agency_page)
    app.router.add_get("/s/{service}", service_page)
    app.router.add_post("/s/{service}/subscribe", subscribe)
    app.router.add_post("/s/{service}/confirm", confirm)
    app.router.add_get("/unsubscribe/{token}", unsubscribe)
    app.router.add_get("/receipts/new", receipt_form)
    app.router.add_post("/receipts", file_receipt)
    app.router.add_get("/receipts/{code}", show_receipt)
    app.router.add_get("/badge/{service}/{kind}.svg", badge)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/static/{name}", static)
    api.register(app)
    console.register(app)
    app.on_cleanup.append(lambda app: _close(app))
    return app


async def _close(app: web.Application) -> None:
    app[CONTEXT].close()
