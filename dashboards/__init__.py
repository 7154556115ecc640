"""Grafana dashboards as code: pure builders, file provisioning and the HTTP API push."""
