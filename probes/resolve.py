"""Resolve: a name through the probes' own resolver (the resolver canary).

Unlike the ``dns`` probe, which asks a chosen nameserver a DNS question,
this asks exactly what the HTTP, TCP and TLS probes ask before they
connect, so its failure means the monitor's resolution is broken.
"""

from __future__ import annotations

import socket

from core.config import ResolveProbeConfig
from probes.base import ProbeContext
from probes.conditions import CheckFacts


async def probe(target: ResolveProbeConfig, context: ProbeContext) -> CheckFacts:
    if context.resolver is None:
        raise socket.gaierror(socket.EAI_FAIL, "no resolver in this probe context")
    answers = await context.resolver.resolve(target.name, 0, socket.AF_INET)
    return CheckFacts(connected=True, ip=answers[0]["host"] if answers else "")
