#!/usr/bin/env bash
# Installs what the tests need when missing: Debian's redis-server and clickhouse-server (started by the tests themselves), promtool (from the prometheus package, for the alert rule tests) and chromium (the console's browser test).
# Nothing is left running as a service: each test starts and stops its own servers.
set -euo pipefail
missing=()
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then missing+=(redis-server); fi
# Debian puts clickhouse-server in /usr/sbin, which a non-root PATH may lack.
if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then missing+=(clickhouse-server clickhouse-client); fi
if ! command -v promtool >/dev/null 2>&1; then missing+=(prometheus); fi
# The admin console's browser test drives Debian's chromium headless.
if ! command -v chromium >/dev/null 2>&1; then missing+=(chromium); fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "${missing[*]} missing: run 'sudo apt-get install ${missing[*]}' (the tests start their own instances)" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian packages) for the integration tests" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start system instances; the tests do not use them (and they hold the default ports).
# Only services of packages installed just now: a server the machine already ran is left alone.
for service in "${missing[@]}"; do
  [ "$service" = clickhouse-client ] && continue
  [ "$service" = chromium ] && continue
  # prometheus: only promtool is wanted; the package's server is stopped like the others.
  systemctl stop "$service" >/dev/null 2>&1 || service "$service" stop >/dev/null 2>&1 || true
done
