#!/usr/bin/env bash
# Brings the pipeline up on this machine and shows it working (README's first
# command runs this through `make up`). It grows as the workloads land: today
# it starts the dependency stack, creates the topics, applies the migrations,
# runs auth, the consumer and capture, creates a user, a project and a capture
# key through auth, sends PostHog-style events through capture with that key,
# and shows them arriving in Kafka and in ClickHouse.
#
# Usage: infrastructure/demo.sh up|stop
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK="$REPO/infrastructure/local-stack.sh"
BIN=${TRIBUTARY_BIN:-$REPO/target/debug/tributary}
CAPTURE_PORT=${CAPTURE_PORT:-8000}
CONSUMER_METRICS_PORT=${CONSUMER_METRICS_PORT:-9090}
AUTH_PORT=${AUTH_PORT:-8002}
QUERY_PORT=${QUERY_PORT:-8001}

log() { printf 'demo: %s\n' "$*" >&2; }

stack_dir() { "$STACK" env | sed -n 's/^TRIBUTARY_STACK_DIR=//p'; }

# wait_http URL LOG: poll until URL answers 200 (60 s), else show LOG and fail.
wait_http() {
  local deadline=$((SECONDS + 60))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$2" >&2; log "$1 not answering after 60 s"; exit 1; }
    sleep 0.2
  done
}

stop() {
  local dir pidfile pid
  dir=$(stack_dir 2>/dev/null || true)
  [ -n "$dir" ] || return 0
  for pidfile in "$dir"/run/demo-*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(head -n1 "$pidfile")
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q tributary; then
      log "stopping $(basename "$pidfile" .pid) (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
}

up() {
  local settings
  settings=$("$STACK" up) || { log "the local stack did not come up"; exit 1; }
  set -a; eval "$settings"; set +a
  [ -x "$BIN" ] || { log "build first: cargo build --bins"; exit 1; }

  log "creating topics events (12 partitions) and events-dlq"
  "$TRIBUTARY_PYTHON" - "$KAFKA_BOOTSTRAP_SERVERS" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
existing = admin.list_topics(timeout=10).topics
wanted = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in (("events", 12), ("events-dlq", 3)) if t not in existing]
for topic, future in (admin.create_topics(wanted).items() if wanted else []):
    future.result()
