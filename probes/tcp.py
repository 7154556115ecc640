"""TCP: connect, optionally send a line and expect a reply containing some text."""

from __future__ import annotations

import asyncio

from core.config import TcpProbeConfig
from core.model import ErrorClass
from probes.base import ProbeContext, ProbeFailure
from probes.conditions import CheckFacts

_MAX_REPLY = 64 * 1024


def split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


async def probe(target: TcpProbeConfig, context: ProbeContext) -> CheckFacts:
    host, port = split_host_port(target.target)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        peer = writer.get_extra_info("peername")
        reply = b""
        if target.send is not None:
            writer.write(target.send.encode())
            await writer.drain()
        if target.expect is not None:
            wanted = target.expect.encode()
            while wanted not in reply and len(reply) < _MAX_REPLY:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                reply += chunk
        facts = CheckFacts(connected=True, ip=peer[0] if peer else "", body=reply)
        if target.expect is not None and target.expect.encode() not in reply:
            raise ProbeFailure(ErrorClass.CONTENT, f"reply does not contain {target.expect!r}", facts)
        return facts
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
