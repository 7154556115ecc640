"""The shared vocabulary of Didban.

Every package imports these types; nothing else defines its own copy.  Times
are timezone-aware UTC datetimes at the edges; the hot paths carry the same
instant as integer milliseconds since the epoch (``*_ms``), which is exact and
cheap to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Status(StrEnum):
    UP = "up"
    DOWN = "down"
    # The probe could not tell (its own network is down, it crashed, nothing
    # arrived).  Never downtime: it is reported as missing coverage.
    UNKNOWN = "unknown"


class ErrorClass(StrEnum):
    """Why a check failed: the runner classifies, a probe never guesses."""

    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    CONTENT = "content"
    BODY_TOO_LARGE = "body_too_large"
    CONDITION = "condition"
    CERTIFICATE = "certificate"
    PROTOCOL = "protocol"
    PROBE_NETWORK = "probe_network"  # the location's own network is down (canaries failed)
    PROBE_CRASH = "probe_crash"
    PROBE_OVERLOAD = "probe_overload"  # the monitor itself stalled or ran late: its failure proves nothing
    HEARTBEAT_MISSED = "heartbeat_missed"  # a heartbeat service did not report in within its interval + grace


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: Didban only handles timezone-aware times")
    return int(moment.timestamp() * 1000)


def iso_utc(ms: int) -> str:
    """ISO 8601 UTC with a Z, as the evidence pack spells it."""
    moment = ms_to_datetime(ms)
    text = f"{moment.year:04d}" + moment.strftime("-%m-%dT%H:%M:%S")  # %Y does not pad years before 1000
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


@dataclass(slots=True)
class ProbeResult:
    """One check of one service from one location; nothing changes one once made (``replace`` makes another).

    Not frozen: one is made per check, and a frozen dataclass's constructor costs 2.5 times as much
    (1.3 µs against 0.5 µs for these nine fields; about 2 % of a check's CPU at saturation)."""

    service: str
    location: str
    ts_ms: int
    status: Status
    latency_ms: float
    error: str | None = None  # an ErrorClass value, None when up
    detail: str = ""  # human-readable reason, never a secret
    http_status: int | None = None
    cert_days_left: float | None = None  # when the check saw a TLS certificate

    @property
    def ts(self) -> datetime:
        return ms_to_datetime(self.ts_ms)


@dataclass(frozen=True, slots=True)
class Outage:
    """A provider-side interruption as the collector saw it online.

    ``end_ms`` is None while it is open.  The SLA figures are derived from the
    results themselves (see ``sla_calc.derive``), so this record is for humans,
    notices and dashboards.
    """

    id: int
    service: str
    start_ms: int
    end_ms: int | None
    error: str | None
    tracking_code: str

    @property
    def is_open(self) -> bool:
        return self.end_ms is None


@dataclass(frozen=True, slots=True)
class OutageEvent:
    """Published after the collector committed an outage transition."""

    kind: str  # "outage_opened" | "outage_closed"
    outage: Outage


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: str
    services: tuple[str, ...]  # service ids, or ("*",) for every service
    start_ms: int
    end_ms: int
    announced_at_ms: int
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Exclusion:
    """An interval that is not the provider's fault (the telecom clause)."""

    id: str
    services: tuple[str, ...]
    start_ms: int
    end_ms: int
    reason: str
    evidence: str = ""
    approved_by: str = ""  # who at the agency approved it (the telecom letter's signatory, say)


@dataclass(frozen=True, slots=True)
class CreditTier:
    below: float  # availability percent the month is under
    credit_percent: float


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What ``didban status`` shows for one service."""

    service: str
    status: Status | None
    since_ms: int | None
    last_check_ms: int | None
    last_latency_ms: float | None
    last_error: str | None
    open_outage: Outage | None = None
    locations: dict[str, Status] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceTerms:
    """What an agreement promises for one service."""

    id: str
    name: str
    interval_ms: int
    failure_threshold: int
    target_percent: float
    monthly_base: float
    credit_tiers: tuple[CreditTier, ...]
    # Set when this service's agreement differs from the pack-wide value.
    month_basis: str | None = None
    notice_hours: float | None = None
    # Below this coverage a month is "insufficient evidence": neither met nor missed.
    min_coverage_percent: float = 90.0


@dataclass(frozen=True, slots=True)
class AgreementTerms:
    """The agreement in force, as the evidence pack's agreement.json states it."""

    services: tuple[ServiceTerms, ...]
    month_basis: str = "nominal_30d"  # or "actual"
    notice_hours: float = 72.0
    timezone: str = "Asia/Tehran"
    calendar: str = "jalali"
    id: str = ""
    title: str = ""
    valid_from: str = ""  # Jalali YYYY-MM-DD, inclusive
    valid_until: str = ""


@dataclass(frozen=True, slots=True)
class LateMaintenance:
    id: str
    hours_short: float  # how much less than the notice period it was announced


@dataclass(frozen=True, slots=True)
class OutageInMonth:
    start_ms: int
    end_ms: int
    excluded_ms: int


@dataclass(frozen=True, slots=True)
class ServiceMonth:
    """One service's settled month.  ``availability`` is exact; display truncates it."""

    service: str
    availability_percent: float
    downtime_ms: int
    excluded_ms: int
    covered_ms: int
    month_length_ms: int
    target_percent: float
    met: bool
    credit_percent: float
    credit_amount: float
    late_maintenance: tuple[LateMaintenance, ...] = ()
    outages: tuple[OutageInMonth, ...] = ()
    exclusion_reasons: tuple[str, ...] = ()
    evidence_sufficient: bool = True

    @property
    def coverage_percent(self) -> float:
        return 100.0 * self.covered_ms / self.month_length_ms if self.month_length_ms else 0.0

    @property
    def verdict(self) -> str:
        """What people are shown: ``met``, ``missed`` or ``insufficient_evidence`` (never "met" without evidence)."""
        if not self.evidence_sufficient:
            return "insufficient_evidence"
        return "met" if self.met else "missed"


@dataclass(frozen=True, slots=True)
class MonthReport:
    month: str  # Jalali YYYY-MM
    start_ms: int
    end_ms: int
    denominator_ms: int
    services: tuple[ServiceMonth, ...]
    agreement_id: str = ""
    in_force: bool = True  # False: no agreement was in force for this month


@dataclass(frozen=True, slots=True)
class Credit:
    """A service credit in the ledger: at most one per service and month, plus adjustments."""

    tracking_code: str
    month: str
    service: str
    credit_percent: float
    amount: float
    availability_percent: float
    issued_ms: int
    kind: str = "credit"  # "credit" | "adjustment"
    adjusts: str | None = None  # the tracking code an adjustment corrects
    note: str = ""
    pack_sha256: str = ""  # the archived evidence pack the figures come from
