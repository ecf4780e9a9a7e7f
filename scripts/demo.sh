#!/usr/bin/env bash
# Quick start, command 1: set up, start the local stack and run the demo (about a minute of
# real-trace traffic through the SDK), then print the summary read back from ClickHouse.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/aipulse demo "$@"
