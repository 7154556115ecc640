"""Email through SMTP (aiosmtplib): STARTTLS or implicit TLS, authentication, text + HTML."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

import aiosmtplib

from alerting.channels import DeliveryError
from store.contract import Notice

# Headers are not folded (998 is SMTP's line limit): folding a Persian subject
# across RFC 2047 encoded words drops the spaces at the fold ("اداره کل"
# arrived as "ادارهکل").
_POLICY = SMTP_POLICY.clone(max_line_length=998)


class EmailChannel:
    kind = "email"

    def __init__(self, config: Any, secrets: Any) -> None:
        self.id = config.id
        self.rate_per_second = config.rate_per_second
        self._config = config
        self._password = secrets.smtp_password.get_secret_value() if secrets.smtp_password else None
        self._tls = ssl.create_default_context(cafile=config.ca_file) if config.security != "none" else None
        self._envelope_sender = parseaddr(config.sender)[1] or config.sender
        self._idle: list[aiosmtplib.SMTP] = []

    def message(self, notice: Notice) -> EmailMessage:
        message = EmailMessage(policy=_POLICY)
        message["From"] = self._config.sender
        message["To"] = notice.recipient
        message["Subject"] = notice.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain="didban")
        message["Content-Language"] = notice.lang
        message["X-Didban-Event"] = notice.event
        message.set_content(notice.body, charset="utf-8")
        if notice.html:
            message.add_alternative(notice.html, subtype="html", charset="utf-8")
        return message

    async def _connection(self) -> aiosmtplib.SMTP:
        """An idle authenticated session from the pool, or a new one."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()  # the server hung up while it was idle
        config = self._config
        client = aiosmtplib.SMTP(hostname=config.host, port=config.port, use_tls=config.security == "tls",
                                 start_tls=config.security == "starttls", tls_context=self._tls,
                                 timeout=config.timeout_seconds)
        try:
            await client.connect()
            if config.username:
                await client.login(config.username, self._password or "")
        except BaseException:
            client.close()
            raise
        return client

    async def send(self, notice: Notice) -> None:
        # Sessions are reused: a new TLS handshake and login per notice would cap a
        # fan-out to 10,000 subscribers at a few hundred messages a second.
        client: aiosmtplib.SMTP | None = None
        try:
            client = await self._connection()
            # Flattened here, with the non-folding policy: aiosmtplib would re-fold with its own.
            await client.sendmail(self._envelope_sender, [notice.recipient],
                                  self.message(notice).as_bytes(policy=_POLICY))
        except aiosmtplib.SMTPAuthenticationError as exc:
            self._discard(client)
            client = None
            raise DeliveryError(f"SMTP authentication refused ({exc.code})", permanent=True) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            raise DeliveryError(f"recipient refused {codes}", permanent=all(c >= 500 for c in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._discard(client)
            client = None
            raise DeliveryError(f"SMTP {exc.code}: {exc.message[:200]}", permanent=exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._discard(client)
            client = None
            raise DeliveryError(f"mail server unreachable: {type(exc).__name__}", permanent=False) from None
        finally:
            if client is not None and client.is_connected:
                self._idle.append(client)

    @staticmethod
    def _discard(client: aiosmtplib.SMTP | None) -> None:
        if client is not None:
            client.close()

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
