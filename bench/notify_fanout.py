#!/usr/bin/env python3
"""Notice fan-out: one outage notice to 10,000 email and 10,000 SMS subscribers.

A local aiosmtpd server and the Kavenegar stand-in (``tests/kavenegar_standin.py``,
which follows Kavenegar's documented API) run in their own processes on core
0; Didban's notifier, outbox (SQLite) and dispatcher run on core 1.  Each
notice is one outbox row and one delivery (one SMTP session, one API request);
the servers count what they received.

    python bench/notify_fanout.py            # 10,000 of each (~1 minute)
    python bench/notify_fanout.py --quick    # 1,000 of each
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from store.schema import open_sqlite

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if (os.cpu_count() or 1) > 1 else []


def smtp_worker(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Counter:
        received = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Counter.received += 1
            return "250 OK"

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # delivered to sigwait, not the default action
    controller = Controller(Counter(), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    controller.stop()
    print(json.dumps({"received": Counter.received}), flush=True)


def sms_worker(port: int) -> None:
    from aiohttp import web

    from tests.kavenegar_standin import KavenegarStandIn

    standin = KavenegarStandIn("BENCH-KEY")
    app = standin.app()

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"received": len(standin.sent)})

    app.router.add_get("/count", count)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def start_worker(kind: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen([*pinned(0), sys.executable, __file__, f"--{kind}-worker", str(port)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def fanout(count: int, smtp_port: int, sms_port: int) -> dict[str, Any]:
    from alerting.channels import build_channels
    from alerting.dispatcher import Dispatcher
    from alerting.notifier import Notifier
    from core.config import DidbanConfig, Secrets
    from core.model import Outage, OutageEvent
    from store.outbox import Outbox
    from store.subscribers import Subscribers

    config = DidbanConfig.model_validate({
        "agreements": [{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": "agency", "name": {"fa": "اداره", "en": "Agency"}, "services": [
            {"id": "portal", "name": {"fa": "پورتال اداره کل", "en": "Portal"}, "agreement": "sla",
             "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}]}],
        "alerting": {
            "channels": [
                {"type": "email", "id": "mail", "host": "127.0.0.1", "port": smtp_port, "security": "none",
                 "sender": "Didban <noreply@didban.ir>", "rate_per_second": 100_000},
                {"type": "kavenegar", "id": "sms", "base_url": f"http://127.0.0.1:{sms_port}", "sender": "10004346",
                 "rate_per_second": 100_000}],
            "subscriber_email_channel": "mail", "subscriber_sms_channel": "sms"},
    })
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite"
        subscribers = Subscribers(open_sqlite(db))
        for i in range(count):
            for kind, address in (("email", f"citizen{i}@mail.ir"), ("sms", f"0912{i:07d}")):
                subscriber = subscribers.subscribe("portal", kind, address, "fa", 0)
                subscribers.confirm("portal", kind, subscriber.address, subscriber.code)
        notifier = Notifier(config, Outbox(open_sqlite(db)), subscribers)
        t0 = time.perf_counter()
        queued = notifier.outage_event(
            OutageEvent("outage_opened", Outage(1, "portal", 1_727_000_000_000, None, "timeout", "OT-7K3M-Q9TX")),
            1_727_000_060_000)
        enqueue_s = time.perf_counter() - t0
        figures: dict[str, Any] = {"queued": queued, "enqueue_s": round(enqueue_s, 2)}
        secrets = Secrets(sms_api_key="BENCH-KEY")  # type: ignore[arg-type]
        for channel_id in ("mail", "sms"):
            channels = build_channels([c for c in config.alerting.channels if c.id == channel_id], secrets)
            outbox = Outbox(open_sqlite(db))
            dispatcher = Dispatcher(outbox, channels, concurrency=64)
            t1 = time.perf_counter()
            await dispatcher.drain(600)
            figures[channel_id] = {"seconds": round(time.perf_counter() - t1, 2), "sent": dispatcher.sent,
                                   "failed": dispatcher.failed, "retried": dispatcher.retried}
            await dispatcher.close()
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smtp-worker", type=int)
    parser.add_argument("--sms-worker", type=int)
    args = parser.parse_args()
    if args.smtp_worker:
        smtp_worker(args.smtp_worker)
        return 0
    if args.sms_worker:
        sms_worker(args.sms_worker)
        return 0
    from tests.conftest import free_port

    count = 1000 if args.quick else 10_000
    smtp_port, sms_port = free_port(), free_port()
    smtp, sms = start_worker("smtp", smtp_port), start_worker("sms", sms_port)
    try:
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
        figures = asyncio.run(fanout(count, smtp_port, sms_port))
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{sms_port}/count", timeout=10) as response:
            sms_received = json.loads(response.read())["received"]
    finally:
        smtp.send_signal(signal.SIGTERM)
        smtp_out, _ = smtp.communicate(timeout=30)
        sms.terminate()
        sms.wait(30)
    smtp_received = json.loads(smtp_out.strip().splitlines()[-1])["received"]
    mail, text = figures["mail"], figures["sms"]
    print(json.dumps(figures), file=sys.stderr)
    print(f"\nOne outage notice to {count:,} email and {count:,} SMS subscribers "
          f"({figures['queued']:,} outbox rows queued in {figures['enqueue_s']} s)\n")
    print("| channel | notices | delivered (server count) | time | per second | target |")
    print("|---|---|---|---|---|---|")
    print(f"| email → local aiosmtpd | {count:,} | {smtp_received:,} | {mail['seconds']} s "
          f"| {count / mail['seconds']:.0f} | ≤ 60 s |")
    print(f"| SMS → Kavenegar stand-in | {count:,} | {sms_received:,} | {text['seconds']} s "
          f"| {count / text['seconds']:.0f} | ≤ 30 s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
