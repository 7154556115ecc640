"""``didban demo``: the seed agencies' portal and e-services, simulated on
127.0.0.1 with a scripted fault plan, and monitored by the production engine
and store.  No external server is needed.

The fault plan (times from the start of the demo):

- eaz-document-dispatch: its 4th request answers 503 once: a blip, below the
  failure threshold, that must *not* become an outage;
- eaz-debt-instalment: 503 from 30 s to 210 s: a 3-minute outage;
- eaz-dedicated-revenue: answers 1.5 s late from 60 s to 120 s: slow, still up;
- eaz-vehicle-scrapping: a "maintenance" page (HTTP 200) from 90 s to 150 s,
  which its keyword check counts as down;
- every other service stays healthy.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from aiohttp import web

from core.config import CanaryConfig, DidbanConfig, HttpProbeConfig
from store.backend import Backend

MAINTENANCE_PAGE = (
    "<!doctype html><html lang='fa' dir='rtl'><meta charset='utf-8'>"
    "<title>در حال بروزرسانی</title><p>سامانه در حال بروزرسانی است (maintenance). "
    "لطفاً بعداً مراجعه کنید.</p></html>"
)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "fail_request" | "down" | "slow" | "maintenance"
    start_s: float = 0.0
    end_s: float = 0.0
    request_number: int = 0


DEFAULT_PLAN: dict[str, list[Fault]] = {
    "eaz-document-dispatch": [Fault("fail_request", request_number=4)],
    "eaz-debt-instalment": [Fault("down", 30, 210)],
    "eaz-dedicated-revenue": [Fault("slow", 60, 120)],
    "eaz-vehicle-scrapping": [Fault("maintenance", 90, 150)],
}


@dataclass
class Simulator:
    """Simulated e-services: ``GET /<service-id>`` follows the fault plan."""

    names: dict[str, str]
    plan: dict[str, list[Fault]] = field(default_factory=lambda: dict(DEFAULT_PLAN))
    started: float = field(default_factory=time.monotonic)
    requests: dict[str, int] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/canary", self._canary)
        app.router.add_get("/{service}", self._service)
        return app

    async def _canary(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _service(self, request: web.Request) -> web.Response:
        service = request.match_info["service"]
        if service not in self.names:
            raise web.HTTPNotFound()
        count = self.requests[service] = self.requests.get(service, 0) + 1
        elapsed = time.monotonic() - self.started
        for fault in self.plan.get(service, []):
            if fault.kind == "fail_request" and count == fault.request_number:
                return web.Response(status=503, text="Service Unavailable")
            if not fault.start_s <= elapsed < fault.end_s:
                continue
            if fault.kind == "down":
                return web.Response(status=503, text="Service Unavailable")
            if fault.kind == "slow":
                await asyncio.sleep(1.5)
            if fault.kind == "maintenance":
                return web.Response(text=MAINTENANCE_PAGE, content_type="text/html", charset="utf-8")
        page = f"<!doctype html><html lang='fa' dir='rtl'><meta charset='utf-8'><h1>{self.names[service]}</h1>"
        return web.Response(text=page, content_type="text/html", charset="utf-8")


def demo_config(config: DidbanConfig, base_url: str, interval: float) -> DidbanConfig:
    """The same agencies and services, pointed at the simulator, checked every ``interval``."""
    agencies = []
    for agency in config.agencies:
        services = []
        for service in agency.services:
            probe = HttpProbeConfig(type="http", url=f"{base_url}/{service.id}", keyword_absent="maintenance")
            services.append(replace(service, probes=[probe], interval_seconds=interval,
                                    timeout_seconds=min(service.timeout_seconds, interval, 3.0)))
        agencies.append(agency.model_copy(update={"services": services}))
    canary = CanaryConfig(id="simulator", type="http", url=f"{base_url}/canary")
    return config.model_copy(update={
        "agencies": agencies,
        "canaries": [canary],
        "scheduler": config.scheduler.model_copy(update={"jitter_seconds": interval}),
    })


async def run_demo(config: DidbanConfig, backend: Backend, *, interval: float, duration: float | None,
                   config_path: str = "config.yaml") -> int:
    from didban.live import EventLog
    from didban.service import serve

    names = {service.id: service.name.fa for _, service in config.services()}
    simulator = Simulator(names)
    runner = web.AppRunner(simulator.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base_url = f"http://127.0.0.1:{port}"
    print(f"Didban demo: {len(names)} simulated e-services at {base_url}, checked every {interval:g}s; "
          f"results in {backend.describe()}.  Fault plan: a blip at dispatch's 4th check, debt-instalment down "
          "30–210 s, dedicated-revenue slow 60–120 s, vehicle-scrapping 'maintenance' 90–150 s. "
          "Ctrl-C stops.", flush=True)
    try:
        return await serve(demo_config(config, base_url, interval), backend, config.locations[0].id,
                           keepalive=False, duration=duration, live_every=interval,
                           events=EventLog(config_path))
    finally:
        await runner.cleanup()
