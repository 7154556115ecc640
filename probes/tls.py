"""TLS: handshake, hostname match (when verifying) and the certificate's expiry.

The minimum days left is a built-in condition the runner checks, because the
runner owns the clock.
"""

from __future__ import annotations

import asyncio
import ssl

from core.config import TlsProbeConfig
from probes.base import ProbeContext
from probes.certificates import expiry_ms_from_der
from probes.conditions import CheckFacts
from probes.tcp import split_host_port


def _context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


_CONTEXTS = {True: _context(True), False: _context(False)}


async def handshake(host: str, port: int, server_name: str | None, verify: bool) -> tuple[str, int]:
    """(peer IP, certificate not-after in epoch ms) after a TLS handshake."""
    _, writer = await asyncio.open_connection(
        host, port, ssl=_CONTEXTS[verify], server_hostname=server_name or host
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        peer = writer.get_extra_info("peername")
        return (peer[0] if peer else ""), (expiry_ms_from_der(der) if der else 0)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def probe(target: TlsProbeConfig, context: ProbeContext) -> CheckFacts:
    host, port = split_host_port(target.target)
    ip, not_after_ms = await handshake(host, port, target.server_name, target.verify)
    return CheckFacts(connected=True, ip=ip, certificate_not_after_ms=not_after_ms)
