"""Secrets never reach a log: Authorization values are cut out of aiohttp's own log records.

aiohttp logs a request it cannot parse with the offending header line, and a
malformed ``Authorization`` header would put a token (or a guess at one)
into the log.  This filter rewrites such records before any handler sees
them: the message, its arguments and the formatted exception.
"""

from __future__ import annotations

import logging
import re

_AUTHORIZATION = re.compile(r"(authorization\s*[:=]\s*)([^\r\n'\"]*)", re.IGNORECASE)
LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.client", "aiohttp.internal")


def redact(text: str) -> str:
    return _AUTHORIZATION.sub(r"\1[redacted]", text)


class RedactAuthorization(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactAuthorization) for f in logger.filters):
            logger.addFilter(RedactAuthorization())
