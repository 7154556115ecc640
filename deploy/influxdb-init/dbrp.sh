#!/bin/sh
# InfluxDB 2 answers InfluxQL (Grafana's dashboards) through a DBRP mapping of database "didban".
set -e
bucket_id=$(influx bucket list --name "${DOCKER_INFLUXDB_INIT_BUCKET}" --hide-headers | cut -f1)
influx v1 dbrp create --db didban --rp autogen --bucket-id "${bucket_id}" --default
