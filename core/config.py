"""The configuration: one validated model tree, loaded with line numbers.

A bad file fails at start-up with ``FILE:LINE: path.to.key: what was
expected, what was found``.  Secrets never live in the YAML: they come from
the environment or a secrets file (see ``Secrets``).
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import yamlfile

SLUG = r"^[a-z0-9][a-z0-9._-]{0,62}$"
JALALI_DATE = r"^1[34]\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


_FORBID_EXTRA = ConfigDict(extra="forbid")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# What there is one of per service (the service, its name, its probes) is a slotted pydantic dataclass,
# validated the same way: a model instance carries a __dict__ and a set of the fields given, about 2 KB
# per service, 100 MB of the 400 a deployment of 50,000 services may use.
@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class Name:
    fa: str = Field(min_length=1)
    en: str = Field(min_length=1)


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 1-65535, got {_shown(value)}")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


# -- probes: a discriminated union on `type` ---------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class HttpProbeConfig:
    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    verify_tls: bool = True
    max_redirects: int = Field(default=5, ge=0, le=30)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None  # None: any status < 400
    keyword: str | None = None  # must appear in the body
    keyword_absent: str | None = None  # must not appear (a "maintenance" page is an outage)
    regex: str | None = None
    json_path: str | None = None  # Gatus-style path, e.g. data.items[0].state
    json_expect: str | None = None
    max_body_bytes: int = Field(default=1 << 20, ge=1024)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"expected a valid regular expression ({exc})") from None
        return value


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class TcpProbeConfig:
    type: Literal["tcp"]
    target: HostPort
    send: str | None = None
    expect: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class DnsProbeConfig:
    type: Literal["dns"]
    name: str = Field(min_length=1)
    query_type: Literal["A", "AAAA", "CNAME", "MX", "NS", "TXT", "SOA", "PTR", "SRV"] = "A"
    nameserver: str | None = None  # "IP" or "IP:PORT"; None: the system resolver
    expect_rcode: str = "NOERROR"
    expect_answers: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class TlsProbeConfig:
    type: Literal["tls"]
    target: HostPort
    server_name: str | None = None
    verify: bool = True
    min_days_left: int = Field(default=14, ge=0)


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class IcmpProbeConfig:
    type: Literal["icmp"]
    host: str = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class ResolveProbeConfig:
    """Resolve a name through the probes' own resolver (what a ``dns`` canary without a nameserver does)."""

    type: Literal["resolve"]
    name: str = Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class HeartbeatProbeConfig:
    """Not a probe: the service reports in (``POST /api/heartbeat/TOKEN``) every ``interval_seconds``; a report
    missing for longer than the interval plus ``grace_seconds`` is a failed check."""

    type: Literal["heartbeat"]
    grace_seconds: float = Field(default=60, ge=0, le=86_400)


ProbeConfig = Annotated[
    HttpProbeConfig | TcpProbeConfig | DnsProbeConfig | TlsProbeConfig | IcmpProbeConfig | ResolveProbeConfig
    | HeartbeatProbeConfig,
    Field(discriminator="type"),
]


class CanaryConfig(Strict):
    """A target that should always answer; all of a location's failing = its network is down.

    A ``dns`` canary without a nameserver resolves ``name`` through the probes' own resolver: while
    those fail, the location's ``dns``-class failures are the monitor's, not the agency's.
    """

    id: str = Field(pattern=SLUG)
    type: Literal["http", "tcp", "dns", "icmp"]
    url: str | None = None
    target: str | None = None
    name: str | None = None
    nameserver: str | None = None
    host: str | None = None
    expect_status: list[int] | None = None

    @property
    def checks_resolver(self) -> bool:
        return self.type == "dns" and self.nameserver is None

    def as_probe(self) -> HttpProbeConfig | TcpProbeConfig | DnsProbeConfig | IcmpProbeConfig | ResolveProbeConfig:
        if self.checks_resolver:
            return ResolveProbeConfig(type="resolve", name=self.name or "")
        fields = self.model_dump(exclude={"id"}, exclude_none=True)
        return _CANARY_PROBE[self.type](**fields)


