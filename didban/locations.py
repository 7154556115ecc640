"""The center's watch over its probe locations: who reported when, and who has gone silent.

A location is silent when the center has stored nothing of it for longer
than ``agent.silent_after_seconds``.  A silent location is missing coverage,
never downtime (the quorum leaves it out); staff get one notice when it goes
silent and one when it returns.  The API (``GET /api/agents``), ``/metrics``
and ``didban status`` all read ``location_states``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config import DidbanConfig
from core.model import iso_utc
from core.timefmt import jalali
from store.contract import AgentProgress


@dataclass(frozen=True, slots=True)
class LocationState:
    location: str
    last_result_ms: int | None  # the newest result's own time (the agent's clock)
    last_ingest_ms: int | None  # when the center last stored a batch of it
    silent: bool
    reported: bool  # False: no agent has shipped anything for this location yet

    def lag_seconds(self, now_ms: int) -> float | None:
        """How old the newest stored result of the location is."""
        return None if self.last_result_ms is None else max(0.0, (now_ms - self.last_result_ms) / 1000)

    def as_json(self, now_ms: int) -> dict[str, object]:
        return {"location": self.location, "reported": self.reported, "silent": self.silent,
                "last_result": iso_utc(self.last_result_ms) if self.last_result_ms else None,
                "last_result_tehran": jalali(self.last_result_ms) if self.last_result_ms else None,
                "last_ingest": iso_utc(self.last_ingest_ms) if self.last_ingest_ms else None,
                "lag_seconds": None if self.last_result_ms is None else round(self.lag_seconds(now_ms) or 0, 1)}


def location_states(config: DidbanConfig, progress: list[AgentProgress], now_ms: int) -> list[LocationState]:
    """Every configured location (and any other that shipped results), in the config's order."""
    known = {p.location: p for p in progress}
    names = [loc.id for loc in config.locations] + sorted(set(known) - {loc.id for loc in config.locations})
    silent_ms = config.agent.silent_after_seconds * 1000
    states = []
    for name in names:
        seen = known.get(name)
        if seen is None:
            states.append(LocationState(name, None, None, silent=False, reported=False))
            continue
        states.append(LocationState(name, seen.last_result_ms, seen.last_ingest_ms,
                                    silent=now_ms - seen.last_ingest_ms > silent_ms, reported=True))
    return states


class LocationWatch:
    """Turns the states into one notice per silence and one per return (the outbox keeps each once)."""

    def __init__(self) -> None:
        self.silent: dict[str, int] = {}  # location → since when (its last ingest)

    def changes(self, states: list[LocationState]) -> list[tuple[str, bool, int]]:
        """(location, went silent?, since) for each location whose silence began or ended."""
        found = []
        for state in states:
            if not state.reported or state.last_ingest_ms is None:
                continue
            if state.silent and state.location not in self.silent:
                self.silent[state.location] = state.last_ingest_ms
                found.append((state.location, True, state.last_ingest_ms))
            elif not state.silent and state.location in self.silent:
                found.append((state.location, False, self.silent.pop(state.location)))
        return found
