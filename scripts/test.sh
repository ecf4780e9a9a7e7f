#!/usr/bin/env bash
# Quick start, command 2: set up and run the whole test suite (unit, integration on the real
# Kafka broker and ClickHouse engine, alerts, Grafana queries, faults). Each suite that needs
# services starts them itself on free 127.0.0.1 ports and stops them at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit $?
export PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -p no:cacheprovider -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
