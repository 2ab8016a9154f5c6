#!/usr/bin/env bash
# Try remote scanning and printing on a machine with no scanner or printer: runs the
# device agent of one kiosk with stand-in devices, SANE's test scanner and a private
# cupsd whose printer writes to var/trial-devices/printed/. Start the server first
# (scripts/serve.sh), then call from that kiosk and press Scan or Print in the console.
#   scripts/try-agent.sh [--server URL] [--kiosk ID] [--config FILE]
#     --config  the server's configuration (default: the built-in example)
#     --kiosk   a kiosk of that configuration (default: its first)
#     --server  the server's address (default: the configuration's)
# On first use it installs what is missing: Debian packages (as root, or through sudo)
# and the project with its agent extra in .venv. Ctrl-C stops the agent and its cupsd.
set -euo pipefail

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
server="" kiosk="" config=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server | --kiosk | --config)
      if [ $# -lt 2 ]; then
        echo "try-agent.sh: $1 needs a value" >&2
        exit 2
      fi
      case "$1" in
        --server) server=$2 ;;
        --kiosk) kiosk=$2 ;;
        --config) config=$(realpath -- "$2") ;; # before the cd below
      esac
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "try-agent.sh: unknown argument $1" >&2
      usage >&2
      exit 2
      ;;
  esac
done
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

python=${PYTHON:-python3}
apt_packages=()
# shellcheck source=scripts/agent-packages.sh
source scripts/agent-packages.sh
add_agent_packages "$python"
if [ ! -x .venv/bin/python ]; then
  "$python" -c 'import ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "== installing ${apt_packages[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${apt_packages[@]}"
  # The packaged cupsd may start on install; the agent starts its own on a free port.
  if [[ " ${apt_packages[*]} " == *" cups "* ]]; then
    for daemon in cups cups-browsed; do
      as_root service "$daemon" stop >/dev/null 2>&1 || true
    done
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c 'import sane, cups, visio_agent.cli, visio_server.cli' 2>/dev/null; then
  echo "== installing the project with its agent extra into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[agent]'
fi

# The kiosk and the server's address, from the configuration the server reads.
info=$(
  .venv/bin/python - "$config" "$kiosk" <<'EOF'
import sys

from visio_server.config import ConfigError, load_config

path, wanted = sys.argv[1], sys.argv[2]
try:
    config = load_config(path or None)
except ConfigError as exc:
    sys.exit(f"try-agent.sh: configuration error: {exc}")
kiosks = [k.id for k in config.kiosks]
if not kiosks:
    sys.exit(f"try-agent.sh: {config.source} has no kiosk")
if wanted and wanted not in kiosks:
    sys.exit(f"try-agent.sh: no kiosk {wanted!r} in {config.source}: {', '.join(kiosks)}")
host = config.server.host
host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
host = f"[{host}]" if ":" in host else host
url = config.server.public_url.rstrip("/") or f"http://{host}:{config.server.port}"
print(wanted or kiosks[0], url)
EOF
)
read -r kiosk server_default <<<"$info"
server=${server:-$server_default}
if ! .venv/bin/python -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=3)' "$server" 2>/dev/null; then
  echo "try-agent.sh: no answer from $server yet (start it with scripts/serve.sh);" \
    "the agent keeps trying" >&2
fi

trial=var/trial-devices
(umask 022 && mkdir -p "$trial")
token_file=$trial/device-token
config_args=()
[ -z "$config" ] || config_args=(--config "$config")
(umask 077 && .venv/bin/visio-server token "${config_args[@]}" --role device --sub "$kiosk" \
  >"$token_file")

echo "== device agent of kiosk $kiosk, server $server"
echo "   call from that kiosk's page, then press Scan or Print in the expert console;"
echo "   printed pages land in $trial/printed/. Ctrl-C stops."
exec .venv/bin/visio-kiosk-agent --server "$server" --token-file "$token_file" \
  --trial-devices "$trial" --spool-dir "$trial/spool"
