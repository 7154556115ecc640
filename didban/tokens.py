"""Issuing a token: the one home of its rules, for the CLI and the admin API alike."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import DidbanConfig
from store.contract import WebRecordStore


class BadToken(ValueError):
    """A token that cannot be issued, with the reason in the user's words."""


@dataclass(frozen=True)
class Issued:
    token: str  # shown once, stored only as its digest
    expires_ms: int | None


def issue_token(config: DidbanConfig, records: WebRecordStore, name: str, role: str, now_ms: int,
                expires_days: float | None = None) -> Issued:
    """A new token; a heartbeat token is named after the heartbeat service that reports in with it, an agent
    token after the location whose results it ships."""
    if role == "heartbeat" and not any(s.id == name and s.heartbeat is not None for _, s in config.services()):
        heartbeats = sorted(s.id for _, s in config.services() if s.heartbeat is not None)
        raise BadToken(f"a heartbeat token is named after a heartbeat service ({', '.join(heartbeats) or 'none'} "
                       f"in this config), got {name[:80]!r}")
    if role == "agent" and name not in {location.id for location in config.locations}:
        raise BadToken(f"an agent token is named after the location it probes from "
                       f"({', '.join(loc.id for loc in config.locations)} in this config), got {name[:80]!r}")
    expires_ms = now_ms + int(expires_days * 86_400_000) if expires_days else None
    try:
        return Issued(records.create_token(name, role, now_ms, expires_ms), expires_ms)
    except ValueError as exc:  # a role it does not know, an expiry that rounds to now
        raise BadToken(str(exc)) from None
