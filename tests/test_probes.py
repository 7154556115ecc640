"""Probes against real targets on loopback: aiohttp servers, raw sockets, a TLS
server with a certificate made here, a DNS server speaking the wire protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import dnslib
import pytest
import trustme
from aiohttp import web
from pydantic import TypeAdapter

from core.config import ProbeConfig
from core.model import Status
from didban.engine import make_session
from probes.base import ProbeContext
from probes.icmp import icmp_available
from probes.runner import CheckOutcome, compile_check, run_check
from tests.conftest import RawServer


def probe(**fields: Any) -> Any:
    return TypeAdapter(ProbeConfig).validate_python(fields)


# Every probe test runs twice: HTTP requests sent straight over the session's connector (the engine's
# way) and through ClientSession.request (probes.http_client): both must give the same verdicts.
@pytest.fixture(params=["direct", "session"])
async def check(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Awaitable[CheckOutcome]]]:
    session = make_session(8, keepalive=False)
    context = ProbeContext(session, direct_http=request.param == "direct")

    async def run(target: Any, conditions: list[str] | None = None, timeout: float = 3.0) -> CheckOutcome:
        compiled = compile_check("svc", [target], conditions or [], timeout)
        return await run_check(compiled, context, "test", explain=True)

    yield run
    await session.close()


@pytest.fixture
async def session_of() -> AsyncIterator[Callable[[bool], aiohttp.ClientSession]]:
    """HTTP sessions as the engine makes them (keep-alive or not), closed after the test."""
    opened: list[aiohttp.ClientSession] = []

    def make(keepalive: bool) -> aiohttp.ClientSession:
        opened.append(make_session(8, keepalive=keepalive))
        return opened[-1]

    yield make
    for session in opened:
        await session.close()


async def check_once(session: aiohttp.ClientSession, target: Any, direct: bool = True) -> CheckOutcome:
    return await run_check(compile_check("svc", [target], [], 3.0), ProbeContext(session, direct_http=direct), "test")


def verdict(outcome: CheckOutcome) -> tuple[str, str | None]:
    return outcome.result.status.value, outcome.result.error


# -- HTTP -------------------------------------------------------------------------


async def make_target(aiohttp_server: Any) -> Any:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html dir='rtl'>سامانه فعال است · ok</html>", content_type="text/html")

    async def maintenance(request: web.Request) -> web.Response:
        return web.Response(text="سامانه در حال بروزرسانی است (maintenance)")

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    async def api(request: web.Request) -> web.Response:
        return web.json_response({"data": {"state": "ok", "items": [1, 2, 3]}})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 << 20))

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"y" * 65536)
        return response

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def echo_method(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(text=f"{request.method} {request.headers.get('X-Token')} {body}")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/maintenance", maintenance)
    app.router.add_get("/503", unavailable)
    app.router.add_get("/api", api)
    app.router.add_get("/big", big)
    app.router.add_get("/big-chunked", big_chunked)
    app.router.add_get("/loop", loop)
    app.router.add_post("/echo", echo_method)
    return await aiohttp_server(app)


HTTP_ROWS = [
    # (path, extra probe fields, conditions, expected (status, error))
    ("/", {}, [], ("up", None)),
    ("/", {"method": "HEAD"}, [], ("up", None)),
    ("/", {"method": "HEAD", "keyword": "سامانه"}, [], ("down", "content")),  # a HEAD answer has no body
    ("/503", {}, [], ("down", "http_status")),
    ("/503", {"expect_status": [503]}, [], ("up", None)),
    ("/", {"expect_status": [201]}, [], ("down", "http_status")),
    ("/", {"keyword": "سامانه فعال"}, [], ("up", None)),
    ("/", {"keyword": "absent-word"}, [], ("down", "content")),
    ("/maintenance", {"keyword_absent": "maintenance"}, [], ("down", "content")),
    ("/", {"regex": r"\bok\b"}, [], ("up", None)),
    ("/", {"regex": r"^nothing$"}, [], ("down", "content")),
    ("/api", {"json_path": "data.state", "json_expect": "ok"}, [], ("up", None)),
    ("/api", {"json_path": "data.state", "json_expect": "degraded"}, [], ("down", "content")),
    ("/api", {"json_path": "data.missing"}, [], ("down", "content")),
    ("/api", {}, ["[STATUS] == 200", "len([BODY].data.items) == 3"], ("up", None)),
    ("/api", {}, ["[BODY].data.state == degraded"], ("down", "condition")),
    ("/503", {}, ["[STATUS] == 503"], ("up", None)),
    ("/big", {}, [], ("down", "body_too_large")),
    ("/big-chunked", {}, [], ("down", "body_too_large")),
    ("/big", {"max_body_bytes": 4 << 20}, [], ("up", None)),
    ("/loop", {"max_redirects": 3}, [], ("down", "http_status")),
    ("/loop", {"max_redirects": 0, "expect_status": [302]}, [], ("up", None)),
]


@pytest.mark.parametrize(("path", "fields", "conditions", "expected"), HTTP_ROWS,
                         ids=[f"{r[0]}-{r[3][0]}-{r[3][1]}-{i}" for i, r in enumerate(HTTP_ROWS)])
async def test_http_probe_verdicts(
    aiohttp_server: Any, check: Any, path: str, fields: dict[str, Any], conditions: list[str],
    expected: tuple[str, str | None],
) -> None:
    server = await make_target(aiohttp_server)
    outcome = await check(probe(type="http", url=str(server.make_url(path)), **fields), conditions)
    assert verdict(outcome) == expected, outcome.result.detail


async def test_http_probe_sends_method_headers_and_body(aiohttp_server: Any, check: Any) -> None:
    server = await make_target(aiohttp_server)
    target = probe(type="http", url=str(server.make_url("/echo")), method="POST",
                   headers={"X-Token": "abc"}, body="درخواست", keyword="POST abc درخواست")
    outcome = await check(target)
    assert verdict(outcome) == ("up", None), outcome.result.detail
    assert outcome.result.http_status == 200
    assert outcome.result.latency_ms > 0


async def test_connection_refused_is_a_connect_error(check: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: refused
        outcome = await check(probe(type="http", url=f"http://127.0.0.1:{port}/"))
    assert verdict(outcome) == ("down", "connect")


async def test_slow_drip_response_is_cut_by_the_total_timeout(check: Any) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(1000):  # one byte every 50 ms: would take 50 s
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with RawServer(drip) as server:
        started = asyncio.get_running_loop().time()
        outcome = await check(probe(type="http", url=f"http://127.0.0.1:{server.port}/"), timeout=1.0)
        elapsed = asyncio.get_running_loop().time() - started
    assert verdict(outcome) == ("down", "timeout")
    assert elapsed < 3


async def test_half_open_connection_that_never_answers_times_out(check: Any) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async with RawServer(silent) as server:
        outcome = await check(probe(type="http", url=f"http://127.0.0.1:{server.port}/"), timeout=0.5)
    assert verdict(outcome) == ("down", "timeout")


async def test_garbage_instead_of_http_is_a_protocol_error(check: Any) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()

    async with RawServer(garbage) as server:
        outcome = await check(probe(type="http", url=f"http://127.0.0.1:{server.port}/"))
    assert verdict(outcome) == ("down", "protocol")


async def test_both_ways_of_sending_make_the_same_request(session_of: Any) -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    session = session_of(False)
    async with RawServer(record) as server:
        target = probe(type="http", url=f"http://127.0.0.1:{server.port}/path?q=1", headers={"X-Token": "abc"})
        for direct in (True, False):
            outcome = await check_once(session, target, direct)
            assert verdict(outcome) == ("up", None), outcome.result.detail
    assert len(heads) == 2 and heads[0] == heads[1], heads
    assert heads[0].startswith(b"GET /path?q=1 HTTP/1.1\r\n")
    assert b"User-Agent: Didban/" in heads[0] and b"X-Token: abc" in heads[0]


async def test_a_kept_alive_connection_the_server_closed_is_tried_again_not_charged(session_of: Any) -> None:
    """A server that closes an idle kept-alive connection just as the next check reuses it: the check
    is sent once more on a new connection, as ClientSession.request does, and the service is up."""
    answered = []

    async def one_answer_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive, by HTTP/1.1's default
        await writer.drain()
        answered.append(1)
        await reader.readuntil(b"\r\n\r\n")  # the next request on this connection: closed unanswered

    session = session_of(True)
    async with RawServer(one_answer_per_connection) as server:
        target = probe(type="http", url=f"http://127.0.0.1:{server.port}/")
        for direct in (True, False):
            for _ in range(2):
                outcome = await check_once(session, target, direct)
                assert verdict(outcome) == ("up", None), (direct, outcome.result.detail)
    assert len(answered) == 4


async def test_a_redirect_is_followed_by_aiohttps_rules(aiohttp_server: Any, session_of: Any) -> None:
    hits = {"/old": 0, "/new": 0}

    async def old(request: web.Request) -> web.Response:
        hits["/old"] += 1
        raise web.HTTPSeeOther("/new")

    async def new(request: web.Request) -> web.Response:
        hits["/new"] += 1
        return web.Response(text="صفحه تازه")

    app = web.Application()
    app.router.add_get("/old", old)
    app.router.add_get("/new", new)
    server = await aiohttp_server(app)
    session = session_of(True)
    target = probe(type="http", url=str(server.make_url("/old")), keyword="صفحه تازه")
    for _ in range(3):
        outcome = await check_once(session, target)
        assert verdict(outcome) == ("up", None), outcome.result.detail
    # The first check met the redirect on the direct path and was sent again through the session; from then
    # on the session follows it.
    assert hits == {"/old": 4, "/new": 3}


async def test_a_redirect_in_lower_case_or_without_a_target(check: Any) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if head.startswith(b"GET /a "):
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: /b\r\ncontent-length: 0\r\nConnection: close\r\n\r\n")
        elif head.startswith(b"GET /nowhere "):  # a redirect with no target is the answer itself
            writer.write(b"HTTP/1.1 301 Moved\r\ncontent-length: 4\r\nConnection: close\r\n\r\ngone")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close\r\n\r\nfinal")
        await writer.drain()

    async with RawServer(answer) as server:
        followed = await check(probe(type="http", url=f"http://127.0.0.1:{server.port}/a", keyword="final"))
        kept = await check(probe(type="http", url=f"http://127.0.0.1:{server.port}/nowhere", expect_status=[301],
                                 keyword="gone"))
    assert verdict(followed) == ("up", None), followed.result.detail
    assert verdict(kept) == ("up", None), kept.result.detail


async def test_if_aiohttp_changes_its_request_classes_checks_go_through_the_session(
        aiohttp_server: Any, session_of: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from probes import http_client

    class ChangedRequest:  # what a future aiohttp with another signature would raise
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise TypeError("__init__() got an unexpected keyword argument 'session'")

    monkeypatch.setattr(http_client, "_direct_works", True)
    monkeypatch.setattr(aiohttp, "ClientRequest", ChangedRequest)
    server = await make_target(aiohttp_server)
    session = session_of(False)
    target = probe(type="http", url=str(server.make_url("/")), keyword="سامانه فعال")
    for _ in range(2):
        outcome = await check_once(session, target)
        assert verdict(outcome) == ("up", None), outcome.result.detail
    assert not http_client._direct_works
    assert len([r for r in caplog.records if "ClientSession from now on" in r.message]) == 1


# -- TLS ----------------------------------------------------------------------------


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[int, trustme.CA]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost",
                         not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="secure ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, ca
    await runner.cleanup()


async def test_untrusted_certificate_is_a_tls_error(tls_server: tuple[int, trustme.CA], check: Any) -> None:
    port, _ = tls_server
    assert verdict(await check(probe(type="http", url=f"https://127.0.0.1:{port}/"))) == ("down", "tls")
    assert verdict(await check(probe(type="tls", target=f"127.0.0.1:{port}"))) == ("down", "tls")


async def test_tls_probe_reports_days_left_and_enforces_the_minimum(
    tls_server: tuple[int, trustme.CA], check: Any
) -> None:
    port, _ = tls_server
    fine = await check(probe(type="tls", target=f"127.0.0.1:{port}", verify=False, min_days_left=7))
    assert verdict(fine) == ("up", None), fine.result.detail
    days_left = fine.facts.certificate_expiration_ms / 86_400_000
    assert 9.9 < days_left <= 10
    assert fine.result.cert_days_left is not None and 9.9 < fine.result.cert_days_left <= 10
    soon = await check(probe(type="tls", target=f"127.0.0.1:{port}", verify=False, min_days_left=30))
    assert verdict(soon) == ("down", "certificate")
    assert "[CERTIFICATE_EXPIRATION] (" in soon.result.detail


async def test_https_check_can_use_certificate_expiration_in_conditions(
    tls_server: tuple[int, trustme.CA], check: Any
) -> None:
    port, _ = tls_server
    target = probe(type="http", url=f"https://127.0.0.1:{port}/", verify_tls=False)
    assert verdict(await check(target, ["[CERTIFICATE_EXPIRATION] > 48h"])) == ("up", None)
    assert verdict(await check(target, ["[CERTIFICATE_EXPIRATION] > 720h"])) == ("down", "condition")


# -- TCP ----------------------------------------------------------------------------


async def test_tcp_probe_connects_sends_and_expects(check: Any) -> None:
    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(b"PONG\n" if line == b"PING\n" else b"ERR\n")
        await writer.drain()

    async with RawServer(pong) as server:
        target = f"127.0.0.1:{server.port}"
        assert verdict(await check(probe(type="tcp", target=target))) == ("up", None)
        assert verdict(await check(probe(type="tcp", target=target, send="PING\n", expect="PONG"))) == ("up", None)
        assert verdict(await check(probe(type="tcp", target=target, send="HELLO\n", expect="PONG"))) == (
            "down", "content")
        outcome = await check(probe(type="tcp", target=target), ["[CONNECTED] == true", "[IP] == 127.0.0.1"])
        assert verdict(outcome) == ("up", None)


# -- DNS ----------------------------------------------------------------------------


class DnsServer(asyncio.DatagramProtocol):
    """Answers A queries for portal.example.ir; NXDOMAIN for anything else."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = dnslib.DNSRecord.parse(data)
        reply = request.reply()
        name = str(request.q.qname)
        if name == "portal.example.ir." and request.q.qtype == dnslib.QTYPE.A:
            reply.add_answer(dnslib.RR(name, dnslib.QTYPE.A, rdata=dnslib.A("10.20.30.40"), ttl=60))
        elif name != "portal.example.ir.":
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        self.transport.sendto(reply.pack(), addr)  # type: ignore[attr-defined]