_CANARY_PROBE: dict[str, type[HttpProbeConfig | TcpProbeConfig | DnsProbeConfig | IcmpProbeConfig]] = {
    "http": HttpProbeConfig,
    "tcp": TcpProbeConfig,
    "dns": DnsProbeConfig,
    "icmp": IcmpProbeConfig,
}


# -- agreements, services, agencies -------------------------------------------


class CreditTierConfig(Strict):
    below: float = Field(gt=0, le=100)
    credit_percent: float = Field(ge=0, le=100)


class AgreementConfig(Strict):
    id: str = Field(pattern=SLUG)
    title: str
    valid_from: str = Field(pattern=JALALI_DATE)  # Jalali YYYY-MM-DD, inclusive
    valid_until: str = Field(pattern=JALALI_DATE)  # inclusive
    target_percent: float = Field(gt=0, le=100)
    monthly_base: float = Field(default=0, ge=0)  # 0: the credit is a recorded right, not money
    credit_tiers: list[CreditTierConfig] = Field(default_factory=list)
    month_basis: Literal["nominal_30d", "actual"] = "nominal_30d"
    notice_hours: float = Field(default=72, ge=0)
    # Below this share of the month covered by results, the month is "insufficient evidence".
    min_coverage_percent: float = Field(default=90, ge=0, le=100)

    @model_validator(mode="after")
    def _dates_ordered(self) -> AgreementConfig:
        if self.valid_until < self.valid_from:
            raise ValueError(f"valid_until {self.valid_until} is before valid_from {self.valid_from}")
        return self


@dataclass(frozen=True, slots=True, kw_only=True, config=_FORBID_EXTRA)
class ServiceConfig:
    id: str = Field(pattern=SLUG)
    name: Name
    agreement: str
    interval_seconds: float = Field(default=60, ge=1, le=3600)
    timeout_seconds: float = Field(default=10, gt=0, le=120)
    failure_threshold: int = Field(default=2, ge=1, le=100)
    probes: list[ProbeConfig] = Field(min_length=1)
    conditions: list[str] = Field(default_factory=list)
    locations: list[str] | None = None  # None: every configured location

    @property
    def heartbeat(self) -> HeartbeatProbeConfig | None:
        """The heartbeat this service reports with, when it is not probed from outside."""
        first = self.probes[0]
        return first if isinstance(first, HeartbeatProbeConfig) else None

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> ServiceConfig:
        if any(isinstance(p, HeartbeatProbeConfig) for p in self.probes) and (len(self.probes) > 1 or self.conditions):
            raise ValueError("a heartbeat service has exactly one probe, the heartbeat, and no conditions")
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds}) must not exceed interval_seconds "
                f"({self.interval_seconds})"
            )
        return self


class AgencyConfig(Strict):
    id: str = Field(pattern=SLUG)
    name: Name
    services: list[ServiceConfig] = Field(min_length=1)


class LocationConfig(Strict):
    id: str = Field(pattern=SLUG)
    name: str = ""


class SqliteConfig(Strict):
    path: str = "didban.sqlite"


class PostgresConfig(Strict):
    """A PostgreSQL server as the system of record; the password comes from DIDBAN_STORE_PASSWORD or the secrets
    file, never from here."""

    dsn: str = Field(pattern=r"^postgres(ql)?://")

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, dsn: str) -> str:
        if re.match(r"^postgres(ql)?://[^/@]*:[^/@]*@", dsn) or re.search(r"[?&]password=", dsn):
            raise ValueError("the DSN holds a password: put it in DIDBAN_STORE_PASSWORD or the secrets file instead")
        return dsn


