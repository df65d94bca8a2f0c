#!/bin/sh
# Runs every fuzz target in turn for SECONDS each (default 600), one process at a time.
#   fuzz/run.sh [SECONDS] [TARGET...]
# The seed corpus in fuzz/corpus/<target> is read, never written: new inputs go to
# $FUZZ_WORK/<target> (default target/fuzz-work), crashes to fuzz/artifacts/<target>.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -eu
cd "$(dirname "$0")"
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=${*:-"ws_message http_json sdp token"}
work=${FUZZ_WORK:-target/fuzz-work}
for t in $targets; do
  mkdir -p "$work/$t" "artifacts/$t"
  echo "== $t: ${seconds}s"
  # -jobs=1 -workers=1 would fork a child that logs to a file; one plain process is the same
  # single job and prints its statistics here.
  cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1
done
