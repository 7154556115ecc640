"""Replication to a time-series store: Debian's VictoriaMetrics takes influxdb-client's v2 writes
(the write path, a stopped and restarted server, backfill), and Debian's InfluxDB 1.6 answers
InfluxQL on the same line protocol."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.influx_sink import InfluxSink, check_line
from core.model import ProbeResult, Status
from store.contract import Batch
from store.sql_store import SqliteStore
from tests.conftest import feed_of, free_port, make_config, wait_http

pytestmark = pytest.mark.skipif(shutil.which("victoria-metrics") is None,
                                reason="Debian's victoria-metrics is installed by scripts/test.sh")
CONFIG = make_config([{"id": "portal", "probes": [{"type": "http", "url": "http://127.0.0.1:9/"}]}])
START = 1_727_000_000_000


class VictoriaMetrics:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={self.data}", f"-httpListenAddr=127.0.0.1:{self.port}",
             "-search.latencyOffset=0s", "-dedup.minScrapeInterval=1ms", "-retentionPeriod=100y",
             "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.url}/health")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def samples(self, metric: str) -> list[tuple[int, float]]:
        """Every (timestamp ms, value) of ``metric`` (after flushing what was written)."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        query = urllib.parse.quote("{__name__=" + json.dumps(metric) + "}")
        with urllib.request.urlopen(f"{self.url}/api/v1/export?match[]={query}", timeout=10) as answer:
            points: list[tuple[int, float]] = []
            for line in answer.read().decode().splitlines():
                series = json.loads(line)
                points += list(zip(series["timestamps"], series["values"], strict=True))
        return sorted(points)


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


def fill(db_path: Path, count: int, offset: int = 0) -> None:
    store = SqliteStore(db_path)
    store.write(Batch(results=[
        ProbeResult("portal", "tabriz", START + (offset + i) * 60_000, Status.DOWN if i % 10 == 0 else Status.UP,
                    12.5, "http_status" if i % 10 == 0 else None, "", 503 if i % 10 == 0 else 200)
        for i in range(count)]))
    store.close()


def sink(db_path: Path, url: str, batch_size: int = 100) -> InfluxSink:
    return InfluxSink(CONFIG, *feed_of(db_path), url=url, org="didban", bucket="didban", token="unused",
                      batch_size=batch_size, timeout_s=2)


async def drain(replicator: InfluxSink) -> int:
    total = 0
    while written := await replicator.replicate_once():
        total += written
    await replicator.aclose()
    return total


def test_line_protocol_escapes_tags_and_strings() -> None:
    line = check_line("a b", "svc,1", "tehran=1", "http", 5, "down", 1.5, 503, 'say "hi"')
    assert line == ('check,agency=a\\ b,service=svc\\,1,location=tehran\\=1,probe=http '
                    'up=0i,status="down",latency_ms=1.5,error="say \\"hi\\"",http_status=503i 5')


async def test_results_replicate_in_order_with_their_own_timestamps(vm: VictoriaMetrics, db_path: Path) -> None:
    fill(db_path, 250)
    replicator = sink(db_path, vm.url)
    assert await drain(replicator) == 250
    up = vm.samples("check_up")
    assert len(up) == 250 and up[0] == (START, 0.0) and up[1] == (START + 60_000, 1.0)
    assert sum(value for _, value in up) == 225
    assert vm.samples("check_latency_ms")[0] == (START, 12.5)


async def test_an_unreachable_store_delays_points_and_loses_none(vm: VictoriaMetrics, db_path: Path) -> None:
    fill(db_path, 120)
    replicator = sink(db_path, vm.url, batch_size=50)
    assert await replicator.replicate_once() == 50
    await replicator.aclose()
    vm.stop()
    fill(db_path, 80, offset=120)
    position = replicator.position("results")
    with pytest.raises(OSError):  # connection refused
        await replicator.replicate_once()
    await replicator.aclose()
    assert replicator.position("results") == position  # the cursor waits
    stop = asyncio.Event()
    running = asyncio.create_task(replicator.run(stop, poll_s=0.1))
    await asyncio.sleep(1.5)  # still down: the loop retries without losing anything
    vm.start()
    for _ in range(100):
        if replicator.position("results") >= 200:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await running
    assert len(vm.samples("check_up")) == 200  # every point, once


async def test_backfill_rewrites_the_same_points(vm: VictoriaMetrics, db_path: Path) -> None:
    fill(db_path, 60)
    replicator = sink(db_path, vm.url)
    assert await replicator.backfill(START + 30 * 60_000) == 30
    assert await replicator.backfill(0) == 60
    assert await replicator.backfill(0) == 60
    assert len(vm.samples("check_up")) == 60


# -- InfluxDB 1.6 (InfluxQL) ---------------------------------------------------------------


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[str]:
    if shutil.which("influxd") is None:
        pytest.skip("Debian's influxdb is installed by scripts/test.sh")
    port, rpc = free_port(), free_port()
    conf = tmp_path / "influxdb.conf"
    conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{tmp_path}/meta"
[data]
  dir = "{tmp_path}/data"
  wal-dir = "{tmp_path}/wal"
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
""")
    process = subprocess.Popen(["influxd", "-config", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/ping")
    influxql(url, "CREATE DATABASE didban")
    yield url
    process.terminate()
    process.wait(20)


def influxql(url: str, query: str) -> Any:
    data = urllib.parse.urlencode({"q": query, "db": "didban", "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as answer:
        return json.loads(answer.read())


def test_influxql_answers_on_the_line_protocol_didban_writes(influxdb: str, db_path: Path) -> None:
    fill(db_path, 100)
    replicator = sink(db_path, influxdb, batch_size=1000)
    lines, _ = replicator.next_results(0)
    request = urllib.request.Request(f"{influxdb}/write?db=didban&precision=ms", data="\n".join(lines).encode())
    assert urllib.request.urlopen(request, timeout=10).status == 204
    answer = influxql(influxdb, 'SELECT mean("up") AS availability, count("up") AS checks FROM "check" '
                                "WHERE \"service\" = 'portal' GROUP BY \"location\"")
    [series] = answer["results"][0]["series"]
    assert series["tags"] == {"location": "tabriz"}
    _, availability, checks = series["values"][0]
    assert (availability, checks) == (0.9, 100)


def test_backfill_command(vm: VictoriaMetrics, db_path: Path, tmp_path: Path) -> None:
    fill(db_path, 40)
    data = CONFIG.model_dump()
    data["store"]["influxdb"] = {"url": vm.url, "org": "didban", "bucket": "didban"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(json.dumps(data), encoding="utf-8")
    import sys

    done = subprocess.run([sys.executable, "-m", "didban.cli", "influx", "backfill", "--since", "2024-01-01",
                           "--config", str(config_file), "--db", str(db_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "40 check points rewritten" in done.stdout
    assert "40 check points written …" in done.stderr  # progress, batch by batch, on stderr
    assert len(vm.samples("check_up")) == 40