class InfluxConfig(Strict):
    """The time-series feed Grafana reads (the token comes from DIDBAN_INFLUXDB_TOKEN).

    InfluxDB 2.x: url, org, bucket.  1.8+ through its v2-compatible endpoint: org "-",
    bucket "database/retention-policy", token "user:password".
    """

    url: str = Field(pattern=r"^https?://")
    org: str = "-"
    bucket: str = "didban"
    batch_size: int = Field(default=5000, ge=100, le=100_000)


class StoreConfig(Strict):
    sqlite: SqliteConfig = SqliteConfig()
    # When set, PostgreSQL is the system of record instead of the SQLite file (DIDBAN_STORE_URL overrides both).
    postgresql: PostgresConfig | None = None
    influxdb: InfluxConfig | None = None
    retention_days: int = Field(default=90, ge=1)
    queue_size: int = Field(default=100_000, ge=100)
    # Where results that cannot reach the store wait, fsync'd (default: next to the SQLite file).
    journal_dir: str | None = None
    # After this long without store writes, /readyz answers 503.
    unavailable_grace_seconds: float = Field(default=30, gt=0)


class SchedulerConfig(Strict):
    max_concurrency: int = Field(default=256, ge=1, le=10_000)
    jitter_seconds: float = Field(default=30, ge=0)
    # The resolvers the probes use ("IP" or "IP:PORT"); none: the system's resolver.
    nameservers: list[str] | None = None
    # The monitor's own trouble: a failed check whose run overlapped an event-loop stall longer than
    # stall_bound_seconds, or that started more than lag_bound_seconds late, is unknown (probe_overload).
    stall_bound_seconds: float = Field(default=0.25, gt=0)
    lag_bound_seconds: float = Field(default=2.0, gt=0)


# -- alerting -----------------------------------------------------------------


class EmailChannelConfig(Strict):
    type: Literal["email"]
    id: str = Field(pattern=SLUG)
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None  # the password comes from DIDBAN_SMTP_PASSWORD
    sender: str = Field(min_length=3)  # the From header, e.g. "Didban <noreply@example.ir>"
    ca_file: str | None = None  # trust this CA instead of the system's (a private mail relay)
    timeout_seconds: float = Field(default=20, gt=0)
    rate_per_second: float = Field(default=20, gt=0)


class KavenegarChannelConfig(Strict):
    type: Literal["kavenegar"]
    id: str = Field(pattern=SLUG)
    base_url: str = Field(default="https://api.kavenegar.com", pattern=r"^https?://")
    sender: str | None = None  # the line number; the account's default when omitted
    timeout_seconds: float = Field(default=15, gt=0)
    rate_per_second: float = Field(default=20, gt=0)
    max_segments: int = Field(default=2, ge=1, le=6)


class HttpSmsChannelConfig(Strict):
    """Any SMS provider with an HTTP API: the body is a Jinja2 template of {{ to }} and {{ text }}."""

    type: Literal["http_sms"]
    id: str = Field(pattern=SLUG)
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "GET", "PUT"] = "POST"
    body_template: str = '{"to": {{ to | tojson }}, "text": {{ text | tojson }}}'
    content_type: str = "application/json"
    headers: dict[str, str] = Field(default_factory=dict)  # "{{ api_key }}" is replaced by DIDBAN_SMS_API_KEY
    timeout_seconds: float = Field(default=15, gt=0)
    rate_per_second: float = Field(default=20, gt=0)
    max_segments: int = Field(default=2, ge=1, le=6)


class WebhookChannelConfig(Strict):
    """JSON POST, signed with HMAC-SHA256 of the body (secret: DIDBAN_WEBHOOK_SECRET)."""

    type: Literal["webhook"]
    id: str = Field(pattern=SLUG)
    url: str = Field(pattern=r"^https?://")
    timeout_seconds: float = Field(default=15, gt=0)
    rate_per_second: float = Field(default=20, gt=0)


ChannelConfig = Annotated[
    EmailChannelConfig | KavenegarChannelConfig | HttpSmsChannelConfig | WebhookChannelConfig,
    Field(discriminator="type"),
]


