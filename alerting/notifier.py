"""From events to queued notices: who is told what, in which language.

- Outage opened/closed: the agency's level-0 staff and every confirmed
  subscriber of the service — all subscribers get the same notice.
- An outage nobody acknowledged within ``escalate_after_minutes`` goes to the
  next staff level, and so on.
- Maintenance: announced (flagged when under the notice period), reminders
  (24 h and 1 h before by default), started, ended — or overran when the
  service is still down at its end.
- SLA at risk: multi-window burn rate on the month's error budget, staff only.
- A month closed with a credit: the service's subscribers, with its tracking code.
- Flapping: more than ``flap_max_notices`` transitions of a service within
  ``flap_window_minutes`` become one digest per window instead.

Every notice carries an event key; the outbox refuses a second notice for the
same (event, channel, recipient), so a job that runs twice sends nothing twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from alerting.render import notice, span, when
from core.config import DidbanConfig, RecipientConfig
from core.model import Credit, MaintenanceWindow, Outage, OutageEvent
from core.timefmt import persian_digits
from sla_calc.month import notice_verdict
from store.contract import Notice, OutboxStore, SubscriberStore

_CHANNEL_KIND = {"email": "email", "kavenegar": "sms", "http_sms": "sms", "webhook": "webhook"}
MINUTE = 60_000
HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: str
    kind: str
    address: str
    lang: str


class Notifier:
    def __init__(self, config: DidbanConfig, outbox: OutboxStore, subscribers: SubscriberStore) -> None:
        self.config = config
        self.alerting = config.alerting
        self.outbox = outbox
        self.subscribers = subscribers
        self._kinds = {c.id: _CHANNEL_KIND[c.type] for c in self.alerting.channels}
        self._max_segments = {c.id: getattr(c, "max_segments", 2) for c in self.alerting.channels}
        self._agency_of = {service.id: agency for agency, service in config.services()}
        self._service = {service.id: service for _, service in config.services()}
        self._staff = {staff.agency: staff for staff in self.alerting.staff}
        self._transitions: dict[str, deque[int]] = {}

    # -- recipients ---------------------------------------------------------------

    def staff(self, service: str, level: int = 0) -> list[Recipient]:
        staff = self._staff.get(self._agency_of[service].id)
        if staff is None or level >= len(staff.levels):
            return []
        return [self._recipient(r) for r in staff.levels[level]]

    def _recipient(self, config: RecipientConfig) -> Recipient:
        return Recipient(config.channel, self._kinds[config.channel], config.to, config.lang)

    def subscribers_of(self, service: str) -> list[Recipient]:
        channel_for = {"email": self.alerting.subscriber_email_channel, "sms": self.alerting.subscriber_sms_channel}
        return [
            Recipient(channel, s.kind, s.address, s.lang)
            for s in self.subscribers.of_service(service)
            if (channel := channel_for.get(s.kind)) is not None
        ]

    def everyone(self, service: str) -> list[Recipient]:
        return self.staff(service) + self.subscribers_of(service)

    # -- queueing -----------------------------------------------------------------------

    def _values(self, service: str, lang: str, values: dict[str, Any]) -> dict[str, Any]:
        config = self._service[service]
        agency = self._agency_of[service]
        localised = {k: (persian_digits(str(v)) if lang == "fa" and isinstance(v, int | float) else v)
                     for k, v in values.items()}
        return {"service": config.name.fa if lang == "fa" else config.name.en,
                "agency": agency.name.fa if lang == "fa" else agency.name.en,
                "status_url": f"{self.alerting.status_page_url.rstrip('/')}/s/{service}", **localised}

    def queue(self, kind: str, event: str, service: str, recipients: Iterable[Recipient],
              values: Any, now_ms: int) -> int:
        """Render and enqueue; ``values`` is a dict or a function of the language giving one."""
        notices: list[Notice] = []
        for r in recipients:
            raw = values(r.lang) if callable(values) else values
            notices.append(notice(kind, event, r.channel, r.kind, r.address, r.lang,
                                  self._values(service, r.lang, raw), self._max_segments.get(r.channel, 2)))
        return self.outbox.enqueue(notices, now_ms) if notices else 0

    # -- outages ----------------------------------------------------------------------------

    def outage_event(self, event: OutageEvent, now_ms: int) -> int:
        outage = event.outage
        if self._flapping(outage.service, now_ms):
            window = int(self.alerting.flap_window_minutes * MINUTE)
            count = len(self._transitions[outage.service])
            return self.queue("flapping", f"flap:{outage.service}:{now_ms // window}", outage.service,
                              self.everyone(outage.service),
                              {"count": count, "minutes": int(self.alerting.flap_window_minutes)}, now_ms)
        if event.kind == "outage_opened":
            return self._opened(outage, 0, self.everyone(outage.service), now_ms)
        assert outage.end_ms is not None
        return self.queue(
            "outage_closed", f"outage:{outage.id}:closed", outage.service, self.everyone(outage.service),
            lambda lang: {"end": when(outage.end_ms or now_ms, lang), "code": outage.tracking_code,
                          "duration": span((outage.end_ms or now_ms) / 1000 - outage.start_ms / 1000, lang)},
            now_ms,
        )

    def _opened(self, outage: Outage, level: int, recipients: list[Recipient], now_ms: int) -> int:
        suffix = "opened" if level == 0 else f"escalated:{level}"
        return self.queue(
            "outage_opened", f"outage:{outage.id}:{suffix}", outage.service, recipients,
            lambda lang: {"start": when(outage.start_ms, lang), "error": outage.error or "-",
                          "code": outage.tracking_code, "level": level},
            now_ms,
        )

    def _flapping(self, service: str, now_ms: int) -> bool:
        window = self.alerting.flap_window_minutes * MINUTE
        transitions = self._transitions.setdefault(service, deque())
        transitions.append(now_ms)
        while transitions and transitions[0] < now_ms - window:
            transitions.popleft()
        return len(transitions) > self.alerting.flap_max_notices

    def escalate(self, open_outages: Sequence[Outage], now_ms: int) -> int:
        """Tell the next staff level about outages nobody acknowledged in time."""
        queued = 0
        for outage in open_outages:
            staff = self._staff.get(self._agency_of[outage.service].id) if outage.service in self._agency_of else None
            if staff is None or self.subscribers.acknowledged(outage.id):
                continue
            level = int((now_ms - outage.start_ms) // (staff.escalate_after_minutes * MINUTE))
            for step in range(1, min(level, len(staff.levels) - 1) + 1):
                queued += self._opened(outage, step, self.staff(outage.service, step), now_ms)
        return queued

    # -- maintenance --------------------------------------------------------------------------

    def _window_values(self, window: MaintenanceWindow) -> Any:
        return lambda lang: {"start": when(window.start_ms, lang), "end": when(window.end_ms, lang),
                             "window": window.id}

    def _services(self, window: MaintenanceWindow) -> list[str]:
        return list(self._service) if "*" in window.services else [s for s in window.services if s in self._service]

    def maintenance_announced(self, window: MaintenanceWindow, notice_hours: float, now_ms: int) -> int:
        notice = notice_verdict(window.start_ms, window.announced_at_ms, notice_hours)
        hours, late = round(notice.given_hours, 1), not notice.meets
        queued = 0
        for service in self._services(window):
            values = self._window_values(window)
            queued += self.queue(
                "maintenance_announced", f"mw:{window.id}:announced", service, self.everyone(service),
                lambda lang, values=values: {**values(lang), "late": late, "notice_hours": hours},
                now_ms,
            )
        return queued

    def maintenance_tick(self, windows: Sequence[MaintenanceWindow], down_services: set[str], now_ms: int) -> int:
        """Reminders, start, end and overrun of windows; each fires within 10 minutes of its moment."""
        grace = 10 * MINUTE
        queued = 0
        for window in windows:
            if window.cancelled:
                continue
            moments: list[tuple[str, str, int, dict[str, Any]]] = [
                ("maintenance_reminder", f"reminder:{h:g}", window.start_ms - int(h * HOUR), {"hours": h})
                for h in self.alerting.reminders_hours
            ]
            moments.append(("maintenance_started", "started", window.start_ms, {}))
            for service in self._services(window):
                items = list(moments)
                overran = service in down_services
                items.append(("maintenance_overran" if overran else "maintenance_ended",
                              "overran" if overran else "ended", window.end_ms, {}))
                for kind, suffix, at_ms, extra in items:
                    if at_ms <= now_ms < at_ms + grace:
                        values = self._window_values(window)
                        queued += self.queue(kind, f"mw:{window.id}:{suffix}", service, self.everyone(service),
                                             lambda lang, values=values, extra=extra: {**values(lang), **extra},
                                             now_ms)
        return queued

    # -- SLA at risk, credits -----------------------------------------------------------------

    def sla_at_risk(self, service: str, rule: str, burned_percent: float, window_hours: float,
                    availability: str, target: float, now_ms: int) -> int:
        bucket = now_ms // (6 * HOUR)  # at most one notice per rule and service every 6 hours
        return self.queue(
            "sla_at_risk", f"sla:{service}:{rule}:{bucket}", service, self.staff(service),
            lambda lang: {"rule": rule, "burned": f"{burned_percent:.1f}%", "window": span(window_hours * 3600, lang),
                          "availability": availability, "target": target},
            now_ms,
        )

    def credit_issued(self, credit: Credit, availability: str, target: float, now_ms: int) -> int:
        return self.queue(
            "credit_issued", f"credit:{credit.tracking_code}", credit.service,
            self.subscribers_of(credit.service) + self.staff(credit.service),
            {"month": credit.month, "credit_percent": credit.credit_percent, "amount": int(credit.amount),
             "code": credit.tracking_code, "availability": availability, "target": target},
            now_ms,
        )

    def location_silent(self, location: str, silent: bool, since_ms: int, now_ms: int) -> int:
        """A probe location went silent (missing coverage, not downtime) or returned: the first-level staff of
        every agency, once per silence (its start names the event)."""
        recipients = {(r.channel, r.address): r for staff in self.alerting.staff if staff.levels
                      for r in (self._recipient(c) for c in staff.levels[0])}
        kind = "location_silent" if silent else "location_back"
        url = self.alerting.status_page_url.rstrip("/") + "/admin"
        notices = [notice(kind, f"location:{location}:{kind}:{since_ms}", r.channel, r.kind, r.address, r.lang,
                          {"location": location, "since": when(since_ms, r.lang), "status_url": url},
                          self._max_segments.get(r.channel, 2))
                   for r in recipients.values()]
        return self.outbox.enqueue(notices, now_ms) if notices else 0

    # -- subscriptions and tests -----------------------------------------------------------------

    def confirm_subscription(self, service: str, kind: str, address: str, lang: str, code: str, token: str,
                             now_ms: int) -> int:
        channel = self.alerting.subscriber_email_channel if kind == "email" else self.alerting.subscriber_sms_channel
        if channel is None:
            return 0
        url = f"{self.alerting.status_page_url.rstrip('/')}/unsubscribe/{token}"
        return self.queue("subscription_confirm", f"confirm:{kind}:{address}:{code}", service,
                          [Recipient(channel, kind, address, lang)], {"code": code, "unsubscribe_url": url}, now_ms)

    def test(self, channel: str, to: str, lang: str, now_ms: int) -> int:
        if channel not in self._kinds:
            raise KeyError(channel)
        rendered = notice("test", f"test:{now_ms}", channel, self._kinds[channel], to, lang,
                          {"when": when(now_ms, lang)}, self._max_segments.get(channel, 2))
        return self.outbox.enqueue([rendered], now_ms)
