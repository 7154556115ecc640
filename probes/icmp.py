"""ICMP echo, where the machine allows it.

An unprivileged ICMP datagram socket is tried first (Linux, when
net.ipv4.ping_group_range admits the process), then a raw socket (root).
If neither is allowed the probe fails with a clear reason at start-up
rather than reporting the target down.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from core.config import IcmpProbeConfig
from probes.base import ProbeContext
from probes.conditions import CheckFacts

_ECHO_REQUEST, _ECHO_REPLY = 8, 0


class IcmpNotPermitted(RuntimeError):
    pass


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _open_socket() -> tuple[socket.socket, bool]:
    """(socket, raw): raw sockets also receive the IP header."""
    for kind, raw in ((socket.SOCK_DGRAM, False), (socket.SOCK_RAW, True)):
        try:
            return socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP), raw
        except PermissionError:
            continue
    raise IcmpNotPermitted("ICMP needs net.ipv4.ping_group_range or root (CAP_NET_RAW)")


def icmp_available() -> bool:
    try:
        sock, _ = _open_socket()
    except IcmpNotPermitted:
        return False
    sock.close()
    return True


_sequence = 0


async def probe(target: IcmpProbeConfig, context: ProbeContext) -> CheckFacts:
    global _sequence
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(target.host, None, family=socket.AF_INET)
    address = str(infos[0][4][0])
    sock, raw = _open_socket()
    sock.setblocking(False)
    try:
        _sequence = (_sequence + 1) & 0xFFFF
        ident = os.getpid() & 0xFFFF
        payload = b"didban-" + os.urandom(8)
        header = struct.pack("!BBHHH", _ECHO_REQUEST, 0, 0, ident, _sequence)
        packet = struct.pack("!BBHHH", _ECHO_REQUEST, 0, _checksum(header + payload), ident, _sequence)
        await loop.sock_sendto(sock, packet + payload, (address, 0))
        while True:
            data = await loop.sock_recv(sock, 2048)
            if raw:
                data = data[(data[0] & 0x0F) * 4 :]  # skip the IP header
            kind, _, _, _, sequence = struct.unpack("!BBHHH", data[:8])
            # A datagram socket's id is rewritten by the kernel, so match on
            # the sequence number and our random payload.
            if kind == _ECHO_REPLY and sequence == _sequence and data[8:] == payload:
                return CheckFacts(connected=True, ip=address)
    finally:
        sock.close()