class RecipientConfig(Strict):
    channel: str
    to: str
    lang: Literal["fa", "en"] = "fa"


class StaffConfig(Strict):
    """Who is told about an agency's outages: level 0 at once, each next level if nobody acknowledges."""

    agency: str
    levels: list[list[RecipientConfig]] = Field(min_length=1)
    escalate_after_minutes: float = Field(default=15, gt=0)


class BurnWindowConfig(Strict):
    hours: float = Field(gt=0)
    budget_percent: float = Field(gt=0, le=100)


class AlertingConfig(Strict):
    status_page_url: str = "http://127.0.0.1:8080"
    channels: list[ChannelConfig] = Field(default_factory=list)
    staff: list[StaffConfig] = Field(default_factory=list)
    subscriber_email_channel: str | None = None
    subscriber_sms_channel: str | None = None
    reminders_hours: list[float] = Field(default_factory=lambda: [24.0, 1.0])
    flap_window_minutes: float = Field(default=30, gt=0)
    flap_max_notices: int = Field(default=3, ge=1)  # more transitions than this in the window become a digest
    burn_rules: list[list[BurnWindowConfig]] = Field(
        default_factory=lambda: [
            [BurnWindowConfig(hours=1, budget_percent=2), BurnWindowConfig(hours=5 / 60, budget_percent=2 / 12)],
            [BurnWindowConfig(hours=6, budget_percent=5), BurnWindowConfig(hours=0.5, budget_percent=5 / 12)],
        ]
    )


class WebConfig(Strict):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class SlaConfig(Strict):
    # After a Jalali month ends in Tehran, wait this long for late results before closing it.
    close_grace_minutes: float = Field(default=60, ge=0)
    # A closed month's evidence pack is archived at close and kept this long, whatever raw-result retention is.
    evidence_retention_years: float = Field(default=5, gt=0)


class AgentConfig(Strict):
    """Probe agents (``didban agent``) and how the center watches them."""

    # While no center is reachable, an agent keeps this much in its buffer; older results are dropped (loudly).
    buffer_max_days: float = Field(default=7, gt=0, le=90)
    batch_max: int = Field(default=20_000, ge=1, le=20_000)  # results per shipped batch
    # A location that has shipped nothing for this long is shown as silent (missing coverage, never downtime).
    silent_after_seconds: float = Field(default=120, gt=0)


