#!/usr/bin/env bash
# Sets up everything aipulse needs on a fresh machine, idempotently:
#   - Debian packages (Java runtime, Maven, Alertmanager, Prometheus' promtool) when missing,
#   - a Python 3.11 virtualenv in .venv with the project, its server and test extras,
#   - the Kafka broker jars from Maven Central into .cache/kafka-jars.
# Every step prints one line; a failing step says what to do.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '[setup] %s\n' "$*"; }

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]} (Debian)"
  if [ "$(id -u)" -ne 0 ]; then echo "[setup] need root to apt-get install ${need[*]}: run as root or install them" >&2; exit 2; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -x scripts/install-system-deps.sh ] || [ -f scripts/install-system-deps.sh ]; then
  bash scripts/install-system-deps.sh
fi

PY=${AIPULSE_PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "[setup] Python 3.11+ is required: install python3.11 (or set AIPULSE_PYTHON)" >&2; exit 2; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.aipulse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  step "installing Python packages (first run downloads them from PyPI)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[server,test]"
  touch "$stamp"
else
  step "Python packages up to date"
fi

step "Kafka broker jars"
.venv/bin/python -c "from aipulse_local.kafka import ensure_jars; print('[setup]   ', ensure_jars())" || {
  echo "[setup] could not fetch the Kafka jars (needs mvn and Maven Central)" >&2; exit 2; }
