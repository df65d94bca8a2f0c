#!/usr/bin/env bash
# The measurements of docs/benchmarks.md, one scenario per argument. Each run starts a fresh
# server (release build), drives it with oncolive-load and writes results/NAME.json plus the
# Markdown table to results/NAME.md.
#
#   load-tests/scripts/bench.sh qa-series        # 1k, 2k, 5k, 10k patients, one node
#   load-tests/scripts/bench.sh throughput       # event deliveries per second through one session
#   load-tests/scripts/bench.sh mix              # 200 questions/s + 2,000 votes/s
#   load-tests/scripts/bench.sh stall            # p99 with and without one stalled patient
#   load-tests/scripts/bench.sh storm            # 10k patients drop and reconnect
#   load-tests/scripts/bench.sh nodes            # 1 vs 2 nodes on a private Redis
#   load-tests/scripts/bench.sh nodes-busy       # 10k patients, 50 questions/s: 1 node, 2 on Redis
#   load-tests/scripts/bench.sh video-series     # 10, 50, 100, 200 viewers (own network namespace)
#   load-tests/scripts/bench.sh plot             # SVGs into docs/img/
#
# BIN (default $CARGO_TARGET_DIR/release) holds `oncolive` and `oncolive-load`; OUT (default
# ./bench-results) receives the results. Every load is bounded in count and time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-/root/.cache/oncolive-target}/release}"
OUT="${OUT:-$PWD/bench-results}"
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# serve PORT [flags…]: starts a node, waits until ready; sets SERVER_PID and READY.
serve() {
  local port=$1; shift
  local dir; dir=$(mktemp -d)
  READY="$dir/ready.json"
  "$BIN/oncolive" serve --listen "127.0.0.1:$port" --data-dir "$dir" --ready-file "$READY" \
    --joins-per-second 100000 --max-connections 19000 \
    --asks-per-minute-per-address 1000000 --asks-per-second-per-session 100000 \
    --connections-per-address 100000 --tcp-per-address 100000 --max-viewers-per-address 100000 "$@" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do [ -s "$READY" ] && return 0; sleep 0.1; done
  echo "server on $port did not start: $(cat "$dir/server.log")" >&2
  return 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# cpu_seconds PID: the user and system CPU time PID has used, in seconds.
cpu_seconds() {
  awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck }' "/proc/$1/stat"
}

# qa NAME PORT_FLAGS… -- LOAD_FLAGS…
qa() {
  local name=$1; shift
  local server_flags=()
  while [ "$1" != "--" ]; do server_flags+=("$1"); shift; done
  shift
  serve 18100 "${server_flags[@]}"
  echo "== $name"
  "$BIN/oncolive-load" qa --url http://127.0.0.1:18100 --ready-file "$READY" \
    --server-pid "$SERVER_PID" --quiet --out "$OUT/$name.json" "$@" | tee "$OUT/$name.md" || true
  stop "$SERVER_PID"
  sleep 2
}