class DidbanConfig(Strict):
    timezone: Literal["Asia/Tehran"] = "Asia/Tehran"
    locations: list[LocationConfig] = Field(default_factory=lambda: [LocationConfig(id="local")])
    canaries: list[CanaryConfig] = Field(default_factory=list)
    store: StoreConfig = StoreConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    sla: SlaConfig = SlaConfig()
    alerting: AlertingConfig = AlertingConfig()
    web: WebConfig = WebConfig()
    agent: AgentConfig = AgentConfig()
    agreements: list[AgreementConfig] = Field(min_length=1)
    agencies: list[AgencyConfig] = Field(min_length=1)

    def services(self) -> Iterable[tuple[AgencyConfig, ServiceConfig]]:
        for agency in self.agencies:
            for service in agency.services:
                yield agency, service

    def service(self, service_id: str) -> ServiceConfig:
        for _, service in self.services():
            if service.id == service_id:
                return service
        raise KeyError(service_id)

    def agreement(self, agreement_id: str) -> AgreementConfig:
        return next(a for a in self.agreements if a.id == agreement_id)

    def reference_errors(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references pydantic cannot see: unique ids, known agreements, locations and channels."""
        return reference_problems(self.model_dump())


Problem = tuple[tuple[str | int, ...], str]


def _entries(node: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, mapping) of a list under ``key``, skipping what is not a mapping (pydantic reports that)."""
    found = node.get(key) if isinstance(node, dict) else None
    return [(i, item) for i, item in enumerate(found)] if isinstance(found, list) else []


def _ids(node: Any, key: str) -> set[str]:
    return {str(item.get("id")) for _, item in _entries(node, key) if isinstance(item, dict)}


def reference_problems(data: dict[str, Any]) -> list[Problem]:
    """The cross-references of a config as plain data, so that they are reported together with the
    structural errors of a file that does not validate yet."""
    errors: list[Problem] = []
    agreements = _ids(data, "agreements")
    locations = _ids(data, "locations") if "locations" in data else {"local"}
    seen: set[str] = set()
    for a_index, agency in _entries(data, "agencies"):
        for s_index, service in _entries(agency, "services"):
            if not isinstance(service, dict):
                continue
            here: tuple[str | int, ...] = ("agencies", a_index, "services", s_index)
            ident = service.get("id")
            if ident in seen:
                errors.append(((*here, "id"), f"duplicate service id {_shown(ident)}"))
            seen.add(str(ident))
            if "agreement" in service and service["agreement"] not in agreements:
                errors.append(((*here, "agreement"), f"expected one of the agreements {sorted(agreements)}, "
                                                     f"got {_shown(service['agreement'])}"))
            for l_index, location in enumerate(service.get("locations") or []):
                if location not in locations:
                    errors.append(((*here, "locations", l_index),
                                   f"expected one of the locations {sorted(locations)}, got {_shown(location)}"))
    alerting: dict[str, Any] = data["alerting"] if isinstance(data.get("alerting"), dict) else {}
    channels = _ids(alerting, "channels")
    agencies = _ids(data, "agencies")
    for s_index, staff in _entries(alerting, "staff"):
        if not isinstance(staff, dict):
            continue
        if "agency" in staff and staff["agency"] not in agencies:
            errors.append((("alerting", "staff", s_index, "agency"),
                           f"expected one of the agencies {sorted(agencies)}, got {_shown(staff['agency'])}"))
        for l_index, level in enumerate(staff.get("levels") or []):
            for r_index, recipient in enumerate(level if isinstance(level, list) else []):
                channel = recipient.get("channel") if isinstance(recipient, dict) else None
                if channel is not None and channel not in channels:
                    errors.append((("alerting", "staff", s_index, "levels", l_index, r_index, "channel"),
                                   f"expected one of the channels {sorted(channels)}, got {_shown(channel)}"))
    for key in ("subscriber_email_channel", "subscriber_sms_channel"):
        value = alerting.get(key)
        if value is not None and value not in channels:
            errors.append((("alerting", key), f"expected one of the channels {sorted(channels)}, got {_shown(value)}"))
    return errors


# -- secrets -----------------------------------------------------------------


class Secrets(BaseSettings):
    """Secrets from the environment (DIDBAN_*) or a dotenv-style secrets file.

    SecretStr keeps them out of reprs, logs and error messages.
    """

    model_config = SettingsConfigDict(env_prefix="DIDBAN_", extra="ignore")

    smtp_password: SecretStr | None = None
    sms_api_key: SecretStr | None = None
    influxdb_token: SecretStr | None = None
    grafana_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    store_password: SecretStr | None = None
    agent_token: SecretStr | None = None  # didban agent's ingest token (or --token-file)

    @classmethod
    def load(cls, secrets_file: str | None = None) -> Secrets:
        return cls(_env_file=secrets_file) if secrets_file else cls()  # type: ignore[call-arg]


# -- loading with line numbers -----------------------------------------------


class ConfigError(Exception):
    """Every problem in a config file, each as ``FILE:LINE: path: message``."""

    def __init__(self, messages: Sequence[str], count: int | None = None) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)
        self.count = len(self.messages) if count is None else count  # all problems found, shown or not


