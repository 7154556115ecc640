"""The resolver the probes use, shared with the resolver canaries.

By default the system's (aiohttp's ``ThreadedResolver``: getaddrinfo, as a
browser would).  With ``scheduler.nameservers`` set, names are resolved by
those servers over DNS (dnspython), the way a monitor pinned to the agency's
own resolvers works.  Either way the canaries of type ``dns`` ask *this*
resolver, so when it breaks the monitor knows its own resolution failed and
does not charge the agency with ``dns`` outages.
"""

from __future__ import annotations

import socket

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult


class NameserverResolver(AbstractResolver):
    """aiohttp's resolver interface over configured nameservers (``IP`` or ``IP:PORT``)."""

    def __init__(self, nameservers: list[str], timeout_s: float = 3.0) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=False)
        self._resolver.nameservers = [server.rsplit(":", 1)[0] if server.count(":") == 1 else server
                                      for server in nameservers]
        ports = {int(server.rsplit(":", 1)[1]) for server in nameservers if server.count(":") == 1}
        self._resolver.port = ports.pop() if len(ports) == 1 else 53
        self._resolver.lifetime = timeout_s

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        kind = "AAAA" if family == socket.AF_INET6 else "A"
        try:
            answer = await self._resolver.resolve(host, kind)
        except (dns.exception.DNSException, OSError) as exc:
            # gaierror is what getaddrinfo raises: the runner classifies both resolvers' failures alike.
            raise socket.gaierror(socket.EAI_AGAIN, f"{host}: {type(exc).__name__}: {exc}") from exc
        inet = socket.AF_INET6 if kind == "AAAA" else socket.AF_INET
        return [ResolveResult(hostname=host, host=rdata.to_text(), port=port, family=inet, proto=0,
                              flags=socket.AI_NUMERICHOST) for rdata in answer]

    async def close(self) -> None:
        return None


def make_resolver(nameservers: list[str] | None, timeout_s: float = 3.0) -> AbstractResolver:
    if nameservers:
        return NameserverResolver(nameservers, timeout_s)
    return aiohttp.ThreadedResolver()
