#!/usr/bin/env bash
# Quick start, command 1: set up, start the local stack and run the incident demo (about five
# minutes of real-trace traffic through the SDK), then the summary, charts and dashboard previews.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/aipulse demo "$@"
