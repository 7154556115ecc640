"""The admin API (JSON, bearer tokens): maintenance windows, exclusions,
acknowledgements, receipts, the credits ledger, month closes and exports.

Request bodies are pydantic models, which both validate requests (a bad one
gets a 4xx with the reason) and generate the OpenAPI document served at
``/api/openapi.json``.  Tokens have a role — viewer (reads), operator
(maintenance, exclusions, acknowledgements, receipts), admin (also month
closes and the audit log) — and every write is audited.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.model import Exclusion, MaintenanceWindow, iso_utc
from core.timefmt import jalali
from didban import operations as ops
from didban.tokens import BadToken, issue_token
from store.contract import Store

log = logging.getLogger("didban.web")
ROLE_RANK = {"heartbeat": -1, "agent": -1, "viewer": 0, "operator": 1, "admin": 2}  # those two read nothing
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- request bodies --------------------------------------------------------------------------


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(Body):
    services: list[str] = Field(min_length=1, max_length=500)
    start: AwareDatetime
    end: AwareDatetime
    title: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> WindowIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class WindowUpdate(Body):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    title: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> WindowUpdate:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ExclusionIn(WindowIn):
    reason: str = Field(min_length=3, max_length=500, pattern=r"\S.*\S.*\S")  # three characters that are not blank
    evidence: str = Field(default="", max_length=2000)
    approved_by: str = Field(default="", max_length=200)  # default: the token's name


class AckIn(Body):
    by: str = Field(default="", max_length=100)


class NoteIn(Body):
    note: str = Field(default="", max_length=2000)


class IngestIn(Body):
    """An agent's batch (the body may be gzip'd: Content-Encoding: gzip)."""

    results: list[list[Any]] = Field(max_length=20_000, description="[seq, service, ts_ms, status, latency_ms, "
                                     "error, detail, http_status, cert_days_left], sequence numbers increasing")


class TokenIn(Body):
    name: str = Field(min_length=1, max_length=100)
    # heartbeat: the name is the heartbeat service; agent: the name is the location it ships results for
    role: Literal["viewer", "operator", "admin", "heartbeat", "agent"]
    expires_days: float | None = Field(default=None, ge=0.001, le=3650)  # at least about a minute and a half


# -- plumbing ----------------------------------------------------------------------------------


def _error(status: int, reason: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API errors are JSON with a reason; nothing unexpected leaks as a stack trace."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = _error(exc.status, exc.reason if exc.text is None or exc.text.startswith(str(exc.status))
                        else exc.text)
        for header in ("Allow", "WWW-Authenticate"):  # RFC 9110: a 405 names the methods, a 401 the scheme
            if header in exc.headers:
                answer.headers[header] = exc.headers[header]
        return answer
    except ValidationError as exc:
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False, include_input=False)]
        return _error(422, "the request body is not valid", details)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, "internal error")


def _ctx(request: web.Request) -> Any:
    from didban.web.app import CONTEXT

    return request.app[CONTEXT]


def _bearer(request: web.Request) -> str:
    # RFC 7235: the scheme is case-insensitive.  The header's value is never logged or echoed.
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise web.HTTPUnauthorized(text="a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return credentials.strip()


def _who(request: web.Request, role: str) -> str:
    records = _ctx(request).records
    now = int(time.time() * 1000)
    found = records.check_token(_bearer(request), now)
    if found.state in ("revoked", "expired"):
        records.audit(found.name, request.method, request.path, 401, {"refused": f"{found.state} token"}, now)
        raise web.HTTPUnauthorized(text=f"this token is {found.state}", headers={"WWW-Authenticate": "Bearer"})
    if found.state != "ok":
        raise web.HTTPUnauthorized(text="unknown token", headers={"WWW-Authenticate": "Bearer"})
    name, own_role = found.name, found.role
    if ROLE_RANK[own_role] < ROLE_RANK[role]:
        raise web.HTTPForbidden(text=f"this needs the {role} role; the token has {own_role}")
    return str(name)


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    raw = await request.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    # Strict: a number is not a time and true is not a number, exactly as the OpenAPI document says.
    return model.model_validate_json(raw, strict=True)


def _audited(request: web.Request, who: str, status: int, body: Any) -> None:
    _ctx(request).records.audit(who, request.method, request.path, status, body, int(time.time() * 1000))


def _store(request: web.Request) -> Store:
    store: Store = _ctx(request).backend.store()
    return store


def _services(request: web.Request, names: list[str]) -> tuple[str, ...]:
    try:
        return ops.known_services(_ctx(request).config, names)
    except ops.UnknownServices as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


@contextmanager
def _answering() -> Iterator[None]:
    """The use cases' refusals as HTTP answers."""
    try:
        yield
    except ops.NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except ops.Conflict as exc:
        raise web.HTTPConflict(text=str(exc)) from None


