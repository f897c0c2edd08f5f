#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real, when they are missing:
#   prometheus              Prometheus server + promtool (rules, config, live scrape test)
#   prometheus-alertmanager amtool (checks ops/alertmanager/alertmanager.yml)
#   chromium                headless browser for the citizen page
#   docker-compose          `docker-compose config` validates docker-compose.yml, when the
#                           docker client has no `docker compose` plugin (no engine needed)
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; } \
   && ! command -v docker-compose >/dev/null 2>&1; then
  need+=(docker-compose)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
