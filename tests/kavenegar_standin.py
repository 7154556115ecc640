"""A local stand-in for Kavenegar's SMS API, following its documented requests and answers.

``POST /v1/{API-KEY}/sms/send.json`` with form fields ``receptor`` (comma-
separated), ``message`` and optional ``sender``.  Success: HTTP 200 and
``{"return": {"status": 200, "message": "تایید شد"}, "entries": [{"messageid",
"message", "status": 1, "statustext": "در صف ارسال", "sender", "receptor",
"date", "cost"}]}``.  Errors: the HTTP status equals ``return.status`` with an
empty ``entries``: 403 invalid API key, 411 invalid receptor, 412 invalid
sender, 413 empty or too long message, 414 more than 200 receptors, 418 not
enough credit, 409 server unable to respond.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from aiohttp import web

MESSAGES = {200: "تایید شد", 403: "کد شناسائی API-Key معتبر نمی‌باشد", 409: "سرور قادر به پاسخگوئی نیست",
            411: "دریافت کننده نامعتبر است", 412: "ارسال کننده نامعتبر است",
            413: "پیام خالی است و یا طول پیام بیش از حد مجاز میباشد", 414: "حجم درخواست بیشتر از حد مجاز است",
            418: "اعتبار حساب شما کافی نیست"}
_RECEPTOR = re.compile(r"^(?:\+98|0098|0)?9\d{9}$")


class KavenegarStandIn:
    def __init__(self, api_key: str, credit: int = 10**9) -> None:
        self.api_key = api_key
        self.credit = credit
        self.fail_next: list[int] = []  # return these statuses for the next requests (409: transient)
        self.sent: list[dict[str, Any]] = []
        self._ids = itertools.count(8792343)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v1/{key}/sms/send.json", self.send)
        return app

    def _answer(self, status: int, entries: list[dict[str, Any]] | None = None) -> web.Response:
        return web.json_response({"return": {"status": status, "message": MESSAGES[status]},
                                  "entries": entries}, status=status)

    async def send(self, request: web.Request) -> web.Response:
        if request.match_info["key"] != self.api_key:
            return self._answer(403)
        if self.fail_next:
            return self._answer(self.fail_next.pop(0))
        form = await request.post()
        receptors = [r.strip() for r in str(form.get("receptor", "")).split(",") if r.strip()]
        message = str(form.get("message", ""))
        sender = str(form.get("sender", "10004346"))
        if len(receptors) > 200:
            return self._answer(414)
        if not receptors or not all(_RECEPTOR.match(r) for r in receptors):
            return self._answer(411)
        if not sender.isdigit():
            return self._answer(412)
        if not message or len(message) > 900:
            return self._answer(413)
        if self.credit < len(receptors):
            return self._answer(418)
        self.credit -= len(receptors)
        entries = []
        for receptor in receptors:
            entry = {"messageid": next(self._ids), "message": message, "status": 1, "statustext": "در صف ارسال",
                     "sender": sender, "receptor": receptor, "date": int(time.time()), "cost": 120}
            entries.append(entry)
            self.sent.append(entry)
        return self._answer(200, entries)