def _ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def _window_json(window: MaintenanceWindow, notice_hours: float) -> dict[str, Any]:
    from sla_calc.month import notice_verdict

    verdict = notice_verdict(window.start_ms, window.announced_at_ms, notice_hours)
    return {"id": window.id, "services": list(window.services), "start": iso_utc(window.start_ms),
            "end": iso_utc(window.end_ms), "announced_at": iso_utc(window.announced_at_ms),
            "cancelled": window.cancelled, "notice_hours": round(verdict.given_hours, 2),
            "required_notice_hours": verdict.required_hours, "hours_short": round(verdict.hours_short, 2),
            "meets_notice": verdict.meets and not window.cancelled}


def _exclusion_json(exclusion: Exclusion) -> dict[str, Any]:
    return {"id": exclusion.id, "services": list(exclusion.services), "start": iso_utc(exclusion.start_ms),
            "end": iso_utc(exclusion.end_ms), "reason": exclusion.reason, "evidence": exclusion.evidence,
            "approved_by": exclusion.approved_by}


def _notice_hours(request: web.Request, services: tuple[str, ...]) -> float:
    from didban.settlement import required_notice_hours

    return required_notice_hours(_ctx(request).config, services)


# -- handlers ----------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    _who(request, "viewer")
    with _store(request) as store:
        states = store.states()
    rows = []
    for _, service in _ctx(request).config.services():
        state = states.get(service.id)
        status_now = state.status if state else None
        since = state.since_ms if state else None
        outage = state.open_outage if state else None
        rows.append({"service": service.id, "state": status_now.value if status_now else None,
                     "since": iso_utc(since) if since else None,
                     "open_outage": outage.tracking_code if outage else None})
    return web.json_response(rows)


async def list_maintenance(request: web.Request) -> web.Response:
    _who(request, "viewer")
    with _store(request) as store:
        windows = store.maintenance()
    return web.json_response([_window_json(w, _notice_hours(request, w.services)) for w in windows])


