"""SMS through any provider's HTTP API: a URL, a method and a body template."""

from __future__ import annotations

from typing import Any

import aiohttp
import jinja2

from alerting.channels import DeliveryError
from core.addresses import normalise_mobile
from store.contract import Notice

_TEMPLATES = jinja2.Environment(autoescape=False)


class HttpSmsChannel:
    kind = "sms"

    def __init__(self, config: Any, secrets: Any) -> None:
        self.id = config.id
        self.rate_per_second = config.rate_per_second
        self._config = config
        self._body = _TEMPLATES.from_string(config.body_template)
        key = secrets.sms_api_key.get_secret_value() if secrets.sms_api_key else ""
        self._headers = {name: value.replace("{{ api_key }}", key) for name, value in config.headers.items()}
        self._headers.setdefault("Content-Type", config.content_type)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, notice: Notice) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds))
        body = self._body.render(to=normalise_mobile(notice.recipient), text=notice.body)
        try:
            async with self._session.request(self._config.method, self._config.url, data=body.encode(),
                                             headers=self._headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"SMS gateway unreachable: {type(exc).__name__}", permanent=False) from None
        if not 200 <= status < 300:
            raise DeliveryError(f"SMS gateway answered HTTP {status}", permanent=400 <= status < 500 and status != 429)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
