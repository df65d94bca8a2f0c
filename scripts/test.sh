#!/usr/bin/env bash
# Runs every test of OncoLive on a fresh machine: installs what is missing (redis-server, coturn,
# chromium, the npm packages), runs the web unit tests, checks formatting and lints, then runs
# the Rust suites (the hub suite three times: in-memory, Redis and a Redis Cluster) and the browser tests inside a
# loopback-only network namespace, so WebRTC can only ever use 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oncolive-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "system packages"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
# redis-cli --cluster create puts the test clusters together.
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || missing+=(chromium)
command -v turnserver >/dev/null || missing+=(coturn)
command -v unshare >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
command -v npm >/dev/null || missing+=(nodejs npm)
# Chinese text in the browser tests' screenshots.
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
# promtool checks the alert rules of docs/operations.md (server/tests/metrics.rs).
command -v promtool >/dev/null || missing+=(prometheus)
# ffprobe checks recordings; ffmpeg makes the library's test videos and reads the HLS playlists.
command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
# nft drops a test viewer's UDP (signaling/tests/turn.rs: TURN over TCP).
command -v nft >/dev/null || missing+=(nftables)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

step "Python packages (outside the namespace): aiortc for the recording tests, moto as the S3 server"
PYTHON="$(sh scripts/python-env.sh)"
"$PYTHON" -c 'import moto.server' 2>/dev/null || "$(dirname "$PYTHON")/pip" install --quiet 'moto[server]>=5,<6'
export ONCOLIVE_PYTHON="$PYTHON"

step "web unit tests (node --test: store.js, hub.js, limits.js; no build step, no packages)"
node --test web/tests/*.test.mjs

step "npm packages for the browser tests"
(cd e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (outside the namespace: may fetch crates)"
cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-run

# Everything below talks only to loopback.
run_isolated() {
  if unshare -n true 2>/dev/null; then
    unshare -n sh -c "ip link set lo up && $1"
  else
    echo "warning: cannot create a network namespace (not root?); running on the host network" >&2
    sh -c "$1"
  fi
}

step "Rust tests (in-memory broker; Redis tests start their own redis-server)"
run_isolated "cargo test --workspace --locked --offline"

step "hub suite against Redis"
run_isolated "ONCOLIVE_TEST_BROKER=redis cargo test -p oncolive-server --test hub --test privacy --locked --offline"

step "library and replay suites against an S3-compatible server (moto)"
run_isolated "ONCOLIVE_TEST_STORE=s3 cargo test -p oncolive-server --test library --test replay --locked --offline"

step "hub suite and multi-node tests against a three-master Redis Cluster"
run_isolated "ONCOLIVE_TEST_BROKER=redis-cluster cargo test -p oncolive-server --test hub --test privacy --test redis_nodes --test video_nodes --test redis_broker --locked --offline"

step "browser tests (Debian chromium, Playwright)"
export ONCOLIVE_BIN="$CARGO_TARGET_DIR/debug/oncolive"
run_isolated "cd '$ROOT/e2e' && npx playwright test"

step "all tests passed"
