#!/usr/bin/env bash
# The whole system on a local Kubernetes cluster (kind), the way a cluster
# admin and a team would run it:
#
#   up    create the cluster (cluster.yaml), build the image and load it into
#         the node, install Kafka, ClickHouse, Postgres and Redis (deps/),
#         install the operator with its Helm chart, apply the example
#         pipeline (crds/examples/$EXAMPLE.yaml), wait until it is Ready, and
#         send an event through capture over a port-forward until it is in
#         ClickHouse.
#   down  delete the cluster.
#
# EXAMPLE=cluster runs crds/examples/cluster.yaml on a two-shard ClickHouse
# (cluster-deps/) instead of the minimal pipeline on one server.
#
# Needs docker, kind, kubectl and helm. Usage: infrastructure/kind/kind.sh up|down
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER=tributary
NAMESPACE=analytics
OPERATOR_NAMESPACE=tributary-system
# The release named like the chart: its objects are named `tributary-operator`.
RELEASE=tributary-operator
PIPELINE=analytics
EXAMPLE=${EXAMPLE:-minimal}
# The ClickHouse server the smoke test reads through.
case "$EXAMPLE" in
  minimal) CLICKHOUSE_WORKLOAD=deployment/clickhouse ;;
  cluster) CLICKHOUSE_WORKLOAD=deployment/clickhouse-shard-1 ;;
  *) printf 'kind: EXAMPLE=%s: give minimal or cluster\n' "$EXAMPLE" >&2; exit 2 ;;