def _line_of(marks: yamlfile.Marks | None, loc: Sequence[str | int]) -> tuple[int, list[str | int]]:
    """The 1-based line of the deepest node of ``loc`` present in the file.

    Also returns the path as the user wrote it: pydantic inserts union tags
    (``http``) that are not keys of the file; they are left out.
    """
    line = 1
    shown: list[str | int] = []
    for part in loc:
        if isinstance(marks, dict) and part in marks:
            line, marks = yamlfile.unpack(marks[part])
            shown.append(part)
        elif isinstance(marks, list) and isinstance(part, int) and 0 <= part < len(marks):
            line, marks = yamlfile.unpack(marks[part])
            shown.append(part)
        elif isinstance(marks, dict) and isinstance(part, str) and part not in _UNION_TAGS:
            shown.append(part)  # a missing key: point at its parent
            break
    return line, shown


_UNION_TAGS = {"http", "tcp", "dns", "tls", "icmp", "email", "kavenegar", "http_sms", "webhook"}


_PATTERNS = {
    r"^https?://": "a URL starting with http:// or https://",
    r"^postgres(ql)?://": "a PostgreSQL URL like postgresql://didban@db.example:5432/didban",
    SLUG: "an id of lower-case letters, digits, '.', '_' or '-' (at most 63)",
    JALALI_DATE: 'a Jalali date like "1405-01-01"',
}


def _describe(error: Any) -> tuple[str, str | None]:
    """(message, extra path part) for one pydantic error, in the user's terms."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):  # a model's, a dataclass's
        return "unknown key: not allowed here (check its spelling)", None
    if kind == "missing":
        return "required key is missing", None
    if kind in ("model_type", "dataclass_type", "dict_type"):
        return f"expected a mapping (key: value), got {_shown(error.get('input'))}", None
    if kind == "union_tag_invalid":
        return f"expected one of {ctx.get('expected_tags')}, got {_shown(ctx.get('tag'))}", "type"
    if kind == "union_tag_not_found":
        return f"expected a '{ctx.get('discriminator')}' key naming the kind", "type"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "value_error":
        return message, None
    found = error.get("input")
    if kind == "string_pattern_mismatch":
        wanted = _PATTERNS.get(str(ctx.get("pattern")), f"text matching {ctx.get('pattern')}")
        return f"expected {wanted}, got {_shown(found)}", None
    if kind == "string_type":
        if isinstance(found, date):  # YAML reads 1405-01-01 as a date
            return f'expected text, got a date: quote it as "{found.isoformat()}"', None
        return f"expected text, got {_shown(found)}", None
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"expected a whole number, got {_shown(found)}", None
    if kind in ("float_parsing", "float_type"):
        return f"expected a number, got {_shown(found)}", None
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, got {_shown(found)}", None
    message = message.removeprefix("Input should be ")
    found = error.get("input")
    if isinstance(found, dict | list):
        return f"expected {message}", None
    return f"expected {message}, got {_shown(found)}", None


# Bounds on what a config file may ask of the loader: none of them binds a real config
# (the seed config is 5 KiB, 10,000 services about 1.7 MiB), all of them stop a hostile one.
MAX_CONFIG_BYTES = int(os.environ.get("DIDBAN_CONFIG_MAX_BYTES", 8 << 20))
MAX_NESTING = 64  # mappings and lists inside each other
MAX_ALIASES = 1_000
# Values (keys, numbers, texts, lists; aliases expanded): 26,000 services are 700,000. The bound stops a
# "billion laughs" at once and keeps a file of millions of tiny values from taking more than 5 s to read.
MAX_VALUES = int(os.environ.get("DIDBAN_CONFIG_MAX_VALUES", 1_000_000))
MAX_REPORTED = 100
SHOWN_VALUE_CHARS = 80


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 1] + "…"


def load_config(path: str | Path) -> DidbanConfig:
    """Load and validate a config file, or raise ConfigError naming every problem.

    Bounded: a file over ``MAX_CONFIG_BYTES``, NUL bytes, nesting deeper than ``MAX_NESTING``, more
    aliases than ``MAX_ALIASES`` or more than ``MAX_VALUES`` values once aliases are expanded
    are refused with ``FILE:LINE: …``; no input gives a traceback, and at most ``MAX_REPORTED``
    problems are listed.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}:1: the file is {size:,} bytes; a configuration is at most "
                               f"{MAX_CONFIG_BYTES:,} (DIDBAN_CONFIG_MAX_BYTES)"])
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the file: {exc.strerror}"]) from None
    for bad in ("\x00", "\ufffd"):  # libyaml would stop at the first; say which line it is on
        index = text.find(bad)
        if index >= 0:
            what = "a NUL byte" if bad == "\x00" else "bytes that are not UTF-8"
            raise ConfigError([f"{path}:{text.count(chr(10), 0, index) + 1}: {what}: the file must be UTF-8 text"])
    limits = yamlfile.Limits(MAX_NESTING, MAX_ALIASES, MAX_VALUES)
    collecting = gc.isenabled()
    gc.disable()  # a big file is a million new objects and no cycles: the collector's passes cost 40 %
    try:
        config = _valid(yamlfile.read(text, limits, yamlfile.Settle(_SERVICES_AT, _ServiceRecords())))
        if config is not None:
            return config
        # Something is wrong: read again, keeping every line, to say where.
        return _validated(path, yamlfile.read(text, limits))
    except yamlfile.YamlProblem as problem:
        raise ConfigError([f"{path}:{problem.line}: {problem.message}"]) from None
    finally:
        if collecting:
            gc.enable()


