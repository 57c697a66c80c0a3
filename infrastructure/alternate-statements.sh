#!/usr/bin/env bash
# Runs ClickHouse statements alternately, ROUNDS times each, and prints the
# min and median of each one's server-side duration and CPU time from
# system.query_log (BENCHMARKS.md, "Round two (#23)"): alternating keeps the
# machine's drift out of the comparison.
#
#   infrastructure/alternate-statements.sh ROUNDS NAME1 FILE1 NAME2 FILE2 ...
#
# Each FILE holds one statement (add FORMAT Native etc. to it). Answers go to
# $OUT_DIR/out.NAME (default /tmp), so they can be compared (md5sum).
# CLICKHOUSE_HTTP (default http://127.0.0.1:18123, the local stack's server).
set -euo pipefail
url=${CLICKHOUSE_HTTP:-http://127.0.0.1:18123}
out=${OUT_DIR:-/tmp}
rounds=$1; shift
names=(); files=()
while [ $# -ge 2 ]; do names+=("$1"); files+=("$2"); shift 2; done
tag=alt$RANDOM
for r in $(seq "$rounds"); do
  for i in "${!names[@]}"; do
    curl -sS -o "$out/out.${names[$i]}" \
      "$url/?log_queries=1&query_id=$tag-${names[$i]}-$r" --data-binary @"${files[$i]}"
  done
done
curl -sS "$url/" --data-binary "SYSTEM FLUSH LOGS"
cpu="toUInt64((ProfileEvents.Values[indexOf(ProfileEvents.Names,'UserTimeMicroseconds')] + ProfileEvents.Values[indexOf(ProfileEvents.Names,'SystemTimeMicroseconds')]) / 1000)"
curl -sS "$url/" --data-binary "SELECT extract(query_id, '^[^-]+-(.*)-[0-9]+\$') AS name, min(query_duration_ms) AS ms_min, quantileExact(0.5)(query_duration_ms) AS ms_median, min($cpu) AS cpu_ms_min, quantileExact(0.5)($cpu) AS cpu_ms_median, any(result_bytes) AS bytes FROM system.query_log WHERE type = 2 AND query_id LIKE '$tag-%' GROUP BY name ORDER BY name FORMAT PrettyCompactNoEscapes"