case "${1:-}" in
  qa-series)
    for n in 1000 2000 5000 10000; do
      qa "qa-$n" --asks-per-minute 60 -- --patients "$n" --duration 30 --connect-rate 1000 \
        --ask-rate 5 --vote-rate 100
    done
    ;;
  throughput)
    qa throughput-2000 --asks-per-minute 600 -- --patients 2000 --duration 20 --ask-rate 100 \
      --vote-rate 200 --reject-ratio 0.05
    ;;
  mix)
    qa mix-1000 --asks-per-minute 600 -- --patients 1000 --duration 20 --ask-rate 200 \
      --vote-rate 2000 --answer-every 0.5
    ;;
  stall)
    qa stall-baseline --asks-per-minute 600 -- --patients 2000 --duration 30 --ask-rate 50 --vote-rate 200
    qa stall-one --asks-per-minute 600 -- --patients 2000 --duration 30 --ask-rate 50 --vote-rate 200 --stalled 1
    ;;
  storm)
    qa storm-10000-w10 --asks-per-minute 60 -- --patients 10000 --duration 30 --ask-rate 5 \
      --vote-rate 100 --storm-at 5 --storm-window 10
    qa storm-10000-w2 --asks-per-minute 60 -- --patients 10000 --duration 20 --ask-rate 5 \
      --vote-rate 100 --storm-at 5 --storm-window 2
    ;;
  nodes)
    # Nodes of one service share the token secret (otherwise each makes its own).
    ONCOLIVE_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    export ONCOLIVE_SECRET
    port=16390
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
      >"$dir/redis.log" 2>&1 &
    PIDS+=("$!")
    sleep 0.5
    redis="redis://127.0.0.1:$port"
    for n in 2000 5000; do
      qa "redis-1node-$n" --redis "$redis" --redis-prefix "bench1-$n" --asks-per-minute 60 -- \
        --patients "$n" --duration 30 --ask-rate 5 --vote-rate 100
      serve 18101 --redis "$redis" --redis-prefix "bench2-$n" --asks-per-minute 60; p1=$SERVER_PID; r1=$READY
      serve 18102 --redis "$redis" --redis-prefix "bench2-$n" --asks-per-minute 60; p2=$SERVER_PID
      echo "== redis-2nodes-$n"
      "$BIN/oncolive-load" qa --url http://127.0.0.1:18101 --url http://127.0.0.1:18102 \
        --ready-file "$r1" --server-pid "$p1" --server-pid "$p2" --quiet \
        --out "$OUT/redis-2nodes-$n.json" --patients "$n" --duration 30 --ask-rate 5 \
        --vote-rate 100 | tee "$OUT/redis-2nodes-$n.md" || true
      stop "$p1"; stop "$p2"; sleep 2
    done
    ;;
  nodes-busy)
    # 10,000 patients and 50 questions a second approved (issue 14.6): one node in memory, then
    # two nodes on one private Redis. SUFFIX names the build measured (before/after).
    ONCOLIVE_SECRET="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    export ONCOLIVE_SECRET
    suffix="${SUFFIX:-}"
    qa "busy-memory-10000$suffix" --asks-per-minute 600 -- --patients 10000 --duration 30 \
      --connect-rate 1000 --ask-rate 50 --vote-rate 200
    port="${REDIS_PORT:-16391}"
    dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
      >"$dir/redis.log" 2>&1 &
    redis_pid=$!
    PIDS+=("$redis_pid")
    sleep 0.5
    redis="redis://127.0.0.1:$port"
    serve 18101 --redis "$redis" --redis-prefix busy --asks-per-minute 600; p1=$SERVER_PID; r1=$READY
    serve 18102 --redis "$redis" --redis-prefix busy --asks-per-minute 600; p2=$SERVER_PID
    echo "== busy-redis-2nodes-10000$suffix"
    "$BIN/oncolive-load" qa --url http://127.0.0.1:18101 --url http://127.0.0.1:18102 \
      --ready-file "$r1" --server-pid "$p1" --server-pid "$p2" --quiet \
      --out "$OUT/busy-redis-2nodes-10000$suffix.json" --patients 10000 --duration 30 \
      --connect-rate 1000 --ask-rate 50 --vote-rate 200 | tee "$OUT/busy-redis-2nodes-10000$suffix.md" || true
    echo "redis CPU over the whole run (connect, 30 s of load, drain): $(cpu_seconds "$redis_pid") s" \
      | tee -a "$OUT/busy-redis-2nodes-10000$suffix.md"
    for port in 18101 18102; do
      echo "node $port: $(curl -s "http://127.0.0.1:$port/metrics" | grep -E '^oncolive_(commit_conflicts|ws_messages_in)_total' | tr '\n' ' ')"
    done | tee -a "$OUT/busy-redis-2nodes-10000$suffix.md"
    stop "$p1"; stop "$p2"
    ;;
  video-series)
    # WebRTC must only ever see loopback: run inside a fresh network namespace.
    exec unshare -n sh -c "ip link set lo up && '$0' video-series-inner"
    ;;
  video-series-inner)
    for v in 10 50 100 200; do
      serve 18200
      echo "== video-$v"
      "$BIN/oncolive-load" video --url http://127.0.0.1:18200 --ready-file "$READY" \
        --server-pid "$SERVER_PID" --viewers "$v" --bitrate 1000 --duration 20 --connect-rate 25 \
        --quiet --out "$OUT/video-$v.json" | tee "$OUT/video-$v.md" || true
      stop "$SERVER_PID"
      sleep 2
    done
    ;;
  plot)
    "$BIN/oncolive-load" plot --prefix "$ROOT/docs/img/bench" "$OUT"/qa-*.json "$OUT"/video-*.json
    ;;
  *)
    sed -n '2,17p' "$0"
    exit 2
    ;;
esac
