"""The runner: the one place that owns the clock, the timeout, the latency and
the verdict of a check.

A service's probes run in order under one total timeout (so a slow-drip
target is cut, whatever the protocol).  Exceptions become error classes
here, never in the probes.  Built-in expectations that need the clock (a TLS
certificate's minimum days left) are expressed as conditions in the same
language users write, and evaluated after the probes.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cache

import aiohttp
import dns.exception

from core.config import ProbeConfig, ServiceConfig, TlsProbeConfig
from core.model import ErrorClass, ProbeResult, Status
from probes import PROBES
from probes.base import ProbeContext, ProbeFailure
from probes.conditions import CheckFacts, Condition, ConditionResult
from probes.icmp import IcmpNotPermitted

_PLACEHOLDERS = ("[STATUS]", "[RESPONSE_TIME]", "[BODY]", "[CONNECTED]", "[IP]", "[DNS_RCODE]",
                 "[CERTIFICATE_EXPIRATION]", "[DOMAIN_EXPIRATION]")
_DETAIL_LIMIT = 300


@dataclass(frozen=True, slots=True)
class CompiledCheck:
    """A service's check, parsed once at start-up."""

    service: str
    probes: tuple[ProbeConfig, ...]
    timeout_s: float
    # (condition, the error class reported when it fails)
    conditions: tuple[tuple[Condition, ErrorClass], ...] = ()
    wants: frozenset[str] = frozenset()


# A condition is immutable once parsed, and 50,000 services often share the same few: one object each.
_condition = cache(Condition)


def compile_check(
    service_id: str, probes: list[ProbeConfig], conditions: list[str], timeout_s: float
) -> CompiledCheck:
    compiled: list[tuple[Condition, ErrorClass]] = []
    for probe in probes:
        if isinstance(probe, TlsProbeConfig) and probe.min_days_left > 0:
            rule = f"[CERTIFICATE_EXPIRATION] > {probe.min_days_left * 24}h"
            compiled.append((_condition(rule), ErrorClass.CERTIFICATE))
    compiled.extend((_condition(text), ErrorClass.CONDITION) for text in conditions)
    used = " ".join(c.text.upper() for c, _ in compiled)
    wants = frozenset(p for p in _PLACEHOLDERS if p in used)
    return CompiledCheck(service_id, tuple(probes), timeout_s, tuple(compiled), wants)


def compile_service(service: ServiceConfig) -> CompiledCheck:
    return compile_check(service.id, list(service.probes), service.conditions, service.timeout_seconds)


@dataclass(slots=True)
class CheckOutcome:  # not frozen, for the same reason as ProbeResult
    result: ProbeResult
    facts: CheckFacts
    conditions: tuple[ConditionResult, ...] = ()


def classify(exc: BaseException) -> tuple[ErrorClass, Status]:
    """Exception → (error class, verdict).  Only the probe's own failure is ``unknown``."""
    if isinstance(exc, TimeoutError | dns.exception.Timeout):
        return ErrorClass.TIMEOUT, Status.DOWN
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return ErrorClass.TLS, Status.DOWN
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, socket.gaierror):
            return ErrorClass.DNS, Status.DOWN
        return ErrorClass.CONNECT, Status.DOWN
    if isinstance(exc, socket.gaierror):
        return ErrorClass.DNS, Status.DOWN
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ErrorClass.HTTP_STATUS, Status.DOWN
    if isinstance(exc, IcmpNotPermitted):
        return ErrorClass.PROBE_CRASH, Status.UNKNOWN
    if isinstance(exc, ConnectionRefusedError):
        return ErrorClass.CONNECT, Status.DOWN
    if isinstance(exc, ConnectionError | EOFError | aiohttp.ClientError | dns.exception.DNSException):
        return ErrorClass.PROTOCOL, Status.DOWN
    if isinstance(exc, OSError):
        return ErrorClass.CONNECT, Status.DOWN
    return ErrorClass.PROBE_CRASH, Status.UNKNOWN


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:_DETAIL_LIMIT]


def _add_timing(facts: CheckFacts, latency_ms: float, now_ms: int) -> None:
    """What only the runner knows: the response time and the certificate's time left."""
    facts.response_time_ms = int(latency_ms)
    not_after = facts.certificate_not_after_ms
    facts.certificate_expiration_ms = not_after - now_ms if not_after else 0


def _merge(collected: list[CheckFacts]) -> CheckFacts:
    """One set of facts for the conditions: for each field, the first probe that set it."""
    if len(collected) == 1:
        return collected[0]
    default = CheckFacts()
    values = {}
    for item in fields(CheckFacts):
        name = item.name
        values[name] = next(
            (getattr(f, name) for f in collected if getattr(f, name) != getattr(default, name)),
            getattr(default, name),
        )
    return CheckFacts(**values)


async def run_check(
    check: CompiledCheck,
    context: ProbeContext,
    location: str,
    clock: Callable[[], float] = time.time,
    explain: bool = False,
) -> CheckOutcome:
    """Run a service's probes once and return the verdict.

    ``explain`` also returns every condition's outcome with Gatus's
    description (for ``didban check``); the scheduler leaves it off.
    """
    ts_ms = int(clock() * 1000)
    t0 = time.perf_counter()
    collected: list[CheckFacts] = []
    error: ErrorClass | None = None
    status = Status.UP
    detail = ""
    context = context.wanting(check.wants)
    deadline = context.deadlines.start(check.timeout_s)
    try:
        try:
            for probe in check.probes:
                collected.append(await PROBES[probe.type](probe, context))
        finally:
            cut = deadline.end()
    except ProbeFailure as failure:
        error, status, detail = failure.error, Status.DOWN, failure.detail[:_DETAIL_LIMIT]
        if failure.facts is not None:
            collected.append(failure.facts)
    except (TimeoutError, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError) and not cut:
            raise  # not the deadline's: the engine stopping
        error, status = ErrorClass.TIMEOUT, Status.DOWN
        detail = f"no complete answer within {check.timeout_s:g}s"
    except Exception as exc:  # every failure becomes a classified result, never a crash
        error, status = classify(exc)
        detail = _describe(exc)
    latency_ms = (time.perf_counter() - t0) * 1000
    facts = _merge(collected) if collected else CheckFacts()  # this check's own: the runner adds to it
    if check.conditions:
        _add_timing(facts, latency_ms, ts_ms)
    outcomes: list[ConditionResult] = []
    for condition, failure_class in check.conditions:
        if explain:
            outcome = condition.check(facts)
            outcomes.append(outcome)
            passed = outcome.success
        else:
            passed = condition.evaluate(facts)
        if not passed and status is Status.UP:
            status, error = Status.DOWN, failure_class
            detail = condition.check(facts).description[:_DETAIL_LIMIT]
    not_after = facts.certificate_not_after_ms
    # Positional: nine keyword arguments took 0.7 µs against 0.3, once per check.
    result = ProbeResult(check.service, location, ts_ms, status, round(latency_ms, 3),
                         error.value if error is not None else None, detail, facts.status or None,
                         round((not_after - ts_ms) / 86_400_000, 3) if not_after else None)
    return CheckOutcome(result, facts, tuple(outcomes))