esac
# Where the example pipeline's consumer writes (spec.clickhouse.database).
EVENTS_TABLE=tributary.events
# The image the chart (its appVersion) and the example pipeline name; the
# cluster runs it under a per-build tag (see up).
IMAGE=ghcr.io/tributary-dev/tributary:0.1.0
REPOSITORY=${IMAGE%:*}
VERSION=${IMAGE##*:}
# The capture Service's port, and where it is forwarded to on this machine.
CAPTURE_PORT=8000
CAPTURE_LOCAL_PORT=${CAPTURE_LOCAL_PORT:-18000}
AUTH_PORT=8002
AUTH_LOCAL_PORT=${AUTH_LOCAL_PORT:-18002}

log() { printf 'kind: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

need() {
  local missing=() tool
  for tool in "$@"; do command -v "$tool" > /dev/null || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] || fail "missing: ${missing[*]} (install them, then run again)"
}

kc() { kubectl --context "kind-$CLUSTER" "$@"; }

# On failure, show what the cluster knows before giving up.
explain() {
  log "something did not come up; the pipeline and its pods:"
  kc -n "$NAMESPACE" get analyticspipeline,pods,jobs 2>&1 | sed 's/^/  /' >&2 || true
  kc -n "$NAMESPACE" describe analyticspipeline "$PIPELINE" 2>&1 | tail -n 30 | sed 's/^/  /' >&2 || true
  kc -n "$OPERATOR_NAMESPACE" logs "deployment/$RELEASE" --tail 30 2>&1 | sed 's/^/  /' >&2 || true
}

up() {
  need docker kind kubectl helm curl
  local clusters
  clusters=$(kind get clusters 2> /dev/null || true)
  if grep -qx "$CLUSTER" <<< "$clusters"; then
    log "cluster $CLUSTER exists; reusing it"
  else
    log "creating cluster $CLUSTER"
    kind create cluster --config "$HERE/cluster.yaml" --wait 120s
  fi

  log "building $IMAGE"
  # No provenance attestation: kind loads single-manifest images reliably.
  docker build --provenance=false -t "$IMAGE" \
    --build-arg "REVISION=$(git -C "$REPO" rev-parse HEAD 2> /dev/null || echo unknown)" "$REPO"
  # A tag per build, so a re-run rolls the operator and the pipeline (and
  # runs a new migration Job) instead of leaving the old binaries running.
  local id tag archive
  id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  id=${id#sha256:}
  tag="$VERSION-dev.${id:0:12}"
  docker tag "$IMAGE" "$REPOSITORY:$tag"
  archive=$(mktemp)
  docker save -o "$archive" "$REPOSITORY:$tag"
  kind load image-archive "$archive" --name "$CLUSTER"
  rm -f "$archive"

  log "installing Kafka, ClickHouse, Postgres and Redis in namespace $NAMESPACE"
  kc apply -f "$HERE/deps/namespace.yaml"
  kc apply -f "$HERE/deps/"
  # A random JWT secret, made once: making it again would sign out everyone.
  if ! kc -n "$NAMESPACE" get secret tributary-jwt > /dev/null 2>&1; then
    kc -n "$NAMESPACE" create secret generic tributary-jwt \
      --from-literal=secret="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
  fi
  local workloads=(statefulset/kafka deployment/clickhouse deployment/postgres deployment/redis)
  if [ "$EXAMPLE" = cluster ]; then
    kc apply -f "$HERE/cluster-deps/"
    workloads+=(deployment/clickhouse-shard-1 deployment/clickhouse-shard-2)
  fi
  for workload in "${workloads[@]}"; do
    kc -n "$NAMESPACE" rollout status "$workload" --timeout 5m
  done

  log "installing the operator (Helm chart charts/tributary-operator)"
  helm --kube-context "kind-$CLUSTER" upgrade --install "$RELEASE" "$REPO/charts/tributary-operator" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace --set replicas=1 --set "image.tag=$tag" \
    --wait --timeout 5m

  kc wait --for=condition=Established crd/analyticspipelines.tributary.dev --timeout 60s

  log "applying crds/examples/$EXAMPLE.yaml in namespace $NAMESPACE, image tag $tag"
  local manifest generation
  manifest=$(sed "s|^  image: $IMAGE\$|  image: $REPOSITORY:$tag|" "$REPO/crds/examples/$EXAMPLE.yaml")
  grep -q "^  image: $REPOSITORY:$tag\$" <<< "$manifest" \
    || fail "crds/examples/$EXAMPLE.yaml no longer names image $IMAGE; update IMAGE here"
  kc -n "$NAMESPACE" apply -f - <<< "$manifest"
  # Ready of this generation, not the one before a re-run.
  generation=$(kc -n "$NAMESPACE" get "analyticspipeline/$PIPELINE" -o jsonpath='{.metadata.generation}')
  if ! kc -n "$NAMESPACE" wait --for=jsonpath='{.status.observedGeneration}'="$generation" \
    "analyticspipeline/$PIPELINE" --timeout 2m \
    || ! kc -n "$NAMESPACE" wait --for=condition=Ready "analyticspipeline/$PIPELINE" --timeout 10m; then
    explain
    fail "pipeline $PIPELINE not Ready after 10 minutes"
  fi
  kc -n "$NAMESPACE" get analyticspipeline "$PIPELINE"

  smoke
}

# The value of "field" in the one-line JSON object on stdin (a string or a
# number), for the answers of auth below.
json_field() {
  sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}

# Keys are required: a user, a project and a capture key through auth.
capture_key() {
  local base=http://127.0.0.1:$AUTH_LOCAL_PORT email token project user
  email="kind-smoke-$(date +%s)@example.test"
  user="{\"email\":\"$email\",\"password\":\"kind-smoke-password\"}"
  curl -fsS --max-time 10 -X POST "$base/api/signup" -H 'Content-Type: application/json' -d "$user" > /dev/null
  token=$(curl -fsS --max-time 10 -X POST "$base/api/login" -H 'Content-Type: application/json' -d "$user" | json_field token)
  [ -n "$token" ] || fail "auth gave no login token"
  project=$(curl -fsS --max-time 10 -X POST "$base/api/projects" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"kind smoke"}' | json_field id)
  [ -n "$project" ] || fail "auth made no project"
  curl -fsS --max-time 10 -X POST "$base/api/projects/$project/api-keys" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"name":"kind smoke","scope":"capture"}' | json_field api_key
}

# One event through capture (port-forwarded) with a key made through auth,
# polled for in ClickHouse.
smoke() {
  local forward_log pf pf_auth id deadline count key
  forward_log=$(mktemp)
  # kubectl itself, not the kc function: $! must be the process to stop.
  kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" port-forward "service/$PIPELINE-capture" \
    "$CAPTURE_LOCAL_PORT:$CAPTURE_PORT" > "$forward_log" 2>&1 &
  pf=$!
  kubectl --context "kind-$CLUSTER" -n "$NAMESPACE" port-forward "service/$PIPELINE-auth" \
    "$AUTH_LOCAL_PORT:$AUTH_PORT" >> "$forward_log" 2>&1 &
  pf_auth=$!
  # shellcheck disable=SC2064 # expand now: the values are local
  trap "kill $pf $pf_auth 2> /dev/null || true; rm -f '$forward_log'" EXIT
  deadline=$((SECONDS + 60))
  until [ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CAPTURE_LOCAL_PORT/ready")" = 200 ] \
    && [ "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AUTH_LOCAL_PORT/ready")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { cat "$forward_log" >&2; fail "capture and auth not ready through the port-forwards after 60 s"; }
    sleep 1
  done
  key=$(capture_key)
  [ -n "$key" ] || fail "auth made no capture key"

  id="kind-smoke-$(date +%s)"
  log "sending event kind_smoke for distinct_id $id through capture, with a key made through auth"
  curl -fsS --max-time 10 -X POST "http://127.0.0.1:$CAPTURE_LOCAL_PORT/capture" -H 'Content-Type: application/json' \
    -H "X-API-Key: $key" \
    -d "{\"event\":\"kind_smoke\",\"distinct_id\":\"$id\",\"properties\":{\"source\":\"kind.sh\"}}"
  echo

  deadline=$((SECONDS + 120))
  while :; do
    count=$(kc -n "$NAMESPACE" exec "$CLICKHOUSE_WORKLOAD" -- clickhouse-client --query \
      "SELECT count() FROM $EVENTS_TABLE WHERE distinct_id = '$id'" 2> /dev/null || echo 0)
    # At least once: a redelivered event may be counted twice until merged.
    [ "$count" -ge 1 ] 2> /dev/null && break
    [ $SECONDS -lt $deadline ] || { explain; fail "the event is not in ClickHouse after 120 s (count: $count)"; }
    sleep 2
  done
  log "the event went capture -> Kafka -> consumer -> ClickHouse"
  cat >&2 << MSG

Tributary runs on kind cluster $CLUSTER, pipeline $NAMESPACE/$PIPELINE:
  kubectl --context kind-$CLUSTER -n $NAMESPACE get analyticspipeline,deployments
  kubectl --context kind-$CLUSTER -n $NAMESPACE port-forward service/$PIPELINE-capture 8000:$CAPTURE_PORT
  kubectl --context kind-$CLUSTER -n $NAMESPACE port-forward service/$PIPELINE-query 8001:8001
  make kind-down    deletes the cluster
MSG
}

down() {
  need kind
  kind delete cluster --name "$CLUSTER"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) fail "usage: $0 up|down" ;;
esac