@pytest.fixture
async def dns_server() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(DnsServer, local_addr=("127.0.0.1", 0))
    yield f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    transport.close()


DNS_ROWS = [
    ({"name": "portal.example.ir"}, [], ("up", None)),
    ({"name": "portal.example.ir", "expect_answers": ["10.20.30.40"]}, [], ("up", None)),
    ({"name": "portal.example.ir", "expect_answers": ["10.9.9.9"]}, [], ("down", "dns")),
    ({"name": "missing.example.ir"}, [], ("down", "dns")),
    ({"name": "missing.example.ir", "expect_rcode": "NXDOMAIN"}, [], ("up", None)),
    ({"name": "portal.example.ir"}, ["[DNS_RCODE] == NOERROR", "[BODY] == 10.20.30.40"], ("up", None)),
    ({"name": "portal.example.ir"}, ["[IP] == pat(10.20.*)"], ("up", None)),
]


@pytest.mark.parametrize(("fields", "conditions", "expected"), DNS_ROWS)
async def test_dns_probe(dns_server: str, check: Any, fields: dict[str, Any], conditions: list[str],
                         expected: tuple[str, str | None]) -> None:
    outcome = await check(probe(type="dns", nameserver=dns_server, **fields), conditions)
    assert verdict(outcome) == expected, outcome.result.detail


async def test_dns_server_that_never_answers_times_out(check: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        outcome = await check(probe(type="dns", name="portal.example.ir", nameserver=f"127.0.0.1:{port}"),
                              timeout=0.5)
    assert verdict(outcome) == ("down", "timeout")


# -- ICMP ----------------------------------------------------------------------------


@pytest.mark.skipif(not icmp_available(), reason="this machine allows neither ping sockets nor raw sockets")
async def test_icmp_probe_pings_loopback(check: Any) -> None:
    outcome = await check(probe(type="icmp", host="127.0.0.1"))
    assert verdict(outcome) == ("up", None), outcome.result.detail


# -- the runner's classification ---------------------------------------------------------


async def test_a_crashing_probe_is_unknown_not_down(check: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import probes

    async def broken(target: Any, context: Any) -> Any:
        raise ZeroDivisionError("bug in a probe")

    # A probe type registered by a plugin that crashes: the runner must not call it downtime.
    monkeypatch.setitem(probes.PROBES, "tcp", broken)
    outcome = await check(probe(type="tcp", target="127.0.0.1:9"))
    assert outcome.result.status is Status.UNKNOWN
    assert outcome.result.error == "probe_crash"
