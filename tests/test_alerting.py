"""Notices: addresses, SMS length, burn rate, templates, the outbox, and delivery through a real
SMTP server (aiosmtpd, TLS and auth) and a Kavenegar stand-in on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerting.channels import DeliveryError, build_channels
from alerting.dispatcher import Dispatcher
from alerting.notifier import Notifier
from alerting.render import KINDS, render
from alerting.sms import fit, segments
from core.addresses import BadAddress, international_mobile, normalise_email, normalise_mobile
from core.config import DidbanConfig, Secrets
from core.model import MaintenanceWindow, Outage, OutageEvent
from sla_calc.burnrate import BurnRule, BurnWindow, error_budget_ms, firing
from store.contract import Notice
from store.outbox import Outbox
from store.schema import open_sqlite
from store.subscribers import Subscribers
from tests.conftest import free_port, make_config
from tests.kavenegar_standin import KavenegarStandIn

# -- addresses, SMS length, burn rate (tables) --------------------------------------------

MOBILES = [("09121234567", "09121234567"), ("+989121234567", "09121234567"), ("00989121234567", "09121234567"),
           ("9121234567", "09121234567"), ("۰۹۱۲۱۲۳۴۵۶۷", "09121234567"), ("0912 123 4567", "09121234567"),
           ("0912-123-4567", "09121234567")]


@pytest.mark.parametrize(("given", "normalised"), MOBILES)
def test_iranian_mobile_numbers_are_normalised(given: str, normalised: str) -> None:
    assert normalise_mobile(given) == normalised
    assert international_mobile(given) == "+98" + normalised[1:]


@pytest.mark.parametrize("bad", ["0812345678", "021-12345678", "+14155552671", "0912123456", "hello", ""])
def test_bad_mobile_numbers_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(BadAddress, match="not an Iranian mobile number"):
        normalise_mobile(bad)


@pytest.mark.parametrize(("given", "ok"), [("Citizen@Example.IR", "Citizen@example.ir"), ("a.b+c@mail.ir", None),
                                          ("no-at-sign", False), ("a@b", False), ("a@@b.ir", False)])
def test_email_addresses(given: str, ok: str | bool | None) -> None:
    if ok is False:
        with pytest.raises(BadAddress):
            normalise_email(given)
    else:
        assert normalise_email(given) == (ok or given)


SMS_ROWS = [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("س" * 70, 1), ("س" * 71, 2),
            ("س" * 134, 2), ("س" * 135, 3), ("€" * 80, 1), ("€" * 81, 2)]


@pytest.mark.parametrize(("text", "count"), SMS_ROWS, ids=[f"{len(t)}x{t[0]}" for t, _ in SMS_ROWS])
def test_sms_segments_follow_gsm7_and_ucs2_limits(text: str, count: int) -> None:
    assert segments(text) == count


def test_fitting_an_sms_cuts_at_a_word_and_keeps_the_link() -> None:
    text = "قطعی خدمت ارسال سند به دستگاه اجرایی یا دستگاه ثالث از ساعت ده صبح امروز تا اطلاع ثانوی ادامه دارد"
    fitted = fit(text, 1, " https://s.ir/x")
    assert segments(fitted) == 1 and fitted.endswith("… https://s.ir/x")
    assert fit("کوتاه", 1, " l") == "کوتاه l"


BUDGET = error_budget_ms(99.5, 43_200 * 60_000)  # 216 minutes
MIN = 60_000
RULES = (BurnRule((BurnWindow(1, 2), BurnWindow(5 / 60, 2 / 12)), "fast"),
         BurnRule((BurnWindow(6, 5), BurnWindow(0.5, 5 / 12)), "slow"))
BURN_ROWS = [
    # (downtime minutes in 1 h, 5 min, 6 h, 30 min, rules firing, why)
    (0, 0, 0, 0, [], "no downtime"),
    (4.32, 0.36, 4.32, 1, ["fast"], "exactly 2 % of 216 minutes in the hour, still burning now"),
    (4.3, 0.36, 4.3, 1, [], "just under 2 % in the hour"),
    (5, 0, 5, 0, [], "burned in the hour but recovered: the short window is quiet"),
    (0, 0, 10.8, 0.9, ["slow"], "5 % in six hours, still burning in the last half hour"),
    (30, 5, 30, 30, ["fast", "slow"], "both"),
]


@pytest.mark.parametrize(("h1", "m5", "h6", "m30", "expected", "why"), BURN_ROWS, ids=[r[5] for r in BURN_ROWS])
def test_multi_window_burn_rate(h1: float, m5: float, h6: float, m30: float, expected: list[str], why: str) -> None:
    downtime = {1: h1 * MIN, 5 / 60: m5 * MIN, 6: h6 * MIN, 0.5: m30 * MIN}
    assert firing(RULES, downtime, BUDGET) == expected, why


# -- templates -------------------------------------------------------------------------------

VALUES = {"service": "پورتال", "agency": "اداره", "start": "۱۴۰۳/۰۷/۰۱ ۱۰:۰۰", "end": "۱۴۰۳/۰۷/۰۱ ۱۲:۰۰",
          "error": "timeout", "code": "OT-AAAA-BBBB", "status_url": "http://127.0.0.1/s/portal", "level": 0,
          "duration": "۲ ساعت", "late": True, "notice_hours": 10, "window": "MW-1", "hours": 24, "rule": "fast",
          "burned": "3%", "availability": "99.10", "target": 99.5, "month": "1403-07", "credit_percent": 10,
          "amount": 0, "count": 5, "minutes": 30, "unsubscribe_url": "http://127.0.0.1/u/t", "when": "now",
          "location": "shiraz", "since": "۱۴۰۳/۰۷/۰۱ ۱۰:۰۰"}


@pytest.mark.parametrize("lang", ["fa", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_notice_renders_in_both_languages(kind: str, lang: str) -> None:
    rendered = render(kind, lang, VALUES)
    assert rendered.subject and rendered.text and rendered.sms
    assert ('dir="rtl"' in rendered.html) is (lang == "fa")
    if lang == "fa":
        assert any("\u0600" <= c <= "\u06ff" for c in rendered.subject)


def test_html_escapes_what_it_shows() -> None:
    rendered = render("outage_opened", "en", {**VALUES, "error": "<script>alert(1)</script>"})
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html


# -- the outbox ---------------------------------------------------------------------------------


def notice(event: str = "e1", to: str = "a@example.ir", channel: str = "mail") -> Notice:
    return Notice(event, channel, to, "fa", "موضوع", "متن")


# Concurrent claims by four workers: tests/test_store_contract.py, on both backends.


def test_the_same_event_is_queued_once_per_recipient(db_path: Path) -> None:
    outbox = Outbox(open_sqlite(db_path))
    assert outbox.enqueue([notice(), notice(to="b@example.ir")], 0) == 2
    assert outbox.enqueue([notice()], 5) == 0
    assert outbox.counts() == {"pending": 2}


def test_transient_failures_back_off_and_permanent_ones_stop(db_path: Path) -> None:
    outbox = Outbox(open_sqlite(db_path), base_delay_s=10)
    outbox.enqueue([notice("t"), notice("p")], 0)
    transient, permanent = outbox.claim(0, 10)
    outbox.failed(transient, "server down", permanent=False, now_ms=1000)
    outbox.failed(permanent, "mailbox does not exist", permanent=True, now_ms=1000)
    assert outbox.claim(1000 + 4_999, 10) == []  # backoff: at least half of 10 s
    [again] = outbox.claim(1000 + 10_000, 10)
    assert again.event == "t" and again.attempts == 2
    failed = outbox.rows(("failed",))
    assert [(r.notice.event, r.last_error) for r in failed] == [("p", "mailbox does not exist")]


def test_a_notice_left_sending_by_a_dead_process_is_sent_again(db_path: Path) -> None:
    outbox = Outbox(open_sqlite(db_path), stale_seconds=60)
    outbox.enqueue([notice()], 0)
    assert len(outbox.claim(0, 10)) == 1  # ...and the process is killed before recording the send
    restarted = Outbox(open_sqlite(db_path), stale_seconds=60)
    assert restarted.recover_stale(30_000) == 0  # too recent: maybe still being sent
    assert restarted.recover_stale(61_000) == 1
    assert len(restarted.claim(61_000, 10)) == 1


# -- a real SMTP server -----------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


class Smtp:
    """aiosmtpd on loopback with a certificate made here; login didban / s3cret."""

    def __init__(self, ca: trustme.CA, implicit_tls: bool) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login == b"didban" and data.password == b"s3cret"
            return AuthResult(success=ok, handled=False)  # handled=False: the server sends 535 itself

        kwargs: dict[str, Any] = {"authenticator": authenticator, "auth_require_tls": not implicit_tls}
        if implicit_tls:  # the whole connection is TLS (aiosmtpd's auth_require_tls only knows STARTTLS)
            self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, ssl_context=context,
                                         **kwargs)
        else:
            self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, tls_context=context,
                                         require_starttls=True, **kwargs)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def alert_config(smtp_port: int = 1, security: str = "starttls", ca_file: str | None = None,
                 kavenegar_url: str = "http://127.0.0.1:1", **alerting: Any) -> DidbanConfig:
    return make_config(
        [{"id": "portal", "name": {"fa": "پورتال اداره کل", "en": "Portal"},
          "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
        alerting={
            "status_page_url": "http://127.0.0.1:8080",
            "channels": [
                {"type": "email", "id": "mail", "host": "127.0.0.1", "port": smtp_port, "security": security,
                 "username": "didban", "sender": "Didban <noreply@didban.ir>", "ca_file": ca_file,
                 "timeout_seconds": 5},
                {"type": "kavenegar", "id": "sms", "base_url": kavenegar_url, "sender": "10004346"},
            ],
            "staff": [{"agency": "agency", "escalate_after_minutes": 15,
                       "levels": [[{"channel": "mail", "to": "it-director@eaz.ir", "lang": "fa"}],
                                  [{"channel": "mail", "to": "deputy@eaz.ir", "lang": "en"}]]}],
            "subscriber_email_channel": "mail",
            "subscriber_sms_channel": "sms",
            **alerting,
        },
    )


SECRETS = Secrets(smtp_password="s3cret", sms_api_key="KAVE-TEST-KEY")  # type: ignore[arg-type]


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "implicit-tls"])
async def test_email_arrives_over_tls_with_auth_in_persian_rtl(ca: trustme.CA, ca_file: str, db_path: Path,
                                                               implicit_tls: bool) -> None:
    smtp = Smtp(ca, implicit_tls)
    smtp.start()
    try:
        config = alert_config(smtp.port, "tls" if implicit_tls else "starttls", ca_file)
        outbox = Outbox(open_sqlite(db_path))
        notifier = Notifier(config, outbox, Subscribers(open_sqlite(db_path)))
        outage = Outage(1, "portal", 1_727_000_000_000, None, "timeout", "OT-7K3M-Q9TX")
        assert notifier.outage_event(OutageEvent("outage_opened", outage), 1_727_000_060_000) == 1
        dispatcher = Dispatcher(Outbox(open_sqlite(db_path)), build_channels(config.alerting.channels, SECRETS))
        assert await dispatcher.drain(20)
        await dispatcher.close()
    finally:
        smtp.stop()
    [message] = smtp.inbox.messages
    assert message["To"] == "it-director@eaz.ir"
    assert "پورتال اداره کل" in message["Subject"] and "OT-7K3M-Q9TX" in message["Subject"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "OT-7K3M-Q9TX" in text and "http://127.0.0.1:8080/s/portal" in text
    assert 'dir="rtl"' in html


async def test_a_wrong_smtp_password_is_a_permanent_failure(ca: trustme.CA, ca_file: str, db_path: Path) -> None:
    smtp = Smtp(ca, implicit_tls=False)
    smtp.start()
    try:
        config = alert_config(smtp.port, "starttls", ca_file)
        notifier = Notifier(config, Outbox(open_sqlite(db_path)), Subscribers(open_sqlite(db_path)))
        notifier.test("mail", "ops@eaz.ir", "fa", 0)
        wrong = Secrets(smtp_password="guess")  # type: ignore[arg-type]
        dispatcher = Dispatcher(Outbox(open_sqlite(db_path)), build_channels(config.alerting.channels, wrong))
        await dispatcher.drain(10)
        await dispatcher.close()
    finally:
        smtp.stop()
    [row] = Outbox(open_sqlite(db_path)).rows(("failed",))
    assert "authentication refused" in (row.last_error or "")
    assert "guess" not in (row.last_error or "")  # secrets never appear in errors
    assert smtp.inbox.messages == []


async def test_smtp_down_for_a_while_every_notice_arrives_once(ca: trustme.CA, ca_file: str,
                                                                db_path: Path) -> None:
    smtp = Smtp(ca, implicit_tls=False)
    config = alert_config(smtp.port, "starttls", ca_file)
    subscribers = Subscribers(open_sqlite(db_path))
    for i in range(5):
        s = subscribers.subscribe("portal", "email", f"citizen{i}@mail.ir", "fa", 0)
        assert subscribers.confirm("portal", "email", s.address, s.code)
    notifier = Notifier(config, Outbox(open_sqlite(db_path)), subscribers)
    outage = Outage(7, "portal", 1_727_000_000_000, None, "timeout", "OT-7K3M-Q9TX")
    assert notifier.outage_event(OutageEvent("outage_opened", outage), 1_727_000_060_000) == 6
    outbox = Outbox(open_sqlite(db_path), base_delay_s=0.05, max_delay_s=0.2)
    dispatcher = Dispatcher(outbox, build_channels(config.alerting.channels, SECRETS), poll_seconds=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await asyncio.sleep(1.0)  # the mail server is down: every attempt fails and is retried
    assert dispatcher.retried >= 6 and dispatcher.sent == 0
    smtp.start()
    try:
        for _ in range(200):
            if dispatcher.sent == 6:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # nothing more may arrive
    finally:
        stop.set()
        await running
        await dispatcher.close()
        smtp.stop()
    recipients = sorted(str(m["To"]) for m in smtp.inbox.messages)
    assert recipients == sorted(["it-director@eaz.ir"] + [f"citizen{i}@mail.ir" for i in range(5)])
    bodies = {m.get_body(("plain",)).get_content() for m in smtp.inbox.messages}  # type: ignore[union-attr]
    assert len(bodies) == 1  # every recipient got the same notice


# -- Kavenegar -----------------------------------------------------------------------------------------


@pytest.fixture
async def kavenegar(aiohttp_server: Any) -> AsyncIterator[tuple[KavenegarStandIn, str]]:
    standin = KavenegarStandIn("KAVE-TEST-KEY")
    server = await aiohttp_server(standin.app())
    yield standin, str(server.make_url("")).rstrip("/")


async def send_sms(url: str, to: str, secrets: Secrets = SECRETS) -> None:
    channel = build_channels(alert_config(kavenegar_url=url).alerting.channels, secrets)["sms"]
    try:
        await channel.send(Notice("e", "sms", to, "fa", "s", "قطعی پورتال. کد OT-7K3M-Q9TX"))
    finally:
        await channel.close()


async def test_kavenegar_send_follows_the_documented_request(kavenegar: tuple[KavenegarStandIn, str]) -> None:
    standin, url = kavenegar
    await send_sms(url, "+989121234567")
    [entry] = standin.sent
    assert entry["receptor"] == "09121234567" and entry["sender"] == "10004346"
    assert entry["message"] == "قطعی پورتال. کد OT-7K3M-Q9TX"


@pytest.mark.parametrize(("status", "permanent"), [(409, False), (418, True), (411, True)])
async def test_kavenegar_error_codes(kavenegar: tuple[KavenegarStandIn, str], status: int, permanent: bool) -> None:
    standin, url = kavenegar
    standin.fail_next = [status]
    with pytest.raises(DeliveryError) as caught:
        await send_sms(url, "09121234567")
    assert caught.value.permanent is permanent and str(status) in caught.value.reason


async def test_a_wrong_api_key_is_permanent_and_never_echoed(kavenegar: tuple[KavenegarStandIn, str]) -> None:
    _, url = kavenegar
    with pytest.raises(DeliveryError) as caught:
        await send_sms(url, "09121234567", Secrets(sms_api_key="WRONG-SECRET-KEY"))  # type: ignore[arg-type]
    assert caught.value.permanent and "403" in caught.value.reason
    assert "WRONG-SECRET-KEY" not in caught.value.reason


async def test_sms_subscribers_get_the_outage_within_two_segments(kavenegar: tuple[KavenegarStandIn, str],
                                                                  db_path: Path) -> None:
    standin, url = kavenegar
    config = alert_config(kavenegar_url=url)
    subscribers = Subscribers(open_sqlite(db_path))
    s = subscribers.subscribe("portal", "sms", "۰۹۱۲۱۲۳۴۵۶۷", "fa", 0)
    subscribers.confirm("portal", "sms", "09121234567", s.code)
    Notifier(config, Outbox(open_sqlite(db_path)), subscribers).outage_event(
        OutageEvent("outage_opened", Outage(3, "portal", 1_727_000_000_000, None, "timeout", "OT-7K3M-Q9TX")), 0)
    sms_only = [c for c in config.alerting.channels if c.id == "sms"]
    dispatcher = Dispatcher(Outbox(open_sqlite(db_path)), build_channels(sms_only, SECRETS))
    await dispatcher.drain(10)
    await dispatcher.close()
    [entry] = standin.sent
    assert "OT-7K3M-Q9TX" in entry["message"] and segments(entry["message"]) <= 2
    assert entry["message"].endswith("http://127.0.0.1:8080/s/portal")


# -- webhook ----------------------------------------------------------------------------------------


async def test_webhook_is_signed_with_hmac(aiohttp_server: Any) -> None:
    seen: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append((await request.read(), request.headers["X-Didban-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}],
                         alerting={"channels": [{"type": "webhook", "id": "hook",
                                                 "url": str(server.make_url("/hook"))}]})
    channel = build_channels(config.alerting.channels, Secrets(webhook_secret="hook-secret"))["hook"]  # type: ignore[arg-type]
    await channel.send(Notice("outage:1:opened", "hook", "ops", "en", "Outage", "text"))
    await channel.close()
    [(body, signature)] = seen
    assert signature == "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()


# -- who is told what, and when -----------------------------------------------------------------------


@pytest.fixture
def notifier(db_path: Path) -> Iterator[Notifier]:
    notifier = Notifier(alert_config(), Outbox(open_sqlite(db_path)), Subscribers(open_sqlite(db_path)))
    yield notifier


def events(notifier: Notifier) -> list[tuple[str, str]]:
    return [(r.notice.event, r.notice.recipient) for r in notifier.outbox.rows(("pending",))]


def test_an_unacknowledged_outage_escalates_to_the_next_level(notifier: Notifier) -> None:
    outage = Outage(9, "portal", 0, None, "timeout", "OT-7K3M-Q9TX")
    assert notifier.escalate([outage], 14 * MIN) == 0
    assert notifier.escalate([outage], 15 * MIN) == 1
    assert ("outage:9:escalated:1", "deputy@eaz.ir") in events(notifier)
    assert notifier.escalate([outage], 16 * MIN) == 0  # once per level
    acked = Outage(10, "portal", 0, None, "timeout", "OT-2222-3333")
    notifier.subscribers.acknowledge(10, "on-call", 5 * MIN)
    assert notifier.escalate([acked], 20 * MIN) == 0


def test_flapping_becomes_one_digest_per_window(notifier: Notifier) -> None:
    for i in range(8):
        kind = "outage_opened" if i % 2 == 0 else "outage_closed"
        outage = Outage(i // 2 + 1, "portal", i * MIN, None if i % 2 == 0 else (i + 1) * MIN, "timeout", f"OT-{i}")
        notifier.outage_event(OutageEvent(kind, outage), i * MIN)
    queued = [event for event, _ in events(notifier)]
    assert len([e for e in queued if e.startswith("outage:")]) == 3  # the first three transitions
    assert len([e for e in queued if e.startswith("flap:")]) == 1  # then a single digest


def test_maintenance_reminders_start_end_and_overrun(notifier: Notifier) -> None:
    hour = 60 * MIN
    window = MaintenanceWindow("MW-1", ("portal",), 100 * hour, 102 * hour, 0)
    notifier.maintenance_announced(window, 72, 0)
    for at in (76 * hour, 99 * hour, 100 * hour, 101 * hour):
        notifier.maintenance_tick([window], set(), at)
    notifier.maintenance_tick([window], {"portal"}, 102 * hour)
    queued = [event for event, _ in events(notifier)]
    assert queued == ["mw:MW-1:announced", "mw:MW-1:reminder:24", "mw:MW-1:reminder:1", "mw:MW-1:started",
                      "mw:MW-1:overran"]


def test_a_late_announcement_says_so(notifier: Notifier) -> None:
    window = MaintenanceWindow("MW-2", ("portal",), 10 * 60 * MIN, 11 * 60 * MIN, 0)
    notifier.maintenance_announced(window, 72, 0)
    [row] = notifier.outbox.rows(("pending",))
    assert "کمتر از ۷۲ ساعت" in row.notice.body


def test_every_subscriber_gets_the_same_notice(notifier: Notifier) -> None:
    for address in ("a@mail.ir", "b@mail.ir", "c@mail.ir"):
        s = notifier.subscribers.subscribe("portal", "email", address, "fa", 0)
        notifier.subscribers.confirm("portal", "email", address, s.code)
    unconfirmed = notifier.subscribers.subscribe("portal", "email", "d@mail.ir", "fa", 0)
    assert not unconfirmed.confirmed
    notifier.outage_event(OutageEvent("outage_opened", Outage(1, "portal", 0, None, "timeout", "OT-1")), 0)
    rows = notifier.outbox.rows(("pending",))
    citizens = [r for r in rows if r.notice.recipient.endswith("@mail.ir")]
    assert sorted(r.notice.recipient for r in citizens) == ["a@mail.ir", "b@mail.ir", "c@mail.ir"]
    assert len({(r.notice.subject, r.notice.body) for r in citizens}) == 1


def test_unsubscribe_by_link_or_by_keyword(notifier: Notifier) -> None:
    subscribers = notifier.subscribers
    first = subscribers.subscribe("portal", "sms", "09121234567", "fa", 0)
    subscribers.confirm("portal", "sms", "09121234567", first.code)
    assert subscribers.reply("sms", "+989121234567", "لغو") == 1
    second = subscribers.subscribe("portal", "email", "x@mail.ir", "en", 0)
    assert subscribers.unsubscribe(second.token)
    assert subscribers.of_service("portal") == []
    with pytest.raises(BadAddress, match="Iranian mobile"):
        subscribers.subscribe("portal", "sms", "02112345678", "fa", 0)


# -- end to end: the engine, a failing target, a real mail server --------------------------------


async def test_an_outage_seen_by_the_engine_reaches_staff_and_subscribers(
    aiohttp_server: Any, ca: trustme.CA, ca_file: str, db_path: Path
) -> None:
    from alerting.service import Alerts
    from didban.engine import Engine
    from store.sql_store import SqliteStore

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/", down)
    target = await aiohttp_server(app)
    smtp = Smtp(ca, implicit_tls=False)
    smtp.start()
    try:
        base = alert_config(smtp.port, "starttls", ca_file)
        service = {**asdict(base.agencies[0].services[0]), "interval_seconds": 1, "timeout_seconds": 1,
                   "probes": [{"type": "http", "url": str(target.make_url("/"))}]}
        config = DidbanConfig.model_validate({
            **base.model_dump(), "agencies": [{**base.agencies[0].model_dump(), "services": [service]}]})
        subscribers = Subscribers(open_sqlite(db_path))
        s = subscribers.subscribe("portal", "email", "citizen@mail.ir", "en", 0)
        subscribers.confirm("portal", "email", "citizen@mail.ir", s.code)
        store = SqliteStore(db_path)
        alerts = Alerts(config, Outbox(open_sqlite(db_path)), Subscribers(open_sqlite(db_path)),
                        Outbox(open_sqlite(db_path)), SECRETS)
        engine = Engine(config, store, "local", alerts=alerts)
        await engine.start()
        try:
            for _ in range(200):
                if len(smtp.inbox.messages) >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await engine.stop()
            store.close()
    finally:
        smtp.stop()
    by_recipient = {str(m["To"]): m for m in smtp.inbox.messages}
    assert set(by_recipient) == {"it-director@eaz.ir", "citizen@mail.ir"}
    assert by_recipient["citizen@mail.ir"]["Subject"].startswith("Outage: Portal — tracking code OT-")
    assert "قطعی خدمت" in by_recipient["it-director@eaz.ir"]["Subject"]


async def test_notify_test_and_outbox_commands(ca: trustme.CA, ca_file: str, tmp_path: Path) -> None:
    import json

    smtp = Smtp(ca, implicit_tls=False)
    smtp.start()
    config_file = tmp_path / "config.yaml"
    db = tmp_path / "didban.sqlite"
    config_file.write_text(json.dumps(alert_config(smtp.port, "starttls", ca_file).model_dump()), encoding="utf-8")
    env_file = tmp_path / "secrets.env"
    env_file.write_text("DIDBAN_SMTP_PASSWORD=s3cret\n", encoding="utf-8")

    async def didban(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "didban.cli", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return int(process.returncode or 0), out.decode(), err.decode()

    try:
        code, out, err = await didban("notify", "test", "--channel", "mail", "--to", "ops@eaz.ir", "--config",
                                      str(config_file), "--db", str(db), "--secrets-file", str(env_file))
        assert code == 0, err
        assert "sent through mail" in out
        code, out, err = await didban("subscribe", "portal", "--sms", "02112345678", "--config", str(config_file),
                                      "--db", str(db))
        assert code == 2 and "not an Iranian mobile number" in err
        code, out, err = await didban("notify", "test", "--channel", "sms", "--to", "09121234567", "--config",
                                      str(config_file), "--db", str(db), "--timeout", "3")
        assert code == 1 and "NOT delivered" in err
        code, out, err = await didban("outbox", "--json", "--config", str(config_file), "--db", str(db))
        listed = json.loads(out)
        assert listed["counts"]["sent"] == 1
        assert any(n["channel"] == "sms" and "DIDBAN_SMS_API_KEY" in (n["last_error"] or "")
                   for n in listed["notices"])
    finally:
        smtp.stop()
    assert [str(m["To"]) for m in smtp.inbox.messages] == ["ops@eaz.ir"]


async def test_generic_http_sms_gateway_renders_its_body_template(aiohttp_server: Any) -> None:
    import json

    seen: list[tuple[dict[str, Any], str]] = []

    async def gateway(request: web.Request) -> web.Response:
        seen.append((json.loads(await request.read()), request.headers["Authorization"]))
        return web.json_response({"ok": True}, status=200 if len(seen) == 1 else 422)

    app = web.Application()
    app.router.add_post("/send", gateway)
    server = await aiohttp_server(app)
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}], alerting={
        "channels": [{"type": "http_sms", "id": "gw", "url": str(server.make_url("/send")),
                      "body_template": '{"mobile": {{ to | tojson }}, "msg": {{ text | tojson }}}',
                      "headers": {"Authorization": "Bearer {{ api_key }}"}}]})
    channel = build_channels(config.alerting.channels, SECRETS)["gw"]
    await channel.send(Notice("e", "gw", "+989121234567", "fa", "s", "قطعی «پورتال»"))
    with pytest.raises(DeliveryError) as caught:
        await channel.send(Notice("e2", "gw", "09121234567", "fa", "s", "x"))
    await channel.close()
    assert seen[0] == ({"mobile": "09121234567", "msg": "قطعی «پورتال»"}, "Bearer KAVE-TEST-KEY")
    assert caught.value.permanent and "422" in caught.value.reason


async def test_kill_9_mid_send_loses_nothing_and_resends_at_most_the_one_in_flight(tmp_path: Path) -> None:
    """The dispatcher process is killed while the mail server is still answering a DATA command."""
    import json
    import signal

    class SlowInbox(Inbox):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            result = await super().handle_DATA(server, session, envelope)
            await asyncio.sleep(1.5)  # the message is in, the 250 is not yet sent
            return result

    port = free_port()
    inbox = SlowInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    config = make_config([{"id": "portal", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}], alerting={
        "channels": [{"type": "email", "id": "mail", "host": "127.0.0.1", "port": port, "security": "none",
                      "sender": "Didban <noreply@didban.ir>"}]})
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.model_dump()), encoding="utf-8")
    db = tmp_path / "didban.sqlite"
    Outbox(open_sqlite(db)).enqueue(
        [Notice(f"e{i}", "mail", f"citizen{i}@mail.ir", "fa", "قطعی", "متن") for i in range(3)], 0)
    try:
        worker = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.outbox_worker", str(config_file),
                                                      str(db), stdout=asyncio.subprocess.PIPE)
        assert worker.stdout is not None
        assert (await asyncio.wait_for(worker.stdout.readline(), 30)).strip() == b"started"
        for _ in range(100):  # wait until the first message is inside DATA
            if inbox.messages:
                break
            await asyncio.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
        states = Outbox(open_sqlite(db)).counts()
        assert states.get("sending") == 1 and states.get("pending") == 2  # nothing lost, one in flight

        restarted = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.outbox_worker",
                                                         str(config_file), str(db), stdout=asyncio.subprocess.PIPE)
        await asyncio.sleep(1.2)  # the in-flight row goes stale and is sent again
        assert await asyncio.wait_for(restarted.wait(), 60) == 0
    finally:
        controller.stop()
    received = sorted(str(m["To"]) for m in inbox.messages)
    assert sorted(set(received)) == ["citizen0@mail.ir", "citizen1@mail.ir", "citizen2@mail.ir"]
    assert len(received) <= 4  # at most the one in-flight notice twice
    assert Outbox(open_sqlite(db)).counts() == {"sent": 3}
