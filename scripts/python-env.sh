#!/bin/sh
# Creates (if missing) the Python virtual environment the recording tests use
# for their independent WebRTC publisher (aiortc, from PyPI) and prints the
# path of its python. Idempotent; the tests read ONCOLIVE_PYTHON or call this.
set -eu
VENV="${ONCOLIVE_VENV:-$HOME/.cache/oncolive-venv}"
if ! "$VENV/bin/python" -c 'import aiortc, numpy, av' >/dev/null 2>&1; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --upgrade pip >&2
    "$VENV/bin/pip" install --quiet 'aiortc>=1.9,<2' aiohttp numpy >&2
fi
echo "$VENV/bin/python"
