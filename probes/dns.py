"""DNS: query a name, expect an rcode and (optionally) answers.  Uses dnspython."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from core.config import DnsProbeConfig
from core.model import ErrorClass
from probes.base import ProbeContext, ProbeFailure
from probes.conditions import CheckFacts


def _nameserver(configured: str | None) -> tuple[str, int]:
    if configured is None:
        return str(dns.resolver.get_default_resolver().nameservers[0]), 53
    if configured.count(":") == 1:  # IPv4:port; a bare IPv6 address has several colons
        host, port = configured.split(":")
        return host, int(port)
    if configured.startswith("[") and "]:" in configured:
        host, port = configured[1:].split("]:")
        return host, int(port)
    return configured, 53


async def probe(target: DnsProbeConfig, context: ProbeContext) -> CheckFacts:
    where, port = _nameserver(target.nameserver)
    query = dns.message.make_query(target.name, dns.rdatatype.from_text(target.query_type))
    response = await dns.asyncquery.udp(query, where, port=port, timeout=None)
    rcode = dns.rcode.to_text(response.rcode())
    answers = [rdata.to_text() for rrset in response.answer for rdata in rrset]
    facts = CheckFacts(connected=True, ip=answers[0] if answers else "", dns_rcode=rcode,
                       body="\n".join(answers).encode())
    if rcode != target.expect_rcode.upper():
        raise ProbeFailure(ErrorClass.DNS, f"rcode {rcode}, expected {target.expect_rcode}", facts)
    missing = [answer for answer in target.expect_answers if answer not in answers]
    if missing:
        raise ProbeFailure(ErrorClass.DNS, f"answers {answers} lack {missing}", facts)
    return facts