async def create_maintenance(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    body = await _body(request, WindowIn)
    from didban.settlement import BadWindow, announce_maintenance

    services = _services(request, body.services)
    context = _ctx(request)
    with _store(request) as store:
        try:  # announced now, by the server's clock: never backdated
            announced = announce_maintenance(context.config, store, services, _ms(body.start), _ms(body.end),
                                             body.title, int(time.time() * 1000), context.notifier)
        except BadWindow as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    context.board.invalidate()
    answer = _window_json(announced.window, announced.notice.required_hours)
    _audited(request, who, 201, answer)
    return web.json_response(answer, status=201)


async def update_maintenance(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    body = await _body(request, WindowUpdate)
    with _store(request) as store, _answering():
        updated = ops.move_maintenance(store, request.match_info["id"], _ms(body.start) if body.start else None,
                                       _ms(body.end) if body.end else None, body.title, int(time.time() * 1000))
    _ctx(request).board.invalidate()
    answer = _window_json(updated, _notice_hours(request, updated.services))
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def cancel_maintenance(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    with _store(request) as store, _answering():
        ops.cancel_maintenance(store, request.match_info["id"])
    _ctx(request).board.invalidate()
    answer = {"id": request.match_info["id"], "cancelled": True}
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def list_exclusions(request: web.Request) -> web.Response:
    _who(request, "viewer")
    with _store(request) as store:
        exclusions = store.exclusions()
    return web.json_response([_exclusion_json(e) for e in exclusions])


async def create_exclusion(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    body = await _body(request, ExclusionIn)
    services = _services(request, body.services)
    with _store(request) as store, _answering():
        exclusion = ops.record_exclusion(_ctx(request).config, store, services, _ms(body.start), _ms(body.end),
                                         body.reason, body.evidence, body.approved_by or who, int(time.time() * 1000))
    answer = _exclusion_json(exclusion)
    _audited(request, who, 201, answer)
    return web.json_response(answer, status=201)


async def ack_outage(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    body = await _body(request, AckIn) if request.can_read_body else AckIn()
    with _store(request) as store, _answering():
        done = ops.acknowledge_outage(store, _ctx(request).subscribers, request.match_info["id"], body.by or who,
                                      int(time.time() * 1000))
    answer = {"outage": done.outage.tracking_code, "acknowledged": True, "already": not done.new}
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def list_receipts(request: web.Request) -> web.Response:
    _who(request, "viewer")
    receipts = _ctx(request).records.receipts(service=request.query.get("service"))
    return web.json_response([{**r.public(), "contact": r.contact} for r in receipts])


async def receipt_state(request: web.Request) -> web.Response:
    who = _who(request, "operator")
    body = await _body(request, NoteIn) if request.can_read_body else NoteIn()
    code = request.match_info["code"]
    with _answering():
        state = ops.handle_receipt(_ctx(request).records, code, request.match_info["action"], body.note,
                                   int(time.time() * 1000))
    answer = {"code": code.upper(), "state": state}
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def credits(request: web.Request) -> web.Response:
    _who(request, "viewer")
    with _store(request) as store:
        entries = store.ledger(request.query.get("month"), request.query.get("service"))
    return web.json_response([
        {"tracking_code": e.tracking_code, "month": e.month, "service": e.service, "kind": e.kind,
         "credit_percent": e.credit_percent, "amount": e.amount, "availability_percent": e.availability_percent,
         "issued": iso_utc(e.issued_ms), "adjusts": e.adjusts, "note": e.note} for e in entries
    ])


def _month(request: web.Request) -> Any:
    from sla_calc.periods import BadMonth, JalaliMonth

    try:
        return JalaliMonth.parse(request.match_info["month"])
    except BadMonth as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def close_month(request: web.Request) -> web.Response:
    from didban.settlement import InsufficientEvidence, NotYetEnded

    who = _who(request, "admin")
    month = _month(request)
    flag = request.query.get("accept_insufficient_evidence", "false")
    if flag not in ("true", "false"):
        raise web.HTTPBadRequest(text="accept_insufficient_evidence must be true or false")
    accept = flag == "true"
    context = _ctx(request)
    try:
        outcome = await context.workshop.run(ops.close_month, context.config, context.backend, month,
                                             int(time.time() * 1000), accept)
    except (NotYetEnded, InsufficientEvidence) as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    answer = {"month": outcome.month, "closed_now": outcome.closed_now,
              "credits": [c.tracking_code for c in outcome.credits],
              "adjustments": [a.tracking_code for a in outcome.adjustments],
              "pack_sha256": outcome.pack_sha256,
              "accepted_insufficient_evidence": list(outcome.accepted_insufficient)}
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def month_figures(request: web.Request) -> web.Response:
    _who(request, "viewer")
    context = _ctx(request)
    model = await context.workshop.run(ops.month_figures, context.config, context.backend, _month(request),
                                       int(time.time() * 1000))
    return web.json_response(model)


async def export_month(request: web.Request) -> web.Response:
    from didban.exports import FORMATS

    _who(request, "viewer")
    month = _month(request)
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise web.HTTPBadRequest(text=f"format must be one of {', '.join(FORMATS)}")
    context = _ctx(request)
    # The workshop serialises exports and renders in another process: the probing loop never waits on them.
    return await export_response(context, month, fmt)


EXPORT_TYPES = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf", "pack": "application/gzip",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


async def export_response(context: Any, month: Any, fmt: str) -> web.Response:
    """A month's export as a download (the API's and the console's)."""
    name, data, digest = await context.workshop.run(ops.month_export, context.config, context.backend, month, fmt,
                                                    int(time.time() * 1000), context.workshop.render_blocking)
    return web.Response(body=data, content_type=EXPORT_TYPES[fmt],
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "X-Didban-Pack-Sha256": digest})


def _token_json(info: Any, now_ms: int) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "role": info.role, "created": iso_utc(info.created_ms),
            "expires": iso_utc(info.expires_ms) if info.expires_ms else None,
            "revoked": iso_utc(info.revoked_ms) if info.revoked_ms else None, "state": info.state(now_ms)}


async def list_tokens(request: web.Request) -> web.Response:
    _who(request, "admin")
    now = int(time.time() * 1000)
    return web.json_response([_token_json(t, now) for t in _ctx(request).records.tokens()])


async def create_token(request: web.Request) -> web.Response:
    who = _who(request, "admin")
    body = await _body(request, TokenIn)
    try:
        issued = issue_token(_ctx(request).config, _ctx(request).records, body.name, body.role,
                             int(time.time() * 1000), body.expires_days)
    except BadToken as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    token, expires = issued.token, issued.expires_ms
    _audited(request, who, 201, {"name": body.name, "role": body.role, "expires_days": body.expires_days})
    return web.json_response({"token": token, "name": body.name, "role": body.role,
                              "expires": iso_utc(expires) if expires else None}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    who = _who(request, "admin")
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise web.HTTPBadRequest(text="a token id is a number (see GET /api/tokens)")
    token_id = int(text)
    if not _ctx(request).records.revoke_token(token_id, int(time.time() * 1000)):
        raise web.HTTPNotFound(text="no such active token")
    answer = {"id": token_id, "revoked": True}
    _audited(request, who, 200, answer)
    return web.json_response(answer)


async def heartbeat(request: web.Request) -> web.Response:
    """A heartbeat service reports in; its token (role heartbeat, named after the service) is in the path."""
    context = _ctx(request)
    found = context.records.check_token(request.match_info["token"], int(time.time() * 1000))
    if found.state != "ok" or found.role != "heartbeat":
        raise web.HTTPUnauthorized(text="not a valid heartbeat token (unknown, revoked or expired)")
    result = context.heartbeat(found.name) if context.heartbeat is not None else None
    if result is None:
        raise web.HTTPNotFound(text=f"{found.name} is not a heartbeat service monitored here")
    return web.json_response({"service": found.name, "recorded": iso_utc(result.ts_ms),
                              "recorded_tehran": jalali(result.ts_ms)})


async def ingest(request: web.Request) -> web.Response:
    """An agent's batch of numbered results for its own location (the token's name), stored once."""
    from didban.ingest import MAX_BODY, BadBatch, read_batch

    context = _ctx(request)
    found = context.records.check_token(_bearer(request), int(time.time() * 1000))
    if found.state != "ok" or found.role != "agent":
        raise web.HTTPUnauthorized(text="an agent token is required (didban token create --role agent --name "
                                        "LOCATION)", headers={"WWW-Authenticate": "Bearer"})
    if context.ingest is None:
        raise web.HTTPServiceUnavailable(text="this process does not take agents' results (run didban server)")
    body = await request.clone(client_max_size=MAX_BODY).read()  # gzip is inflated as it is read
    now_ms = int(time.time() * 1000)
    services = {s.id for _, s in context.config.services()}
    try:  # read where it is stored, off the loop: a batch of 20,000 results is a tenth of a second of parsing
        acknowledged, stored, count = await context.ingest(
            found.name, lambda: read_batch(body, found.name, services, now_ms), now_ms)
    except BadBatch as exc:
        return _error(exc.status, str(exc))
    return web.json_response({"location": found.name, "acknowledged": acknowledged, "stored": stored,
                              "duplicates": count - stored})


async def agents(request: web.Request) -> web.Response:
    """Each probe location: its newest stored result, how old it is, whether it has gone silent."""
    from didban.locations import location_states

    _who(request, "viewer")
    now_ms = int(time.time() * 1000)
    with _store(request) as store:
        progress = store.agents()
    return web.json_response([s.as_json(now_ms) for s in location_states(_ctx(request).config, progress, now_ms)])


async def audit_log(request: web.Request) -> web.Response:
    _who(request, "admin")
    return web.json_response(_ctx(request).records.audit_log())


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document_for(_ctx(request).config))


def document_for(config: Any) -> dict[str, Any]:
    """The OpenAPI document of this deployment: the service ids it knows are part of the schema."""
    document: dict[str, Any] = json.loads(json.dumps(OPENAPI))
    known = [*sorted(s.id for _, s in config.services()), "*"]
    schemas = document["components"]["schemas"]
    for name in ("WindowIn", "ExclusionIn"):
        schemas[name]["properties"]["services"]["items"] = {"type": "string", "enum": known}
    # A heartbeat token is named after a heartbeat service of this deployment (didban.tokens says so too).
    # An agent token is named after a location of this deployment.
    heartbeats = sorted(s.id for _, s in config.services() if s.heartbeat is not None)
    token = schemas["TokenIn"]
    rules = [{"if": {"properties": {"role": {"const": "agent"}}, "required": ["role"]},
              "then": {"properties": {"name": {"enum": sorted(loc.id for loc in config.locations)}}}}]
    if heartbeats:
        rules.append({"if": {"properties": {"role": {"const": "heartbeat"}}, "required": ["role"]},
                      "then": {"properties": {"name": {"enum": heartbeats}}}})
    else:
        token["properties"]["role"]["enum"] = [r for r in token["properties"]["role"]["enum"] if r != "heartbeat"]
    token["allOf"] = rules
    return document


# -- routes and the OpenAPI document -----------------------------------------------------------

_ERRORS = {status: {"description": reason, "content": {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}
    for status, reason in ((400, "bad request"), (401, "no or unknown token"), (403, "role too low"),
                           (404, "not found"), (409, "conflict"), (413, "body larger than 256 KiB"),
                           (422, "invalid body"))}


def _operation(summary: str, role: str | None, body: type[BaseModel] | None = None,
               params: list[dict[str, Any]] | None = None, ok: int = 200,
               ok_type: Literal["object", "array", "file"] = "object") -> dict[str, Any]:
    responses: dict[str, Any] = {str(k): v for k, v in _ERRORS.items()}
    schema: dict[str, Any] = {"type": ok_type} if ok_type != "file" else {"type": "string", "format": "binary"}
    media = "application/octet-stream" if ok_type == "file" else "application/json"
    responses[str(ok)] = {"description": "done", "content": {media: {"schema": schema}}}
    operation: dict[str, Any] = {"summary": summary, "responses": responses, "parameters": params or []}
    if role is not None:
        operation["security"] = [{"bearer": []}]
        operation["description"] = ("Needs an agent token (named after its location)." if role == "agent"
                                    else f"Needs a token with the {role} role (or higher).")
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
    return operation


def _path_param(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {"name": name, "in": "query", "required": False, "schema": schema}


ROUTES: list[tuple[str, str, Handler, dict[str, Any]]] = [
    ("GET", "/api/status", status, _operation("State of every service", "viewer", ok_type="array")),
    ("GET", "/api/maintenance", list_maintenance, _operation("Maintenance windows", "viewer", ok_type="array")),
    ("POST", "/api/maintenance", create_maintenance,
     _operation("Announce a maintenance window (announced now)", "operator", WindowIn, ok=201)),
    ("PATCH", "/api/maintenance/{id}", update_maintenance,
     _operation("Change a window (moving it re-announces it)", "operator", WindowUpdate, [_path_param("id")])),
    ("POST", "/api/maintenance/{id}/cancel", cancel_maintenance,
     _operation("Cancel a window: it excludes nothing", "operator", params=[_path_param("id")])),
    ("GET", "/api/exclusions", list_exclusions, _operation("Infrastructure exclusions", "viewer", ok_type="array")),
    ("POST", "/api/exclusions", create_exclusion,
     _operation("Record an infrastructure exclusion (telecom clause)", "operator", ExclusionIn, ok=201)),
    ("POST", "/api/outages/{id}/ack", ack_outage,
     _operation("Acknowledge an outage: stops its escalation", "operator", params=[_path_param("id")])),
    ("GET", "/api/receipts", list_receipts,
     _operation("Citizens' fault receipts", "viewer", params=[_query("service")], ok_type="array")),
    ("POST", "/api/receipts/{code}/{action}", receipt_state,
     _operation("Acknowledge or resolve a receipt", "operator",
                params=[_path_param("code"), {**_path_param("action"), "schema": {"type": "string",
                                                                                  "enum": ["ack", "resolve"]}}])),
    ("GET", "/api/credits", credits,
     _operation("The credits ledger", "viewer", params=[_query("month"), _query("service")], ok_type="array")),
    ("GET", "/api/months/{month}", month_figures,
     _operation("A month's figures (so far, while it runs)", "viewer",
                params=[_path_param("month", r"^1[34]\d\d-(0[1-9]|1[0-2])$")])),
    ("POST", "/api/months/{month}/close", close_month,
     _operation("Close a Jalali month (idempotent); refused below the minimum coverage unless accepted", "admin",
                params=[_path_param("month", r"^1[34]\d\d-(0[1-9]|1[0-2])$"),
                        _query("accept_insufficient_evidence", ["true", "false"])])),
    ("GET", "/api/months/{month}/export", export_month,
     _operation("A month's compliance export", "viewer",
                params=[_path_param("month", r"^1[34]\d\d-(0[1-9]|1[0-2])$"),
                        _query("format", ["json", "csv", "xlsx", "pdf", "pack"])], ok_type="file")),
    ("POST", "/api/heartbeat/{token}", heartbeat,
     _operation("A heartbeat service reports in (the token: `didban token create --role heartbeat --name SERVICE`)",
                None, params=[_path_param("token")])),
    ("GET", "/api/agents", agents,
     _operation("Probe locations: newest result, lag, silent or not", "viewer", ok_type="array")),
    ("GET", "/api/audit", audit_log, _operation("The audit log of API writes", "admin", ok_type="array")),
    ("POST", "/api/ingest", ingest,
     _operation("A probe agent ships a batch of its numbered results (gzip'd JSON; stored once)", "agent",
                IngestIn)),
    ("GET", "/api/tokens", list_tokens, _operation("API tokens (never their values)", "admin", ok_type="array")),
    ("POST", "/api/tokens", create_token,
     _operation("Create a token; its value is in this answer only", "admin", TokenIn, ok=201)),
    ("POST", "/api/tokens/{id}/revoke", revoke_token,
     _operation("Revoke a token at once", "admin", params=[_path_param("id", r"^[0-9]{1,18}$")])),
]


def _document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for method, path, _, operation in ROUTES:
        paths.setdefault(path, {})[method.lower()] = operation
    for model in (WindowIn, WindowUpdate, ExclusionIn, AckIn, NoteIn, TokenIn, IngestIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    paths["/api/openapi.json"] = {"get": _operation("This document", None)}
    return {"openapi": "3.1.0", "info": {"title": "Didban admin API", "version": "1"},
            "paths": paths, "components": {"schemas": schemas,
                                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


OPENAPI = json.loads(json.dumps(_document()))


def register(app: web.Application) -> None:
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_get("/api/openapi.json", openapi)
