"""Pushing the dashboards to Grafana over its HTTP API: datasource, one folder per agency, dashboards.

Idempotent: what already matches is left alone, so a second push changes
nothing.  A dashboard is saved with the version it was read at, so an edit
made in Grafana in between is not overwritten silently: Grafana answers 412
and the push says so (``force`` overwrites).

This talks to Grafana's documented HTTP API with aiohttp rather than through
``grafana-client``: that library's HTTP stack (niquests) installs
``urllib3-future``, which replaces the ``urllib3`` package in the environment
and breaks requests-based tools installed beside Didban (seen with schemathesis).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.config import DidbanConfig
from dashboards.builders import all_dashboards, datasource


class GrafanaError(Exception):
    pass


_EXPLAIN = {
    401: "Grafana refused the token (401): set DIDBAN_GRAFANA_TOKEN to a service-account token",
    403: "the token may not do this (403): it needs the Editor role, or Admin for the datasource",
    409: "Grafana reports a conflict (409): something with the same name exists under another uid",
    412: "the dashboard was changed in Grafana since it was read (412, version-mismatch); push again, "
         "or use --force to overwrite the change",
}


@dataclass
class PushReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


class Grafana:
    def __init__(self, url: str, token: str, timeout_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def call(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        try:
            async with self._session.request(method, self.url + path, json=body) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GrafanaError(f"Grafana at {self.url} is unreachable ({type(exc).__name__})") from None
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            try:
                message = str(json.loads(text).get("message", ""))
            except (ValueError, AttributeError):
                message = text[:200]
            raise GrafanaError(f"{method} {path}: {_EXPLAIN.get(status, f'HTTP {status}')}"
                               + (f" — Grafana says: {message}" if message else ""))
        return json.loads(text) if text else {}

    async def close(self) -> None:
        await self._session.close()


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


async def push(config: DidbanConfig, grafana_url: str, token: str, influx_url: str, lang: str = "fa",
               force: bool = False, database: str = "didban", influx_token: str | None = None,
               progress: Callable[[str], None] = lambda step: None) -> PushReport:
    """Make Grafana hold the datasource and every agency's dashboards; ``progress`` hears of each."""
    grafana = Grafana(grafana_url, token)
    report = PushReport()
    try:
        await grafana.call("GET", "/api/health")
        desired = datasource(influx_url, database)
        if influx_token:  # InfluxDB 2.x: InfluxQL through DBRP, with the token in a header
            desired["jsonData"]["httpHeaderName1"] = "Authorization"
            desired["secureJsonData"] = {"httpHeaderValue1": f"Token {influx_token}"}
        current = await grafana.call("GET", f"/api/datasources/uid/{desired['uid']}", missing_ok=True)
        if current is None:
            await grafana.call("POST", "/api/datasources", desired)
            report.created.append(f"datasource {desired['uid']}")
        elif any(current.get(k) != desired[k] for k in ("url", "type", "jsonData")):
            await grafana.call("PUT", f"/api/datasources/uid/{desired['uid']}", {**current, **desired})
            report.updated.append(f"datasource {desired['uid']}")
        else:
            report.unchanged.append(f"datasource {desired['uid']}")
        dashboards = list(all_dashboards(config, lang))
        for done, (agency, dashboard) in enumerate(dashboards, 1):
            progress(f"dashboard {dashboard['uid']} ({done} of {len(dashboards)})")
            folder_uid = f"didban-{agency.id}"[:40]
            title = agency.name.fa if lang == "fa" else agency.name.en
            folder = await grafana.call("GET", f"/api/folders/{folder_uid}", missing_ok=True)
            if folder is None:
                await grafana.call("POST", "/api/folders", {"uid": folder_uid, "title": title})
                report.created.append(f"folder {folder_uid}")
            elif folder.get("title") != title:
                await grafana.call("PUT", f"/api/folders/{folder_uid}",
                                   {"title": title, "version": folder.get("version"), "overwrite": force})
                report.updated.append(f"folder {folder_uid}")
            existing = await grafana.call("GET", f"/api/dashboards/uid/{dashboard['uid']}", missing_ok=True)
            if existing is not None and _comparable(existing["dashboard"]) == _comparable(dashboard) \
                    and existing.get("meta", {}).get("folderUid") == folder_uid:
                report.unchanged.append(f"dashboard {dashboard['uid']}")
                continue
            body = {"dashboard": {**dashboard, "id": None,
                                  "version": existing["dashboard"].get("version") if existing else None},
                    "folderUid": folder_uid, "overwrite": force, "message": "didban dashboards push"}
            await grafana.call("POST", "/api/dashboards/db", body)
            (report.updated if existing else report.created).append(f"dashboard {dashboard['uid']}")
    finally:
        await grafana.close()
    return report
