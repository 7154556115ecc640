"""Grafana file provisioning: datasource and dashboard providers as YAML, dashboards as JSON.

For deployments that prefer files to the HTTP API: mount ``provisioning/``
at ``/etc/grafana/provisioning`` and ``dashboards/`` where the provider
points (``/var/lib/grafana/dashboards``), as ``deploy/docker-compose.yml`` does.
"""

from __future__ import annotations

import json
from pathlib import Path

from ruamel.yaml import YAML

from core.config import DidbanConfig
from dashboards.builders import all_dashboards, datasource

DASHBOARDS_PATH = "/var/lib/grafana/dashboards"


def export(config: DidbanConfig, out: Path, influx_url: str = "http://influxdb:8086", lang: str = "fa",
           database: str = "didban") -> list[Path]:
    """Write the provisioning tree into ``out``; return the files written."""
    yaml = YAML()
    yaml.default_flow_style = False
    written: list[Path] = []
    sources = out / "provisioning" / "datasources"
    providers = out / "provisioning" / "dashboards"
    for folder in (sources, providers):
        folder.mkdir(parents=True, exist_ok=True)
    source = datasource(influx_url, database)
    source.pop("isDefault")
    source_file = sources / "didban.yaml"
    # InfluxDB 2.x answers InfluxQL through a DBRP mapping and wants its token in a header;
    # Grafana expands ${DIDBAN_INFLUXDB_TOKEN} from its environment when it reads this file.
    source["jsonData"]["httpHeaderName1"] = "Authorization"
    secure = {"httpHeaderValue1": "Token ${DIDBAN_INFLUXDB_TOKEN}"}
    with source_file.open("w", encoding="utf-8") as file:
        yaml.dump({"apiVersion": 1, "datasources": [{**source, "editable": False, "secureJsonData": secure}]},
                  file)
    written.append(source_file)
    agencies: dict[str, str] = {}
    for agency, dashboard in all_dashboards(config, lang):
        agencies[agency.id] = agency.name.fa if lang == "fa" else agency.name.en
        target = out / "dashboards" / agency.id / f"{dashboard['uid']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(dashboard, ensure_ascii=False, indent=2), encoding="utf-8")
        written.append(target)
    provider_file = providers / "didban.yaml"
    with provider_file.open("w", encoding="utf-8") as file:
        yaml.dump({"apiVersion": 1, "providers": [
            {"name": f"didban-{agency_id}", "folder": title, "folderUid": f"didban-{agency_id}"[:40],
             "type": "file", "disableDeletion": True, "allowUiUpdates": False,
             "options": {"path": f"{DASHBOARDS_PATH}/{agency_id}"}}
            for agency_id, title in agencies.items()]}, file)
    written.append(provider_file)
    return written
