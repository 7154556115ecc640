"""SMS through Kavenegar's REST API, as documented.

``POST {base}/v1/{API-KEY}/sms/send.json`` with form fields ``receptor``,
``message`` and optionally ``sender``.  The answer is JSON ``{"return":
{"status": 200, "message": "…"}, "entries": [{"messageid": …, "status": …,
"receptor": …, …}]}``; any other ``return.status`` is an error code.  The API
key travels in the URL path, so it is never put in an error message or a log.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from alerting.channels import DeliveryError
from core.addresses import normalise_mobile
from store.contract import Notice

# Kavenegar's codes that a retry can fix: the server could not answer (409),
# the operation failed on their side (402), too many calls (451, 429).
TRANSIENT = {402, 409, 429, 451}
MEANINGS = {
    400: "incomplete parameters", 401: "account disabled", 402: "operation failed", 403: "invalid API key",
    404: "unknown method", 405: "wrong HTTP method", 406: "required field empty", 407: "access denied",
    409: "server unable to respond", 411: "invalid receptor", 412: "invalid sender", 413: "message empty or too long",
    414: "too many receptors in one request", 417: "invalid date", 418: "insufficient credit",
    422: "invalid characters", 451: "too many calls from this IP",
}


class KavenegarChannel:
    kind = "sms"

    def __init__(self, config: Any, secrets: Any) -> None:
        self.id = config.id
        self.rate_per_second = config.rate_per_second
        self._config = config
        self._key = secrets.sms_api_key.get_secret_value() if secrets.sms_api_key else ""
        self._session: aiohttp.ClientSession | None = None

    async def send(self, notice: Notice) -> None:
        if not self._key:
            raise DeliveryError("no SMS API key (set DIDBAN_SMS_API_KEY)", permanent=True)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds))
        form = {"receptor": normalise_mobile(notice.recipient), "message": notice.body}
        if self._config.sender:
            form["sender"] = self._config.sender
        url = f"{self._config.base_url.rstrip('/')}/v1/{self._key}/sms/send.json"
        try:
            async with self._session.post(url, data=form) as response:
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    raise DeliveryError(f"Kavenegar answered HTTP {response.status} without JSON",
                                        permanent=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"Kavenegar unreachable: {type(exc).__name__}", permanent=False) from None
        status = int((answer.get("return") or {}).get("status", response.status))
        if status != 200:
            meaning = MEANINGS.get(status, "unknown error")
            raise DeliveryError(f"Kavenegar {status}: {meaning}", permanent=status not in TRANSIENT and status < 500)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
