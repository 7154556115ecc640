"""Alert channels: one module per kind, one contract.

A channel is built from its config and has ``async send(notice)``; it raises
``DeliveryError`` marked permanent (a bad address, a refused credential: do
not retry) or transient (the server is down: the outbox retries later).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from store.contract import Notice


class DeliveryError(Exception):
    def __init__(self, reason: str, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Channel(Protocol):
    id: str
    kind: str  # "email" | "sms" | "webhook": what a recipient's address is
    rate_per_second: float

    async def send(self, notice: Notice) -> None: ...

    async def close(self) -> None: ...


def build_channels(configs: list[Any], secrets: Any) -> dict[str, Channel]:
    from alerting.channels import email, http_sms, kavenegar, webhook

    builders: dict[str, Callable[[Any, Any], Channel]] = {
        "email": email.EmailChannel,
        "kavenegar": kavenegar.KavenegarChannel,
        "http_sms": http_sms.HttpSmsChannel,
        "webhook": webhook.WebhookChannel,
    }
    return {config.id: builders[config.type](config, secrets) for config in configs}
