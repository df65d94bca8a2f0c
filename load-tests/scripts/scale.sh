#!/usr/bin/env bash
# Issue 14.5, measured on one machine: origin–edge video and many patients over several nodes
# (docs/benchmarks.md, "Beyond one machine"). Every run starts fresh nodes (release build) and a
# private redis-server, drives them with oncolive-load and writes OUT/NAME.json and NAME.md.
#
#   load-tests/scripts/scale.sh video N…         # 1 publisher → origin A, viewers round-robin over A, B, C
#   VIEWER_NODES="2 3" load-tests/scripts/scale.sh video N…   # viewers on the edges B and C only
#   load-tests/scripts/scale.sh video-one N…     # the same nodes, every viewer on A (comparison)
#   load-tests/scripts/scale.sh qa-one N         # N patients on one node (in memory), qa-series rates
#   load-tests/scripts/scale.sh qa-nodes TOTAL [GENERATORS] [ASK_RATE] [VOTE_RATE]
#                                                # TOTAL patients over 3 nodes on one Redis, one session,
#                                                # GENERATORS (default 3) oncolive-load processes
#   load-tests/scripts/scale.sh plot             # docs/img/scale-video.svg from OUT/video-on23-*.json (< 3 % loss)
#
# The video scenarios run inside their own network namespace (`unshare -n`, loopback only), with
# Redis and the three nodes (127.0.0.1:18201-18203) in it. A video series stops growing at the
# first run with more than 3 % video loss or a viewer that could not connect.
# BIN (default $CARGO_TARGET_DIR/release) holds `oncolive` and `oncolive-load`; OUT (default
# ./scale-results) receives the results; QUIET=1.5 waits for a quiet machine before each run. Every load is bounded in count and time (timeout 300).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SELF="$ROOT/load-tests/scripts/scale.sh"
BIN="${BIN:-${CARGO_TARGET_DIR:-/root/.cache/oncolive-target}/release}"
OUT="${OUT:-$PWD/scale-results}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ulimit -n "$(ulimit -Hn)"
REDIS_PORT="${REDIS_PORT:-16390}"
# Sockets a node accepts; 100 of them are kept for staff (`staff_connections`).
MAXCONN="${MAXCONN:-19200}"

PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# serve PORT [flags…]: starts a node (bench.sh's big-load flags), waits until ready; sets
# SERVER_PID and READY.
serve() {
  local port=$1; shift
  local dir; dir=$(mktemp -d)
  READY="$dir/ready.json"
  "$BIN/oncolive" serve --listen "127.0.0.1:$port" --data-dir "$dir" --ready-file "$READY" \
    --joins-per-second 100000 --max-connections "$MAXCONN" \
    --asks-per-minute-per-address 1000000 --asks-per-second-per-session 100000 \
    --connections-per-address 100000 --tcp-per-address 100000 --max-viewers-per-address 100000 \
    "$@" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 200); do [ -s "$READY" ] && return 0; sleep 0.1; done
  echo "server on $port did not start: $(cat "$dir/server.log")" >&2
  return 1
}

