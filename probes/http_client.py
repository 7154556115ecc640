"""One HTTP request of a check: straight through the session's connector when that is the same request.

``ClientSession.request`` does a good deal of work per request that a monitor never uses: it
looks for cookies, proxies and credentials, sets up tracing, middlewares, a timer and a context
manager, and keeps a redirect history. With keep-alive on the target farm that cost about a third
of a check's CPU (75 µs a request against 50 through aiohttp's own request and connector classes,
same process, turns of 4 s; December 2026). So a check's request is built with
``aiohttp.ClientRequest``, sent over a connection of the session's connector, and read with
``aiohttp.ClientResponse``, exactly as the session does it, with the session's headers,
decompression and body buffer size (and HTTP/1.1, the version of both); a kept-alive connection
the server closed meanwhile is tried once more, as the session does for these methods.

What that path does not cover goes through ``ClientSession.request``: methods that must not be sent
twice (POST, PUT), URLs with credentials in them, and URLs that answered with a redirect (sent once
more through the session the first time, then always through it, so aiohttp's rules for redirects
apply). If aiohttp ever changes the classes this path uses, the first check that meets the change
logs it once and every request goes through the session from then on: slower, never wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import aiohttp
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger("didban.probes")

_SENT_AGAIN_SAFELY = frozenset({"GET", "HEAD", "OPTIONS"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SESSION_READ_BUFSIZE = 2**16  # ClientSession's default
_redirecting: set[URL] = set()  # URLs that answered with a redirect: the session follows them
_direct_works = True


async def open_response(session: aiohttp.ClientSession, method: str, url: URL, headers: Mapping[str, str],
                        data: bytes | None, verify_tls: bool, max_redirects: int,
                        direct: bool = True) -> aiohttp.ClientResponse:
    """The response to one request, its body not read yet; the caller releases it.  ``direct`` False:
    always through ``ClientSession.request``."""
    global _direct_works
    if direct and _direct_works and method in _SENT_AGAIN_SAFELY and url.raw_user is None and url not in _redirecting:
        try:
            response = await _send_direct(session, method, url, headers, data, verify_tls)
        except (TypeError, AttributeError) as exc:  # not the target's doing: aiohttp's classes changed
            _direct_works = False
            log.warning("aiohttp %s does not take requests the way this Didban sends them (%s); every check's "
                        "request goes through its ClientSession from now on", aiohttp.__version__, exc)
        else:
            answer = response.headers  # aiohttp reads a redirect's target from either header
            followed = max_redirects > 0 and response.status in _REDIRECTS and ("Location" in answer or "URI" in answer)
            if not followed:
                return response
            response.release()
            _redirecting.add(url)
    return await session.request(method, url, headers=headers, data=data, ssl=verify_tls,
                                 allow_redirects=max_redirects > 0, max_redirects=max(max_redirects, 1))


async def _send_direct(session: aiohttp.ClientSession, method: str, url: URL, headers: Mapping[str, str],
                       data: bytes | None, verify_tls: bool) -> aiohttp.ClientResponse:
    connector = session.connector
    assert connector is not None
    merged = session.headers
    if headers:
        merged = CIMultiDict(merged)
        for name, value in headers.items():
            merged[name] = value
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        request = aiohttp.ClientRequest(method, url, headers=merged, data=data, loop=loop, session=session,
                                        ssl=verify_tls)
        connection = await connector.connect(request, [], session.timeout)
        try:
            protocol = connection.protocol
            assert protocol is not None
            protocol.set_response_params(skip_payload=method == "HEAD", read_until_eof=True,
                                         auto_decompress=session.auto_decompress, read_bufsize=_SESSION_READ_BUFSIZE)
            response = await request.send(connection)
            try:
                await response.start(connection)
            except BaseException:
                response.close()
                raise
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            connection.close()
            if attempt == 2:
                raise
            continue  # a kept-alive connection the server had closed: once more, as the session does
        except BaseException:
            connection.close()
            raise
        return response
    raise AssertionError("unreachable")
