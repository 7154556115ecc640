"""The contract of the system of record: what each part may ask of the store.

The store is split by job, each a Protocol: the hot result path
(``ResultStore``: results, trackers, outages, latest state, segments), the
SLA records (``SlaRecords``: maintenance, exclusions, closes, ledger,
archived packs), the notices (``OutboxStore``, ``SubscriberStore``), the web's
records (``WebRecordStore``: receipts, tokens, audit) and the feed's reading
of it (``FeedSource``).  Two backends implement all of them with the same SQL
(``store.sql_store`` and friends over ``store.database``): SQLite, the
embedded default, and PostgreSQL; one contract test module runs against both.

Methods are synchronous: the collector runs them on its own writer thread so
the event loop never waits on disk or network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.model import Credit, Exclusion, MaintenanceWindow, Outage, ProbeResult, ServiceState
from sla_calc.derive import Segment, TrackerState


@dataclass(frozen=True, slots=True)
class OutageChange:
    """Open (``end_ms`` None) or close an outage of a service, in batch order."""

    service: str
    at_ms: int
    opening: bool
    error: str | None = None


@dataclass(slots=True)
class Batch:
    """What the collector commits in one transaction, so results and the
    outage state derived from them are never out of step after a crash."""

    results: list[ProbeResult] = field(default_factory=list)
    trackers: dict[tuple[str, str], TrackerState] = field(default_factory=dict)
    changes: list[OutageChange] = field(default_factory=list)
    cursor: tuple[str, int] | None = None  # (stream, position) derived up to, committed with the rest


@dataclass(frozen=True, slots=True)
class AgentProgress:
    """What the center knows of one agent (a location): what it stored last and when."""

    location: str
    last_seq: int  # the highest sequence number stored: an agent's batch at or below it is stored already
    last_result_ms: int | None  # the newest result's own time
    last_ingest_ms: int  # when the center last stored a batch of it


class StoreUnavailable(Exception):
    """The store cannot take writes now (locked, disk full, I/O error); retry later."""


class ResultStore(Protocol):
    """The hot path: what the collector writes and the status, settlement and feed read back."""

    def write(self, batch: Batch) -> list[Outage]:
        """Commit a batch atomically; return the outages it opened or closed, as stored."""
        ...

    def tracker_states(self) -> dict[tuple[str, str], TrackerState]: ...

    def open_outages(self) -> dict[str, Outage]: ...

    def results(self, service: str, start_ms: int, end_ms: int) -> list[ProbeResult]: ...

    def count_results(self) -> int: ...

    def missing(self, results: Sequence[ProbeResult]) -> list[ProbeResult]:
        """Those of ``results`` not stored yet (replaying a journal twice stores each result once)."""
        ...

    def outages(
        self, service: str | None = None, start_ms: int | None = None, end_ms: int | None = None
    ) -> list[Outage]: ...

    def states(self) -> dict[str, ServiceState]: ...

    def segments(self, service: str, location: str, start_ms: int, end_ms: int) -> list[Segment]:
        """Compacted history of (service, location) overlapping [start, end)."""
        ...

    def period_segments(self, service: str, location: str, start_ms: int, end_ms: int, interval_ms: int,
                        threshold: int) -> list[Segment]:
        """Segments of (service, location) for [start, end): stored ones, then the raw results after them."""
        ...

    def period_segments_many(self, pairs: Sequence[tuple[str, str, int, int]], start_ms: int,
                             end_ms: int) -> list[list[Segment]]:
        """``period_segments`` of many (service, location, interval_ms, threshold), in order."""
        ...

    def lead_start(self, service: str, location: str, at_ms: int) -> int | None: ...

    def materialize(self, service: str, location: str, until_ms: int, interval_ms: int, threshold: int) -> int: ...

    def compact(self, service: str, location: str, before_ms: int, interval_ms: int, threshold: int) -> int:
        """Turn raw results older than ``before_ms`` into segments; return rows removed."""
        ...

    def locations_of(self, service: str) -> Sequence[str]: ...

    def record_outage(self, service: str, start_ms: int, end_ms: int, error: str | None) -> Outage:
        """An outage that late results showed in the past, recorded closed, with its own tracking code."""
        ...

    def ingest(self, location: str, batch: Sequence[tuple[int, ProbeResult]], now_ms: int) -> tuple[int, int]:
        """Store an agent's numbered results in one transaction, each once however often it is sent.

        Returns (the highest sequence number now stored for the location, how many were new).
        """
        ...

    def agents(self) -> list[AgentProgress]:
        """Every location that has shipped results, with its progress."""
        ...

    def close(self) -> None: ...


class SlaRecords(Protocol):
    """What settlement records and reads: maintenance, exclusions, closes, the ledger, archived packs."""

    def add_maintenance(self, window: MaintenanceWindow, title: str = "") -> None: ...

    def update_maintenance(self, window_id: str, start_ms: int, end_ms: int, announced_at_ms: int,
                           title: str | None) -> bool: ...

    def cancel_maintenance(self, window_id: str) -> bool: ...

    def maintenance(self, start_ms: int | None = None, end_ms: int | None = None) -> list[MaintenanceWindow]: ...

    def maintenance_titles(self) -> dict[str, str]: ...

    def add_exclusion(self, exclusion: Exclusion, recorded_ms: int) -> None: ...

    def exclusions(self, start_ms: int | None = None, end_ms: int | None = None) -> list[Exclusion]: ...

    def month_close(self, month: str) -> tuple[int, dict[str, Any]] | None: ...

    def month_pack(self, month: str) -> str | None: ...

    def record_close(self, month: str, closed_ms: int, report: dict[str, Any], credits: Sequence[Credit],
                     pack_sha256: str | None = None) -> bool: ...

    def add_ledger_entry(self, entry: Credit) -> None: ...

    def ledger(self, month: str | None = None, service: str | None = None) -> list[Credit]: ...

    def archive_pack(self, digest: str, month: str, created_ms: int, data: bytes) -> None: ...

    def archived_pack(self, digest: str) -> bytes | None: ...

    def purge_packs(self, before_ms: int) -> int: ...


class Store(ResultStore, SlaRecords, Protocol):
    """The system of record as settlement sees it: results and SLA records on one connection."""

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...


# -- notices ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to one recipient through one channel."""

    event: str
    channel: str
    recipient: str
    lang: str
    subject: str
    body: str
    html: str | None = None
    id: int = 0
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class OutboxRow:
    notice: Notice
    state: str
    attempts: int
    last_error: str | None
    next_attempt_ms: int


