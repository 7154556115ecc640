"""The running service on PostgreSQL: a database server that goes away delays results and loses none.

``didban run`` writes to a real PostgreSQL (chosen with ``DIDBAN_STORE_URL``,
its password in ``DIDBAN_STORE_PASSWORD``); the server is stopped for a few
seconds under it and started again.  Every check the targets answered is
stored once, no outage is charged to the healthy services, and the password
appears in no output.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from store.backend import Backend
from store.contract import StoreUnavailable
from tests.conftest import free_port
from tests.postgres import Cluster
from tests.test_engine import Target, wait_for
from tests.test_store_migrate import run_config


def stored(backend: Backend) -> int:
    try:
        store = backend.store()
    except StoreUnavailable:  # the server is down: nothing to count yet
        return -1
    try:
        return int(store.count_results())
    finally:
        store.close()


@pytest.mark.slow
async def test_a_database_restart_delays_results_and_loses_none(aiohttp_server: Any, tmp_path: Path) -> None:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="didban-postgres-"))).start()
    try:
        target = Target()
        server = await aiohttp_server(target.app())
        port = free_port()
        run_file = run_config(tmp_path / "run.json", str(server.make_url("")).rstrip("/"), web_port=port)
        url = cluster.url(cluster.new_database())
        backend = Backend(conninfo=url, password=cluster.password)
        env = {**os.environ, "DIDBAN_STORE_URL": url, "DIDBAN_STORE_PASSWORD": cluster.password}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "didban.cli", "run", "--config", str(run_file), cwd=tmp_path, env=env,  # its journal
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await wait_for(lambda: stored(backend) >= 4, timeout=30)
            await asyncio.to_thread(cluster.stop, "fast")
            before = sum(target.requests.values())
            await asyncio.sleep(5)  # checks go on; their results wait in the journal
            assert sum(target.requests.values()) >= before + 6
            await asyncio.to_thread(cluster.resume)
            await asyncio.sleep(4)
            # The status page reads the same PostgreSQL: both services shown up.
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/a/agency?lang=en") as page:
                    assert page.status == 200
                    html = await page.text()
                async with session.get(f"http://127.0.0.1:{port}/readyz") as ready:
                    assert ready.status == 200, await ready.text()
            assert "Portal" in html and "Dispatch" in html
        finally:
            process.terminate()
            out, err = await asyncio.wait_for(process.communicate(), 40)
        assert process.returncode == 0, err.decode()
        checked = sum(target.requests.values())
        # Every answered check is stored, once; at most the checks in flight at the stop are lost.
        assert checked - 2 <= stored(backend) <= checked, (checked, stored(backend))
        store = backend.store()
        assert store.outages() == [] and store.missing(store.results("portal", 0, 2**62)) == []
        store.close()
        assert cluster.password not in out.decode() + err.decode()
        assert "store unavailable" in err.decode() and "store available again" in err.decode(), err.decode()
    finally:
        cluster.stop("immediate")
        shutil.rmtree(cluster.root, ignore_errors=True)
