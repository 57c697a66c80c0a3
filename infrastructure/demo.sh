#!/usr/bin/env bash
# Brings the pipeline up on this machine and shows it working (README's first
# command runs this through `make up`): starts the dependency stack, then
# `tributary dev --demo`, which applies the migrations, makes the topics,
# runs auth, capture, the consumer and query in one process, creates a user,
# a project and its keys through auth, sends a synthetic shop's week through
# capture, waits until the query API sees all of it, and prints a trend and
# a funnel checked against what it sent. The pipeline keeps running;
# `make down` (this script's `stop`) ends it.
#
# Usage: infrastructure/demo.sh up|stop
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK="$REPO/infrastructure/local-stack.sh"
BIN=${TRIBUTARY_BIN:-$REPO/target/debug/tributary}
DEMO_USERS=${DEMO_USERS:-300}

log() { printf 'demo: %s\n' "$*" >&2; }

stack_dir() { "$STACK" env | sed -n 's/^TRIBUTARY_STACK_DIR=//p'; }

stop() {
  local dir pidfile pid
  dir=$(stack_dir 2> /dev/null || true)
  [ -n "$dir" ] || return 0
  for pidfile in "$dir"/run/demo-*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(head -n1 "$pidfile")
    if kill -0 "$pid" 2> /dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q tributary; then
      log "stopping $(basename "$pidfile" .pid) (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

up() {
  local settings dir out pid
  settings=$("$STACK" up) || { log "the local stack did not come up"; exit 1; }
  set -a; eval "$settings"; set +a
  [ -x "$BIN" ] || { log "build first: cargo build --bins"; exit 1; }
  stop
  dir=$(stack_dir)
  out="$dir/logs/demo-dev.out"
  log "starting tributary dev --demo (logs: $dir/logs/demo-dev.log)"
  : > "$out"
  setsid nohup "$BIN" dev --demo --demo-users "$DEMO_USERS" > "$out" 2> "$dir/logs/demo-dev.log" < /dev/null &
  pid=$!
  echo "$pid" > "$dir/run/demo-dev.pid"
  # Show what dev prints as it comes, until the demo is done or dev ends.
  tail -n +1 -f --pid "$pid" "$out" &
  local tailer=$! deadline=$((SECONDS + 300))
  until grep -q '^demo: done' "$out"; do
    if ! kill -0 "$pid" 2> /dev/null; then
      kill "$tailer" 2> /dev/null || true
      tail -n 20 "$dir/logs/demo-dev.log" >&2
      log "tributary dev stopped before the demo was done (above: the end of its log)"
      exit 1
    fi
    [ $SECONDS -lt $deadline ] || { kill "$tailer" 2> /dev/null || true; stop; log "the demo did not finish in 300 s"; exit 1; }
    sleep 0.2
  done
  sleep 0.3
  kill "$tailer" 2> /dev/null || true
  wait "$tailer" 2> /dev/null || true
  echo
  echo "Try it (the query key is in the demo's auth line above):"
  echo "  curl -s localhost:8001/api/query/trend -H 'X-API-Key: <query key>' -d '{\"series\":[{\"event\":\"purchase\",\"math\":\"sum\",\"math_property\":\"amount\"}],\"date_from\":\"-7d\"}'"
  echo "  ClickHouse: $CLICKHOUSE_URL (database tributary); logs: $dir/logs/demo-dev.log"
  echo "  make down   stops the pipeline and the stack"
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  *) echo "usage: $0 up|stop" >&2; exit 2 ;;
esac
