#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs the
# linters, the type checker and the whole test suite.
#   scripts/test.sh              everything
#   scripts/test.sh -m "not browser and not media"   extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v promtool >/dev/null || apt_packages+=(prometheus)
command -v turnserver >/dev/null || apt_packages+=(coturn)
command -v ip >/dev/null || apt_packages+=(iproute2)
command -v redis-server >/dev/null || apt_packages+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_packages+=(nginx-light)
command -v shellcheck >/dev/null || apt_packages+=(shellcheck)
# The kiosk agent's tests drive SANE's test backend and a private cupsd.
# shellcheck source=scripts/agent-packages.sh
source scripts/agent-packages.sh
add_agent_packages "${PYTHON:-python3}"
[ -e /usr/lib/cups/backend/cups-pdf ] || apt_packages+=(printer-driver-cups-pdf)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "== installing ${apt_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${apt_packages[@]}"
  # Packaged daemons may start on install; the tests start their own on free ports.
  for daemon in redis-server nginx; do
    if [[ " ${apt_packages[*]} " == *" ${daemon}"* ]]; then
      service "$daemon" stop >/dev/null 2>&1 || true
    fi
  done
  if [[ " ${apt_packages[*]} " == *" cups"* ]]; then
    for daemon in cups cups-browsed; do
      service "$daemon" stop >/dev/null 2>&1 || true
    done
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== protocol docs"
.venv/bin/python scripts/protocol_docs.py --check
echo "== pytest"
exec .venv/bin/pytest -q "$@"
