#!/usr/bin/env bash
# Installs what the integration tests start themselves (Debian's redis-server) when it is missing.
# Nothing is left running as a service: each test starts and stops its own servers.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "redis-server is missing: run 'sudo apt-get install redis-server' (the tests start their own instances)" >&2
  exit 1
fi
echo "installing redis-server (Debian package) for the integration tests" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package may start a system instance; the tests do not use it.
systemctl stop redis-server >/dev/null 2>&1 || service redis-server stop >/dev/null 2>&1 || true
