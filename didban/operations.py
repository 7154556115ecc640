"""The staff's use cases besides settlement: moving and cancelling maintenance, recording exclusions,
acknowledging outages and handling citizens' fault receipts.

The CLI, the admin API and the operator console call these functions and only translate their
errors (an exit code, a 4xx, a message on the page): no rule is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypeVar

from core.config import DidbanConfig
from core.model import Exclusion, MaintenanceWindow, Outage
from core.timefmt import jalali
from core.tracking import new_code
from sla_calc.periods import JalaliMonth
from store.backend import Backend
from store.contract import Store, SubscriberStore, WebRecordStore

_T = TypeVar("_T")


class NotFound(LookupError):
    """The window, outage or receipt named does not exist (or is no longer active)."""


class Conflict(ValueError):
    """The request is well formed but cannot apply to the record as it stands."""


class UnknownServices(ValueError):
    pass


def known_services(config: DidbanConfig, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Service ids from the config (or ``*``, every service), in the order given."""
    known = {service.id for _, service in config.services()}
    unknown = [name for name in names if name != "*" and name not in known]
    if not names or unknown:
        raise UnknownServices(f"unknown services: {', '.join(unknown[:10]) or 'none given'}")
    return tuple(names)


def find_window(store: Store, window_id: str) -> MaintenanceWindow:
    window = next((w for w in store.maintenance() if w.id == window_id), None)
    if window is None:
        raise NotFound("no such maintenance window")
    return window


def move_maintenance(store: Store, window_id: str, start_ms: int | None, end_ms: int | None, title: str | None,
                     now_ms: int) -> MaintenanceWindow:
    """Change a window; moving it is announcing it again, so its notice runs from now."""
    window = find_window(store, window_id)
    if window.cancelled:
        raise Conflict("a cancelled window cannot be changed")
    start = start_ms if start_ms is not None else window.start_ms
    end = end_ms if end_ms is not None else window.end_ms
    if end <= start:
        raise Conflict(f"the window would end before it starts: it runs {jalali(window.start_ms)} to "
                       f"{jalali(window.end_ms)} Tehran time; move start and end together")
    moved = (start, end) != (window.start_ms, window.end_ms)
    announced = now_ms if moved else window.announced_at_ms
    store.update_maintenance(window.id, start, end, announced, title)
    return MaintenanceWindow(window.id, window.services, start, end, announced)


def cancel_maintenance(store: Store, window_id: str) -> None:
    """A cancelled window excludes nothing."""
    if not store.cancel_maintenance(window_id):
        raise NotFound("no such maintenance window")


def record_exclusion(config: DidbanConfig, store: Store, services: tuple[str, ...], start_ms: int, end_ms: int,
                     reason: str, evidence: str, approved_by: str, now_ms: int) -> Exclusion:
    """An infrastructure exclusion (the telecom clause), with its evidence and who approved it."""
    if end_ms <= start_ms:
        raise Conflict("end must be after start")
    if len(reason.strip()) < 3:
        raise Conflict("say why: the reason is what the inspection office reads")
    exclusion = Exclusion(new_code("EX"), known_services(config, services), start_ms, end_ms, reason.strip(),
                          evidence.strip(), approved_by.strip())
    store.add_exclusion(exclusion, now_ms)
    return exclusion


@dataclass(frozen=True)
class Acknowledged:
    outage: Outage
    new: bool  # False: it had been acknowledged already (and by whom stays as it was)


def acknowledge_outage(store: Store, subscribers: SubscriberStore, key: str, by: str, now_ms: int) -> Acknowledged:
    """Acknowledge an outage by its number or tracking code: its escalation stops."""
    outage = next((o for o in store.outages() if key.strip().upper() in (str(o.id), o.tracking_code)), None)
    if outage is None:
        raise NotFound("no such outage (give its number or tracking code)")
    return Acknowledged(outage, subscribers.acknowledge(outage.id, by, now_ms))


RECEIPT_ACTIONS = {"ack": "acknowledged", "resolve": "resolved"}


def handle_receipt(records: WebRecordStore, code: str, action: str, note: str, now_ms: int) -> str:
    """Acknowledge or resolve a citizen's receipt, with a note the citizen sees; returns the new state."""
    state = RECEIPT_ACTIONS.get(action)
    if state is None:
        raise NotFound("the action is ack or resolve")
    if not records.set_receipt_state(code, state, note, now_ms):
        raise NotFound("no such receipt")
    return state


# -- months: what the API and the console run in the workshop (off the event loop) ----------------


def on_own_store(backend: Backend, job: Callable[..., _T], config: DidbanConfig, *args: Any) -> _T:
    """``job(config, store, *args)`` on a store connection of its own (the engine's month work)."""
    with backend.store() as store:
        return job(config, store, *args)


def month_figures(config: DidbanConfig, backend: Backend, month: JalaliMonth, now_ms: int) -> dict[str, Any]:
    """A month's figures (so far, while it runs): the export's model without a pack digest."""
    from didban.exports import build_model
    from didban.settlement import settle

    with backend.store() as store, closing(backend.web_records()) as records:
        model = build_model(config, store, records, settle(config, store, month, now_ms=now_ms), digest="")
    model.pop("evidence_pack_sha256")
    return model


def month_export(config: DidbanConfig, backend: Backend, month: JalaliMonth, fmt: str, now_ms: int,
                 renderer: Any) -> tuple[str, bytes, str]:
    """(file name, bytes, pack digest) of one export format."""
    from didban.exports import export_one

    with backend.store() as store, closing(backend.web_records()) as records:
        return export_one(config, store, records, month, fmt, now_ms, renderer=renderer)


def close_month(config: DidbanConfig, backend: Backend, month: JalaliMonth, now_ms: int, accept: bool) -> Any:
    from didban.settlement import close_month as close

    with backend.store() as store:
        return close(config, store, month, now_ms, accept_insufficient_evidence=accept)
