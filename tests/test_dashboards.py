"""Dashboards as code: snapshots, stable uids, file provisioning, and every panel query run by
InfluxDB 1.6 on data Didban wrote."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from collector.influx_sink import InfluxSink
from core.config import load_config
from core.model import MaintenanceWindow, ProbeResult, Status
from dashboards.builders import DATASOURCE_UID, all_dashboards
from dashboards.provisioning import export
from store.contract import Batch, OutageChange
from store.sql_store import SqliteStore
from tests.conftest import feed_of, make_config
from tests.test_influx import influxdb, influxql  # noqa: F401 - the fixture is used by name

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["query"] for p in dashboard["panels"] for t in p["targets"]]
    found += [a["query"] for a in dashboard["annotations"]["list"]]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


@pytest.mark.parametrize("lang", ["fa", "en"])
def test_dashboards_match_their_snapshots(lang: str) -> None:
    built = {dashboard["uid"]: dashboard for _, dashboard in all_dashboards(load_config(ROOT / "config.yaml"), lang)}
    snapshot = SNAPSHOTS / f"dashboards-{lang}.json"
    text = json.dumps(built, ensure_ascii=False, indent=1, sort_keys=True)
    if os.environ.get("UPDATE_SNAPSHOTS") or not snapshot.exists():
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(text, encoding="utf-8")
    assert text == snapshot.read_text(encoding="utf-8"), "run with UPDATE_SNAPSHOTS=1 after a deliberate change"


def test_uids_are_stable_unique_and_short() -> None:
    config = load_config(ROOT / "config.yaml")
    first = [d["uid"] for _, d in all_dashboards(config)]
    assert first == [d["uid"] for _, d in all_dashboards(config)]
    assert len(set(first)) == len(first) == 3 * len(config.agencies)
    assert all(len(uid) <= 40 for uid in first)
    long = make_config([{"id": "s", "probes": [{"type": "tcp", "target": "127.0.0.1:9"}]}])
    agency = long.agencies[0].model_copy(update={"id": "a-very-long-agency-identifier-for-testing"})
    from dashboards.builders import agency_overview

    assert len(agency_overview(agency)["uid"]) == 40


def test_every_panel_reads_the_didban_datasource_with_influxql() -> None:
    for _, dashboard in all_dashboards(load_config(ROOT / "config.yaml")):
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert all(t["rawQuery"] and t["query"].startswith("SELECT") for t in panel["targets"])


def test_labels_follow_the_language_setting() -> None:
    config = load_config(ROOT / "config.yaml")
    fa = all_dashboards(config, "fa")[0][1]
    en = all_dashboards(config, "en")[0][1]
    assert "نمای کلی دستگاه" in fa["title"] and "Agency overview" in en["title"]
    assert fa["timezone"] == "Asia/Tehran"


def test_file_provisioning(tmp_path: Path) -> None:
    config = load_config(ROOT / "config.yaml")
    written = export(config, tmp_path, influx_url="http://influxdb:8086")
    yaml = YAML(typ="safe")
    sources = yaml.load((tmp_path / "provisioning/datasources/didban.yaml").read_text(encoding="utf-8"))
    assert sources["datasources"][0]["uid"] == DATASOURCE_UID
    assert sources["datasources"][0]["url"] == "http://influxdb:8086"
    providers = yaml.load((tmp_path / "provisioning/dashboards/didban.yaml").read_text(encoding="utf-8"))
    assert {p["options"]["path"] for p in providers["providers"]} == {
        f"/var/lib/grafana/dashboards/{a.id}" for a in config.agencies}
    dashboards = [p for p in written if p.suffix == ".json"]
    assert len(dashboards) == 3 * len(config.agencies)
    assert all(json.loads(p.read_text(encoding="utf-8"))["uid"] == p.stem for p in dashboards)


# -- the queries, run by InfluxDB 1.6 -------------------------------------------------------------


def substitute(query: str, agency: str, service: str) -> str:
    return (query.replace("$agency", agency).replace("$service", service).replace("$location", "tabriz")
            .replace("$timeFilter", "time > now() - 400d").replace("$__interval", "10m"))


def test_every_dashboard_query_returns_the_expected_numbers(influxdb: str, db_path: Path) -> None:  # noqa: F811
    config = make_config([{"id": "portal", "name": {"fa": "پورتال", "en": "Portal"}, "interval_seconds": 60,
                           "probes": [{"type": "http", "url": "http://127.0.0.1:9/"}]}])
    now = int(time.time() * 1000) // 60_000 * 60_000
    store = SqliteStore(db_path)
    results = [ProbeResult("portal", "tabriz", now - k * 60_000, Status.DOWN if 30 <= k < 40 else Status.UP,
                           20.0 if k % 2 else 40.0, "timeout" if 30 <= k < 40 else None) for k in range(120, -1, -1)]
    changes = [OutageChange("portal", now - 39 * 60_000, opening=True, error="timeout"),
               OutageChange("portal", now - 29 * 60_000, opening=False)]
    store.write(Batch(results=results, changes=changes))
    store.add_maintenance(MaintenanceWindow("MW-1", ("portal",), now + 3_600_000, now + 7_200_000, now), "ارتقا")
    from core.model import Exclusion

    store.add_exclusion(Exclusion("EX-1", ("*",), now - 39 * 60_000, now - 34 * 60_000, "national link"), now)
    store.close()
    sink = InfluxSink(config, *feed_of(db_path), url=influxdb, org="-", bucket="didban", token="", batch_size=10_000)
    lines = sink.next_results(0)[0] + sink.outage_lines(now) + sink.maintenance_lines() + sink.sla_lines(config, now)
    request = urllib.request.Request(f"{influxdb}/write?db=didban&precision=ms", data="\n".join(lines).encode())
    assert urllib.request.urlopen(request, timeout=10).status == 204

    answers: dict[str, Any] = {}
    for _, dashboard in all_dashboards(config, "en"):
        for query in queries(dashboard):
            answer = influxql(influxdb, substitute(query, "agency", "portal"))
            assert "error" not in answer["results"][0], (query, answer)
            answers[query] = answer["results"][0].get("series", [])

    def value(fragment: str, column: int = 1) -> Any:
        query = next(q for q in answers if fragment in q)
        return answers[query][0]["values"][-1][column]

    assert value('last("up") FROM "check" WHERE "agency" =~ /^$agency$/ AND time > now() - 10m') == 1
    assert value('last("outages")') == 1  # the Jalali month's count
    outages_table = next(q for q in answers if '"code", "duration_s", "error", "open"' in q)
    assert answers[outages_table][0]["values"][0][2] == 600  # ten minutes
    excluded = influxql(influxdb, 'SELECT "excluded_s", "excluded" FROM "outage"')["results"][0]["series"][0]
    assert excluded["values"][0][1:] == [300, 0]  # five of its ten minutes were a telecom exclusion
    maintenance_table = next(q for q in answers if '"title", "end_ms", "notice_hours"' in q)
    assert answers[maintenance_table][0]["values"][0][1] == "ارتقا"
    downtime_fraction = 5 / 43_200  # ten minutes down, five of them a telecom exclusion, in a 30-day month
    # 99.98842…, sent truncated so that Grafana's rounding can never show 99.99
    assert value('last("availability") FROM "sla_month" WHERE "agency" =~ /^$agency$/ AND time > now() - 31d') == \
        99.98 < 100 * (1 - downtime_fraction)
    assert value('last("budget_remaining_percent")') == 97.68  # 97.685…, truncated
    latency = next(q for q in answers if 'percentile("latency_ms", 50)' in q)
    assert all(row[1] in (20.0, 40.0) for row in answers[latency][0]["values"] if row[1] is not None)
    table = next(q for q in answers if 'last("verdict") AS "verdict"' in q)
    assert any(row[1] == 99.98 for series in answers[table] for row in series["values"])
    assert re.search(r"MW-1|ارتقا", json.dumps(answers, ensure_ascii=False))


def test_dashboards_export_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "didban.cli", "dashboards", "export", str(tmp_path / "grafana"),
                           "--config", str(ROOT / "config.yaml"), "--lang", "en"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "grafana/provisioning/datasources/didban.yaml").exists()
    assert len(list((tmp_path / "grafana/dashboards").rglob("*.json"))) == 6


# -- pushing to Grafana (a stand-in that follows its HTTP API) ------------------------------------------


async def test_push_creates_everything_then_changes_nothing(aiohttp_server: Any) -> None:
    from dashboards.push import push
    from tests.grafana_standin import GrafanaStandIn

    grafana = GrafanaStandIn("editor-token")
    server = await aiohttp_server(grafana.app())
    config = load_config(ROOT / "config.yaml")
    first = await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086")
    assert len(first.created) == 1 + 2 + 6  # datasource, a folder per agency, three dashboards each
    assert set(grafana.folders) == {"didban-eaz-economy", "didban-sko-governorate"}
    writes = grafana.writes
    second = await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086")
    assert not second.changed and len(second.unchanged) == 1 + 6
    assert grafana.writes == writes  # idempotent: nothing was written the second time
    english = await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086", lang="en")
    assert len([u for u in english.updated if u.startswith("dashboard")]) == 6


async def test_push_reports_a_version_conflict_and_can_force(aiohttp_server: Any) -> None:
    from dashboards.push import GrafanaError, push
    from tests.grafana_standin import GrafanaStandIn

    grafana = GrafanaStandIn("editor-token")
    server = await aiohttp_server(grafana.app())
    config = load_config(ROOT / "config.yaml")
    await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086")
    uid = next(iter(grafana.dashboards))
    grafana.dashboards[uid]["dashboard"]["title"] = "edited by hand"
    grafana.edit_after_read = uid
    with pytest.raises(GrafanaError, match="412"):
        await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086")
    grafana.edit_after_read = uid
    forced = await push(config, str(server.make_url("")), "editor-token", "http://influxdb:8086", force=True)
    assert f"dashboard {uid}" in forced.updated


@pytest.mark.parametrize(("token", "status"), [("wrong", "401"), ("viewer", "403")])
async def test_push_explains_401_and_403(aiohttp_server: Any, token: str, status: str) -> None:
    from dashboards.push import GrafanaError, push
    from tests.grafana_standin import GrafanaStandIn

    server = await aiohttp_server(GrafanaStandIn("editor-token").app())
    with pytest.raises(GrafanaError, match=status) as caught:
        await push(load_config(ROOT / "config.yaml"), str(server.make_url("")), token, "http://influxdb:8086")
    assert token not in str(caught.value) or token == "viewer"  # the token is never echoed


async def test_push_explains_a_409_name_conflict(aiohttp_server: Any) -> None:
    from dashboards.push import GrafanaError, push
    from tests.grafana_standin import GrafanaStandIn

    grafana = GrafanaStandIn("editor-token")
    grafana.datasources["someone-elses"] = {"uid": "someone-elses", "name": "Didban InfluxDB", "type": "influxdb"}
    server = await aiohttp_server(grafana.app())
    with pytest.raises(GrafanaError, match=r"409.*same name"):
        await push(load_config(ROOT / "config.yaml"), str(server.make_url("")), "editor-token", "http://x:8086")


async def test_push_command_reads_the_token_from_the_environment(aiohttp_server: Any, tmp_path: Path) -> None:
    import asyncio
    import sys

    from tests.grafana_standin import GrafanaStandIn

    server = await aiohttp_server(GrafanaStandIn("s3cret-grafana").app())

    async def didban(token: str | None) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if k != "DIDBAN_GRAFANA_TOKEN"}
        if token is not None:
            env["DIDBAN_GRAFANA_TOKEN"] = token
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "didban.cli", "dashboards", "push", "--grafana-url", str(server.make_url("")),
            "--config", str(ROOT / "config.yaml"), env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        return int(process.returncode or 0), out.decode()

    code, out = await didban("s3cret-grafana")
    assert code == 0 and "created: 9" in out and "s3cret" not in out
    assert "(1 of " in out and "…" in out  # progress, dashboard by dashboard
    code, out = await didban("s3cret-grafana")
    assert code == 0 and "created: 0" in out and "updated: 0" in out
    code, out = await didban(None)
    assert code == 2 and "DIDBAN_GRAFANA_TOKEN" in out


def test_compose_file_mounts_what_export_writes() -> None:
    compose = YAML(typ="safe").load((ROOT / "deploy/docker-compose.yml").read_text(encoding="utf-8"))
    assert set(compose["services"]) == {"didban", "influxdb", "grafana"}
    # Inside the container the status page listens where the published port reaches it.
    assert compose["services"]["didban"]["environment"]["DIDBAN_WEB_HOST"] == "0.0.0.0"
    assert "ENV DIDBAN_WEB_HOST=0.0.0.0" in (ROOT / "deploy/Dockerfile").read_text(encoding="utf-8")
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_volumes
    didban = compose["services"]["didban"]
    assert didban["environment"]["DIDBAN_INFLUXDB_URL"] == "http://influxdb:8086"
    assert "../config.yaml:/etc/didban/config.yaml:ro" in didban["volumes"]
    assert (ROOT / "deploy/Dockerfile").exists() and (ROOT / "deploy/influxdb-init/dbrp.sh").exists()


@pytest.mark.slow
def test_a_running_didban_feeds_every_panel(influxdb: str, tmp_path: Path) -> None:  # noqa: F811
    """``didban run`` with the feed on a real InfluxDB: every panel answers, the SLA ones included."""
    import subprocess
    import sys

    from tests.conftest import free_port

    up = free_port()
    config = tmp_path / "config.yaml"
    service = """      - id: {id}
        name: {{fa: "خدمت", en: "{id}"}}
        agreement: sla
        interval_seconds: 1
        timeout_seconds: 1
        probes: [{{type: tcp, target: "127.0.0.1:{port}"}}]