class _ServiceRecords:
    """Each service validated as soon as it is read, so that a big file's plain values come and go one service
    at a time (the records keep only what they need). After the first that fails the rest stay plain: that
    read is only to find out whether anything is wrong."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, value: Any) -> Any:
        if not self.failed and isinstance(value, dict):
            try:
                return _SERVICE.validate_python(value)
            except ValidationError:
                self.failed = True
        return value


_SERVICE = TypeAdapter(ServiceConfig)
_SERVICES_AT = ("agencies", None, "services", None)  # where in the file the services are


def _valid(document: yamlfile.Document) -> DidbanConfig | None:
    """The config, or None when anything in it is wrong."""
    if not isinstance(document.value, dict):
        return None
    try:
        config = DidbanConfig.model_validate(document.value)
    except ValidationError:
        return None
    return None if config.reference_errors() else config


def _validated(path: Path, document: yamlfile.Document) -> DidbanConfig:
    plain, tree = document.value, document.marks
    if not isinstance(plain, dict):
        raise ConfigError([f"{path}:1: expected a mapping at the top of the file"])
    try:
        config = DidbanConfig.model_validate(plain)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        references = reference_problems(plain)  # reported now too, not after the rest is fixed
        found = [(error["loc"], *_describe(error)) for error in errors[:MAX_REPORTED]]
        found += [(loc, message, None) for loc, message in references[:MAX_REPORTED]]
        raise _reported(path, tree, found, len(errors) + len(references)) from None
    problems = config.reference_errors()
    if problems:
        raise _reported(path, tree, [(loc, message, None) for loc, message in problems[:MAX_REPORTED]],
                        len(problems))
    return config


def _reported(path: Path, tree: yamlfile.Marks | None,
              found: Sequence[tuple[Sequence[str | int], str, str | None]], count: int) -> ConfigError:
    """``FILE:LINE: key.path: message`` for the first ``MAX_REPORTED`` problems in file order, then how many
    more: a file of a million mistakes is not a million lines. ``found`` is (where, message, extra key)."""
    placed = []
    for loc, message, extra in found:
        line, shown = _line_of(tree, loc)
        dotted = ".".join(str(p) for p in [*shown, *([extra] if extra else [])]) or "(top)"
        placed.append((line, f"{path}:{line}: {dotted}: {message}"))
    messages = [message for _, message in sorted(placed, key=lambda item: item[0])][:MAX_REPORTED]
    if count > len(messages):
        messages.append(f"{path}: … and {count - len(messages):,} more problems (the first {MAX_REPORTED} shown)")
    return ConfigError(messages, count)
