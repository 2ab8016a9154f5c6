#!/usr/bin/env bash
# Sets up .venv on first use, then runs the server on its embedded default
# (in-memory queue with journal and event log in ./var/visio, no Redis).
# Extra arguments go to `visio-server serve` (for example --port 9000 --config site.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/visio-server ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
fi
exec .venv/bin/visio-server serve "$@"