"""
    config.write_text(f"""agreements:
  - {{id: sla, title: "t", valid_from: "1400-01-01", valid_until: "1410-12-29", target_percent: 99.5}}
scheduler: {{jitter_seconds: 1}}
web: {{enabled: false}}
agencies:
  - id: agency
    name: {{fa: "اداره", en: "Agency"}}
    services:
{service.format(id="portal", port=up)}{service.format(id="payments", port=free_port())}""", encoding="utf-8")
    import socket

    listener = socket.create_server(("127.0.0.1", up))  # portal accepts connections; payments is refused
    try:
        done = subprocess.run([sys.executable, "-m", "didban.cli", "run", "--config", str(config), "--db",
                               str(tmp_path / "didban.sqlite"), "--duration", "8"], capture_output=True, text=True,
                              timeout=90, check=False,
                              env={**os.environ, "DIDBAN_INFLUXDB_URL": influxdb, "DIDBAN_INFLUXDB_BUCKET": "didban"})
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    may_be_empty = ('FROM "maintenance"', 'last("cert_days_left")', 'count("credit_percent")')
    for _, dashboard in all_dashboards(load_config(config), "en"):
        for query in queries(dashboard):
            answer = influxql(influxdb, substitute(query, "agency", ".*").replace("tabriz", "local"))
            assert "error" not in answer["results"][0], (query, answer)
            if not any(fragment in query for fragment in may_be_empty):
                assert answer["results"][0].get("series"), f"{dashboard['title']}: no data for {query}"
    month = influxql(influxdb, 'SELECT last("availability"), last("outages") FROM "sla_month" '
                               "WHERE \"service\" = 'payments'")["results"][0]["series"][0]["values"][0]
    assert month[1] < 100 and month[2] == 1  # an open outage, already in this month's figures
