"""Webhook: a JSON POST signed with HMAC-SHA256 (header ``X-Didban-Signature: sha256=<hex>``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp

from alerting.channels import DeliveryError
from store.contract import Notice


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookChannel:
    kind = "webhook"

    def __init__(self, config: Any, secrets: Any) -> None:
        self.id = config.id
        self.rate_per_second = config.rate_per_second
        self._config = config
        self._secret = secrets.webhook_secret.get_secret_value().encode() if secrets.webhook_secret else b""
        self._session: aiohttp.ClientSession | None = None

    async def send(self, notice: Notice) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds))
        body = json.dumps({"event": notice.event, "to": notice.recipient, "lang": notice.lang,
                           "subject": notice.subject, "text": notice.body}, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Didban-Event": notice.event}
        if self._secret:
            headers["X-Didban-Signature"] = signature(self._secret, body)
        url = notice.recipient if notice.recipient.startswith(("http://", "https://")) else self._config.url
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}", permanent=False) from None
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook answered HTTP {status}", permanent=400 <= status < 500 and status != 429)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
