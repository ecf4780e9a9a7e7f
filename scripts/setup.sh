#!/usr/bin/env bash
# Sets up everything aipulse needs on a fresh machine, idempotently:
#   - Debian packages (Java runtime, Maven, Alertmanager, Prometheus (with promtool), Chromium for
#     the report test) when missing,
#   - a Python 3.11 virtualenv in .venv with the project, its server and test extras,
#   - the Kafka broker jars from Maven Central into .cache/kafka-jars.
# Every step prints one line; the full output of every step goes to .cache/setup.log
# (AIPULSE_SETUP_LOG to change it). A failing step prints its last lines and says what to do.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${AIPULSE_SETUP_LOG:-.cache/setup.log}
mkdir -p "$(dirname "$LOG")"
: > "$LOG"
step() { printf '[setup] %s\n' "$*"; }

# run "what it does" "what to do if it fails" command...: one line, output to the log.
run() {
  local what=$1 hint=$2; shift 2
  local t0=$SECONDS
  printf '[setup] %s ... ' "$what"
  printf '\n===== %s: %s\n' "$what" "$*" >> "$LOG"
  if "$@" >> "$LOG" 2>&1; then
    printf 'ok (%ds)\n' $((SECONDS - t0))
  else
    printf 'FAILED\n'
    tail -n 15 "$LOG" | sed 's/^/[setup]   | /' >&2
    echo "[setup] $hint (full log: $LOG)" >&2
    exit 2
  fi
}

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "[setup] need root to apt-get install ${need[*]}: run as root or install them" >&2; exit 2; fi
  run "installing ${need[*]} (Debian)" "apt-get failed: check the network and the Debian sources" \
    env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -q && apt-get install -y -q ${need[*]}"
fi

if [ -f scripts/install-system-deps.sh ]; then
  run "system packages (Alertmanager, Prometheus with promtool, Chromium)" \
    "installing the system packages failed: run scripts/install-system-deps.sh as root" \
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
  run "creating .venv with $PY" "could not create a virtualenv: install python3-venv" "$PY" -m venv .venv
fi
stamp=.venv/.aipulse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  run "upgrading pip" "pip could not upgrade itself: check the network" \
    .venv/bin/python -m pip install --upgrade pip
  run "installing Python packages (first run downloads them from PyPI)" \
    "pip install failed: check the network or the package index" \
    .venv/bin/python -m pip install -e ".[server,test]"
  touch "$stamp"
else
  step "Python packages up to date"
fi

run "Kafka broker jars into .cache/kafka-jars" "could not fetch the Kafka jars (needs mvn and Maven Central)" \
  .venv/bin/python -c "from aipulse_local.kafka import ensure_jars; print(ensure_jars())"
step "done (full log: $LOG)"
