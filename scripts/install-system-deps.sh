#!/usr/bin/env bash
# System packages the local stack and its tests need, from Debian's archive.
# Idempotent: installs only what is missing; safe to run on every CI job.
#   scripts/install-system-deps.sh        (as root, or with sudo available)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# package -> a binary proving it is installed
declare -A PACKAGES=(
  [prometheus-alertmanager]=prometheus-alertmanager   # alerts: routing/grouping/delivery (+ amtool)
  [prometheus]=prometheus                             # the local stack's Prometheus (+ promtool, to check rule files)
  [chromium]=chromium                                 # headless browser: tests/report opens the review
)

missing=()
for pkg in "${!PACKAGES[@]}"; do
  if ! command -v "${PACKAGES[$pkg]}" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: all installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "system deps: installing ${missing[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
