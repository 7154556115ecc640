"""A local stand-in for Grafana's HTTP API (Grafana cannot be installed here), following its
documented requests and answers for what Didban uses:

- ``GET /api/health`` → ``{"database": "ok", "version": ...}``
- ``GET /api/datasources/uid/:uid`` (404 ``{"message": "Data source not found"}``),
  ``POST /api/datasources`` (409 when the name exists), ``PUT /api/datasources/uid/:uid``
- ``GET /api/folders/:uid`` (404), ``POST /api/folders`` (409 when the uid exists), ``PUT /api/folders/:uid``
- ``GET /api/dashboards/uid/:uid`` → ``{"dashboard": {..., "id", "version"}, "meta": {"folderUid", "version"}}``
- ``POST /api/dashboards/db`` → ``{"id", "uid", "url", "status": "success", "version"}``; 412
  ``{"status": "version-mismatch"}`` when the posted version is not the stored one and overwrite is false
- ``GET /api/search`` → the dashboards
- a wrong bearer token → 401 ``{"message": "Unauthorized"}``; a viewer token writing → 403
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web


class GrafanaStandIn:
    def __init__(self, editor_token: str, viewer_token: str = "viewer") -> None:
        self.tokens = {editor_token: "Editor", viewer_token: "Viewer"}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.writes = 0
        self.edit_after_read: str | None = None  # simulate a user saving this dashboard right after Didban reads it
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        app.router.add_post("/api/datasources", self.add_datasource)
        app.router.add_put("/api/datasources/uid/{uid}", self.put_datasource)
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.add_folder)
        app.router.add_put("/api/folders/{uid}", self.put_folder)
        app.router.add_get("/api/dashboards/uid/{uid}", self.get_dashboard)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        app.router.add_get("/api/search", self.search)
        return app

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/api/health":
            return await handler(request)
        role = self.tokens.get(request.headers.get("Authorization", "").removeprefix("Bearer "))
        if role is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.method != "GET" and role != "Editor":
            return web.json_response({"message": "Access denied"}, status=403)
        if request.method != "GET":
            self.writes += 1
        return await handler(request)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"commit": "standin", "database": "ok", "version": "11.0.0"})

    async def get_datasource(self, request: web.Request) -> web.Response:
        found = self.datasources.get(request.match_info["uid"])
        return web.json_response(found) if found else web.json_response({"message": "Data source not found"},
                                                                         status=404)

    async def add_datasource(self, request: web.Request) -> web.Response:
        body = await request.json()
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return web.json_response({"message": "data source with the same name already exists"}, status=409)
        body["id"] = next(self._ids)
        self.datasources[body["uid"]] = body
        return web.json_response({"datasource": body, "id": body["id"], "message": "Datasource added"})

    async def put_datasource(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.datasources[request.match_info["uid"]] = body
        return web.json_response({"datasource": body, "message": "Datasource updated"})

    async def get_folder(self, request: web.Request) -> web.Response:
        found = self.folders.get(request.match_info["uid"])
        return web.json_response(found) if found else web.json_response({"message": "folder not found"}, status=404)

    async def add_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["uid"] in self.folders:
            return web.json_response({"message": "a folder with the same uid already exists"}, status=409)
        folder = {"id": next(self._ids), "uid": body["uid"], "title": body["title"], "version": 1}
        self.folders[body["uid"]] = folder
        return web.json_response(folder)

    async def put_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        folder = self.folders[request.match_info["uid"]]
        if not body.get("overwrite") and body.get("version") != folder["version"]:
            return web.json_response({"message": "the folder has been changed by someone else"}, status=412)
        folder.update(title=body["title"], version=folder["version"] + 1)
        return web.json_response(folder)

    async def get_dashboard(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        found = self.dashboards.get(uid)
        if found is None:
            return web.json_response({"message": "Dashboard not found"}, status=404)
        answer = {"dashboard": dict(found["dashboard"]), "meta": {"folderUid": found["folderUid"],
                                                                  "version": found["dashboard"]["version"]}}
        if self.edit_after_read == uid:  # someone saves it in the UI just after we read it
            found["dashboard"] = {**found["dashboard"], "version": found["dashboard"]["version"] + 1}
            self.edit_after_read = None
        return web.json_response(answer)

    async def save_dashboard(self, request: web.Request) -> web.Response:
        body = await request.json()
        dashboard = body["dashboard"]
        uid = dashboard.get("uid")
        if not uid or not dashboard.get("title"):
            return web.json_response({"message": "Dashboard title cannot be empty"}, status=400)
        stored = self.dashboards.get(uid)
        if stored is not None and not body.get("overwrite") \
                and dashboard.get("version") != stored["dashboard"]["version"]:
            return web.json_response({"message": "The dashboard has been changed by someone else",
                                      "status": "version-mismatch"}, status=412)
        version = stored["dashboard"]["version"] + 1 if stored else 1
        ident = stored["dashboard"]["id"] if stored else next(self._ids)
        self.dashboards[uid] = {"dashboard": {**dashboard, "id": ident, "version": version},
                                "folderUid": body.get("folderUid")}
        return web.json_response({"id": ident, "uid": uid, "url": f"/d/{uid}", "status": "success",
                                  "version": version})

    async def search(self, request: web.Request) -> web.Response:
        return web.json_response([{"uid": uid, "title": d["dashboard"]["title"], "type": "dash-db",
                                   "folderUid": d["folderUid"]} for uid, d in self.dashboards.items()])
