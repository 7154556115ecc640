#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine that has only
# Python 3.11 and apt, then runs lint, type checks and the tests.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/apt.sh
# The service's own libraries, and what the tests drive for real: poppler
# (pdftotext, pdftoppm) to read back the PDF export, Chromium for the
# status page (driven by Playwright through executable_path), Prometheus
# for promtool, VictoriaMetrics and InfluxDB 1.6 for the time-series feed,
# PostgreSQL for the shared store (the tests start throwaway clusters).
ensure_apt "${SERVICE_APT_PACKAGES[@]}" poppler-utils chromium prometheus victoria-metrics influxdb postgresql

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
.venv/bin/mypy
mkdir -p test-artifacts
.venv/bin/pytest -q -p no:cacheprovider --durations=15 "$@"
