"""Probe types: one module each, one async entry point, and this map.

Adding a probe type is one new module and one line here.
"""

from __future__ import annotations

from probes import dns, http, icmp, resolve, tcp, tls
from probes.base import ProbeFn

PROBES: dict[str, ProbeFn] = {
    "http": http.probe,
    "tcp": tcp.probe,
    "dns": dns.probe,
    "tls": tls.probe,
    "icmp": icmp.probe,
    "resolve": resolve.probe,
}
