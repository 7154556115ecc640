"""HTTP(S): status, keyword, regex and JSON path expectations; the body read is capped."""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

import aiohttp
from yarl import URL

from core.config import HttpProbeConfig
from core.model import ErrorClass
from probes.base import ProbeContext, ProbeFailure
from probes.conditions import CheckFacts, json_eval
from probes.http_client import open_response
from probes.tls import handshake

_CHUNK = 64 * 1024


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode())


# Parsed once per configured URL: parsing it for every check was a tenth of aiohttp's work.
_URLS: dict[str, URL] = {}


def _url(text: str) -> URL:
    url = _URLS.get(text)
    if url is None:
        url = _URLS[text] = URL(text)
    return url


async def probe(target: HttpProbeConfig, context: ProbeContext) -> CheckFacts:
    response = await open_response(context.http, target.method, _url(target.url), target.headers,
                                   target.body.encode() if target.body is not None else None, target.verify_tls,
                                   target.max_redirects, context.direct_http)
    try:
        body = await _read_capped(response, target.max_body_bytes)
        status = response.status
    finally:
        response.release()
    ip, certificate_ms = "", 0
    if "[CERTIFICATE_EXPIRATION]" in context.wants and response.url.scheme == "https":
        # aiohttp releases the connection with the body, so the certificate is
        # read in a handshake of its own, only when a condition asks for it.
        port = response.url.port or 443
        ip, certificate_ms = await handshake(response.url.host or "", port, None, target.verify_tls)
    elif "[IP]" in context.wants:
        infos = await asyncio.get_running_loop().getaddrinfo(response.url.host, None)
        ip = str(infos[0][4][0])
    facts = CheckFacts(status=status, body=body, connected=True, ip=ip, certificate_not_after_ms=certificate_ms)
    # When the user's conditions judge [STATUS], they replace the default rule (status < 400).
    _expect(target, facts, default_status="[STATUS]" not in context.wants)
    return facts


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None:
        if declared > limit:
            raise ProbeFailure(ErrorClass.BODY_TOO_LARGE, f"body of {declared} bytes is over the {limit}-byte cap")
        return await response.read()  # exactly Content-Length bytes
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await response.content.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ProbeFailure(ErrorClass.BODY_TOO_LARGE, f"body is over the {limit}-byte cap")
        chunks.append(chunk)


def _expect(target: HttpProbeConfig, facts: CheckFacts, default_status: bool) -> None:
    if target.expect_status:
        status_ok = facts.status in target.expect_status
    else:
        status_ok = facts.status < 400 or not default_status
    if not status_ok:
        raise ProbeFailure(ErrorClass.HTTP_STATUS, f"HTTP {facts.status}", facts)
    body = facts.body
    if target.keyword is not None and target.keyword.encode() not in body:
        raise ProbeFailure(ErrorClass.CONTENT, f"keyword {target.keyword!r} not found", facts)
    if target.keyword_absent is not None and target.keyword_absent.encode() in body:
        raise ProbeFailure(ErrorClass.CONTENT, f"page contains {target.keyword_absent!r}", facts)
    if target.regex is not None and not _regex(target.regex).search(body):
        raise ProbeFailure(ErrorClass.CONTENT, f"body does not match /{target.regex}/", facts)
    if target.json_path is not None:
        try:
            value, _ = json_eval(target.json_path, body)
        except Exception:
            raise ProbeFailure(ErrorClass.CONTENT, f"JSON path {target.json_path} not found", facts) from None
        if target.json_expect is not None and value != target.json_expect:
            raise ProbeFailure(
                ErrorClass.CONTENT, f"JSON path {target.json_path} is {value[:80]!r}, expected "
                f"{target.json_expect!r}", facts
            )
