#!/usr/bin/env bash
# Installs Didban on a fresh Debian machine with Python 3.11 and apt, and runs
# it on its embedded default: `didban demo` (simulated e-services on 127.0.0.1,
# results in SQLite).  Extra arguments go to `didban demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/apt.sh
ensure_apt "${SERVICE_APT_PACKAGES[@]}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e .
exec .venv/bin/didban demo "$@"