class OutboxStore(Protocol):
    """The persistent outbox: every notice is a row before any send; a row is claimed by one worker."""

    def enqueue(self, notices: list[Notice], now_ms: int) -> int: ...

    def recover_stale(self, now_ms: int) -> int: ...

    def claim(self, now_ms: int, limit: int, channel: str | None = None) -> list[Notice]: ...

    def sent(self, notice: Notice, now_ms: int) -> None: ...

    def failed(self, notice: Notice, reason: str, permanent: bool, now_ms: int) -> None: ...

    def rows(self, states: tuple[str, ...] = ("pending", "sending", "failed"),
             limit: int = 1000) -> list[OutboxRow]: ...

    def counts(self, channels: tuple[str, ...] | None = None) -> dict[str, int]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    service: str
    kind: str  # "email" | "sms"
    address: str
    lang: str
    confirmed: bool
    code: str
    token: str


class TooManyCodes(Exception):
    """This address was sent as many codes as an hour allows: nothing more is sent to it now."""


class SubscriberStore(Protocol):
    """Citizens subscribed to a service's notices, their confirmation codes, and outage acknowledgements."""

    def subscribe(self, service: str, kind: str, address: str, lang: str, now_ms: int) -> Subscriber: ...

    def find(self, service: str, kind: str, address: str) -> Subscriber | None: ...

    def confirm(self, service: str, kind: str, address: str, code: str, now_ms: int | None = None) -> bool: ...

    def confirm_outcome(self, service: str, kind: str, address: str, code: str,
                        now_ms: int | None = None) -> str: ...

    def unsubscribe(self, token: str) -> bool: ...

    def reply(self, kind: str, address: str, text: str) -> int: ...

    def of_service(self, service: str) -> list[Subscriber]: ...

    def acknowledge(self, outage_id: int, who: str, now_ms: int) -> bool: ...

    def acknowledged(self, outage_id: int) -> bool: ...

    def acknowledgement(self, outage_id: int) -> tuple[str, int] | None:
        """(who, when) the outage was acknowledged, or None."""
        ...

    def close(self) -> None: ...


# -- the web's records ------------------------------------------------------------

# "heartbeat" tokens report one heartbeat service in (their name is the service) and can do nothing else;
# "agent" tokens ship one location's results (their name is the location) and can do nothing else.
ROLES = ("viewer", "operator", "admin", "heartbeat", "agent")


def token_digest(token: str) -> str:
    """Tokens are kept as SHA-256 digests: shown once when created, never again."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What a presented token is: ``state`` is ok, unknown, revoked or expired."""

    state: str
    name: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    role: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def state(self, now_ms: int) -> str:
        if self.revoked_ms is not None:
            return "revoked"
        if self.expires_ms is not None and now_ms >= self.expires_ms:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class Receipt:
    code: str
    service: str
    description: str
    contact: str
    created_ms: int
    state: str
    probe_confirmed: bool | None
    probe_detail: str | None
    note: str

    def public(self) -> dict[str, Any]:
        """What anyone holding the code may see (no contact details)."""
        return {"code": self.code, "service": self.service, "state": self.state, "created_ms": self.created_ms,
                "probe_confirmed": self.probe_confirmed, "description": self.description, "note": self.note}


class WebRecordStore(Protocol):
    """Citizens' fault receipts, API tokens and the audit log."""

    def file_receipt(self, service: str, description: str, contact: str, now_ms: int) -> Receipt: ...

    def record_probe(self, code: str, confirmed: bool, detail: str) -> None: ...

    def receipt(self, code: str) -> Receipt | None: ...

    def receipts(self, start_ms: int = 0, end_ms: int = 2**62, service: str | None = None) -> list[Receipt]: ...

    def set_receipt_state(self, code: str, state: str, note: str, now_ms: int) -> bool: ...

    def create_token(self, name: str, role: str, now_ms: int, expires_ms: int | None = None) -> str: ...

    def token(self, token: str) -> tuple[str, str] | None: ...

    def check_token(self, token: str, now_ms: int) -> TokenCheck: ...

    def tokens(self) -> list[TokenInfo]: ...

    def revoke_token(self, token_id: int, now_ms: int) -> bool: ...

    def audit(self, who: str, method: str, path: str, status: int, body: Any, now_ms: int) -> None: ...

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


# -- the time-series feed's reading of the store ----------------------------------------


class FeedSource(Protocol):
    """Results in the order they were stored, and the feed's own progress through them."""

    def position(self, stream: str) -> int: ...

    def advance(self, stream: str, position: int) -> None: ...

    def newest(self) -> int:
        """The position of the newest stored result (0: none)."""
        ...

    def results_after(self, after: int, since_ms: int, limit: int) -> list[tuple[int, ProbeResult]]:
        """Up to ``limit`` results stored after position ``after`` (and taken at or after ``since_ms``), in order."""
        ...

    def close(self) -> None: ...
