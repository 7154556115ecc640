"""Grafana dashboards as code: pure functions from the configuration to dashboard JSON.

No I/O: the same config always gives the same JSON (stable uids, stable
panel ids), so the output can be snapshot-tested and pushing it twice
changes nothing.  Queries are InfluxQL, which works on InfluxDB 1.8+, on 2.x
through a DBRP mapping and on 3.x, against the measurements the InfluxDB sink
writes (``collector/influx_sink.py``): ``check``, ``outage``, ``sla_month``.
Labels are Persian or English (``lang``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.config import AgencyConfig, DidbanConfig

DATASOURCE_UID = "didban-influxdb"
DATASOURCE = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39

LABELS = {
    "overview": {"fa": "نمای کلی دستگاه", "en": "Agency overview"},
    "detail": {"fa": "جزئیات خدمت", "en": "Service detail"},
    "compliance": {"fa": "انطباق با سطح خدمت", "en": "SLA compliance"},
    "state_now": {"fa": "وضعیت فعلی", "en": "State now"},
    "mtd": {"fa": "دسترس‌پذیری ماه جاری", "en": "Month-to-date availability"},
    "budget": {"fa": "باقی‌ماندهٔ بودجهٔ خطا", "en": "Error budget remaining"},
    "outages_month": {"fa": "قطعی‌های این ماه", "en": "Outages this month"},
    "credits_year": {"fa": "اعتبارهای امسال", "en": "Credits this year"},
    "ends": {"fa": "پایان", "en": "Ends"},
    "maintenance": {"fa": "نگهداری پیش رو", "en": "Upcoming maintenance"},
    "timeline": {"fa": "خط زمانی وضعیت", "en": "State timeline"},
    "latency": {"fa": "تأخیر پاسخ", "en": "Latency"},
    "outages": {"fa": "قطعی‌ها", "en": "Outages"},
    "months": {"fa": "ماه به ماه", "en": "Month by month"},
    "certificate": {"fa": "روزهای باقی‌ماندهٔ گواهی TLS", "en": "TLS certificate days left"},
    "up": {"fa": "برقرار", "en": "up"},
    "down": {"fa": "قطع", "en": "down"},
    "agency": {"fa": "دستگاه", "en": "Agency"},
    "service": {"fa": "خدمت", "en": "Service"},
    "location": {"fa": "محل پایش", "en": "Location"},
}


def _label(key: str, lang: str) -> str:
    return LABELS[key][lang]


def stable_uid(*parts: str) -> str:
    """Grafana uids are at most 40 characters: readable when short, hashed when not."""
    text = "didban-" + "-".join(parts)
    if len(text) <= 40:
        return text
    return text[:29] + "-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _target(query: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "rawQuery": True, "resultFormat": "time_series",
            "query": query}


def _panel(panel_id: int, title: str, kind: str, x: int, y: int, w: int, h: int, targets: list[dict[str, Any]],
           **extra: Any) -> dict[str, Any]:
    return {"id": panel_id, "type": kind, "title": title, "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets, **extra}


def _variable(name: str, label: str, query: str | None = None, options: list[str] | None = None,
              multi: bool = True) -> dict[str, Any]:
    if options is not None:
        return {"name": name, "label": label, "type": "custom", "query": ",".join(options),
                "current": {"text": options[0], "value": options[0]}, "hide": 2 if len(options) == 1 else 0,
                "options": [{"text": o, "value": o, "selected": i == 0} for i, o in enumerate(options)]}
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "query": query,
            "refresh": 2, "multi": multi, "includeAll": True, "sort": 1}


_STATE_MAPPINGS = [{"type": "value", "options": {"1": {"text": "up", "color": "green"},
                                                  "0": {"text": "down", "color": "red"}}}]


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]], variables: list[dict[str, Any]],
               time_from: str, tags: list[str], annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"uid": uid, "title": title, "tags": ["didban", *tags], "timezone": "Asia/Tehran",
            "schemaVersion": SCHEMA_VERSION, "editable": False, "refresh": "1m",
            "time": {"from": time_from, "to": "now"}, "templating": {"list": variables},
            "annotations": {"list": annotations or []}, "panels": panels}


_AGENCY = '"agency" =~ /^$agency$/'
_SERVICE = '"service" =~ /^$service$/'
_LOCATION = '"location" =~ /^$location$/'


def agency_overview(agency: AgencyConfig, lang: str = "fa", target: float = 99.5) -> dict[str, Any]:
    name = agency.name.fa if lang == "fa" else agency.name.en
    mappings = [{"type": "value", "options": {"1": {"text": _label("up", lang), "color": "green"},
                                               "0": {"text": _label("down", lang), "color": "red"}}}]
    panels = [
        _panel(1, _label("state_now", lang), "stat", 0, 0, 24, 6, [_target(
            f'SELECT last("up") FROM "check" WHERE {_AGENCY} AND time > now() - 10m GROUP BY "service"')],
            fieldConfig={"defaults": {"mappings": mappings, "color": {"mode": "thresholds"},
                                      "thresholds": {"mode": "absolute", "steps": [
                                          {"color": "red", "value": None}, {"color": "green", "value": 1}]}}}),
        _panel(2, _label("mtd", lang), "bargauge", 0, 6, 12, 8, [_target(
            f'SELECT last("availability") FROM "sla_month" WHERE {_AGENCY} AND time > now() - 31d '
            f'GROUP BY "service"')],
            # red under the agency's target, green at or above it
            fieldConfig={"defaults": {"unit": "percent", "decimals": 2, "min": 95, "max": 100,
                                      "color": {"mode": "thresholds"},
                                      "thresholds": {"mode": "absolute", "steps": [
                                          {"color": "red", "value": None}, {"color": "green", "value": target}]}}}),
        _panel(3, _label("budget", lang), "bargauge", 12, 6, 12, 8, [_target(
            f'SELECT last("budget_remaining_percent") FROM "sla_month" WHERE {_AGENCY} AND time > now() - 31d '
            f'GROUP BY "service"')],
            fieldConfig={"defaults": {"unit": "percent", "decimals": 2, "min": 0, "max": 100}}),
        # The Jalali month's own count: the last sla_month point of a service is its current month.
        _panel(4, _label("outages_month", lang), "stat", 0, 14, 12, 6, [_target(
            f'SELECT last("outages") FROM "sla_month" WHERE {_AGENCY} AND time > now() - 31d GROUP BY "service"')]),
        # How many credits were issued: closed months whose credit percent is above zero (one point each).
        _panel(5, _label("credits_year", lang), "stat", 12, 14, 12, 6, [_target(
            f'SELECT count("credit_percent") FROM "sla_month" WHERE {_AGENCY} AND "closed" = 1 '
            f'AND "credit_percent" > 0 AND time > now() - 365d GROUP BY "service"')],
            fieldConfig={"defaults": {"unit": "none", "decimals": 0}}),
        _panel(6, _label("maintenance", lang), "table", 0, 20, 24, 6, [{
            **_target(f'SELECT "title", "end_ms", "notice_hours", "meets_notice" FROM "maintenance" WHERE {_AGENCY} '
                      'AND "cancelled" = 0 AND time > now() - 1h AND time < now() + 60d'), "resultFormat": "table"}],
            # end_ms is epoch milliseconds: shown as a time in the dashboard's zone (Asia/Tehran), never a number.
            fieldConfig={"defaults": {}, "overrides": [
                {"matcher": {"id": "byName", "options": "end_ms"},
                 "properties": [{"id": "unit", "value": "dateTimeAsIso"},
                                {"id": "displayName", "value": _label("ends", lang)}]},
                {"matcher": {"id": "byName", "options": "notice_hours"},
                 "properties": [{"id": "unit", "value": "h"}, {"id": "decimals", "value": 1}]}]}),
    ]
    variables = [_variable("agency", _label("agency", lang), options=[agency.id])]
    annotations = [{"name": _label("maintenance", lang), "datasource": DATASOURCE, "enable": True,
                    "iconColor": "blue", "query": f'SELECT "title" FROM "maintenance" WHERE {_AGENCY} '
                                                  "AND $timeFilter"}]
    return _dashboard(stable_uid(agency.id, "overview"), f"{name} — {_label('overview', lang)}", panels,
                      variables, "now-30d", [agency.id], annotations)


def service_detail(agency: AgencyConfig, lang: str = "fa") -> dict[str, Any]:
    name = agency.name.fa if lang == "fa" else agency.name.en
    where = f"{_AGENCY} AND {_SERVICE} AND {_LOCATION} AND $timeFilter"
    panels = [
        _panel(1, _label("timeline", lang), "state-timeline", 0, 0, 24, 8, [_target(
            f'SELECT last("up") FROM "check" WHERE {where} GROUP BY time($__interval), "service", "location" '
            "fill(null)")], fieldConfig={"defaults": {"mappings": _STATE_MAPPINGS}}),
        _panel(2, _label("latency", lang), "timeseries", 0, 8, 24, 8, [_target(
            f'SELECT percentile("latency_ms", 50) AS "p50", percentile("latency_ms", 95) AS "p95", '
            f'percentile("latency_ms", 99) AS "p99" FROM "check" WHERE {where} AND "up" = 1 '
            "GROUP BY time($__interval)")], fieldConfig={"defaults": {"unit": "ms"}}),
        _panel(4, _label("certificate", lang), "stat", 0, 24, 24, 4, [_target(
            f'SELECT last("cert_days_left") FROM "check" WHERE {_AGENCY} AND {_SERVICE} AND $timeFilter '
            'GROUP BY "service"')],
            fieldConfig={"defaults": {"unit": "d", "decimals": 0, "color": {"mode": "thresholds"},
                                      "thresholds": {"mode": "absolute", "steps": [
                                          {"color": "red", "value": None}, {"color": "orange", "value": 14},
                                          {"color": "green", "value": 30}]}}}),
        _panel(3, _label("outages", lang), "table", 0, 16, 24, 8, [{
            **_target(f'SELECT "code", "duration_s", "error", "open" FROM "outage" WHERE {_AGENCY} AND {_SERVICE} '
                      "AND $timeFilter"), "resultFormat": "table"}]),
    ]
    variables = [
        _variable("agency", _label("agency", lang), options=[agency.id]),
        _variable("service", _label("service", lang), options=None,
                  query=f'SHOW TAG VALUES FROM "check" WITH KEY = "service" WHERE {_AGENCY}'),
        _variable("location", _label("location", lang),
                  query=f'SHOW TAG VALUES FROM "check" WITH KEY = "location" WHERE {_SERVICE}'),
    ]
    annotations = [
        {"name": _label("outages", lang), "datasource": DATASOURCE, "enable": True, "iconColor": "red",
         "query": f'SELECT "code" FROM "outage" WHERE {_SERVICE} AND $timeFilter'},
        {"name": _label("maintenance", lang), "datasource": DATASOURCE, "enable": True, "iconColor": "blue",
         "query": f'SELECT "title" FROM "maintenance" WHERE {_AGENCY} AND $timeFilter'},
    ]
    return _dashboard(stable_uid(agency.id, "service"), f"{name} — {_label('detail', lang)}", panels, variables,
                      "now-24h", [agency.id], annotations)


def sla_compliance(agency: AgencyConfig, lang: str = "fa") -> dict[str, Any]:
    name = agency.name.fa if lang == "fa" else agency.name.en
    panels = [_panel(1, _label("months", lang), "table", 0, 0, 24, 16, [{
        **_target(f'SELECT last("availability") AS "availability", last("target") AS "target", '
                  f'last("verdict") AS "verdict", last("coverage_percent") AS "coverage", '
                  f'last("credit_percent") AS "credit_percent" FROM "sla_month" WHERE {_AGENCY} AND $timeFilter '
                  'GROUP BY "service", "month"'), "resultFormat": "table"}],
        fieldConfig={"defaults": {}, "overrides": [
            {"matcher": {"id": "byName", "options": "availability"},
             "properties": [{"id": "unit", "value": "percent"}, {"id": "decimals", "value": 2}]}]})]
    variables = [_variable("agency", _label("agency", lang), options=[agency.id])]
    return _dashboard(stable_uid(agency.id, "sla"), f"{name} — {_label('compliance', lang)}", panels, variables,
                      "now-1y", [agency.id])


def all_dashboards(config: DidbanConfig, lang: str = "fa") -> list[tuple[AgencyConfig, dict[str, Any]]]:
    """Every dashboard, with the agency whose folder it belongs to."""
    built = []
    for agency in config.agencies:
        targets = [config.agreement(s.agreement).target_percent for s in agency.services]
        built += [(agency, agency_overview(agency, lang, max(targets, default=99.5))),
                  (agency, service_detail(agency, lang)), (agency, sla_compliance(agency, lang))]
    return built


def datasource(url: str, database: str = "didban") -> dict[str, Any]:
    """The InfluxQL datasource the dashboards expect (stable uid)."""
    return {"uid": DATASOURCE_UID, "name": "Didban InfluxDB", "type": "influxdb", "access": "proxy", "url": url,
            "jsonData": {"dbName": database, "httpMode": "POST"}, "isDefault": False}
