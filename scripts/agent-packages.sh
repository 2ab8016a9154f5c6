# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/try-agent.sh: adds to the array apt_packages
# the Debian packages the kiosk agent needs and this machine lacks. SANE with its test
# backend, CUPS with its client, filters and BSD commands; python-sane and pycups
# compile against the -dev packages, with gcc and Python's headers.
add_agent_packages() {
  local python=${1:-python3}
  command -v scanimage >/dev/null || apt_packages+=(sane-utils)
  dpkg -s libsane1 >/dev/null 2>&1 || apt_packages+=(libsane1)
  [ -e /usr/include/sane/sane.h ] || apt_packages+=(libsane-dev)
  command -v cupsd >/dev/null || [ -x /usr/sbin/cupsd ] || apt_packages+=(cups)
  command -v lpstat >/dev/null || apt_packages+=(cups-client)
  command -v lpr >/dev/null || apt_packages+=(cups-bsd)
  [ -x /usr/lib/cups/filter/pdftops ] || apt_packages+=(cups-filters)
  [ -e /usr/include/cups/cups.h ] || apt_packages+=(libcups2-dev)
  command -v gcc >/dev/null || apt_packages+=(gcc)
  "$python" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || apt_packages+=(python3-dev)
}
