"""One month, one figure: the CLI, the API, the status page, the InfluxDB feed and the export agree.

The month has one outage of 300 minutes, partly covered by a maintenance window announced in time
(50 minutes) and by a telecom exclusion (50 minutes), partly by a window announced late (20 minutes,
excludes nothing) and by a cancelled window (50 minutes, excludes nothing): 200 minutes of downtime.
"""

from __future__ import annotations

import asyncio
import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from collector.influx_sink import InfluxSink
from core.model import Exclusion, MaintenanceWindow
from didban.metrics import Metrics
from didban.web.app import CONTEXT, WebContext, build_app
from didban.web.status import StatusBoard
from sla_calc.month import truncate_percent
from store.backend import Backend
from store.sql_store import SqliteStore
from tests.conftest import feed_of
from tests.test_settlement import AFTER, END, MIN, MONTH, START, config, export_as, fill

HOUR = 60 * MIN
EXPECTED_DOWNTIME_MIN = 300 - 50 - 50
EXPECTED = float((1 - Fraction(EXPECTED_DOWNTIME_MIN, 43_200)) * 100)


def build_month(db_path: Path) -> None:
    store = SqliteStore(db_path)
    fill(store, "portal", downs=[(600, 900)])
    fill(store, "dispatch")
    at = lambda minute: START + minute * MIN  # noqa: E731
    store.add_maintenance(MaintenanceWindow("MW-IN-TIME", ("portal",), at(600), at(650), at(600) - 80 * HOUR))
    store.add_maintenance(MaintenanceWindow("MW-LATE", ("portal",), at(800), at(820), at(800) - 10 * HOUR))
    store.add_maintenance(MaintenanceWindow("MW-CANCELLED", ("*",), at(850), at(900), at(850) - 100 * HOUR,
                                            cancelled=True))
    store.add_exclusion(Exclusion("EX-TELECOM", ("portal",), at(700), at(750), "national link down"), 0)
    store.close()


def portal_of(model: dict[str, Any]) -> dict[str, Any]:
    return next(s for a in model["agencies"] for s in a["services"] if s["id"] == "portal")


async def test_every_place_shows_the_same_availability_and_downtime(db_path: Path, tmp_path: Path,
                                                                    aiohttp_client: Any) -> None:
    build_month(db_path)
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(config().model_dump()), encoding="utf-8")

    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "didban.cli", "sla", "month", str(MONTH), "--json", "--config", str(config_file),
        "--db", str(db_path), stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(shown.communicate(), 60)
    assert shown.returncode == 0
    cli = portal_of(json.loads(stdout))

    client = await aiohttp_client(build_app(WebContext(config(), Backend(path=db_path), metrics=Metrics())))
    viewer = client.server.app[CONTEXT].records.create_token("viewer", "viewer", 0)
    answer = await client.get(f"/api/months/{MONTH}", headers={"Authorization": f"Bearer {viewer}"})
    assert answer.status == 200
    api = portal_of(await answer.json())

    # The status page on the month's last day: month to date is, by then, the whole outage.
    board = StatusBoard(config(), Backend(path=db_path).store)
    page = next(s for s in board.agency("agency", now_ms=END - 1) if s.id == "portal")

    sink = InfluxSink(config(), *feed_of(db_path), url="http://127.0.0.1:9", org="-", bucket="didban", token="")
    line = next(x for x in sink.sla_lines(config(), AFTER, [MONTH]) if "service=portal" in x)
    sink.close()
    fields = dict(field.split("=", 1) for field in line.split(" ")[1].split(","))

    with SqliteStore(db_path) as store:
        exported = portal_of(json.loads(export_as(store, "json", tmp_path).read_text(encoding="utf-8")))

    for where, figures in (("cli", cli), ("api", api), ("export", exported)):
        assert figures["availability_percent"] == EXPECTED, where
        assert figures["downtime_minutes"] == EXPECTED_DOWNTIME_MIN, where
        assert figures["excluded_minutes"] == 100, where
        assert [late["id"] for late in figures["late_maintenance"]] == ["MW-LATE"], where
    assert page.month_availability_exact == EXPECTED
    assert page.month_availability == truncate_percent(EXPECTED)
    assert float(fields["availability"]) == float(truncate_percent(EXPECTED))
    assert float(fields["downtime_minutes"]) == EXPECTED_DOWNTIME_MIN