# The load average before a run (the machine is shared): OUT/NAME.loadavg.
# With QUIET=L, first wait (at most 180 s) until the 1-minute load average is below L.
note_load() {
  if [ -n "${QUIET:-}" ]; then
    for _ in $(seq 36); do
      awk -v q="$QUIET" '{exit !($1 < q)}' /proc/loadavg && break
      sleep 5
    done
  fi
  echo "$(date -u +%FT%TZ) $(cat /proc/loadavg)" >"$OUT/$1.loadavg"
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

redis() {
  local dir; dir=$(mktemp -d)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
    --daemonize no >"$dir/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis did not start: $(cat "$dir/redis.log")" >&2
  return 1
}

# nodes PREFIX [flags…]: nodes A, B, C on ports NODE_BASE+1..3, one Redis, one secret; sets
# PID_A/B/C, READY_A.
nodes() {
  local prefix=$1; shift
  serve $((NODE_BASE + 1)) --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$prefix" "$@"
  PID_A=$SERVER_PID; READY_A=$READY
  serve $((NODE_BASE + 2)) --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$prefix" "$@"
  PID_B=$SERVER_PID
  serve $((NODE_BASE + 3)) --redis "redis://127.0.0.1:$REDIS_PORT" --redis-prefix "$prefix" "$@"
  PID_C=$SERVER_PID
}

# sampler FILE PID…: every second, "unix-time pid utime+stime(ticks) rss-KiB" per pid.
sampler() {
  local out=$1; shift
  while :; do
    local t; t=$(date +%s.%N)
    for p in "$@"; do
      [ -r "/proc/$p/stat" ] || continue
      local ticks rss
      ticks=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || continue
      rss=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
      echo "$t $p $ticks $rss"
    done
    sleep 1
  done >"$out"
}

export ONCOLIVE_SECRET="${ONCOLIVE_SECRET:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"

case "${1:-}" in
  video | video-one)
    mode=$1; shift
    # WebRTC must only ever see loopback: Redis, the nodes and the generator in a fresh namespace.
    exec unshare -n sh -c "ip link set lo up && exec '$SELF' video-inner $mode $*"
    ;;
  video-inner)
    mode=$2; shift 2
    NODE_BASE=18200
    redis
    for v in "$@"; do
      on="${VIEWER_NODES:-1 2 3}"; [ "$mode" = video-one ] && on=1
      name="video-edges-$v"
      [ "$on" != "1 2 3" ] && name="video-on$(tr -d ' ' <<<"$on")-$v"
      [ "$mode" = video-one ] && name="video-one-$v"
      nodes "$name" --max-viewers-per-session 100000
      viewers=()
      for k in $on; do viewers+=(--viewer-url "http://127.0.0.1:$((18200 + k))"); done
      echo "== $name"
      note_load "$name"
      timeout 300 "$BIN/oncolive-load" video --url http://127.0.0.1:18201 --ready-file "$READY_A" \
        "${viewers[@]}" --server-pid "$PID_A" --server-pid "$PID_B" --server-pid "$PID_C" \
        --viewers "$v" --bitrate 1000 --duration 20 --connect-rate 25 \
        --quiet --out "$OUT/$name.json" | tee "$OUT/$name.md" || true
      stop "$PID_A"; stop "$PID_B"; stop "$PID_C"
      sleep 2
      [ -s "$OUT/$name.json" ] || { echo "$name: no result, stopping the series"; break; }
      if [ "$(jq '.video_loss_pct > 3 or .viewer_failures > 0' "$OUT/$name.json")" = true ]; then
        echo "$name: loss above 3 % or viewers failed: stopping the series"
        break
      fi
    done
    ;;
  qa-one)
    n=${2:-19000}
    note_load "qa-one-$n"
    serve 18100 --asks-per-minute 60
    echo "== qa-one-$n"
    timeout 300 "$BIN/oncolive-load" qa --url http://127.0.0.1:18100 --ready-file "$READY" \
      --server-pid "$SERVER_PID" --patients "$n" --duration 30 --connect-rate 1000 \
      --ask-rate 5 --vote-rate 100 --sources 127.0.0.2,127.0.0.3,127.0.0.4 \
      --quiet --out "$OUT/qa-one-$n.json" | tee "$OUT/qa-one-$n.md" || true
    stop "$SERVER_PID"
    ;;
  qa-nodes)
    total=${2:-50000}; gens=${3:-3}; ask=${4:-5}; vote=${5:-100}
    name="qa-nodes-$total"; [ "$ask" != 5 ] || [ "$vote" != 100 ] && name="$name-a$ask-v$vote"
    note_load "$name"
    NODE_BASE=18100
    redis
    nodes "$name" --asks-per-minute 60
    urls=(--url http://127.0.0.1:18101 --url http://127.0.0.1:18102 --url http://127.0.0.1:18103)
    admin=$(jq -r .admin_token "$READY_A")
    # One session for every generator: created here, its tokens given to each.
    created=$(curl -sf -X POST http://127.0.0.1:18101/api/sessions \
      -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
      -d "{\"title\":\"Scale test\",\"topic\":\"load test\",\"expert_name\":\"Dr. Load\",\"scheduled_start\":\"$(date -u +%FT%TZ)\",\"moderation\":\"pre\"}")
    session=$(jq -r .session.id <<<"$created")
    moderator=$(jq -r .tokens.moderator <<<"$created")
    expert=$(jq -r .tokens.expert <<<"$created")
    per=$(( (total + gens - 1) / gens ))
    first=$(( total - per * (gens - 1) ))
    stagger=$(( per / 1000 + 4 ))   # seconds a generator takes to connect at 1,000/s, and a margin
    duration=30
    sampler "$OUT/$name.samples" "$PID_A" "$PID_B" "$PID_C" "$REDIS_PID" &
    SAMPLER=$!; PIDS+=("$SAMPLER")
    echo "pids: A=$PID_A B=$PID_B C=$PID_C redis=$REDIS_PID" | tee "$OUT/$name.pids"
    echo "== $name: $gens generators, $first + $((gens - 1)) × $per patients, session $session"
    # Generators 2…G only listen: their patients neither ask nor vote, their staff socket (the
    # completeness reference) holds the expert's link, which cannot approve, so every approval
    # carries generator 1's clock. They connect one after the other, then stay in their load
    # phase until generator 1 is done.
    GEN_PIDS=()
    for g in $(seq 2 "$gens"); do
      d=$(( (gens - g + 1) * stagger + 2 + duration + 10 ))
      timeout 300 "$BIN/oncolive-load" qa "${urls[@]}" --session "$session" \
        --moderator-token "$expert" --expert-token "$expert" --patients "$per" \
        --duration "$d" --connect-rate 1000 --ask-rate 0 --vote-rate 0 --answer-every 100000 \
        --sources "127.0.$g.2,127.0.$g.3,127.0.$g.4" --server-pid "$PID_A" --server-pid "$PID_B" \
        --server-pid "$PID_C" --quiet --out "$OUT/$name-gen$g.json" >"$OUT/$name-gen$g.md" 2>&1 &
      GEN_PIDS+=("$!"); PIDS+=("$!")
      echo "generator $g: pid $!, $per patients, load phase $d s"
      sleep "$stagger"
    done
    t1=$(date +%s.%N)
    echo "generator 1: $first patients, asks $ask/s, votes $vote/s, from $t1"
    timeout 300 "$BIN/oncolive-load" qa "${urls[@]}" --session "$session" \
      --moderator-token "$moderator" --expert-token "$expert" --patients "$first" \
      --duration "$duration" --connect-rate 1000 --ask-rate "$ask" --vote-rate "$vote" \
      --sources 127.0.1.2,127.0.1.3,127.0.1.4 --server-pid "$PID_A" --server-pid "$PID_B" \
      --server-pid "$PID_C" --quiet --out "$OUT/$name-gen1.json" | tee "$OUT/$name-gen1.md" || true
    for p in "${GEN_PIDS[@]:-}"; do [ -n "$p" ] && { wait "$p" || echo "generator pid $p: exit $?"; }; done
    kill "$SAMPLER" 2>/dev/null || true
    # Each process's cores over generator 1's load phase (estimated as from its start + its
    # connect time + 2 s, for `duration` s; the first 2 s left out) and its largest RSS.
    python3 - "$OUT/$name.samples" "$t1" "$first" "$duration" "$PID_A" "$PID_B" "$PID_C" "$REDIS_PID" \
      >"$OUT/$name-procs.json" <<'EOF'
import json, sys
samples, t1, first, duration = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
names = dict(zip(map(int, sys.argv[5:]), ["node A", "node B", "node C", "redis"]))
start = t1 + first / 1000 + 4
end = t1 + first / 1000 + 2 + duration
rows = {}
for line in open(samples):
    t, pid, ticks, rss = line.split()
    rows.setdefault(int(pid), []).append((float(t), int(ticks), int(rss)))
out = {"window_s": [start - t1, end - t1], "procs": []}
for pid, r in rows.items():
    inside = [x for x in r if start <= x[0] <= end]
    cores = (inside[-1][1] - inside[0][1]) / 100 / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else None
    out["procs"].append({"name": names.get(pid, str(pid)), "pid": pid, "cores_load": cores,
                         "rss_max_kib": max(x[2] for x in r)})
print(json.dumps(out, indent=1))
EOF
    cat "$OUT/$name-procs.json"
    stop "$PID_A"; stop "$PID_B"; stop "$PID_C"; stop "$REDIS_PID"
    ;;
  plot)
    # The edge series' runs under 3 % loss (a collapsed run's seconds of delay flatten the rest).
    files=()
    for f in "$OUT"/video-on23-*.json; do
      [ "$(jq '.video_loss_pct <= 3' "$f")" = true ] && files+=("$f")
    done
    "$BIN/oncolive-load" plot --prefix "$ROOT/docs/img/scale" "${files[@]}"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