PY

  stop
  local dir; dir=$(stack_dir)
  export CONSUMER_CLICKHOUSE_HOST CONSUMER_CLICKHOUSE_PORT CONSUMER_CLICKHOUSE_DATABASE=tributary
  export QUERY_CLICKHOUSE_HOST QUERY_CLICKHOUSE_PORT REDIS_URL
  log "applying ClickHouse and Postgres migrations"
  LOG_LEVEL=warn "$BIN" migrate

  log "starting consumer (metrics on :$CONSUMER_METRICS_PORT, logs: $dir/logs/demo-consumer.log)"
  CONSUMER_METRICS_PORT=$CONSUMER_METRICS_PORT CONSUMER_FLUSH_INTERVAL_MS=500 \
    setsid nohup "$BIN" consumer > "$dir/logs/demo-consumer.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/demo-consumer.pid"

  log "starting auth on 127.0.0.1:$AUTH_PORT (logs: $dir/logs/demo-auth.log)"
  AUTH_HOST=127.0.0.1 AUTH_PORT=$AUTH_PORT JWT_SECRET=demo-only-secret-demo-only-secret-0000 \
    setsid nohup "$BIN" auth > "$dir/logs/demo-auth.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/demo-auth.pid"
  wait_http "http://127.0.0.1:$AUTH_PORT/health" "$dir/logs/demo-auth.log"

  local auth="http://127.0.0.1:$AUTH_PORT" email token project key
  email="demo-$(date +%s%N)@example.test"
  json_field() { "$TRIBUTARY_PYTHON" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
  curl -fsS -X POST "$auth/api/signup" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"demo-password\"}" > /dev/null
  token=$(curl -fsS -X POST "$auth/api/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"demo-password\"}" | json_field token)
  project=$(curl -fsS -X POST "$auth/api/projects" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"Demo shop"}' | json_field id)
  key=$(curl -fsS -X POST "$auth/api/projects/$project/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"web","scope":"capture"}' | json_field api_key)
  query_key=$(curl -fsS -X POST "$auth/api/projects/$project/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"dashboards","scope":"query"}' | json_field api_key)
  log "auth: user $email, project $project, capture key ${key:0:10}..., query key ${query_key:0:10}..."

  log "starting capture on 127.0.0.1:$CAPTURE_PORT, keys checked by auth (logs: $dir/logs/demo-capture.log)"
  CAPTURE_HOST=127.0.0.1 CAPTURE_PORT=$CAPTURE_PORT CAPTURE_AUTH_URL=$auth CAPTURE_REQUIRE_API_KEY=true \
    setsid nohup "$BIN" capture > "$dir/logs/demo-capture.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/demo-capture.pid"
  wait_http "http://127.0.0.1:$CAPTURE_PORT/ready" "$dir/logs/demo-capture.log"

  local capture="http://127.0.0.1:$CAPTURE_PORT"
  echo
  echo "== capture: one native event (POST /capture, X-API-Key) =="
  curl -sS -X POST "$capture/capture" -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    -d '{"event":"signed_up","distinct_id":"demo-user-1","properties":{"plan":"pro"}}'
  echo
  echo "== capture: a gzipped PostHog batch (POST /batch) =="
  printf '{"api_key":"%s","batch":[%s,%s]}' "$key" \
    '{"event":"$pageview","distinct_id":"demo-user-1","properties":{"$current_url":"https://example.com/"}}' \
    '{"event":"$pageview","distinct_id":"demo-user-2"}' \
    | gzip | curl -sS -X POST "$capture/batch?compression=gzip-js" --data-binary @-
  echo
  echo "== capture: a bad request is refused, naming the problem =="
  curl -sS -X POST "$capture/capture" -H "X-API-Key: $key" -d '{"batch":[{"event":"x","distinct_id":"a"},{"event":"x"}]}'
  echo
  echo "== capture: a made-up key is refused =="
  curl -sS -X POST "$capture/capture" -H 'X-API-Key: trb_made_up' -d '{"event":"x","distinct_id":"a"}'
  echo
  echo
  echo "== Kafka topic events: what arrived =="
  "$TRIBUTARY_PYTHON" - "$KAFKA_BOOTSTRAP_SERVERS" <<'PY'
import json, sys, uuid
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "demo-" + uuid.uuid4().hex, "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
c.subscribe(["events"])
seen = 0
for _ in range(100):
    m = c.poll(0.5)
    if m is None:
        if seen >= 3: break
        continue
    if m.error(): continue
    e = json.loads(m.value())
    print(f"  partition {m.partition():2d}  key={m.key().decode():14s} {e['event']:10s} project={e['project_id']} timestamp={e['timestamp']}")
    seen += 1
c.close()
PY
  echo
  echo "== ClickHouse: the consumer wrote them (events deduplicated by uuid) =="
  local deadline=$((SECONDS + 60)) counted=0
  until [ "$counted" -ge 3 ]; do
    counted=$(curl -fsS "$CLICKHOUSE_URL/" --data-binary "SELECT uniqExact(uuid) FROM tributary.events WHERE project_id = $project" || echo 0)
    [ $SECONDS -lt $deadline ] || { log "only $counted events visible after 60 s"; break; }
    [ "$counted" -ge 3 ] || sleep 0.2
  done
  curl -fsS "$CLICKHOUSE_URL/" --data-binary "SELECT project_id, event, uniqExact(uuid) AS events, uniqExact(distinct_id) AS users, any(mat_current_url) AS url FROM tributary.events WHERE project_id = $project GROUP BY project_id, event ORDER BY event FORMAT PrettyCompactNoEscapes"
  echo
  log "starting query on 127.0.0.1:$QUERY_PORT, keys checked by auth (logs: $dir/logs/demo-query.log)"
  QUERY_HOST=127.0.0.1 QUERY_PORT=$QUERY_PORT QUERY_AUTH_URL=$auth QUERY_REQUIRE_API_KEY=true \
    QUERY_CLICKHOUSE_DATABASE=tributary \
    setsid nohup "$BIN" query > "$dir/logs/demo-query.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/demo-query.pid"
  wait_http "http://127.0.0.1:$QUERY_PORT/ready" "$dir/logs/demo-query.log"
  echo "== query: today's events by name, through the query API with the query key =="
  local query="http://127.0.0.1:$QUERY_PORT"
  curl -sS -X POST "$query/api/query/trend" -H "X-API-Key: $query_key" -H 'Content-Type: application/json' \
    -d '{"series":[{"event":"$pageview"},{"event":"$pageview","math":"unique_users"}],"date_from":"-1d","interval":"day"}'
  echo
  echo "== query: the capture key cannot query (401) =="
  curl -sS -X POST "$query/api/query/trend" -H "X-API-Key: $key" -d '{"series":[{"event":"x"}],"date_from":"-1d"}'
  echo
  echo "== consumer metrics (excerpt) =="
  curl -sS "http://127.0.0.1:$CONSUMER_METRICS_PORT/metrics" | grep -E '^consumer_(messages_consumed_total|rows_written_total|dlq_messages_total|event_visibility_seconds_(sum|count))'
  echo
  echo "== capture metrics (excerpt) =="
  curl -sS "$capture/metrics" | grep -E '^capture_(requests_total|events_received_total|kafka_produce_total|kafka_ready)'
  echo
  echo "auth:     $auth   (user $email, password demo-password)"
  echo "capture:  $capture"
  echo "consumer: http://127.0.0.1:$CONSUMER_METRICS_PORT/metrics"
  echo "ClickHouse: $CLICKHOUSE_URL (database tributary)   stop everything: make down"
  echo "query:    $query   (X-API-Key: $query_key)"
  echo "not built yet: operator (#7)"
}

case "${1:-up}" in
  up) up ;;
  stop) stop ;;
  *) echo "usage: $0 up|stop" >&2; exit 2 ;;
esac
