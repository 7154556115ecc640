"""Shared fixtures: real sockets, real SQLite files, configs built like users write them."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.config import DidbanConfig

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def make_config(services: list[dict[str, Any]], **top: Any) -> DidbanConfig:
    """A config with one agency holding ``services`` (each a partial service dict)."""
    full = []
    for service in services:
        entry = {"name": {"fa": "خدمت", "en": "Service"}, "agreement": "sla"}
        entry.update(service)
        full.append(entry)
    data = {
        "agreements": [{"id": "sla", "title": "t", "valid_from": "1400-01-01", "valid_until": "1410-12-29",
                        "target_percent": 99.5}],
        "agencies": [{"id": "agency", "name": {"fa": "اداره", "en": "Agency"}, "services": full}],
    }
    data.update(top)
    return DidbanConfig.model_validate(data)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "didban.sqlite"


def wait_http(url: str, seconds: float = 10.0) -> None:
    """Block until ``url`` answers (a server started as a subprocess is ready), or raise."""
    import time
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                answer.read()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds:g} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RawServer:
    """A TCP server whose per-connection behaviour a test scripts (slow drip, silence, ...)."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> None:
        self._handler = handler
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._handler(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        # Connections a test left hanging are cut so the server can close.
        self.server.close_clients() if hasattr(self.server, "close_clients") else None
        await asyncio.wait_for(self.server.wait_closed(), 5)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., RawServer]]:
    yield RawServer


def feed_of(db_path: str | Path) -> tuple[Any, Any, Any]:
    """What an InfluxSink is given over a SQLite store: its feed cursor, its store opener, the settlement."""
    from didban.settlement import settle
    from store.backend import Backend

    backend = Backend(path=Path(db_path))
    return backend.feed(), backend.store, settle


# -- a real browser: Debian's Chromium driven by Playwright (its own browser download cannot work here) ------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield launched
        await launched.close()
